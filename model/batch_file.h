// A batch stored as safetensors, the input of `llava forward`:
//   input_ids [B,T] I64|I32 (images expanded to image_seq_length tokens)
//   labels [B,T] I64|I32, -100 = ignored (optional: no loss without it)
//   pixel_values [N,3,S,S] F32|F16|BF16, normalized (absent when N = 0)
//   attention_mask [B,T] (optional; 1 = token, 0 = padding)
#ifndef LLAVA_BATCH_FILE_H
#define LLAVA_BATCH_FILE_H

#include "model/model.h"

typedef struct {
    LlavaBatch batch;  // points into the buffers below
    int32_t *ids, *labels, *seg;
    float *pixels;
} BatchFile;

// Reads and validates against the model config; errors name the file and
// the tensor.
int batch_file_read(BatchFile *bf, const char *path, const LlavaConfig *cfg, Error *err);
void batch_file_free(BatchFile *bf);

#endif
