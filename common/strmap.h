// A string -> int map (open addressing, FNV-1a). Keys are copied. Used for
// tensor-name lookups in checkpoints with hundreds of tensors.
#ifndef LLAVA_STRMAP_H
#define LLAVA_STRMAP_H

#include <stddef.h>

typedef struct {
    char **keys;   // [cap], NULL = empty slot
    int *values;   // [cap]
    size_t cap, count;
} StrMap;

void strmap_init(StrMap *m);
void strmap_free(StrMap *m);
// Inserts or overwrites. Returns 1 when the key was new, 0 when overwritten.
int strmap_put(StrMap *m, const char *key, int value);
// Returns the value or -1 when absent.
int strmap_get(const StrMap *m, const char *key);

#endif
