// Loading a tokenizer.json + tokenizer_config.json into a Tokenizer, and the
// id / token lookups. Encoding is in tokenizer_encode.c, decoding in
// tokenizer_decode.c.
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "data/tokenizer_internal.h"

// ---- small containers --------------------------------------------------

void token_ids_push(TokenIds *v, int32_t x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->data = xrealloc(v->data, (size_t)v->cap * sizeof *v->data);
    }
    v->data[v->n++] = x;
}

void token_ids_clear(TokenIds *v) { v->n = 0; }

void token_ids_free(TokenIds *v) {
    free(v->data);
    v->data = NULL;
    v->n = v->cap = 0;
}

static uint64_t fnv1a(const char *s, int len) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void bytesmap_grow(BytesMap *m) {
    BytesMap old = *m;
    m->cap = old.cap ? old.cap * 2 : 1024;
    m->keys = xcalloc(m->cap, sizeof *m->keys);
    m->klen = xcalloc(m->cap, sizeof *m->klen);
    m->vals = xcalloc(m->cap, sizeof *m->vals);
    m->count = 0;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.keys[i]) continue;
        size_t j = fnv1a(old.keys[i], old.klen[i]) & (m->cap - 1);
        while (m->keys[j]) j = (j + 1) & (m->cap - 1);
        m->keys[j] = old.keys[i];
        m->klen[j] = old.klen[i];
        m->vals[j] = old.vals[i];
        m->count++;
    }
    free(old.keys);
    free(old.klen);
    free(old.vals);
}

void bytesmap_put(BytesMap *m, const char *key, int len, int32_t val) {
    if (2 * (m->count + 1) > m->cap) bytesmap_grow(m);
    size_t i = fnv1a(key, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->klen[i] == len && memcmp(m->keys[i], key, (size_t)len) == 0) {
            m->vals[i] = val;
            return;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = xmalloc((size_t)len + 1);
    memcpy(m->keys[i], key, (size_t)len);
    m->keys[i][len] = 0;
    m->klen[i] = len;
    m->vals[i] = val;
    m->count++;
}

int32_t bytesmap_get(const BytesMap *m, const char *key, int len) {
    if (!m->cap) return -1;
    size_t i = fnv1a(key, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->klen[i] == len && memcmp(m->keys[i], key, (size_t)len) == 0) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

void bytesmap_free(BytesMap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->klen);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static void pairmap_init(PairMap *m, size_t n) {
    m->cap = 1024;
    m->shift = 64 - 10;
    while (m->cap < 2 * n + 2) m->cap *= 2, m->shift--;
    m->keys = xmalloc(m->cap * sizeof *m->keys);
    for (size_t i = 0; i < m->cap; i++) m->keys[i] = PAIR_EMPTY;
    m->rank = xcalloc(m->cap, sizeof *m->rank);
    m->merged = xcalloc(m->cap, sizeof *m->merged);
    m->count = 0;
}

// A later entry for the same pair overwrites the earlier one, as the
// HashMap that tokenizers collects merges into does.
static void pairmap_put(PairMap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    const uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    while (m->keys[i] != PAIR_EMPTY && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    if (m->keys[i] == PAIR_EMPTY) m->count++;
    m->keys[i] = key;
    m->rank[i] = rank;
    m->merged[i] = merged;
}

// ---- UTF-8 helpers -----------------------------------------------------

int utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int unicode_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// ---- loading -----------------------------------------------------------

// Ids index per-id tables; real vocabularies stay far below this (LLaMA 32k,
// the largest public ones ~1M), a corrupt file must not make us allocate GBs.
#define MAX_TOKEN_ID (1 << 22)

static char *dup_bytes(const char *s, int len) {
    char *d = xmalloc((size_t)len + 1);
    memcpy(d, s, (size_t)len);
    d[len] = 0;
    return d;
}

// A JSON string, or null / absent -> NULL. Anything else is an error.
static int get_opt_string(const cJSON *obj, const char *key, const char **out, const char *where, Error *err) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return err_set(err, "%s: \"%s\" must be a string", where, key);
    *out = v->valuestring;
    return 0;
}

static int load_model(Tokenizer *t, const cJSON *model, int *max_id, Error *err) {
    if (!cJSON_IsObject(model)) return err_set(err, "\"model\" is missing or not an object");
    const char *type = NULL;
    if (get_opt_string(model, "type", &type, "model", err)) return -1;
    if (type && strcmp(type, "BPE") != 0)
        return err_set(err, "model.type is \"%s\"; only BPE (LLaMA-style SentencePiece BPE) is supported", type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return err_set(err, "model.vocab is missing or not an object");
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > MAX_TOKEN_ID ||
            e->valuedouble != (int)e->valuedouble)
            return err_set(err, "model.vocab[\"%s\"]: the id must be an integer in 0..%d", e->string, MAX_TOKEN_ID);
        bytesmap_put(&t->vocab, e->string, (int)strlen(e->string), (int32_t)e->valueint);
        if (e->valueint > *max_id) *max_id = e->valueint;
    }
    int v;
    if (json_get_bool(model, "fuse_unk", 0, &v, "model", err)) return -1;
    t->fuse_unk = v;
    if (json_get_bool(model, "byte_fallback", 0, &v, "model", err)) return -1;
    t->byte_fallback = v;
    if (json_get_bool(model, "ignore_merges", 0, &v, "model", err)) return -1;
    t->ignore_merges = v;
    double dropout;
    if (json_get_double(model, "dropout", 0.0, &dropout, "model", err)) return -1;
    if (dropout != 0.0) return err_set(err, "model.dropout is %g: BPE dropout (random encodings) is not supported", dropout);
    const char *s;
    if (get_opt_string(model, "continuing_subword_prefix", &s, "model", err)) return -1;
    if (s && *s) return err_set(err, "model.continuing_subword_prefix \"%s\" is not supported", s);
    if (get_opt_string(model, "end_of_word_suffix", &s, "model", err)) return -1;
    if (s && *s) return err_set(err, "model.end_of_word_suffix \"%s\" is not supported", s);
    const char *unk = NULL;
    if (get_opt_string(model, "unk_token", &unk, "model", err)) return -1;
    t->model_unk = -1;
    if (unk) {
        t->model_unk = bytesmap_get(&t->vocab, unk, (int)strlen(unk));
        if (t->model_unk < 0) return err_set(err, "model.unk_token \"%s\" is not in model.vocab", unk);
    }

    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!merges || cJSON_IsNull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges)) return err_set(err, "model.merges must be a list");
    pairmap_init(&t->merges, merges ? (size_t)cJSON_GetArraySize(merges) : 0);
    int rank = 0;
    char buf[1024];
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        int alen, blen;
        if (cJSON_IsString(e)) {  // "a b": split at the first space
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp) return err_set(err, "model.merges[%d] \"%s\" is not of the form \"a b\"", rank, e->valuestring);
            a = e->valuestring, alen = (int)(sp - a), b = sp + 1, blen = (int)strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {  // ["a", "b"]
            a = cJSON_GetArrayItem(e, 0)->valuestring, alen = (int)strlen(a);
            b = cJSON_GetArrayItem(e, 1)->valuestring, blen = (int)strlen(b);
        } else {
            return err_set(err, "model.merges[%d] must be \"a b\" or [\"a\", \"b\"]", rank);
        }
        int32_t ia = bytesmap_get(&t->vocab, a, alen), ib = bytesmap_get(&t->vocab, b, blen);
        if (ia < 0 || ib < 0)
            return err_set(err, "model.merges[%d]: token \"%.*s\" is not in model.vocab", rank, ia < 0 ? alen : blen,
                           ia < 0 ? a : b);
        if (alen + blen >= (int)sizeof buf) return err_set(err, "model.merges[%d]: token too long", rank);
        memcpy(buf, a, (size_t)alen);
        memcpy(buf + alen, b, (size_t)blen);
        int32_t im = bytesmap_get(&t->vocab, buf, alen + blen);
        if (im < 0)
            return err_set(err, "model.merges[%d]: the merged token \"%.*s\" is not in model.vocab", rank, alen + blen,
                           buf);
        pairmap_put(&t->merges, ia, ib, rank, im);
        rank++;
    }
    return 0;
}

static int load_added(Tokenizer *t, const cJSON *list, int *max_id, Error *err) {
    if (!list || cJSON_IsNull(list)) return 0;
    if (!cJSON_IsArray(list)) return err_set(err, "\"added_tokens\" must be a list");
    int n = cJSON_GetArraySize(list);
    t->added = xcalloc((size_t)n, sizeof *t->added);
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%d]", t->n_added);
        AddedToken *a = &t->added[t->n_added];
        int id, v;
        const char *content;
        if (!cJSON_IsObject(e)) return err_set(err, "%s must be an object", where);
        if (json_get_int(e, "id", -1, &id, where, err)) return -1;
        if (json_get_string(e, "content", NULL, &content, where, err)) return -1;
        if (id < 0 || id > MAX_TOKEN_ID || !content || !*content)
            return err_set(err, "%s needs an \"id\" in 0..%d and a non-empty \"content\"", where, MAX_TOKEN_ID);
        a->id = id;
        if (json_get_bool(e, "lstrip", 0, &v, where, err)) return -1;
        a->lstrip = (uint8_t)v;
        if (json_get_bool(e, "rstrip", 0, &v, where, err)) return -1;
        a->rstrip = (uint8_t)v;
        if (json_get_bool(e, "single_word", 0, &v, where, err)) return -1;
        a->single_word = (uint8_t)v;
        if (json_get_bool(e, "special", 0, &v, where, err)) return -1;
        a->special = (uint8_t)v;
        // tokenizers' default: special tokens are not normalized, others are
        if (json_get_bool(e, "normalized", !a->special, &v, where, err)) return -1;
        a->normalized = (uint8_t)v;
        // Copied last: an error above leaves nothing owned outside n_added.
        a->len = (int)strlen(content);
        a->content = dup_bytes(content, a->len);
        if (id > *max_id) *max_id = id;
        t->n_added++;
    }
    return 0;
}

// A Replace step (normalizer or decoder): {"pattern": {"String": a}, "content": b}.
static int load_replace(const cJSON *o, const char *what, char **a, int *alen, char **b, int *blen, Error *err) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *str = pat ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
    const char *content;
    if (!cJSON_IsString(str) || !*str->valuestring)
        return err_set(err, "%s: only a non-empty {\"String\": ...} pattern is supported (not Regex)", what);
    if (json_get_string(o, "content", NULL, &content, what, err)) return -1;
    if (!content) return err_set(err, "%s without \"content\"", what);
    *alen = (int)strlen(str->valuestring), *a = dup_bytes(str->valuestring, *alen);
    *blen = (int)strlen(content), *b = dup_bytes(content, *blen);
    return 0;
}

static int load_norm_step(Tokenizer *t, const cJSON *n, Error *err) {
    const char *type = NULL;
    if (get_opt_string(n, "type", &type, "normalizer", err)) return -1;
    if (!type) return err_set(err, "normalizer without a \"type\"");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        if (!cJSON_IsArray(list)) return err_set(err, "normalizer Sequence without a \"normalizers\" list");
        cJSON_ArrayForEach(e, list) if (load_norm_step(t, e, err)) return -1;
        return 0;
    }
    NormStep st = {0};
    if (strcmp(type, "Prepend") == 0) {
        const char *p;
        if (json_get_string(n, "prepend", NULL, &p, "normalizer Prepend", err)) return -1;
        if (!p) return err_set(err, "normalizer Prepend without \"prepend\"");
        st.kind = NORM_PREPEND, st.alen = (int)strlen(p), st.a = dup_bytes(p, st.alen);
    } else if (strcmp(type, "Replace") == 0) {
        if (load_replace(n, "normalizer Replace", &st.a, &st.alen, &st.b, &st.blen, err)) return -1;
        st.kind = NORM_REPLACE;
    } else if (strcmp(type, "NFC") == 0) {
        st.kind = NORM_NFC;
    } else {
        return err_set(err,
                       "normalizer \"%s\" is not supported (Prepend, Replace, NFC or a Sequence of them; refused by "
                       "name: NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, BertNormalizer, Precompiled)",
                       type);
    }
    t->norm = xrealloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *t->norm);
    t->norm[t->n_norm++] = st;
    return 0;
}

static int load_metaspace(Tokenizer *t, const cJSON *p, Error *err) {
    const char *rep, *scheme = NULL;
    if (json_get_string(p, "replacement", "\xE2\x96\x81", &rep, "pre_tokenizer Metaspace", err)) return -1;
    int n = (int)strlen(rep);
    if (n < 1 || n >= (int)sizeof t->meta_rep) return err_set(err, "pre_tokenizer Metaspace: bad replacement");
    memcpy(t->meta_rep, rep, (size_t)n);
    t->meta_rep_len = n;
    if (get_opt_string(p, "prepend_scheme", &scheme, "pre_tokenizer Metaspace", err)) return -1;
    if (scheme) {
        if (strcmp(scheme, "always") == 0) t->meta_prepend = PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) t->meta_prepend = PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) t->meta_prepend = PREPEND_NEVER;
        else return err_set(err, "pre_tokenizer Metaspace: unknown prepend_scheme \"%s\"", scheme);
    } else {  // older files: add_prefix_space
        int add;
        if (json_get_bool(p, "add_prefix_space", 1, &add, "pre_tokenizer Metaspace", err)) return -1;
        t->meta_prepend = add ? PREPEND_ALWAYS : PREPEND_NEVER;
    }
    if (json_get_bool(p, "split", 1, &t->meta_split, "pre_tokenizer Metaspace", err)) return -1;
    t->metaspace = 1;
    return 0;
}

static int load_pre_tokenizer(Tokenizer *t, const cJSON *p, Error *err) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = NULL;
    if (get_opt_string(p, "type", &type, "pre_tokenizer", err)) return -1;
    if (type && strcmp(type, "Metaspace") == 0) {
        if (t->n_pre) return err_set(err, "pre_tokenizer: Metaspace combined with Split/ByteLevel is not supported");
        return load_metaspace(t, p, err);
    }
    if (type && (strcmp(type, "ByteLevel") == 0 || strcmp(type, "Split") == 0)) {
        if (t->metaspace) return err_set(err, "pre_tokenizer: %s combined with Metaspace is not supported", type);
        return bytelevel_load_pre(t, p, type, err);
    }
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *e;
        if (!cJSON_IsArray(list)) return err_set(err, "pre_tokenizer Sequence without a \"pretokenizers\" list");
        cJSON_ArrayForEach(e, list) if (load_pre_tokenizer(t, e, err)) return -1;
        return 0;
    }
    return err_set(err,
                   "pre_tokenizer \"%s\" is not supported (Metaspace, ByteLevel, Split or a Sequence of them; "
                   "refused by name: Whitespace, WhitespaceSplit, BertPreTokenizer, Digits, Punctuation, "
                   "UnicodeScripts, CharDelimiterSplit)",
                   type ? type : "?");
}

static int load_dec_step(Tokenizer *t, const cJSON *d, Error *err) {
    const char *type = NULL;
    if (get_opt_string(d, "type", &type, "decoder", err)) return -1;
    if (!type) return err_set(err, "decoder without a \"type\"");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders"), *e;
        if (!cJSON_IsArray(list)) return err_set(err, "decoder Sequence without a \"decoders\" list");
        cJSON_ArrayForEach(e, list) if (load_dec_step(t, e, err)) return -1;
        return 0;
    }
    DecStep st = {0};
    if (strcmp(type, "Replace") == 0) {
        if (load_replace(d, "decoder Replace", &st.a, &st.alen, &st.b, &st.blen, err)) return -1;
        st.kind = DEC_REPLACE;
    } else if (strcmp(type, "ByteFallback") == 0) {
        st.kind = DEC_BYTE_FALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        st.kind = DEC_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        const char *c;
        uint32_t cp;
        if (json_get_string(d, "content", " ", &c, "decoder Strip", err)) return -1;
        if (json_get_int(d, "start", 0, &st.start, "decoder Strip", err)) return -1;
        if (json_get_int(d, "stop", 0, &st.stop, "decoder Strip", err)) return -1;
        st.alen = utf8_char((const unsigned char *)c, strlen(c), &cp);
        if (st.alen == 0 || c[st.alen]) return err_set(err, "decoder Strip: \"content\" must be one character");
        st.kind = DEC_STRIP, st.a = dup_bytes(c, st.alen);
    } else if (strcmp(type, "ByteLevel") == 0) {
        st.kind = DEC_BYTE_LEVEL;
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *rep, *scheme = NULL;
        int add;
        if (json_get_string(d, "replacement", "\xE2\x96\x81", &rep, "decoder Metaspace", err)) return -1;
        if (get_opt_string(d, "prepend_scheme", &scheme, "decoder Metaspace", err)) return -1;
        if (json_get_bool(d, "add_prefix_space", 1, &add, "decoder Metaspace", err)) return -1;
        st.kind = DEC_METASPACE, st.alen = (int)strlen(rep), st.a = dup_bytes(rep, st.alen);
        st.prepend = scheme ? strcmp(scheme, "never") != 0 : add;
    } else {
        return err_set(err, "decoder \"%s\" is not supported (Replace, ByteFallback, Fuse, Strip, Metaspace or "
                            "ByteLevel; refused by name: WordPiece, BPEDecoder, CTC)", type);
    }
    t->dec = xrealloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *t->dec);
    t->dec[t->n_dec++] = st;
    return 0;
}

// The token a TemplateProcessing item {"SpecialToken": {"id": ...}} adds, or NULL.
static const char *template_special(const cJSON *item) {
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
    const cJSON *id = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

// add_bos / add_eos as the post-processor has them: a TemplateProcessing
// (alone or in a Sequence, as Llama-3 has it) whose "single" template starts
// / ends with a SpecialToken (its name is the default bos / eos token); a
// ByteLevel post-processor alone adds nothing.
static void post_processor_flags(const cJSON *pp, int *bos, int *eos, const char **bos_name,
                                 const char **eos_name) {
    *bos = 1, *eos = 0;  // LlamaTokenizer's defaults
    const cJSON *type = pp ? cJSON_GetObjectItemCaseSensitive(pp, "type") : NULL;
    if (!cJSON_IsString(type)) return;
    if (strcmp(type->valuestring, "ByteLevel") == 0) {
        *bos = 0;
        return;
    }
    if (strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *e, *tp = NULL;
        int byte_level = 0;
        cJSON_ArrayForEach(e, list) {
            const cJSON *et = cJSON_GetObjectItemCaseSensitive(e, "type");
            if (cJSON_IsString(et) && strcmp(et->valuestring, "TemplateProcessing") == 0) tp = e;
            if (cJSON_IsString(et) && strcmp(et->valuestring, "ByteLevel") == 0) byte_level = 1;
        }
        if (!tp) {
            if (byte_level) *bos = 0;
            return;
        }
        pp = tp;
    } else if (strcmp(type->valuestring, "TemplateProcessing") != 0) {
        return;
    }
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    int n = cJSON_IsArray(single) ? cJSON_GetArraySize(single) : 0;
    if (n == 0) return;
    const char *first = template_special(cJSON_GetArrayItem(single, 0));
    const char *last = template_special(cJSON_GetArrayItem(single, n - 1));
    *bos = first != NULL;
    *eos = last != NULL;
    if (first) *bos_name = first;
    if (last) *eos_name = last;
}

// Applies the normalizer steps to a whole string (used for normalized added
// tokens' search patterns). Returns a malloc'd copy.
static char *normalize_whole(const Tokenizer *t, const char *s, int len, int *out_len) {
    char *cur = dup_bytes(s, len);
    int n = len;
    for (int k = 0; k < t->n_norm; k++) {
        const NormStep *st = &t->norm[k];
        if (st->kind == NORM_NFC) {
            size_t m;
            char *d = bytelevel_nfc(cur, (size_t)n, &m);
            if (d) {
                free(cur);
                cur = d, n = (int)m;
            }
            continue;
        }
        if (st->kind == NORM_PREPEND) {
            if (n == 0) continue;
            char *d = xmalloc((size_t)(n + st->alen) + 1);
            memcpy(d, st->a, (size_t)st->alen);
            memcpy(d + st->alen, cur, (size_t)n + 1);
            free(cur);
            cur = d, n += st->alen;
        } else {
            char *d = xmalloc((size_t)n * (size_t)(st->blen > st->alen ? st->blen : st->alen) + 1);
            int m = 0;
            for (int i = 0; i < n;) {
                if (i + st->alen <= n && memcmp(cur + i, st->a, (size_t)st->alen) == 0) {
                    memcpy(d + m, st->b, (size_t)st->blen);
                    m += st->blen, i += st->alen;
                } else {
                    d[m++] = cur[i++];
                }
            }
            d[m] = 0;
            free(cur);
            cur = d, n = m;
        }
    }
    *out_len = n;
    return cur;
}

// Search order: by first byte, then longest first (leftmost-longest), then
// file order. Insertion sort: a tokenizer has at most a few thousand added tokens.
static int pattern_before(const AddedToken *a, int ia, const AddedToken *b, int ib) {
    unsigned char fa = (unsigned char)a->pattern[0], fb = (unsigned char)b->pattern[0];
    if (fa != fb) return fa < fb;
    if (a->pattern_len != b->pattern_len) return a->pattern_len > b->pattern_len;
    return ia < ib;
}

static void build_matcher(const Tokenizer *t, TokenMatcher *m, int normalized) {
    m->order = xmalloc((size_t)(t->n_added + 1) * sizeof *m->order);
    m->n = 0;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].pattern_len > 0) m->order[m->n++] = i;
    for (int i = 1; i < m->n; i++) {
        int x = m->order[i], j = i;
        for (; j > 0 && pattern_before(&t->added[x], x, &t->added[m->order[j - 1]], m->order[j - 1]); j--)
            m->order[j] = m->order[j - 1];
        m->order[j] = x;
    }
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < m->n && (unsigned char)t->added[m->order[k]].pattern[0] < b) k++;
        m->first[b] = k;
    }
}

// bos_token & co. in tokenizer_config.json: a string, an AddedToken object
// ({"content": ...}, older files) or null. Absent -> def.
static int config_token(const cJSON *cfg, const char *key, const char *def, const char **out, Error *err) {
    const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, key) : NULL;
    *out = def;
    if (!v) return 0;
    if (cJSON_IsNull(v)) *out = NULL;
    else if (cJSON_IsString(v)) *out = v->valuestring;
    else if (cJSON_IsObject(v) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "content")))
        *out = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
    else return err_set(err, "\"%s\" must be a string, {\"content\": ...} or null", key);
    return 0;
}

static int load_config(Tokenizer *t, const cJSON *cfg, const cJSON *post_processor, Error *err) {
    int pp_bos, pp_eos;
    const char *bos_default = "<s>", *eos_default = "</s>";
    post_processor_flags(post_processor, &pp_bos, &pp_eos, &bos_default, &eos_default);
    if (json_get_bool(cfg, "add_bos_token", pp_bos, &t->add_bos, "tokenizer_config.json", err)) return -1;
    if (json_get_bool(cfg, "add_eos_token", pp_eos, &t->add_eos, "tokenizer_config.json", err)) return -1;
    const char *bos, *eos, *unk, *pad;
    if (config_token(cfg, "bos_token", bos_default, &bos, err) || config_token(cfg, "eos_token", eos_default, &eos, err) ||
        config_token(cfg, "unk_token", "<unk>", &unk, err) || config_token(cfg, "pad_token", NULL, &pad, err))
        return -1;
    t->bos = bos ? tokenizer_token_to_id(t, bos) : -1;
    t->eos = eos ? tokenizer_token_to_id(t, eos) : -1;
    t->unk = unk ? tokenizer_token_to_id(t, unk) : -1;
    t->pad = pad ? tokenizer_token_to_id(t, pad) : -1;
    if (pad && t->pad < 0) return err_set(err, "pad_token \"%s\" is not in the vocabulary", pad);
    if (t->pad < 0) t->pad = t->unk;
    if (t->add_bos && t->bos < 0)
        return err_set(err, "add_bos_token is true but bos_token \"%s\" is not in the vocabulary", bos ? bos : "null");
    if (t->add_eos && t->eos < 0)
        return err_set(err, "add_eos_token is true but eos_token \"%s\" is not in the vocabulary", eos ? eos : "null");
    double mml = 0;
    if (json_get_double(cfg, "model_max_length", 0, &mml, "tokenizer_config.json", err)) return -1;
    t->model_max_length = (mml >= 1 && mml < 1e9) ? (int)mml : 0;
    return 0;
}

// Derived tables: id -> content, special flags, fast character lookups,
// added-token search patterns, the word-cutting shortcut.
static int finish(Tokenizer *t, int max_id, Error *err) {
    t->vocab_size = max_id + 1;
    t->id_str = xcalloc((size_t)t->vocab_size, sizeof *t->id_str);
    t->special = xcalloc((size_t)t->vocab_size, 1);
    char **model_str = xcalloc((size_t)t->vocab_size, sizeof *model_str);
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.keys[i]) model_str[t->vocab.vals[i]] = t->vocab.keys[i];
    for (int i = 0; i < t->vocab_size; i++)
        if (model_str[i]) t->id_str[i] = xstrdup(model_str[i]);
    for (int i = 0; i < t->n_added; i++) {
        AddedToken *a = &t->added[i];
        if (a->normalized && t->n_norm) a->pattern = normalize_whole(t, a->content, a->len, &a->pattern_len);
        else a->pattern = dup_bytes(a->content, a->pattern_len = a->len);
        // Decoding sees a normalized token in its normalized spelling, as
        // tokenizers 0.23 does (so that the decoder can undo the normalization).
        free(t->id_str[a->id]);
        t->id_str[a->id] = xstrdup(a->pattern);
        t->special[a->id] = a->special;
    }
    build_matcher(t, &t->raw_matcher, 0);
    build_matcher(t, &t->norm_matcher, 1);
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        t->ascii_id[c] = bytesmap_get(&t->vocab, &ch, 1);
    }
    int bytes_complete = 1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = bytesmap_get(&t->vocab, name, 6);
        if (t->byte_id[b] < 0) bytes_complete = 0;
    }
    if (t->byte_level) {
        // Every byte becomes one of GPT-2's 256 characters: with all of them
        // in the vocabulary every text encodes (tokenizers would drop the others).
        for (int b = 0; b < 256; b++)
            if (bytesmap_get(&t->vocab, t->bl_char[b], t->bl_len[b]) < 0 && t->model_unk < 0) {
                free(model_str);
                return err_set(err, "byte-level model lacks the character for byte 0x%02X (\"%.*s\") and has no "
                               "unk_token: some texts could not be encoded", b, t->bl_len[b], t->bl_char[b]);
            }
    } else if (!(t->byte_fallback && bytes_complete) && t->model_unk < 0) {
        free(model_str);
        return err_set(err, "model has no unk_token and no complete byte fallback (<0x00>..<0xFF>): some texts "
                            "could not be encoded");
    }
    // The space symbol the normalizer or pre-tokenizer writes for " ".
    const char *sp = NULL;
    int splen = 0;
    if (t->metaspace) sp = t->meta_rep, splen = t->meta_rep_len;
    for (int k = 0; k < t->n_norm && !sp; k++)
        if (t->norm[k].kind == NORM_REPLACE && t->norm[k].alen == 1 && t->norm[k].a[0] == ' ')
            sp = t->norm[k].b, splen = t->norm[k].blen;
    t->cut_before_space = sp && splen > 0 && splen < (int)sizeof t->space && !t->ignore_merges &&
                          bytesmap_get(&t->vocab, sp, splen) >= 0;
    for (size_t i = 0; t->cut_before_space && i < t->merges.cap; i++) {
        if (t->merges.keys[i] == PAIR_EMPTY) continue;
        const char *a = model_str[(int32_t)(t->merges.keys[i] >> 32)];
        const char *b = model_str[(int32_t)(t->merges.keys[i] & 0xFFFFFFFFu)];
        size_t al = strlen(a);
        int a_ends = al >= (size_t)splen && memcmp(a + al - splen, sp, (size_t)splen) == 0;
        int b_starts = strncmp(b, sp, (size_t)splen) == 0;
        if (b_starts && !a_ends) t->cut_before_space = 0;
    }
    if (t->cut_before_space) {
        memcpy(t->space, sp, (size_t)splen);
        t->space_len = splen;
    }
    free(model_str);
    return 0;
}

int tokenizer_load_files(Tokenizer **out, const char *json_path, const char *config_path, Error *err) {
    *out = NULL;
    cJSON *root = json_parse_file(json_path, err);
    if (!root) return -1;
    cJSON *cfg = NULL;
    if (config_path && !(cfg = json_parse_file(config_path, err))) {
        cJSON_Delete(root);
        return -1;
    }
    Tokenizer *t = xcalloc(1, sizeof *t);
    int max_id = -1, rc = 0;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!cJSON_IsObject(root)) rc = err_set(err, "the top level must be an object");
    if (!rc) rc = load_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), &max_id, err);
    if (!rc) rc = load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &max_id, err);
    if (!rc && norm && !cJSON_IsNull(norm)) rc = load_norm_step(t, norm, err);
    if (!rc) rc = load_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err);
    if (!rc && dec && !cJSON_IsNull(dec)) {
        t->has_decoder = 1;
        rc = load_dec_step(t, dec, err);
    }
    if (!rc) rc = finish(t, max_id, err);
    if (rc) err_prefix(err, "%s: ", json_path);
    if (!rc && load_config(t, cfg, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err)) {
        err_prefix(err, "%s: ", config_path ? config_path : "tokenizer_config.json");
        rc = -1;
    }
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (rc) {
        tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int tokenizer_load(Tokenizer **out, const char *dir, Error *err) {
    char json_path[4096], cfg_path[4096];
    if (path_join(json_path, sizeof json_path, dir, "tokenizer.json") ||
        path_join(cfg_path, sizeof cfg_path, dir, "tokenizer_config.json"))
        return err_set(err, "%s: path too long", dir);
    if (!file_exists(json_path))
        return err_set(err, "%s: no tokenizer.json there (a Hugging Face tokenizer folder is expected)", dir);
    return tokenizer_load_files(out, json_path, file_exists(cfg_path) ? cfg_path : NULL, err);
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    bytesmap_free(&t->vocab);
    free(t->merges.keys);
    free(t->merges.rank);
    free(t->merges.merged);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].pattern);
    }
    free(t->added);
    free(t->raw_matcher.order);
    free(t->norm_matcher.order);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->dec);
    bytelevel_free(t);
    for (int i = 0; t->id_str && i < t->vocab_size; i++) free(t->id_str[i]);
    free(t->id_str);
    free(t->special);
    free(t);
}

// ---- lookups -----------------------------------------------------------

int32_t tokenizer_token_to_id(const Tokenizer *t, const char *token) {
    int len = (int)strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, token, (size_t)len) == 0) return t->added[i].id;
    return bytesmap_get(&t->vocab, token, len);
}

const char *tokenizer_id_to_token(const Tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->vocab_size) ? t->id_str[id] : NULL;
}

int tokenizer_is_special(const Tokenizer *t, int32_t id) { return id >= 0 && id < t->vocab_size && t->special[id]; }
int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int32_t tokenizer_bos_id(const Tokenizer *t) { return t->bos; }
int32_t tokenizer_eos_id(const Tokenizer *t) { return t->eos; }
int32_t tokenizer_unk_id(const Tokenizer *t) { return t->unk; }
int32_t tokenizer_pad_id(const Tokenizer *t) { return t->pad; }
int tokenizer_adds_bos(const Tokenizer *t) { return t->add_bos; }
int tokenizer_adds_eos(const Tokenizer *t) { return t->add_eos; }
int tokenizer_model_max_length(const Tokenizer *t) { return t->model_max_length; }
