// Writing a run's checkpoints and its final folder (train/trainer.c's loop
// calls these; split out of it to keep the loop file readable).
#ifndef LLAVA_TRAIN_TRAINER_SAVE_H
#define LLAVA_TRAIN_TRAINER_SAVE_H

#include "common/util.h"
#include "train/trainer.h"

// checkpoint-<step>/ (or checkpoint-<step>.diverged/ when the weights are not
// finite or `diverged` is set): every rank calls it. *resumable says which.
int trainer_save_checkpoint(Trainer *t, int diverged, int *resumable, Error *err);
// final/: the complete model (stage 1 adds its projector files), or a LoRA
// run's PEFT adapter folder. Every rank calls it (ZeRO-2/3 gathers first).
int trainer_save_final(Trainer *t, Error *err);

#endif
