// `llava tokenize`: text on stdin -> JSON array of ids on stdout, or (with
// --decode) a JSON array of ids -> text. The inspection command that makes the
// tokenizer checkable against Hugging Face from the shell.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/json.h"
#include "data/tokenizer.h"
#include "common/commands.h"

static char *read_stdin(size_t *len_out) {
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) buf = xrealloc(buf, (cap *= 2) + 1);
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len_out = n;
    return buf;
}

// "[1, 2, 3]\n" (Python's json.dumps spelling), built in one buffer: a 10 MB
// text has millions of ids and printf per id would dominate the run time.
static int write_ids(const TokenIds *ids) {
    char *out = xmalloc((size_t)ids->n * 13 + 4), *p = out;
    *p++ = '[';
    for (int i = 0; i < ids->n; i++) {
        if (i) *p++ = ',', *p++ = ' ';
        char digits[12];
        int k = 0;
        long v = ids->data[i];
        if (v < 0) *p++ = '-', v = -v;
        do digits[k++] = (char)('0' + v % 10);
        while ((v /= 10) > 0);
        while (k) *p++ = digits[--k];
    }
    *p++ = ']';
    *p++ = '\n';
    size_t n = (size_t)(p - out);
    int ok = fwrite(out, 1, n, stdout) == n && fflush(stdout) == 0;
    free(out);
    return ok ? 0 : -1;
}

static int decode_stdin(const Tokenizer *t, const char *text, size_t len, int skip_special) {
    Error err = {{0}};
    cJSON *root = json_parse_text(text, len, "stdin", &err);
    if (!root) {
        fprintf(stderr, "llava tokenize --decode: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    int status = EXIT_OK;
    TokenIds ids = {0};
    if (!cJSON_IsArray(root)) {
        fprintf(stderr, "llava tokenize --decode: stdin must hold a JSON array of token ids\n");
        status = EXIT_BAD_INPUT;
    }
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, root) {
        if (status) break;
        const double v = cJSON_IsNumber(e) ? e->valuedouble : 0.5;
        if (!(v >= 0 && v <= 2147483647.0) || v != (double)(int64_t)v) {
            fprintf(stderr, "llava tokenize --decode: stdin: element %d is not a token id (an integer >= 0)\n", i);
            status = EXIT_BAD_INPUT;
            break;
        }
        token_ids_push(&ids, (int32_t)v);
        i++;
    }
    if (!status) {
        size_t n;
        char *s = tokenizer_decode(t, ids.data, ids.n, skip_special, &n);
        if (fwrite(s, 1, n, stdout) != n || fflush(stdout) != 0) status = EXIT_ERROR;
        free(s);
    }
    token_ids_free(&ids);
    cJSON_Delete(root);
    return status;
}

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL;
    int no_bos = 0, decode = 0, skip_special = 0;
    ArgSpec specs[] = {
        {"tokenizer", ARG_STRING, &dir, "folder with tokenizer.json (+ tokenizer_config.json), e.g. the model folder", 1},
        {"no-bos", ARG_FLAG, &no_bos, "add no special tokens (no BOS; no EOS either when add_eos_token is set)", 0},
        {"decode", ARG_FLAG, &decode, "read a JSON array of ids and print the text", 0},
        {"skip-special", ARG_FLAG, &skip_special, "with --decode: leave out special tokens (<s>, </s>, <image>, ...)", 0},
    };
    int rc = args_parse(argc, argv, specs, (int)(sizeof specs / sizeof *specs),
                        "llava tokenize --tokenizer DIR [--no-bos] [--decode [--skip-special]] < input",
                        "Reads all of stdin as one text and prints its token ids as a JSON array, exactly as\n"
                        "Hugging Face tokenizers encodes it (BOS per add_bos_token). With --decode, reads a JSON\n"
                        "array of ids and prints the decoded text (no newline added).",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    Error err = {{0}};
    Tokenizer *t = NULL;
    if (tokenizer_load(&t, dir, &err) != 0) {
        fprintf(stderr, "llava tokenize: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    size_t len = 0;
    char *text = read_stdin(&len);
    int status = EXIT_OK;
    if (!text) {
        fprintf(stderr, "llava tokenize: cannot read stdin\n");
        status = EXIT_ERROR;
    } else if (decode) {
        status = decode_stdin(t, text, len, skip_special);
    } else {
        TokenIds ids = {0};
        tokenizer_encode(t, text, len, no_bos ? 0 : TOK_ADD_SPECIAL, &ids);
        if (write_ids(&ids) != 0) {
            fprintf(stderr, "llava tokenize: cannot write stdout\n");
            status = EXIT_ERROR;
        }
        token_ids_free(&ids);
    }
    free(text);
    tokenizer_free(t);
    return status;
}
