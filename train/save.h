// Writing what training produces besides the model (model/hf_save.h): the
// resume state (optimizer shards), and the checkpoint folders of a run
// (atomic: written as NAME.tmp, fsynced, renamed; the newest complete one is
// found again on restart; only the last K are kept).
#ifndef LLAVA_SAVE_H
#define LLAVA_SAVE_H

#include "model/hf_save.h"
#include "model/model.h"
#include "train/optim.h"

// The optimizer state of this process's slice of the flat trainable space
// (optim.h): DIR/optimizer-<rank>-of-<world>.safetensors holding fp32
// "master" (the weights), "exp_avg", "exp_avg_sq" of the slice, with its
// range in the metadata. Replicated state is written by rank 0 alone (one
// file covering everything); ZeRO-1 state by every rank.
int save_optimizer_shard(const LlavaModel *m, const Optimizer *o, const char *dir, int rank, int world, Error *err);
// Reads every optimizer-*.safetensors of DIR (whatever world size wrote
// them): the trainable weights get the fp32 masters of the whole flat space,
// the optimizer its own slice of the moments. Checks the files cover
// everything and match the model.
int load_optimizer_shards(LlavaModel *m, Optimizer *o, const char *dir, Error *err);

// Checkpoint folders "checkpoint-00000100" in a run folder.
void checkpoint_dir_name(char *out, size_t cap, const char *run_dir, long step);
// The newest complete checkpoint folder (its step in *step), or 0 if none.
int checkpoint_find_latest(const char *run_dir, char *out, size_t cap, long *step);
// Deletes all but the newest `keep` checkpoints up to step `current` (the one
// just written), and stale *.tmp folders. Checkpoints after `current` (left by
// a run that went further before this one resumed an older checkpoint) are
// not counted, so they can never push out the one just written.
void checkpoint_prune(const char *run_dir, int keep, long current);
// Renames every complete checkpoint after `step` to <name><suffix> (-2, -3
// ... when taken); returns how many. Such folders are never resumed.
int checkpoint_set_aside_after(const char *run_dir, long step, const char *suffix);
// A run that starts over from step `step` (resume=none, or an explicit older
// checkpoint) in a folder holding later checkpoints of an earlier run: those
// are renamed checkpoint-N.superseded, so they are kept but never resumed
// from. Returns how many were renamed.
int checkpoint_supersede_after(const char *run_dir, long step);
// Removes a folder tree (no error when absent).
int remove_tree(const char *path);
// Renames src to dst and fsyncs the parent folder.
int rename_durable(const char *src, const char *dst, Error *err);

#endif
