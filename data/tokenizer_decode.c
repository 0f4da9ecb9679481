// Decoding: ids -> token strings -> the decoder chain of tokenizer.json, each
// step with the semantics of its tokenizers counterpart (decode_chain on a
// list of strings, joined at the end):
//   Replace       every occurrence in every token
//   ByteFallback  a run of <0xNN> tokens -> those bytes if they are valid
//                 UTF-8, else one U+FFFD per byte of the run
//   Fuse          all tokens -> one
//   Strip         per token, up to `start` leading / `stop` trailing copies
//                 of one character
//   Metaspace     "▁" -> " ", except in the first token where it is dropped
//                 (unless prepend_scheme is never)
//   ByteLevel     all tokens -> one: each token's GPT-2 characters -> their
//                 bytes (a token with any other character gives its own
//                 bytes), then Rust's String::from_utf8_lossy: one U+FFFD per
//                 maximal invalid subsequence
// Without a decoder the tokens are joined with spaces, as tokenizers does.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"

typedef struct {
    char *s;
    size_t n;
} Str;

typedef struct {
    Str *v;
    int n, cap;
} StrList;

static void list_push(StrList *l, char *s, size_t n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (Str){s, n};
}

static void list_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].s);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static char *copy_bytes(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static char *join(const StrList *l, const char *sep, size_t *out_n) {
    size_t total = 0, seplen = strlen(sep);
    for (int i = 0; i < l->n; i++) total += l->v[i].n + (i ? seplen : 0);
    char *d = xmalloc(total + 1), *p = d;
    for (int i = 0; i < l->n; i++) {
        if (i) memcpy(p, sep, seplen), p += seplen;
        memcpy(p, l->v[i].s, l->v[i].n);
        p += l->v[i].n;
    }
    *p = 0;
    *out_n = total;
    return d;
}

// A copy of s with every a (alen bytes) replaced by b (blen bytes, may be 0).
static Str replace_all(const Str s, const char *a, int alen, const char *b, int blen) {
    size_t cap = s.n * (size_t)(blen > alen ? blen : alen) / (size_t)alen + 1, n = 0;
    char *d = xmalloc(cap + 1);
    for (size_t p = 0; p < s.n;) {
        if (p + (size_t)alen <= s.n && memcmp(s.s + p, a, (size_t)alen) == 0) {
            memcpy(d + n, b, (size_t)blen);
            n += (size_t)blen, p += (size_t)alen;
        } else {
            d[n++] = s.s[p++];
        }
    }
    d[n] = 0;
    return (Str){d, n};
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// "<0xNN>" -> NN (0..255), else -1. Like Rust's u8::from_str_radix on the two
// characters, which also takes a leading '+'.
static int byte_token(const Str s) {
    if (s.n != 6 || memcmp(s.s, "<0x", 3) != 0 || s.s[5] != '>') return -1;
    if (s.s[3] == '+') return hex_digit(s.s[4]);
    int hi = hex_digit(s.s[3]), lo = hex_digit(s.s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t p = 0; p < n;) {
        uint32_t cp;
        int k = utf8_char(s + p, n - p, &cp);
        if (!k) return 0;
        p += (size_t)k;
    }
    return 1;
}

static void flush_bytes(StrList *out, unsigned char *run, size_t *nrun) {
    if (*nrun == 0) return;
    if (valid_utf8(run, *nrun)) {
        list_push(out, copy_bytes((const char *)run, *nrun), *nrun);
    } else {
        for (size_t i = 0; i < *nrun; i++) list_push(out, copy_bytes("\xEF\xBF\xBD", 3), 3);
    }
    *nrun = 0;
}

static void step_byte_fallback(StrList *l) {
    StrList out = {0};
    unsigned char *run = xmalloc((size_t)l->n + 1);
    size_t nrun = 0;
    for (int i = 0; i < l->n; i++) {
        int b = byte_token(l->v[i]);
        if (b >= 0) {
            run[nrun++] = (unsigned char)b;
            free(l->v[i].s);
        } else {
            flush_bytes(&out, run, &nrun);
            list_push(&out, l->v[i].s, l->v[i].n);
        }
    }
    flush_bytes(&out, run, &nrun);
    free(run);
    free(l->v);
    *l = out;
}

static void step_strip(StrList *l, const DecStep *st) {
    for (int i = 0; i < l->n; i++) {
        Str *s = &l->v[i];
        size_t a = 0, e = s->n;
        for (int k = 0; k < st->start && a + (size_t)st->alen <= e && memcmp(s->s + a, st->a, (size_t)st->alen) == 0; k++)
            a += (size_t)st->alen;
        for (int k = 0; k < st->stop && e >= a + (size_t)st->alen &&
                        memcmp(s->s + e - st->alen, st->a, (size_t)st->alen) == 0;
             k++)
            e -= (size_t)st->alen;
        memmove(s->s, s->s + a, e - a);
        s->n = e - a;
        s->s[s->n] = 0;
    }
}

// Length of the maximal prefix of a valid UTF-8 sequence at s[0..n) that is
// not itself complete (Unicode's "maximal subpart"; at least 1).
static size_t invalid_prefix(const unsigned char *s, size_t n) {
    unsigned char b = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) need = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    size_t k = 1;
    for (int i = 0; i < need && k < n; i++, k++) {
        unsigned char x = s[k];
        if (i == 0 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) break;
    }
    return k;
}

static void step_byte_level(StrList *l) {
    size_t cap = 16, n = 0;
    for (int i = 0; i < l->n; i++) cap += l->v[i].n;
    unsigned char *bytes = xmalloc(cap);
    for (int i = 0; i < l->n; i++) {
        const Str s = l->v[i];
        size_t start = n;
        int mapped = 1;
        for (size_t p = 0; p < s.n && mapped;) {
            uint32_t cp;
            int k = utf8_char((const unsigned char *)s.s + p, s.n - p, &cp);
            int b = k ? bytelevel_byte_of(cp) : -1;
            if (b < 0) mapped = 0;
            else bytes[n++] = (unsigned char)b, p += (size_t)k;
        }
        if (!mapped) {
            n = start;
            memcpy(bytes + n, s.s, s.n);
            n += s.n;
        }
    }
    list_free(l);
    char *out = xmalloc(n * 3 + 1);  // each invalid byte becomes at most 3 bytes
    size_t m = 0;
    for (size_t p = 0; p < n;) {
        uint32_t cp;
        int k = utf8_char(bytes + p, n - p, &cp);
        if (k) {
            memcpy(out + m, bytes + p, (size_t)k);
            m += (size_t)k, p += (size_t)k;
        } else {
            memcpy(out + m, "\xEF\xBF\xBD", 3);
            m += 3, p += invalid_prefix(bytes + p, n - p);
        }
    }
    out[m] = 0;
    free(bytes);
    list_push(l, out, m);
}

static void apply_step(StrList *l, const DecStep *st) {
    switch (st->kind) {
    case DEC_REPLACE:
    case DEC_METASPACE:
        for (int i = 0; i < l->n; i++) {
            Str r;
            if (st->kind == DEC_METASPACE && i == 0 && st->prepend) r = replace_all(l->v[i], st->a, st->alen, "", 0);
            else if (st->kind == DEC_METASPACE) r = replace_all(l->v[i], st->a, st->alen, " ", 1);
            else r = replace_all(l->v[i], st->a, st->alen, st->b, st->blen);
            free(l->v[i].s);
            l->v[i] = r;
        }
        break;
    case DEC_BYTE_FALLBACK:
        step_byte_fallback(l);
        break;
    case DEC_FUSE: {
        size_t n;
        char *all = join(l, "", &n);
        list_free(l);
        list_push(l, all, n);
        break;
    }
    case DEC_STRIP:
        step_strip(l, st);
        break;
    case DEC_BYTE_LEVEL:
        step_byte_level(l);
        break;
    }
}

char *tokenizer_decode(const Tokenizer *t, const int32_t *ids, int n, int skip_special, size_t *len_out) {
    StrList l = {0};
    for (int i = 0; i < n; i++) {
        const char *s = tokenizer_id_to_token(t, ids[i]);
        if (!s || (skip_special && t->special[ids[i]])) continue;
        list_push(&l, copy_bytes(s, strlen(s)), strlen(s));
    }
    for (int k = 0; t->has_decoder && k < t->n_dec; k++) apply_step(&l, &t->dec[k]);
    size_t total;
    char *out = join(&l, t->has_decoder ? "" : " ", &total);
    list_free(&l);
    if (len_out) *len_out = total;
    return out;
}
