#include "data/inspect_text.h"

#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        *cap = 2 * (*len + n + 1);
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

int inspect_text_decode(InspectText *t, const char *dir, const Manifest *m, const int32_t *ids,
                        const int32_t *labels, int len, Error *err) {
    memset(t, 0, sizeof *t);
    char tdir[4096];
    if (path_join(tdir, sizeof tdir, dir, m->tokenizer_dir) != 0) return err_set(err, "%s: path too long", dir);
    Tokenizer *tok = NULL;
    if (tokenizer_load(&tok, tdir, err) != 0) return -1;
    // Each run of image tokens becomes one <image> (the tokenizer's added token).
    int32_t *collapsed = xmalloc((size_t)(len ? len : 1) * sizeof(int32_t));
    int n = 0;
    for (int i = 0; i < len; i++)
        if (!(ids[i] == m->image_token_index && i > 0 && ids[i - 1] == m->image_token_index)) collapsed[n++] = ids[i];
    t->text = tokenizer_decode(tok, collapsed, n, 0, NULL);
    // The spans that carry loss, each decoded on its own.
    size_t cap = 64, used = 0;
    t->loss_text = xcalloc(1, cap);
    for (int i = 0; i < len;) {
        if (labels[i] == -100) {
            i++;
            continue;
        }
        int j = i;
        while (j < len && labels[j] != -100) j++;
        char *span = tokenizer_decode(tok, labels + i, j - i, 0, NULL);
        if (used) append(&t->loss_text, &used, &cap, " | ", 3);
        append(&t->loss_text, &used, &cap, span, strlen(span));
        free(span);
        i = j;
    }
    free(collapsed);
    tokenizer_free(tok);
    return 0;
}

void inspect_text_free(InspectText *t) {
    free(t->text);
    free(t->loss_text);
    memset(t, 0, sizeof *t);
}
