// Byte-level BPE support (GPT-2, Llama-3, Qwen2 tokenizers): the Split and
// ByteLevel pre-tokenizers on PCRE2, GPT-2's byte <-> character table, and
// NFC through utf8proc.
//
// The regexes are the ones tokenizer.json carries, compiled with PCRE2_UTF |
// PCRE2_UCP. tokenizers runs them on Oniguruma, whose \s in UTF-8 mode is the
// Unicode White_Space property; PCRE2's \s with UCP also takes U+180E, so \s
// and \S are rewritten to the explicit White_Space set before compiling.
// Matches are found leftmost-first and non-overlapping from where the last
// one ended, as Oniguruma's find_iter (and tokenizers' Split) do.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/json.h"
#include "data/tokenizer_internal.h"

// GPT-2's pre-tokenizer pattern (ByteLevel with use_regex true).
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Unicode White_Space, as the inside of a character class.
static const char WHITE_SPACE[] =
    "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

// Copies pattern with \s -> White_Space and \S (outside classes) -> its
// complement. Returns a malloc'd string.
static char *rewrite_pattern(const char *p, size_t n) {
    size_t cap = n * 8 + 64 * (n + 1), k = 0;
    char *out = xmalloc(cap);
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\\' && i + 1 < n) {
            char nx = p[i + 1];
            if (nx == 's' || (nx == 'S' && !in_class)) {
                const char *open = in_class ? "" : nx == 's' ? "[" : "[^", *close = in_class ? "" : "]";
                k += (size_t)snprintf(out + k, cap - k, "%s%s%s", open, WHITE_SPACE, close);
            } else {
                out[k++] = ch;
                out[k++] = nx;
            }
            i++;
            continue;
        }
        if (ch == '[' && !in_class) {
            in_class = 1;
            out[k++] = ch;
            // A ']' right after '[' or '[^' is a literal.
            if (i + 1 < n && p[i + 1] == '^') out[k++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']') out[k++] = p[++i];
            continue;
        }
        if (ch == ']' && in_class) in_class = 0;
        out[k++] = ch;
    }
    out[k] = 0;
    return out;
}

static int compile_regex(PreStep *st, const char *pattern, size_t n, int literal, const char *what, Error *err) {
    char *rewritten = literal ? NULL : rewrite_pattern(pattern, n);
    int code;
    PCRE2_SIZE at;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(literal ? pattern : rewritten),
                                   literal ? n : PCRE2_ZERO_TERMINATED, opts, &code, &at, NULL);
    free(rewritten);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return err_set(err, "%s: the pattern does not compile with PCRE2 at offset %zu: %s", what, (size_t)at,
                       (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // optional: without JIT the interpreter runs
    st->re = re;
    return 0;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
// others, in order, to U+0100 onwards.
static void build_byte_table(Tokenizer *t) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : next++;
        t->bl_len[b] = (uint8_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)t->bl_char[b]);
    }
}

int bytelevel_byte_of(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    // U+0100 + k is the k-th byte that is not printable: 0x00-0x20, 0x7F-0xA0, 0xAD.
    if (cp < 0x100 || cp >= 0x100 + 68) return -1;
    int k = (int)cp - 0x100;
    return k < 33 ? k : k < 67 ? 0x7F + (k - 33) : 0xAD;
}

static PreStep *push_step(Tokenizer *t, PreKind kind) {
    t->pre = xrealloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *t->pre);
    PreStep *st = &t->pre[t->n_pre++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    return st;
}

int bytelevel_load_pre(Tokenizer *t, const cJSON *p, const char *type, Error *err) {
    if (t->byte_level) return err_set(err, "pre_tokenizer: a %s after ByteLevel is not supported", type);
    if (strcmp(type, "ByteLevel") == 0) {
        int prefix = 0, use_regex = 1;
        if (json_get_bool(p, "add_prefix_space", 0, &prefix, "pre_tokenizer ByteLevel", err) ||
            json_get_bool(p, "use_regex", 1, &use_regex, "pre_tokenizer ByteLevel", err))
            return -1;
        if (prefix)
            return err_set(err, "pre_tokenizer ByteLevel: add_prefix_space true is not supported (GPT-2, Llama-3 "
                                "and Qwen2 tokenizers have it false)");
        PreStep *st = push_step(t, PRE_BYTE_LEVEL);
        st->behavior = SPLIT_ISOLATED;
        if (use_regex && compile_regex(st, GPT2_PATTERN, strlen(GPT2_PATTERN), 0, "pre_tokenizer ByteLevel", err))
            return -1;
        t->byte_level = 1;
        build_byte_table(t);
        return 0;
    }
    // Split
    const char *behavior = "Isolated";
    int invert = 0;
    if (json_get_string(p, "behavior", "Isolated", &behavior, "pre_tokenizer Split", err) ||
        json_get_bool(p, "invert", 0, &invert, "pre_tokenizer Split", err))
        return -1;
    if (invert) return err_set(err, "pre_tokenizer Split: invert true is not supported");
    int b;
    if (strcmp(behavior, "Isolated") == 0) b = SPLIT_ISOLATED;
    else if (strcmp(behavior, "Removed") == 0) b = SPLIT_REMOVED;
    else
        return err_set(err, "pre_tokenizer Split: behavior \"%s\" is not supported (Isolated or Removed)", behavior);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
    const cJSON *str = pat ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
    if (!cJSON_IsString(re) && !cJSON_IsString(str))
        return err_set(err, "pre_tokenizer Split: \"pattern\" must be {\"Regex\": ...} or {\"String\": ...}");
    PreStep *st = push_step(t, PRE_SPLIT);
    st->behavior = b;
    const char *text = cJSON_IsString(re) ? re->valuestring : str->valuestring;
    if (!text[0]) return err_set(err, "pre_tokenizer Split: empty pattern");
    return compile_regex(st, text, strlen(text), !cJSON_IsString(re), "pre_tokenizer Split", err);
}

void bytelevel_free(Tokenizer *t) {
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    t->pre = NULL;
    t->n_pre = 0;
}

void *bytelevel_match_data(const PreStep *st) {
    if (!st->re) return NULL;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(st->re, NULL);
    CHECK(md, "out of memory for PCRE2 match data");
    return md;
}

void bytelevel_match_data_free(void *md) {
    if (md) pcre2_match_data_free(md);
}

// The regex split of the valid UTF-8 run b[a..e).
static void split_valid(const PreStep *st, pcre2_match_data *md, const char *b, size_t a, size_t e, PieceFn piece,
                        void *ctx) {
    size_t at = 0, gap = 0, n = e - a;
    const PCRE2_SPTR subj = (PCRE2_SPTR)(b + a);
    while (at <= n) {
        int rc = pcre2_match(st->re, subj, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        CHECK(rc > 0, "PCRE2 match failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // an empty match splits nothing: move on one character
            uint32_t cp;
            int k = ms < n ? utf8_char(subj + ms, n - ms, &cp) : 1;
            at = ms + (size_t)(k ? k : 1);
            continue;
        }
        if (ms > gap) piece(ctx, a + gap, a + ms);
        if (st->behavior == SPLIT_ISOLATED) piece(ctx, a + ms, a + me);
        gap = at = me;
    }
    if (n > gap) piece(ctx, a + gap, e);
}

void bytelevel_split(const PreStep *st, void *md, const char *b, size_t a, size_t e, PieceFn piece, void *ctx) {
    if (!st->re) {
        if (e > a) piece(ctx, a, e);
        return;
    }
    size_t run = a;
    for (size_t p = a; p < e;) {
        uint32_t cp;
        int k = utf8_char((const unsigned char *)b + p, e - p, &cp);
        if (k) {
            p += (size_t)k;
            continue;
        }
        if (p > run) split_valid(st, md, b, run, p, piece, ctx);
        piece(ctx, p, p + 1);
        run = ++p;
    }
    if (e > run) split_valid(st, md, b, run, e, piece, ctx);
}

char *bytelevel_nfc(const char *s, size_t n, size_t *out_n) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (k < 0) return NULL;
    *out_n = (size_t)k;
    return (char *)dst;
}
