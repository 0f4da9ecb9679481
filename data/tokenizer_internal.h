// The Tokenizer structure shared by tokenizer.c (loading, lookups),
// tokenizer_encode.c and tokenizer_decode.c. Not part of the public API.
#ifndef LLAVA_TOKENIZER_INTERNAL_H
#define LLAVA_TOKENIZER_INTERNAL_H

#include <stdint.h>

#include "data/tokenizer.h"

// bytes -> int32 map (open addressing, FNV-1a); owns copies of its keys.
typedef struct {
    char **keys;     // [cap], NULL = empty
    int32_t *klen;   // [cap]
    int32_t *vals;   // [cap]
    size_t cap, count;
} BytesMap;

void bytesmap_put(BytesMap *m, const char *key, int len, int32_t val);
int32_t bytesmap_get(const BytesMap *m, const char *key, int len);  // -1 when absent
void bytesmap_free(BytesMap *m);

// (left id, right id) -> (rank, merged id).
typedef struct {
    uint64_t *keys;   // [cap], PAIR_EMPTY = empty
    int32_t *rank;    // [cap]
    int32_t *merged;  // [cap]
    size_t cap, count;
    int shift;        // 64 - log2(cap): the slot is the top bits of key * golden ratio
} PairMap;

#define PAIR_EMPTY UINT64_MAX

// Returns 1 and fills rank / merged when the pair has a merge.
static inline int pairmap_get(const PairMap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    const uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    for (;;) {
        if (m->keys[i] == key) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return 1;
        }
        if (m->keys[i] == PAIR_EMPTY) return 0;
        i = (i + 1) & (m->cap - 1);
    }
}

typedef struct {
    char *content;     // the token text as written in added_tokens
    int len;
    char *pattern;     // what is searched for: content, or the normalized content when `normalized`
    int pattern_len;
    int32_t id;
    uint8_t lstrip, rstrip, single_word, normalized, special;
} AddedToken;

// Leftmost-longest search over the patterns of a subset of added tokens.
typedef struct {
    int *order;         // indices into Tokenizer.added, by first byte, longest first
    int first[257];     // order[first[b] .. first[b+1]) start with byte b
    int n;
} TokenMatcher;

// Normalizer steps (applied in order) and decoder steps.
typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC } NormKind;
typedef struct {
    NormKind kind;
    char *a, *b;  // prepend: a; replace: a -> b
    int alen, blen;
} NormStep;

typedef enum { DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE, DEC_BYTE_LEVEL } DecKind;
typedef struct {
    DecKind kind;
    char *a, *b;         // replace: a -> b; strip: a = the character; metaspace: a = replacement
    int alen, blen;
    int start, stop;     // strip: how many leading / trailing characters at most
    int prepend;         // metaspace: prepend_scheme != never (drop "▁" in the first token)
} DecStep;

enum { PREPEND_NEVER = 0, PREPEND_ALWAYS = 1, PREPEND_FIRST = 2 };

// Byte-level pre-tokenizer steps (tokenizer_bytelevel.c): Split on a regex
// (Isolated: matches and the text between them are pieces; Removed: only the
// text between them), and ByteLevel (with use_regex, a Split on GPT-2's
// pattern first; always last: the words' bytes become GPT-2's characters).
typedef enum { PRE_SPLIT, PRE_BYTE_LEVEL } PreKind;
enum { SPLIT_ISOLATED, SPLIT_REMOVED };
typedef struct {
    PreKind kind;
    void *re;          // pcre2_code (compiled with JIT when available), NULL = no regex split
    int behavior;      // SPLIT_*
} PreStep;

struct Tokenizer {
    // model: BPE
    BytesMap vocab;          // model.vocab
    PairMap merges;
    int32_t ascii_id[128];   // single-byte characters -> vocab id (fast path), -1 = absent
    int32_t byte_id[256];    // <0xNN> -> id, -1 = absent
    int32_t model_unk;       // model.unk_token's id, -1 = none
    int fuse_unk, byte_fallback, ignore_merges;
    // Words may be cut before every space symbol that follows a character that
    // is not one (the symbol is in the vocabulary and no merge joins a left
    // part not ending in it to a right part starting with it): exact, and it
    // keeps BPE's heap small on texts that are one long piece.
    int cut_before_space;
    char space[8];
    int space_len;
    // added tokens
    AddedToken *added;
    int n_added;
    TokenMatcher raw_matcher;   // normalized == false: matched in the raw text
    TokenMatcher norm_matcher;  // normalized == true: matched in normalized pieces
    // pipeline
    NormStep *norm;
    int n_norm;
    int metaspace;              // pre-tokenizer Metaspace present
    char meta_rep[8];
    int meta_rep_len, meta_prepend, meta_split;
    PreStep *pre;               // Split / ByteLevel steps, in order
    int n_pre;
    int byte_level;             // words are mapped byte -> GPT-2 character before BPE
    char bl_char[256][3];       // GPT-2's bytes_to_unicode, as UTF-8
    uint8_t bl_len[256];
    DecStep *dec;
    int n_dec, has_decoder;
    // ids
    int vocab_size;             // max id + 1
    char **id_str;              // [vocab_size] content of each id (added token first), NULL = unused
    uint8_t *special;           // [vocab_size] added token with special = true
    int32_t bos, eos, unk, pad;
    int add_bos, add_eos;
    int model_max_length;
};

// UTF-8: length of the character starting at s[0] (1..4) when it is a valid,
// complete sequence within n bytes, else 0. *cp gets the code point.
int utf8_char(const unsigned char *s, size_t n, uint32_t *cp);
// Unicode White_Space (Rust's char::is_whitespace, used by lstrip / rstrip).
int unicode_is_space(uint32_t cp);
// The regex class \w as HF tokenizers tests it around single_word added
// tokens (Rust regex, Unicode mode): a table generated from the Unicode
// properties and checked against tokenizers (data/unicode_word.c,
// scripts/make_word_char_table.py).
int unicode_is_word(uint32_t cp);

// ---- tokenizer_bytelevel.c --------------------------------------------------
typedef struct cJSON cJSON;
// Loads a Split or ByteLevel pre-tokenizer object into t->pre (and the
// byte table); -1 with err naming what is not supported.
int bytelevel_load_pre(Tokenizer *t, const cJSON *p, const char *type, Error *err);
void bytelevel_free(Tokenizer *t);
// Per-call matching state of step k (pcre2 match data), freed by the caller.
void *bytelevel_match_data(const PreStep *st);
void bytelevel_match_data_free(void *md);
// Calls piece(ctx, s, e) for each piece of b[a..e) after the step's split,
// in order. Bytes that are not valid UTF-8 are pieces of their own (the
// regex runs on the valid runs between them).
typedef void (*PieceFn)(void *ctx, size_t s, size_t e);
void bytelevel_split(const PreStep *st, void *md, const char *b, size_t a, size_t e, PieceFn piece, void *ctx);
// NFC of s[0..n) (malloc'd, *out_n bytes); NULL when s is not valid UTF-8
// (the text is then left as it is).
char *bytelevel_nfc(const char *s, size_t n, size_t *out_n);
// The byte GPT-2's table maps code point cp to, -1 when none does.
int bytelevel_byte_of(uint32_t cp);

#endif
