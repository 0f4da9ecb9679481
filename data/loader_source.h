// The shard loader as the trainer's BatchSource (data/batch_source.h): one
// next_step call yields this rank's non-empty micro-batches of the next
// global batch; position/seek are the loader's (epoch, step) resume points.
#ifndef LLAVA_LOADER_SOURCE_H
#define LLAVA_LOADER_SOURCE_H

#include "data/loader.h"
#include "data/batch_source.h"

// Opens the loader with *o (o->resume is where it starts; o->dir is copied).
int loader_source_open(BatchSource *s, const LoaderOptions *o, Error *err);

#endif
