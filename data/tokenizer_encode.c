// Encoding, step for step as the tokenizers library does it:
//   1. split the raw text on added tokens that are not `normalized`
//      (leftmost-longest; lstrip / rstrip widen a match over whitespace);
//   2. normalize each remaining part on its own (legacy: Prepend "▁" to every
//      non-empty part, Replace " " -> "▁"), then split it on the `normalized`
//      added tokens, whose search patterns were normalized the same way;
//   3. pre-tokenize each remaining piece (Metaspace: " " -> "▁", prepend "▁"
//      per prepend_scheme unless the piece already starts with it, split; or
//      the Split / ByteLevel steps of tokenizer_bytelevel.c, the words' bytes
//      then mapped to GPT-2's characters);
//   4. BPE each word: characters in the vocabulary, else their UTF-8 bytes as
//      <0xNN> tokens, else <unk> (runs fused); then merge the adjacent pair of
//      lowest rank (leftmost on ties) until none is left, with a heap of
//      candidate pairs: O(n log n) in the word length.
// Every byte of a normalized string carries the offset of the input byte it
// came from, which is how segments (tokenizer_encode_segments) are assigned
// and how Metaspace's "first" scheme knows where the input started.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"

// A string under normalization: bytes and, per byte, the input offset.
typedef struct {
    char *b;
    int32_t *o;
    size_t n, cap;
} NStr;

typedef struct {
    size_t s, e;
    int32_t id;  // added token id, -1 = text
} Span;

typedef struct {
    Span *v;
    size_t n, cap;
} SpanVec;

typedef struct {
    int32_t rank, pos, merged;
} HeapEntry;

// Everything one encode call works in; nothing is shared between calls.
typedef struct {
    const Tokenizer *t;
    const char *text;
    size_t len;
    int flags;
    const size_t *breaks;
    int n_breaks;
    TokenIds *ids, *segs;
    NStr norm, pre, tmp, bl;
    void **match_data;  // [t->n_pre] PCRE2 match data, made on first use
    SpanVec raw_spans, norm_spans;
    int32_t *sym_id, *sym_prev, *sym_next;
    size_t sym_cap;
    HeapEntry *heap;
    size_t heap_cap;
} Enc;

static void nstr_reserve(NStr *s, size_t n) {
    if (n <= s->cap) return;
    s->cap = n + n / 2 + 16;
    s->b = xrealloc(s->b, s->cap);
    s->o = xrealloc(s->o, s->cap * sizeof *s->o);
}

static void nstr_push(NStr *s, const char *bytes, size_t n, int32_t org) {
    nstr_reserve(s, s->n + n);
    memcpy(s->b + s->n, bytes, n);
    for (size_t i = 0; i < n; i++) s->o[s->n + i] = org;
    s->n += n;
}

static void nstr_free(NStr *s) {
    free(s->b);
    free(s->o);
}

static void span_push(SpanVec *v, size_t s, size_t e, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->v = xrealloc(v->v, v->cap * sizeof *v->v);
    }
    v->v[v->n++] = (Span){s, e, id};
}

// Segment of an input offset: the number of breaks at or before it.
static int segment_of(const Enc *c, int32_t org) {
    int lo = 0, hi = c->n_breaks;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (c->breaks[mid] <= (size_t)org) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void emit(Enc *c, int32_t id, int seg) {
    token_ids_push(c->ids, id);
    if (c->segs) token_ids_push(c->segs, seg);
}

// Length of the character at s[0] (1 for a byte that starts no valid UTF-8
// sequence: such bytes are characters of their own).
static int char_len(const char *s, size_t n, uint32_t *cp) {
    int k = utf8_char((const unsigned char *)s, n, cp);
    if (k == 0) {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    return k;
}

// ---- 1. added tokens -----------------------------------------------------

// The regex class \w that single_word tokens test next to a match (an
// invalid byte, 0xFFFFFFFF, is no word character).
static int word_char(uint32_t cp) { return cp != 0xFFFFFFFFu && unicode_is_word(cp); }

// The character that ends at buf[end): its start, or `end` when none is valid.
static size_t prev_char(const char *buf, size_t end, uint32_t *cp) {
    for (size_t k = 1; k <= 4 && k <= end; k++) {
        size_t s = end - k;
        if (((unsigned char)buf[s] & 0xC0) == 0x80) continue;
        if (utf8_char((const unsigned char *)buf + s, k, cp) == (int)k) return s;
        break;
    }
    return end;
}

// Splits buf[0..len) into text spans and added-token spans (leftmost-longest,
// like tokenizers' Aho-Corasick matcher), honouring single_word, lstrip and
// rstrip as AddedVocabulary::find_matches does.
static void split_added(const Tokenizer *t, const TokenMatcher *m, const char *buf, size_t len, SpanVec *out) {
    out->n = 0;
    size_t start_offset = 0, i = 0;
    while (m->n && i < len) {
        const unsigned char b = (unsigned char)buf[i];
        const AddedToken *hit = NULL;
        for (int k = m->first[b]; k < m->first[b + 1]; k++) {
            const AddedToken *a = &t->added[m->order[k]];
            if ((size_t)a->pattern_len <= len - i && memcmp(buf + i, a->pattern, (size_t)a->pattern_len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t s = i, e = i + (size_t)hit->pattern_len;
        uint32_t cp;
        if (hit->single_word) {
            int word_before = s > 0 && prev_char(buf, s, &cp) < s && word_char(cp);
            int word_after = e < len && (char_len(buf + e, len - e, &cp), word_char(cp));
            if (word_before || word_after) {
                i = e;  // the matcher resumes after a rejected match too
                continue;
            }
        }
        if (hit->lstrip) {
            size_t ns = s, p;
            while (ns > 0 && (p = prev_char(buf, ns, &cp)) < ns && unicode_is_space(cp)) ns = p;
            s = ns > start_offset ? ns : start_offset;
        }
        if (hit->rstrip) {
            while (e < len) {
                int k = utf8_char((const unsigned char *)buf + e, len - e, &cp);
                if (!k || !unicode_is_space(cp)) break;
                e += (size_t)k;
            }
        }
        if (s > start_offset) span_push(out, start_offset, s, -1);
        span_push(out, s, e, hit->id);
        start_offset = i = e;
    }
    if (start_offset < len) span_push(out, start_offset, len, -1);
}

// ---- 4. BPE ----------------------------------------------------------------

static int heap_less(const HeapEntry *a, const HeapEntry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Enc *c, size_t *n, HeapEntry e) {
    if (*n == c->heap_cap) {
        c->heap_cap = c->heap_cap ? c->heap_cap * 2 : 64;
        c->heap = xrealloc(c->heap, c->heap_cap * sizeof *c->heap);
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = e;
}

static HeapEntry heap_pop(Enc *c, size_t *n) {
    HeapEntry top = c->heap[0], last = c->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const HeapEntry *best = &last;
        if (l < *n && heap_less(&c->heap[l], best)) m = l, best = &c->heap[l];
        if (r < *n && heap_less(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (*n > 0) c->heap[i] = last;
    return top;
}

static void sym_reserve(Enc *c, size_t n) {
    if (n <= c->sym_cap) return;
    c->sym_cap = n + n / 2 + 16;
    c->sym_id = xrealloc(c->sym_id, c->sym_cap * sizeof *c->sym_id);
    c->sym_prev = xrealloc(c->sym_prev, c->sym_cap * sizeof *c->sym_prev);
    c->sym_next = xrealloc(c->sym_next, c->sym_cap * sizeof *c->sym_next);
}

static void try_push_pair(Enc *c, size_t *hn, int32_t pos) {
    int32_t rank, merged, nx = c->sym_next[pos];
    if (nx >= 0 && pairmap_get(&c->t->merges, c->sym_id[pos], c->sym_id[nx], &rank, &merged))
        heap_push(c, hn, (HeapEntry){rank, pos, merged});
}

// BPE of one word w[0..n) (model.merge_word + Word::merge_all).
static void bpe_word(Enc *c, const char *w, size_t n, int seg) {
    const Tokenizer *t = c->t;
    if (t->ignore_merges) {
        int32_t id = bytesmap_get(&t->vocab, w, (int)n);
        if (id >= 0) {
            emit(c, id, seg);
            return;
        }
    }
    sym_reserve(c, n);
    int32_t ns = 0, unk_pending = 0;
    for (size_t p = 0; p < n;) {
        uint32_t cp;
        int k = char_len(w + p, n - p, &cp);
        int32_t id = (k == 1 && (unsigned char)w[p] < 128) ? t->ascii_id[(unsigned char)w[p]]
                     : (cp != 0xFFFFFFFFu) ? bytesmap_get(&t->vocab, w + p, k) : -1;
        if (id >= 0) {
            if (unk_pending) c->sym_id[ns++] = t->model_unk, unk_pending = 0;
            c->sym_id[ns++] = id;
        } else {
            int all = t->byte_fallback;
            for (int j = 0; j < k && all; j++) all = t->byte_id[(unsigned char)w[p + j]] >= 0;
            if (all) {  // tokenizers adds the bytes without flushing a pending <unk> first
                for (int j = 0; j < k; j++) c->sym_id[ns++] = t->byte_id[(unsigned char)w[p + j]];
            } else if (unk_pending && t->fuse_unk) {
                // fused into the pending <unk>
            } else {
                if (unk_pending) c->sym_id[ns++] = t->model_unk;
                unk_pending = 1;
            }
        }
        p += (size_t)k;
    }
    if (unk_pending) c->sym_id[ns++] = t->model_unk;
    for (int32_t i = 0; i < ns; i++) c->sym_prev[i] = i - 1, c->sym_next[i] = i + 1 < ns ? i + 1 : -1;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) try_push_pair(c, &hn, i);
    while (hn > 0) {
        HeapEntry top = heap_pop(c, &hn);
        int32_t pos = top.pos, nx = c->sym_next[pos], rank, merged;
        if (c->sym_id[pos] < 0 || nx < 0) continue;  // merged away, or now the last symbol
        if (!pairmap_get(&t->merges, c->sym_id[pos], c->sym_id[nx], &rank, &merged) || merged != top.merged)
            continue;  // stale: the pair at pos changed since this entry was queued
        c->sym_id[pos] = merged;
        c->sym_id[nx] = -1;
        c->sym_next[pos] = c->sym_next[nx];
        if (c->sym_next[nx] >= 0) c->sym_prev[c->sym_next[nx]] = pos;
        if (c->sym_prev[pos] >= 0) try_push_pair(c, &hn, c->sym_prev[pos]);
        try_push_pair(c, &hn, pos);
    }
    for (int32_t i = 0; i >= 0 && i < ns; i = c->sym_next[i]) emit(c, c->sym_id[i], seg);
}

// ---- 3. words ------------------------------------------------------------

static int has_at(const NStr *s, size_t p, size_t end, const char *pat, int n) {
    return n > 0 && p + (size_t)n <= end && memcmp(s->b + p, pat, (size_t)n) == 0;
}

// Cuts s[a..e) into words -- at Metaspace split points, before a space symbol
// that follows another character (cut_before_space), and where a segment
// break falls -- and BPEs each.
static void encode_words(Enc *c, const NStr *s, size_t a, size_t e, int split_on_rep) {
    const Tokenizer *t = c->t;
    size_t ws = a;
    int seg = c->n_breaks ? segment_of(c, s->o[a]) : 0;
    int prev_space = 0;
    for (size_t p = a; p < e;) {
        uint32_t cp;
        int k = char_len(s->b + p, e - p, &cp);
        int is_space = t->cut_before_space && has_at(s, p, e, t->space, t->space_len);
        if (p > ws) {
            int cut = (split_on_rep && has_at(s, p, e, t->meta_rep, t->meta_rep_len)) || (is_space && !prev_space);
            int pseg = seg;
            if (c->n_breaks) {
                while (pseg < c->n_breaks && c->breaks[pseg] <= (size_t)s->o[p]) pseg++;
                cut |= pseg != seg;
            }
            if (cut) {
                bpe_word(c, s->b + ws, p - ws, seg);
                ws = p;
            }
            seg = pseg;
        }
        prev_space = is_space;
        p += (size_t)k;
    }
    if (e > ws) bpe_word(c, s->b + ws, e - ws, seg);
}

// ---- 3b. Split / ByteLevel pre-tokenizers ---------------------------------

typedef struct {
    Enc *c;
    const NStr *s;
    int step;
} PieceCtx;

static void pre_steps(Enc *c, const NStr *s, size_t a, size_t e, int k);

static void piece_next_step(void *ctx, size_t a, size_t e) {
    PieceCtx *p = ctx;
    pre_steps(p->c, p->s, a, e, p->step + 1);
}

// Step k of the pre-tokenizer on s[a..e); past the last step the piece is a
// word: mapped byte by byte to GPT-2's characters (byte-level) and BPE'd.
static void pre_steps(Enc *c, const NStr *s, size_t a, size_t e, int k) {
    const Tokenizer *t = c->t;
    if (a >= e) return;
    if (k == t->n_pre) {
        if (!t->byte_level) {
            encode_words(c, s, a, e, 0);
            return;
        }
        NStr *w = &c->bl;
        w->n = 0;
        nstr_reserve(w, (e - a) * 2);
        for (size_t p = a; p < e; p++) {
            unsigned char b = (unsigned char)s->b[p];
            nstr_push(w, t->bl_char[b], t->bl_len[b], s->o[p]);
        }
        encode_words(c, w, 0, w->n, 0);
        return;
    }
    if (!c->match_data) c->match_data = xcalloc((size_t)t->n_pre, sizeof *c->match_data);
    if (!c->match_data[k]) c->match_data[k] = bytelevel_match_data(&t->pre[k]);
    PieceCtx ctx = {c, s, k};
    bytelevel_split(&t->pre[k], c->match_data[k], s->b, a, e, piece_next_step, &ctx);
}

// Metaspace pre-tokenizer (or none) on the piece src[a..e).
static void pre_tokenize(Enc *c, const NStr *src, size_t a, size_t e) {
    const Tokenizer *t = c->t;
    if (t->n_pre) {
        pre_steps(c, src, a, e, 0);
        return;
    }
    if (!t->metaspace) {
        encode_words(c, src, a, e, 0);
        return;
    }
    NStr *out = &c->pre;
    out->n = 0;
    nstr_reserve(out, (e - a) * (size_t)t->meta_rep_len + (size_t)t->meta_rep_len);
    int starts = (src->b[a] == ' ') || has_at(src, a, e, t->meta_rep, t->meta_rep_len);
    int prepend = !starts && (t->meta_prepend == PREPEND_ALWAYS || (t->meta_prepend == PREPEND_FIRST && src->o[a] == 0));
    if (prepend) nstr_push(out, t->meta_rep, (size_t)t->meta_rep_len, src->o[a]);
    for (size_t p = a; p < e; p++) {
        if (src->b[p] == ' ') nstr_push(out, t->meta_rep, (size_t)t->meta_rep_len, src->o[p]);
        else nstr_push(out, src->b + p, 1, src->o[p]);
    }
    encode_words(c, out, 0, out->n, t->meta_split);
}

// ---- 2. normalization ----------------------------------------------------

// NFC, chunk by chunk: a chunk ends before each ASCII byte (ASCII is never
// the second half of a composition, so chunks normalize independently); its
// output bytes carry the offset of its first input byte. A chunk that is not
// valid UTF-8 stays as it is.
static void normalize_nfc(const NStr *s, NStr *d) {
    for (size_t p = 0; p < s->n;) {
        size_t q = p + 1;
        while (q < s->n && (unsigned char)s->b[q] >= 0x80) q++;
        size_t m;
        char *out = (unsigned char)s->b[p] < 0x80 && q == p + 1 ? NULL : bytelevel_nfc(s->b + p, q - p, &m);
        if (out) {
            nstr_push(d, out, m, s->o[p]);
            free(out);
        } else {
            nstr_reserve(d, d->n + (q - p));
            memcpy(d->b + d->n, s->b + p, q - p);
            memcpy(d->o + d->n, s->o + p, (q - p) * sizeof *s->o);
            d->n += q - p;
        }
        p = q;
    }
}

static void normalize(Enc *c, NStr *s) {
    const Tokenizer *t = c->t;
    for (int k = 0; k < t->n_norm; k++) {
        const NormStep *st = &t->norm[k];
        NStr *d = &c->tmp;
        d->n = 0;
        if (st->kind == NORM_NFC) {
            normalize_nfc(s, d);
        } else if (st->kind == NORM_PREPEND) {
            if (s->n == 0) continue;
            nstr_reserve(d, s->n + (size_t)st->alen);
            nstr_push(d, st->a, (size_t)st->alen, s->o[0]);
            memcpy(d->b + d->n, s->b, s->n);
            memcpy(d->o + d->n, s->o, s->n * sizeof *s->o);
            d->n += s->n;
        } else {
            nstr_reserve(d, s->n * (size_t)(st->blen > st->alen ? st->blen : st->alen) / (size_t)st->alen + 1);
            for (size_t p = 0; p < s->n;) {
                if (has_at(s, p, s->n, st->a, st->alen)) {
                    nstr_push(d, st->b, (size_t)st->blen, s->o[p]);
                    p += (size_t)st->alen;
                } else {
                    nstr_push(d, s->b + p, 1, s->o[p]);
                    p++;
                }
            }
        }
        NStr swap = *s;
        *s = *d;
        *d = swap;
    }
}

static void encode_text_part(Enc *c, size_t a, size_t e) {
    const Tokenizer *t = c->t;
    NStr *s = &c->norm;
    s->n = 0;
    nstr_reserve(s, e - a);
    for (size_t p = a; p < e; p++) {
        s->b[s->n] = c->text[p];
        s->o[s->n++] = (int32_t)p;
    }
    normalize(c, s);
    if (t->norm_matcher.n == 0) {
        if (s->n) pre_tokenize(c, s, 0, s->n);
        return;
    }
    split_added(t, &t->norm_matcher, s->b, s->n, &c->norm_spans);
    for (size_t i = 0; i < c->norm_spans.n; i++) {
        const Span sp = c->norm_spans.v[i];
        if (sp.id >= 0) emit(c, sp.id, c->n_breaks ? segment_of(c, s->o[sp.s]) : 0);
        else pre_tokenize(c, s, sp.s, sp.e);
    }
}

int tokenizer_encode_segments(const Tokenizer *t, const char *text, size_t len, int flags, const size_t *breaks,
                              int n_breaks, TokenIds *ids, TokenIds *segments) {
    CHECK(len < (size_t)INT32_MAX, "text of %zu bytes is too long to encode in one call", len);
    Enc c = {.t = t, .text = text, .len = len, .flags = flags, .breaks = breaks, .n_breaks = n_breaks,
             .ids = ids, .segs = segments};
    const int n0 = ids->n;
    if ((flags & TOK_ADD_SPECIAL) && t->add_bos) emit(&c, t->bos, -1);
    split_added(t, &t->raw_matcher, text, len, &c.raw_spans);
    for (size_t i = 0; i < c.raw_spans.n; i++) {
        const Span sp = c.raw_spans.v[i];
        if (sp.id >= 0) emit(&c, sp.id, n_breaks ? segment_of(&c, (int32_t)sp.s) : 0);
        else encode_text_part(&c, sp.s, sp.e);
    }
    if ((flags & TOK_ADD_SPECIAL) && t->add_eos) emit(&c, t->eos, -1);
    nstr_free(&c.norm);
    nstr_free(&c.pre);
    nstr_free(&c.tmp);
    nstr_free(&c.bl);
    for (int k = 0; c.match_data && k < t->n_pre; k++) bytelevel_match_data_free(c.match_data[k]);
    free(c.match_data);
    free(c.raw_spans.v);
    free(c.norm_spans.v);
    free(c.sym_id);
    free(c.sym_prev);
    free(c.sym_next);
    free(c.heap);
    return ids->n - n0;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int flags, TokenIds *ids) {
    return tokenizer_encode_segments(t, text, len, flags, NULL, 0, ids, NULL);
}
