// WebDataset / img2dataset tar shards as a prep input (data/prep.h):
// `llava prep --webdataset 'DIR/{00000..00999}.tar'`.
//
// A shard is a plain tar whose members are grouped by key: the key is the
// member's path up to the first '.' of its file name, the rest is the
// extension ("a/000012.jpg" -> key "a/000012", extension "jpg"). img2dataset
// writes KEY.jpg, KEY.txt, KEY.json next to each other; one group = one
// sample = one item of the prep pipeline (its id is the key). The caption is
// the .txt member (caption_key "txt") or a string field of the .json member;
// the image is the first member with an image extension. The sample is the
// stage-1 conversation [human "<image>\n", gpt caption], which the plain
// template turns into <image> caption \n as LLaVA's preprocess_plain does.
//
// Members are read in a stream (libarchive), never extracted: a member's
// name only ever becomes a key or a report entry, so a hostile name cannot
// write anywhere. Problems become report entries naming the tar and the key,
// and reading goes on: a truncated or damaged tar (corrupt_archive, the rest
// of that tar is lost, the next tar is read), a group without caption
// (missing_caption) or image (missing_image), a key seen before in the same
// tar (duplicate_key: the first is kept), a name with "..", an absolute path
// or a non-file member, and a member larger than max_member_bytes
// (unsafe_member). Undecodable images are found by the processor
// (corrupt_image, the member named).
//
// Resume: a position is (tar number, members read in that tar, items so far),
// kept in DatasetPos as offset, line and index. Reopening skips that many
// member headers (seeks, no decompression for plain tars) and replays their
// keys into the duplicate check, so a resumed run reports exactly what an
// uninterrupted one would.
#ifndef LLAVA_WEBDATASET_H
#define LLAVA_WEBDATASET_H

#include <stdint.h>

#include "common/util.h"
#include "data/prep.h"

#define WDS_DEFAULT_MAX_MEMBER_MB 64

// The tars named by a --webdataset argument, in order:
//   'DIR/{00000..00999}.tar'  brace ranges (zero-padded as written) and {a,b} lists, any number
//   'DIR/*.tar'               glob(3) patterns (sorted)
//   shards.txt                a list file: one path or pattern per line, relative to the
//                             list's folder; blank lines and lines starting with '#' ignored
// Names that do not exist are kept (each becomes a report entry at prep
// time), unless none of the named files exists: then an error.
typedef struct {
    char **paths;  // [n] malloc'ed
    int n;
} WdsList;

int wds_list_expand(const char *spec, WdsList *out, Error *err);
void wds_list_free(WdsList *l);

// "i/N" (0 <= i < N) or "auto": the rank and size of an MPI or Slurm launch
// (OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/SIZE, SLURM_PROCID/NTASKS; 0/1 when none).
int wds_part_parse(const char *text, int *part, int *parts, Error *err);
// Tars [*first, *end) of n for part i of N: contiguous blocks, so that parts
// in order hold the samples in the order of one process.
void wds_part_range(int n, int part, int parts, int *first, int *end);

typedef struct {
    const char *caption_key;   // "txt" (default): the .txt member; else a field of the .json member
    int64_t max_member_bytes;  // larger members are refused unread (0 = WDS_DEFAULT_MAX_MEMBER_MB)
    const char *label;         // what the manifest records as the data source (the spec, the part)
} WdsOptions;

typedef struct WdsSource WdsSource;

// A prep source over paths[0..n) (borrowed: they must outlive the source).
WdsSource *wds_source_create(char *const *paths, int n, const WdsOptions *o, Error *err);
// The PrepSource that reads through ws (valid while ws lives).
PrepSource wds_source_prep(WdsSource *ws);
void wds_source_free(WdsSource *ws);

// Splits a member name into key and extension at the first '.' after the
// last '/'. Returns 0, or -1 when the name is unsafe (empty, absolute, a ".."
// component, no key); ext is "" when there is no '.'.
int wds_split_name(const char *name, char *key, size_t key_cap, char *ext, size_t ext_cap);

#endif
