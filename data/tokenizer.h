// Hugging Face tokenizer.json (LLaMA / Vicuna SentencePiece BPE) in C: load,
// encode, decode. Matches the `tokenizers` library id for id on the forms
// LLaMA-family models ship (docs/data.md, "Tokenizer", lists them):
//   - model BPE with byte_fallback, fuse_unk, unk_token, merges as "a b"
//     strings or ["a", "b"] pairs (rank = position; a later duplicate wins),
//     ignore_merges;
//   - normalizer null | Prepend | Replace (string pattern) | Sequence of those
//     (the legacy form: Sequence[Prepend "▁", Replace " " -> "▁"]);
//   - pre-tokenizer null | Metaspace (replacement, prepend_scheme always /
//     first / never, split; the older add_prefix_space spelling too);
//   - added tokens (lstrip, rstrip, single_word, normalized, special) split
//     off before normalization, leftmost-longest;
//   - decoder Sequence of Replace / ByteFallback / Fuse / Strip, or Metaspace;
//   - BOS / EOS from tokenizer_config.json's add_bos_token / add_eos_token
//     (else from tokenizer.json's TemplateProcessing post-processor).
// Anything else in tokenizer.json is refused at load with a message naming it.
//
// Threads: a loaded Tokenizer is read-only; any number of threads may call
// encode / decode / lookups on the same one at once.
#ifndef LLAVA_TOKENIZER_H
#define LLAVA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

typedef struct Tokenizer Tokenizer;

// A growable array of token ids (or of any int32 per token).
typedef struct {
    int32_t *data;  // [n], capacity cap
    int n, cap;
} TokenIds;

void token_ids_push(TokenIds *v, int32_t x);
void token_ids_clear(TokenIds *v);  // n = 0, keeps the memory
void token_ids_free(TokenIds *v);   // frees and zeroes

// Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json.
// Returns 0, or -1 with err naming the file and the offending item.
int tokenizer_load(Tokenizer **out, const char *dir, Error *err);
// Same with explicit paths (config_path may be NULL: no tokenizer_config.json).
int tokenizer_load_files(Tokenizer **out, const char *json_path, const char *config_path, Error *err);
void tokenizer_free(Tokenizer *t);

// Encode flags.
enum {
    // Add the special tokens the tokenizer adds around a text: BOS when
    // add_bos_token, EOS when add_eos_token (transformers' add_special_tokens).
    TOK_ADD_SPECIAL = 1,
};

// Encodes text[0..len) (UTF-8; bytes that are not valid UTF-8 are encoded as
// their own <0xNN> byte tokens) and appends the ids to `ids`. Never fails: a
// tokenizer that could not encode every string is refused by tokenizer_load.
// Returns the number of ids appended.
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int flags, TokenIds *ids);

// Encoding with forced word boundaries, for building a sequence out of pieces
// (data/conversation.c). breaks[0..n_breaks) are ascending byte offsets into
// text; no BPE merge crosses one, so each token comes from exactly one segment
// [breaks[k-1], breaks[k]). Normalization, added tokens and dummy prefixes are
// those of the whole text: encoding with breaks equals plain encoding
// whenever no merge would have crossed a break. When `segments` is not NULL,
// it receives one entry per appended id: the index k of the segment the token
// starts in (0 before breaks[0]; special tokens added by TOK_ADD_SPECIAL get
// -1). Returns the number of ids appended.
int tokenizer_encode_segments(const Tokenizer *t, const char *text, size_t len, int flags, const size_t *breaks,
                              int n_breaks, TokenIds *ids, TokenIds *segments);

// Decodes ids to a NUL-terminated UTF-8 string (malloc'd; the caller frees)
// through the tokenizer's decoder: "▁" -> " ", runs of <0xNN> tokens -> bytes
// (a run that is not valid UTF-8 becomes one U+FFFD per byte, as tokenizers
// does), the one leading space the dummy prefix added stripped. Ids that are
// not in the vocabulary are skipped; so are special added tokens when
// skip_special. *len_out (if not NULL) gets the length (the text may contain
// NUL bytes from <0x00>).
char *tokenizer_decode(const Tokenizer *t, const int32_t *ids, int n, int skip_special, size_t *len_out);

// Lookups. token_to_id: the added token or vocabulary entry with exactly this
// content, -1 if none. id_to_token: the token's string as tokenizers'
// id_to_token gives it (NUL-terminated, owned by the tokenizer; an added token
// with normalized = true in its normalized spelling, e.g. "▁<sep>" under the
// legacy normalizer), NULL if the id is unused.
int32_t tokenizer_token_to_id(const Tokenizer *t, const char *token);
const char *tokenizer_id_to_token(const Tokenizer *t, int32_t id);
// 1 when id is an added token marked special (skipped by skip_special).
int tokenizer_is_special(const Tokenizer *t, int32_t id);

// Largest id + 1 over the vocabulary and the added tokens (the number of
// embedding rows the tokenizer needs; llava-1.5-hf: 32002).
int tokenizer_vocab_size(const Tokenizer *t);
// Special ids from tokenizer_config.json (bos_token, eos_token, unk_token,
// pad_token), -1 where undefined. pad falls back to unk when no pad_token is
// set, as LLaVA's training code does for Vicuna.
int32_t tokenizer_bos_id(const Tokenizer *t);
int32_t tokenizer_eos_id(const Tokenizer *t);
int32_t tokenizer_unk_id(const Tokenizer *t);
int32_t tokenizer_pad_id(const Tokenizer *t);
int tokenizer_adds_bos(const Tokenizer *t);  // add_bos_token in effect
int tokenizer_adds_eos(const Tokenizer *t);  // add_eos_token in effect
// model_max_length from tokenizer_config.json; 0 when absent or "unlimited"
// (transformers writes 1e30 for that).
int tokenizer_model_max_length(const Tokenizer *t);

#endif
