#include "common/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static uint64_t hash_string(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

void strmap_init(StrMap *m) {
    m->cap = 64;
    m->count = 0;
    m->keys = xcalloc(m->cap, sizeof(char *));
    m->values = xcalloc(m->cap, sizeof(int));
}

void strmap_free(StrMap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(char **keys, size_t cap, const char *key) {
    size_t i = (size_t)hash_string(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0) i = (i + 1) & (cap - 1);
    return i;
}

static void grow(StrMap *m) {
    size_t cap = m->cap * 2;
    char **keys = xcalloc(cap, sizeof(char *));
    int *values = xcalloc(cap, sizeof(int));
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = find_slot(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        values[j] = m->values[i];
    }
    free(m->keys);
    free(m->values);
    m->keys = keys;
    m->values = values;
    m->cap = cap;
}

int strmap_put(StrMap *m, const char *key, int value) {
    if ((m->count + 1) * 2 > m->cap) grow(m);
    size_t i = find_slot(m->keys, m->cap, key);
    if (m->keys[i]) {
        m->values[i] = value;
        return 0;
    }
    m->keys[i] = xstrdup(key);
    m->values[i] = value;
    m->count++;
    return 1;
}

int strmap_get(const StrMap *m, const char *key) {
    if (!m->cap) return -1;
    size_t i = find_slot(m->keys, m->cap, key);
    return m->keys[i] ? m->values[i] : -1;
}
