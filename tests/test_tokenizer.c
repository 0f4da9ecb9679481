// data/tokenizer.c against Hugging Face tokenizers: the ids, decoded texts
// and skip-special decodes that scripts/make_tokenizer_fixtures.py recorded
// for a corpus of ~2,000 strings, on a legacy-normalizer and a Metaspace
// tokenizer.json, and (scripts/make_bytelevel_tokenizer_fixtures.py) on
// Llama-3 and Qwen2 style byte-level BPE; add_eos_token; forced word breaks;
// load errors.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "data/tokenizer.h"
#include "tests/testlib.h"

typedef struct {
    char *s;
    size_t n;
} Text;

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static Text *load_corpus(const char *path, int *n_out) {
    Error err = {{0}};
    cJSON *root = json_parse_file(path, &err);
    CHECK(root && cJSON_IsArray(root), "%s", err.msg);
    int n = cJSON_GetArraySize(root), i = 0;
    Text *c = calloc((size_t)n, sizeof *c);
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (cJSON_IsString(e)) {
            c[i].s = xstrdup(e->valuestring);
            c[i].n = strlen(c[i].s);
        } else {  // {"hex": ...} for strings holding NUL bytes
            const char *h = cJSON_GetObjectItemCaseSensitive(e, "hex")->valuestring;
            c[i].n = strlen(h) / 2;
            c[i].s = malloc(c[i].n + 1);
            for (size_t k = 0; k < c[i].n; k++) c[i].s[k] = (char)(hexval(h[2 * k]) * 16 + hexval(h[2 * k + 1]));
        }
        i++;
    }
    cJSON_Delete(root);
    *n_out = n;
    return c;
}

static int ids_equal(const TokenIds *got, const cJSON *want, int offset) {
    if (got->n != cJSON_GetArraySize(want) - offset) return 0;
    for (int i = 0; i < got->n; i++)
        if (got->data[i] != cJSON_GetArrayItem(want, i + offset)->valueint) return 0;
    return 1;
}

static void print_ids(const char *what, const int32_t *ids, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static const char *str_or(const cJSON *obj, int i, const char *def) {
    char key[16];
    snprintf(key, sizeof key, "%d", i);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v ? v->valuestring : def;
}

// Every corpus string: ids, ids without specials, round trip, skip-special
// decode, and that forced breaks keep the text. `fixtures` is the folder
// under tests/fixtures (tokenizer: the SentencePiece-style forms, with their
// eos / unk variants; tokenizer_bytelevel: Llama-3 / Qwen2 byte-level BPE,
// from scripts/make_bytelevel_tokenizer_fixtures.py).
static void check_corpus(const char *src, const char *fixtures, const char *form, const Text *corpus, int n) {
    char path[4096], dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s/%s", src, fixtures, form);
    snprintf(path, sizeof path, "%s/tests/fixtures/%s/expected_%s.json", src, fixtures, form);
    Error err = {{0}};
    Tokenizer *t = NULL;
    EXPECT(tokenizer_load(&t, dir, &err) == 0, "load %s: %s", dir, err.msg);
    if (!t) return;
    cJSON *exp = json_parse_file(path, &err);
    CHECK(exp, "%s", err.msg);
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(exp, "ids");
    const cJSON *decoded = cJSON_GetObjectItemCaseSensitive(exp, "decoded");
    const cJSON *decoded_skip = cJSON_GetObjectItemCaseSensitive(exp, "decoded_skip");
    CHECK(cJSON_GetArraySize(all) == n, "corpus and %s disagree in length", path);
    const cJSON *prefix_item = cJSON_GetObjectItemCaseSensitive(exp, "prefix");
    const int prefix = prefix_item ? prefix_item->valueint : 1;  // ids the post-processor puts first (BOS)
    EXPECT(tokenizer_vocab_size(t) == cJSON_GetObjectItemCaseSensitive(exp, "vocab_size")->valueint,
           "%s: vocab size %d", form, tokenizer_vocab_size(t));
    int bad_ids = 0, bad_dec = 0, bad_skip = 0, bad_breaks = 0, round_trips = 0;
    TokenIds ids = {0}, bare = {0}, broken = {0}, segs = {0};
    unsigned seed = 12345;
    for (int i = 0; i < n; i++) {
        const cJSON *want = cJSON_GetArrayItem(all, i);
        token_ids_clear(&ids);
        token_ids_clear(&bare);
        tokenizer_encode(t, corpus[i].s, corpus[i].n, TOK_ADD_SPECIAL, &ids);
        tokenizer_encode(t, corpus[i].s, corpus[i].n, 0, &bare);
        if (!ids_equal(&ids, want, 0) || !ids_equal(&bare, want, prefix)) {
            if (bad_ids++ < 5) {
                fprintf(stderr, "%s: string %d %.80s\n", form, i, corpus[i].s);
                print_ids("got ", ids.data, ids.n);
                TokenIds w = {0};
                for (int k = 0; k < cJSON_GetArraySize(want); k++) token_ids_push(&w, cJSON_GetArrayItem(want, k)->valueint);
                print_ids("want", w.data, w.n);
                token_ids_free(&w);
            }
            continue;
        }
        // decode(encode(s)) == s wherever tokenizers round-trips, else what it gives
        size_t dn;
        char *d = tokenizer_decode(t, bare.data, bare.n, 0, &dn);
        const char *want_d = str_or(decoded, i, NULL);
        int ok = want_d ? (dn == strlen(want_d) && memcmp(d, want_d, dn) == 0)
                        : (dn == corpus[i].n && memcmp(d, corpus[i].s, dn) == 0);
        round_trips += ok && !want_d;
        if (!ok && bad_dec++ < 5) fprintf(stderr, "%s: decode of string %d: got \"%s\"\n", form, i, d);
        free(d);
        d = tokenizer_decode(t, ids.data, ids.n, 1, &dn);
        const char *want_s = str_or(decoded_skip, i, want_d ? want_d : NULL);
        ok = want_s ? (dn == strlen(want_s) && memcmp(d, want_s, dn) == 0)
                    : (dn == corpus[i].n && memcmp(d, corpus[i].s, dn) == 0);
        if (!ok && bad_skip++ < 5) fprintf(stderr, "%s: skip-special decode of string %d: got \"%s\"\n", form, i, d);
        free(d);
        // forced breaks split words but never change the text
        size_t breaks[3];
        int nb = corpus[i].n ? 1 + (int)(seed % 3) : 0;
        for (int k = 0; k < nb; k++) {
            seed = seed * 1103515245u + 12345u;
            breaks[k] = (seed >> 8) % (corpus[i].n + 1);
        }
        for (int k = 1; k < nb; k++)  // ascending
            for (int j = k; j > 0 && breaks[j] < breaks[j - 1]; j--) {
                size_t x = breaks[j];
                breaks[j] = breaks[j - 1], breaks[j - 1] = x;
            }
        token_ids_clear(&broken);
        token_ids_clear(&segs);
        tokenizer_encode_segments(t, corpus[i].s, corpus[i].n, 0, breaks, nb, &broken, &segs);
        char *d1 = tokenizer_decode(t, bare.data, bare.n, 0, &dn);
        size_t dn2;
        char *d2 = tokenizer_decode(t, broken.data, broken.n, 0, &dn2);
        int mono = segs.n == broken.n;
        for (int k = 0; mono && k < segs.n; k++)
            mono = segs.data[k] >= 0 && segs.data[k] <= nb && (k == 0 || segs.data[k] >= segs.data[k - 1]);
        if ((dn != dn2 || memcmp(d1, d2, dn) != 0 || !mono) && bad_breaks++ < 5)
            fprintf(stderr, "%s: breaks changed string %d: \"%s\" vs \"%s\"\n", form, i, d1, d2);
        free(d1);
        free(d2);
    }
    EXPECT(bad_ids == 0, "%s: %d of %d strings encode differently from tokenizers", form, bad_ids, n);
    EXPECT(bad_dec == 0, "%s: %d decodes differ", form, bad_dec);
    EXPECT(bad_skip == 0, "%s: %d skip-special decodes differ", form, bad_skip);
    EXPECT(bad_breaks == 0, "%s: %d encodings with breaks lost text", form, bad_breaks);
    EXPECT(round_trips > n / 2, "%s: only %d strings round-trip", form, round_trips);
    printf("%s: %d strings, %d round-trip exactly\n", form, n, round_trips);
    if (strcmp(fixtures, "tokenizer") != 0) goto done;  // the eos / unk variants are SentencePiece-only

    // add_bos_token false, add_eos_token true: a config of our own beside a copy of tokenizer.json
    char tmp[] = "/tmp/llava_tok_XXXXXX", p2[4200], p1[4200];
    CHECK(mkdtemp(tmp), "mkdtemp");
    snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
    snprintf(p2, sizeof p2, "%s/tokenizer.json", tmp);
    size_t len;
    char *json = read_file(p1, &len, &err);
    CHECK(json && write_file_atomic(p2, json, len, &err) == 0, "%s", err.msg);
    free(json);
    snprintf(p2, sizeof p2, "%s/tokenizer_config.json", tmp);
    const char *cfg = "{\"add_bos_token\": false, \"add_eos_token\": true, \"eos_token\": \"</s>\"}";
    CHECK(write_file_atomic(p2, cfg, strlen(cfg), &err) == 0, "%s", err.msg);
    Tokenizer *te = NULL;
    EXPECT(tokenizer_load(&te, tmp, &err) == 0, "load eos variant: %s", err.msg);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(exp, "eos_cases"), *c;
    int bad_eos = 0;
    cJSON_ArrayForEach(c, cases) {
        int i = cJSON_GetObjectItemCaseSensitive(c, "index")->valueint;
        token_ids_clear(&ids);
        tokenizer_encode(te, corpus[i].s, corpus[i].n, TOK_ADD_SPECIAL, &ids);
        bad_eos += !ids_equal(&ids, cJSON_GetObjectItemCaseSensitive(c, "ids"), 0);
    }
    EXPECT(cJSON_GetArraySize(cases) > 10 && bad_eos == 0, "%s: %d add_eos_token encodings differ", form, bad_eos);
    EXPECT(tokenizer_adds_eos(te) && !tokenizer_adds_bos(te), "flags from tokenizer_config.json");
    tokenizer_free(te);
    unlink(p2);

    // byte_fallback off, fuse_unk on / off: the same tokenizer.json with the two flags changed
    json = read_file(p1, &len, &err);
    CHECK(json, "%s", err.msg);
    const char *flags = "\"fuse_unk\":true,\"byte_fallback\":true";
    char *at = strstr(json, flags);
    CHECK(at, "%s: expected the flags spelled %s", p1, flags);
    const cJSON *uc;
    cJSON_ArrayForEach(uc, cJSON_GetObjectItemCaseSensitive(exp, "unk_cases")) {
        int fuse = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(uc, "fuse_unk"));
        const char *repl = fuse ? "\"fuse_unk\":true,\"byte_fallback\":false" : "\"fuse_unk\":false,\"byte_fallback\":false";
        size_t head = (size_t)(at - json), nrepl = strlen(repl), tail = len - head - strlen(flags);
        char *variant = xmalloc(head + nrepl + tail);
        memcpy(variant, json, head);
        memcpy(variant + head, repl, nrepl);
        memcpy(variant + head + nrepl, at + strlen(flags), tail);
        snprintf(p2, sizeof p2, "%s/tokenizer.json", tmp);
        CHECK(write_file_atomic(p2, variant, head + nrepl + tail, &err) == 0, "%s", err.msg);
        free(variant);
        Tokenizer *tu = NULL;
        EXPECT(tokenizer_load_files(&tu, p2, NULL, &err) == 0, "load unk variant: %s", err.msg);
        if (!tu) continue;
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(uc, "indices");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(uc, "ids");
        int bad_unk = 0, unks = 0;
        for (int k = 0; k < cJSON_GetArraySize(idx); k++) {
            int i = cJSON_GetArrayItem(idx, k)->valueint;
            token_ids_clear(&ids);
            tokenizer_encode(tu, corpus[i].s, corpus[i].n, TOK_ADD_SPECIAL, &ids);
            bad_unk += !ids_equal(&ids, cJSON_GetArrayItem(want, k), 0);
            for (int j = 0; j < ids.n; j++) unks += ids.data[j] == 0;
        }
        EXPECT(bad_unk == 0 && unks > 50, "%s, byte_fallback off, fuse_unk %d: %d of %d encodings differ (%d <unk>)",
               form, fuse, bad_unk, cJSON_GetArraySize(idx), unks);
        tokenizer_free(tu);
    }
    free(json);
    unlink(p2);
    rmdir(tmp);
done:
    token_ids_free(&ids);
    token_ids_free(&bare);
    token_ids_free(&broken);
    token_ids_free(&segs);
    cJSON_Delete(exp);
    tokenizer_free(t);
}

// Lookups and the special ids the configs declare.
static void check_lookups(const char *src) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tokenizer/legacy", src);
    Error err = {{0}};
    Tokenizer *t = NULL;
    if (tokenizer_load(&t, dir, &err) != 0) {
        EXPECT(0, "%s", err.msg);
        return;
    }
    EXPECT(tokenizer_unk_id(t) == 0 && tokenizer_bos_id(t) == 1 && tokenizer_eos_id(t) == 2, "special ids");
    int32_t image = tokenizer_token_to_id(t, "<image>"), pad = tokenizer_token_to_id(t, "<pad>");
    EXPECT(image >= 4000 && pad == image + 1 && tokenizer_pad_id(t) == pad && strcmp(tokenizer_id_to_token(t, image), "<image>") == 0,
           "<image> %d, <pad> %d", image, pad);
    EXPECT(tokenizer_token_to_id(t, "<0x0A>") == 13 && tokenizer_token_to_id(t, "\xE2\x96\x81") > 258, "byte tokens");
    EXPECT(strcmp(tokenizer_id_to_token(t, 13), "<0x0A>") == 0 && tokenizer_id_to_token(t, 99999) == NULL,
           "id_to_token");
    EXPECT(tokenizer_is_special(t, 1) && tokenizer_is_special(t, image) &&
           !tokenizer_is_special(t, tokenizer_token_to_id(t, "<sep>")), "special flags");
    EXPECT(tokenizer_adds_bos(t) && !tokenizer_adds_eos(t) && tokenizer_model_max_length(t) == 2048, "config");
    tokenizer_free(t);
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tokenizer/metaspace", src);
    EXPECT(tokenizer_load(&t, dir, &err) == 0, "%s", err.msg);
    EXPECT(t && tokenizer_model_max_length(t) == 0, "model_max_length 1e30 means unlimited");
    tokenizer_free(t);
}

// Malformed or unsupported tokenizer.json files are refused with the item named.
static void check_errors(void) {
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "only BPE"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a b\"], \"unk_token\": \"a\"}}", "merges[0]"},
        {"{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"], \"unk_token\": \"a\"}}", "merged token"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"normalizer\": {\"type\": \"NFKC\"}}",
         "normalizer \"NFKC\""},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}", "no unk_token"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"added_tokens\": [{\"id\": 1}]}",
         "added_tokens[0]"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\", \"dropout\": 0.1}}", "dropout"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"pre_tokenizer\": "
         "{\"type\": \"Whitespace\"}}", "pre_tokenizer \"Whitespace\""},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"pre_tokenizer\": "
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, \"behavior\": \"Isolated\"}}", "does not compile with PCRE2"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"pre_tokenizer\": "
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"MergedWithNext\"}}", "MergedWithNext"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
         "lacks the character for byte 0x00"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, ", "malformed JSON"},
        {"{\"model\": {\"vocab\": {\"a\": 0, \"b\": 2000000000}, \"merges\": [], \"unk_token\": \"a\"}}", "model.vocab[\"b\"]"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"added_tokens\": "
         "[{\"id\": 99999999, \"content\": \"x\"}]}", "added_tokens[0]"},
        // A wrong type after "content" once leaked the copied content (the _asan run fails on leaks).
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"added_tokens\": "
         "[{\"id\": 1, \"content\": \"<x>\", \"lstrip\": 1}]}", "\"lstrip\" must be true or false"},
        // cJSON would cut the content at the NUL.
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"a\"}, \"added_tokens\": "
         "[{\"id\": 1, \"content\": \"<x\\u0000y>\"}]}", "\\u0000"},
    };
    char tmp[] = "/tmp/llava_tokerr_XXXXXX", path[4200];
    CHECK(mkdtemp(tmp), "mkdtemp");
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Error err = {{0}};
        CHECK(write_file_atomic(path, cases[i].json, strlen(cases[i].json), &err) == 0, "%s", err.msg);
        Tokenizer *t = NULL;
        int rc = tokenizer_load(&t, tmp, &err);
        EXPECT(rc == -1 && t == NULL && strstr(err.msg, cases[i].needle) && strstr(err.msg, "tokenizer.json"),
               "case %zu: rc %d, message \"%s\" should name \"%s\"", i, rc, err.msg, cases[i].needle);
    }
    unlink(path);
    rmdir(tmp);
    Error err = {{0}};
    Tokenizer *t = NULL;
    EXPECT(tokenizer_load(&t, "/nonexistent/dir", &err) == -1 && strstr(err.msg, "tokenizer.json"), "missing dir");
}

// Several threads encoding and decoding with one Tokenizer at once get what
// one thread gets (prep encodes on every core).
typedef struct {
    const Tokenizer *t;
    const Text *corpus;
    int n, offset;
    TokenIds *want;  // [n] single-threaded ids
    int bad;
} ThreadJob;

static void *thread_run(void *arg) {
    ThreadJob *j = arg;
    TokenIds ids = {0};
    for (int rep = 0; rep < 3; rep++)
        for (int k = 0; k < j->n; k++) {
            int i = (k + j->offset) % j->n;
            token_ids_clear(&ids);
            tokenizer_encode(j->t, j->corpus[i].s, j->corpus[i].n, TOK_ADD_SPECIAL, &ids);
            j->bad += ids.n != j->want[i].n || memcmp(ids.data, j->want[i].data, (size_t)ids.n * sizeof *ids.data) != 0;
            free(tokenizer_decode(j->t, ids.data, ids.n, k & 1, NULL));
        }
    token_ids_free(&ids);
    return NULL;
}

static void check_threads(const char *src, const Text *corpus, int n) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tokenizer/legacy", src);
    Error err = {{0}};
    Tokenizer *t = NULL;
    if (tokenizer_load(&t, dir, &err) != 0) return;
    TokenIds *want = calloc((size_t)n, sizeof *want);
    for (int i = 0; i < n; i++) tokenizer_encode(t, corpus[i].s, corpus[i].n, TOK_ADD_SPECIAL, &want[i]);
    enum { NT = 4 };
    pthread_t th[NT];
    ThreadJob jobs[NT];
    for (int k = 0; k < NT; k++) {
        jobs[k] = (ThreadJob){t, corpus, n, k * n / NT, want, 0};
        CHECK(pthread_create(&th[k], NULL, thread_run, &jobs[k]) == 0, "pthread_create");
    }
    int bad = 0;
    for (int k = 0; k < NT; k++) {
        pthread_join(th[k], NULL);
        bad += jobs[k].bad;
    }
    EXPECT(bad == 0, "%d encodings differ when %d threads share the tokenizer", bad, NT);
    for (int i = 0; i < n; i++) token_ids_free(&want[i]);
    free(want);
    tokenizer_free(t);
}

// Arbitrary bytes (invalid UTF-8, NULs, truncated sequences, pieces of added
// tokens): every byte that is not part of a valid character becomes its own
// <0xNN> token, ids stay in the vocabulary, nothing crashes (ASan build too).
// `form` is a folder under tests/fixtures: a SentencePiece form (invalid
// bytes become <0xNN> tokens) or a byte-level one (every byte has its
// character; an invalid byte decodes to U+FFFD).
static void check_random_bytes(const char *src, const char *form) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src, form);
    Error err = {{0}};
    Tokenizer *t = NULL;
    if (tokenizer_load(&t, dir, &err) != 0) return;
    static const char *pieces[] = {"<image>", "</s>", "<|tool|>", " ", "\xE2\x96\x81", "\xF0\x9F", "\xC3", "\x80", "a", "\n"};
    unsigned seed = 777;
    int bad = 0;
    TokenIds ids = {0}, segs = {0};
    char buf[256];
    for (int it = 0; it < 3000; it++) {
        size_t n = 0;
        while (n < 200) {
            seed = seed * 1664525u + 1013904223u;
            if ((seed >> 28) < 4) {
                const char *p = pieces[(seed >> 8) % 10];
                size_t k = strlen(p);
                memcpy(buf + n, p, k);
                n += k;
            } else {
                buf[n++] = (char)(seed >> 16);
            }
            if ((seed >> 24) % 17 == 0) break;
        }
        token_ids_clear(&ids);
        token_ids_clear(&segs);
        size_t br[2] = {n / 3, n / 2};
        tokenizer_encode_segments(t, buf, n, TOK_ADD_SPECIAL, br, 2, &ids, &segs);
        for (int i = 0; i < ids.n; i++) bad += !tokenizer_id_to_token(t, ids.data[i]);
        size_t dn;
        char *d = tokenizer_decode(t, ids.data, ids.n, it & 1, &dn);
        bad += d[dn] != 0;  // NUL-terminated at the reported length
        free(d);
    }
    EXPECT(bad == 0, "%s: random bytes: %d ids outside the vocabulary or bad decodes", form, bad);
    // one invalid byte between valid text
    token_ids_clear(&ids);
    tokenizer_encode(t, "a\xFF" "b", 3, 0, &ids);
    if (tokenizer_token_to_id(t, "<0xFF>") >= 0) {  // a byte token of its own
        int has_ff = 0;
        for (int i = 0; i < ids.n; i++) has_ff |= ids.data[i] == tokenizer_token_to_id(t, "<0xFF>");
        EXPECT(has_ff, "an invalid byte is encoded as its byte token");
    } else {  // byte-level: GPT-2's character for 0xFF, decoded back as U+FFFD
        size_t dn;
        char *d = tokenizer_decode(t, ids.data, ids.n, 0, &dn);
        EXPECT(dn == 5 && memcmp(d, "a\xEF\xBF\xBD" "b", 5) == 0, "%s: a\\xFFb decodes to \"%s\"", form, d);
        free(d);
    }
    token_ids_free(&ids);
    token_ids_free(&segs);
    tokenizer_free(t);
}

static int utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 63)), o[2] = (char)(0x80 | (cp & 63)), 3;
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)), o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static int has_id(const TokenIds *v, int id) {
    for (int i = 0; i < v->n; i++)
        if (v->data[i] == id) return 1;
    return 0;
}

// single_word added tokens next to letter-like symbols, joiners, marks,
// superscripts ... and both sides of every boundary of the \w table, as
// HF tokenizers matched them (scripts/make_word_char_table.py).
static void check_single_word(const char *src) {
    char path[4400], dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tokenizer/single_word", src);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    Tokenizer *t = NULL;
    Error err = {{0}};
    EXPECT(tokenizer_load_files(&t, path, NULL, &err) == 0, "single_word tokenizer: %s", err.msg);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = json_parse_file(path, &err);
    EXPECT(exp != NULL, "%s", err.msg);
    if (!t || !exp) return;
    const char *token = cJSON_GetObjectItem(exp, "token")->valuestring;
    const int qid = cJSON_GetObjectItem(exp, "token_id")->valueint;
    TokenIds ids = {0};
    int bad = 0, n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(exp, "probes")) {
        const uint32_t cp = (uint32_t)cJSON_GetArrayItem(p, 0)->valuedouble;
        for (int side = 0; side < 2; side++) {  // 0: the token after the character, 1: before it
            char text[16];
            int len = 0;
            if (side) len += snprintf(text, sizeof text, "%s", token);
            len += utf8_put(text + len, cp);
            if (!side) len += snprintf(text + len, sizeof text - (size_t)len, "%s", token);
            token_ids_clear(&ids);
            tokenizer_encode(t, text, (size_t)len, 0, &ids);
            const int want = cJSON_GetArrayItem(p, 1 + side)->valueint;
            if (has_id(&ids, qid) != want && bad++ < 10)
                fprintf(stderr, "  U+%04X %s \"%s\": tokenizers %s\n", cp, side ? "after" : "before", token,
                        want ? "matches" : "does not match");
            n++;
        }
    }
    EXPECT(bad == 0 && n > 2000, "single_word next to %d characters: %d differ from tokenizers", n, bad);
    bad = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(exp, "encodings")) {
        const char *text = cJSON_GetObjectItem(p, "text")->valuestring;
        token_ids_clear(&ids);
        tokenizer_encode(t, text, strlen(text), 0, &ids);
        if (!ids_equal(&ids, cJSON_GetObjectItem(p, "ids"), 0) && bad++ < 5) {
            fprintf(stderr, "  %s\n", text);
            print_ids("ours", ids.data, ids.n);
        }
    }
    EXPECT(bad == 0, "single_word encodings of the listed characters: %d differ from tokenizers", bad);
    token_ids_free(&ids);
    cJSON_Delete(exp);
    tokenizer_free(t);
}

// The byte-level forms (Llama-3, Qwen2 style) on their own corpus.
static void check_bytelevel_corpus(const char *src) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer_bytelevel/corpus.json", src);
    int n;
    Text *corpus = load_corpus(path, &n);
    EXPECT(n >= 2000, "byte-level corpus has %d strings", n);
    check_corpus(src, "tokenizer_bytelevel", "llama3", corpus, n);
    check_corpus(src, "tokenizer_bytelevel", "qwen2", corpus, n);
    for (int i = 0; i < n; i++) free(corpus[i].s);
    free(corpus);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/corpus.json", src);
    int n;
    Text *corpus = load_corpus(path, &n);
    EXPECT(n >= 2000, "corpus has %d strings", n);
    check_corpus(src, "tokenizer", "legacy", corpus, n);
    check_corpus(src, "tokenizer", "metaspace", corpus, n);
    check_bytelevel_corpus(src);
    check_lookups(src);
    check_errors();
    check_threads(src, corpus, n);
    check_random_bytes(src, "tokenizer/metaspace");
    check_random_bytes(src, "tokenizer_bytelevel/llama3");
    check_random_bytes(src, "tokenizer_bytelevel/qwen2");
    check_single_word(src);
    for (int i = 0; i < n; i++) free(corpus[i].s);
    free(corpus);
    return test_summary("test_tokenizer");
}
