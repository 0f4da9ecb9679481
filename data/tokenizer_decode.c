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
