// Text of a prepared sample for `llava inspect`: the tokens decoded with the
// tokenizer copied into the shard folder at prep time, image-token runs shown
// as one "<image>" each, and the text of the positions that carry loss.
#ifndef LLAVA_INSPECT_TEXT_H
#define LLAVA_INSPECT_TEXT_H

#include <stdint.h>

#include "common/util.h"
#include "data/manifest.h"

typedef struct {
    char *text;       // the whole sample
    char *loss_text;  // labeled spans only, joined with " | "
} InspectText;

int inspect_text_decode(InspectText *t, const char *dir, const Manifest *m, const int32_t *ids,
                        const int32_t *labels, int len, Error *err);
void inspect_text_free(InspectText *t);

#endif
