#include "data/inspect_text.h"

#include <stdlib.h>

int inspect_text_decode(InspectText *t, const char *dir, const Manifest *m, const int32_t *ids,
                        const int32_t *labels, int len, Error *err) {
    (void)dir; (void)m; (void)ids; (void)labels; (void)len;
    t->text = t->loss_text = NULL;
    return err_set(err, "decoding needs data/tokenizer.h (not merged yet)");
}

void inspect_text_free(InspectText *t) {
    free(t->text);
    free(t->loss_text);
}
