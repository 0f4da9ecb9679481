// tokenizer.json (data/tokenizer.c): loading, then encoding and decoding a
// fixed text and the input itself.
#include "data/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("tokenizer.json", data, size);
    Tokenizer *t = NULL;
    Error err = {{0}};
    if (tokenizer_load_files(&t, path, NULL, &err) != 0) return 0;
    static const char text[] = "USER: <image>\nWhat is in the picture? ASSISTANT: A cat</s>  \xe2\x96\x81\xf0\x9f\x98\x80";
    TokenIds ids = {0};
    tokenizer_encode(t, text, sizeof text - 1, TOK_ADD_SPECIAL, &ids);
    tokenizer_encode(t, (const char *)data, size < 4096 ? size : 4096, 0, &ids);
    free(tokenizer_decode(t, ids.data, ids.n, 0, NULL));
    free(tokenizer_decode(t, ids.data, ids.n, 1, NULL));
    token_ids_free(&ids);
    tokenizer_free(t);
    return 0;
}
