// Conversation templates and label masks (see conversation.h). The steps
// follow LLaVA's LazySupervisedDataset + preprocess_multimodal +
// preprocess_plain / preprocess_v1 + tokenizer_image_token + the collator,
// except that masks come from construction instead of re-tokenizing rounds.
#include "data/conversation.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char IMAGE[] = "<image>";
#define IMAGE_LEN 7

static const char *const SYSTEM[] = {
    [CONV_VICUNA_V1] = "A chat between a curious user and an artificial intelligence assistant. "
                       "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    [CONV_LLAVA_V1] = "A chat between a curious human and an artificial intelligence assistant. "
                      "The assistant gives helpful, detailed, and polite answers to the human's questions.",
};

// LLaVA-NeXT's default system messages (preprocess_qwen, preprocess_llama3).
static const char QWEN_SYSTEM[] = "You are a helpful assistant.";
static const char LLAMA3_SYSTEM[] =
    "You are a helpful language and vision assistant. You are able to understand the visual content that the user "
    "provides, and assist the user with a variety of tasks using natural language.";

int conv_template_from_name(const char *name, ConvTemplate *out) {
    if (strcmp(name, "plain") == 0) *out = CONV_PLAIN;
    else if (strcmp(name, "v1") == 0 || strcmp(name, "vicuna_v1") == 0) *out = CONV_VICUNA_V1;
    else if (strcmp(name, "llava_v1") == 0) *out = CONV_LLAVA_V1;
    else if (strcmp(name, "qwen_2") == 0 || strcmp(name, "qwen_1_5") == 0) *out = CONV_QWEN_2;
    else if (strcmp(name, "llama_3") == 0 || strcmp(name, "llava_llama_3") == 0) *out = CONV_LLAMA_3;
    else return -1;
    return 0;
}

const char *conv_template_name(ConvTemplate t) {
    static const char *names[] = {"plain", "vicuna_v1", "llava_v1", "qwen_2", "llama_3"};
    return t >= CONV_PLAIN && t <= CONV_LLAMA_3 ? names[t] : "?";
}

static int is_chat_template(ConvTemplate t) { return t == CONV_QWEN_2 || t == CONV_LLAMA_3; }

int conv_role_from_name(const char *name) {
    if (strcmp(name, "human") == 0) return CONV_HUMAN;
    if (strcmp(name, "gpt") == 0) return CONV_GPT;
    return -1;
}

const char *conv_status_reason(ConvStatus s) {
    switch (s) {
    case CONV_OK: return "ok";
    case CONV_MALFORMED: return "malformed conversation";
    case CONV_EMPTY_AFTER_TRUNCATION: return "empty answer after truncation";
    case CONV_IMAGE_TRUNCATED: return "image cut by truncation";
    case CONV_MASK_MISMATCH: return "mask mismatch";
    }
    return "?";
}

void conv_result_free(ConvResult *r) {
    token_ids_free(&r->ids);
    token_ids_free(&r->labels);
}

static ConvStatus fail(ConvResult *r, ConvStatus s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ConvStatus fail(ConvResult *r, ConvStatus s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    return s;
}

// ---- text helpers ------------------------------------------------------

// Python's str.isspace (what LLaVA's .strip() removes).
static int py_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static uint32_t decode_at(const char *s, size_t n, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    uint32_t cp;
    int k;
    if (u[0] < 0x80) cp = u[0], k = 1;
    else if ((u[0] & 0xE0) == 0xC0) cp = u[0] & 0x1F, k = 2;
    else if ((u[0] & 0xF0) == 0xE0) cp = u[0] & 0x0F, k = 3;
    else if ((u[0] & 0xF8) == 0xF0) cp = u[0] & 0x07, k = 4;
    else cp = 0xFFFFFFFFu, k = 1;
    if ((size_t)k > n) k = 1, cp = 0xFFFFFFFFu;
    for (int i = 1; i < k && cp != 0xFFFFFFFFu; i++) {
        if ((u[i] & 0xC0) != 0x80) cp = 0xFFFFFFFFu, k = 1;
        else cp = (cp << 6) | (u[i] & 0x3F);
    }
    *len = (size_t)k;
    return cp;
}

// str.strip(): the [a, b) range left after removing leading and trailing
// whitespace characters.
static void py_strip(const char *s, size_t n, size_t *a, size_t *b) {
    size_t p = 0, k;
    while (p < n && py_space(decode_at(s + p, n - p, &k))) p += k;
    size_t e = n;
    while (e > p) {
        size_t q = e - 1;
        while (q > p && ((unsigned char)s[q] & 0xC0) == 0x80 && e - q < 4) q--;
        if (decode_at(s + q, e - q, &k) == 0xFFFFFFFFu || q + k != e || !py_space(decode_at(s + q, e - q, &k))) break;
        e = q;
    }
    *a = p, *b = e;
}

static const char *find_image(const char *s, size_t n) {
    for (size_t i = 0; i + IMAGE_LEN <= n; i++)
        if (s[i] == '<' && memcmp(s + i, IMAGE, IMAGE_LEN) == 0) return s + i;
    return NULL;
}

// A growable byte string.
typedef struct {
    char *b;
    size_t n, cap;
} Buf;

static void buf_add(Buf *x, const char *s, size_t n) {
    if (x->n + n + 1 > x->cap) {
        x->cap = (x->n + n + 1) * 2;
        x->b = xrealloc(x->b, x->cap);
    }
    memcpy(x->b + x->n, s, n);
    x->n += n;
    x->b[x->n] = 0;
}

// preprocess_multimodal on one message holding <image>: every <image>
// removed, the rest stripped, "<image>\n" put in front ("<image>" alone when
// nothing is left).
static void move_image_front(const char *s, size_t n, Buf *out) {
    Buf rest = {0};
    buf_add(&rest, "", 0);
    for (size_t i = 0; i < n;) {
        const char *hit = find_image(s + i, n - i);
        size_t stop = hit ? (size_t)(hit - s) : n;
        buf_add(&rest, s + i, stop - i);
        i = hit ? stop + IMAGE_LEN : n;
    }
    size_t a, b;
    py_strip(rest.b, rest.n, &a, &b);
    buf_add(out, IMAGE, IMAGE_LEN);
    if (b > a) {
        buf_add(out, "\n", 1);
        buf_add(out, rest.b + a, b - a);
    }
    free(rest.b);
}

// ---- the prompt as regions ------------------------------------------------

// The prompt text with the byte ranges that are targets marked: regions
// alternate between masked and unmasked (adjacent ones of one kind merge).
typedef struct {
    Buf text;
    size_t *start;   // [n] region start offsets
    uint8_t *target; // [n]
    int n, cap;
} Prompt;

static void prompt_add(Prompt *p, const char *s, size_t n, int target) {
    if (n == 0) return;
    if (p->n == 0 || p->target[p->n - 1] != target) {
        if (p->n == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 16;
            p->start = xrealloc(p->start, (size_t)p->cap * sizeof *p->start);
            p->target = xrealloc(p->target, (size_t)p->cap);
        }
        p->start[p->n] = p->text.n;
        p->target[p->n++] = (uint8_t)target;
    }
    buf_add(&p->text, s, n);
}

static void prompt_free(Prompt *p) {
    free(p->text.b);
    free(p->start);
    free(p->target);
}

// Messages after LLaVA's preprocessing (owned copies).
typedef struct {
    Buf *msg;
    ConvRole *role;
    int n;
} Messages;

static void messages_free(Messages *m) {
    for (int i = 0; i < m->n; i++) free(m->msg[i].b);
    free(m->msg);
    free(m->role);
}

// Drops a leading gpt turn (v1 only), moves <image> to the front of its
// message, and checks the shape the template needs.
static ConvStatus prepare(const Conversation *c, const ConvOptions *o, Messages *m, ConvResult *r) {
    const int v1 = o->tmpl != CONV_PLAIN;
    int first = (v1 && c->n_turns > 0 && c->turns[0].role != CONV_HUMAN) ? 1 : 0;
    m->n = c->n_turns - first;
    m->msg = xcalloc((size_t)(m->n > 0 ? m->n : 1), sizeof *m->msg);
    m->role = xcalloc((size_t)(m->n > 0 ? m->n : 1), sizeof *m->role);
    int with_image = 0, image_turn = -1;
    for (int j = 0; j < m->n; j++) {
        const ConvTurn *tu = &c->turns[first + j];
        m->role[j] = tu->role;
        buf_add(&m->msg[j], "", 0);
        if (c->has_image && find_image(tu->text, tu->len)) {
            const char *hit = find_image(tu->text, tu->len);
            // LLaVA-NeXT's preprocess_multimodal leaves a message that starts
            // with <image> as it is, and one with two <image>s too (which then
            // asks for two images).
            if (is_chat_template(o->tmpl) && find_image(hit + IMAGE_LEN, tu->len - (size_t)(hit - tu->text) - IMAGE_LEN))
                return fail(r, CONV_MALFORMED, "turn %d: two <image> in one message", first + j);
            if (is_chat_template(o->tmpl) && hit == tu->text)
                buf_add(&m->msg[j], tu->text, tu->len);
            else
                move_image_front(tu->text, tu->len, &m->msg[j]);
            with_image++, image_turn = j;
        } else {
            if (find_image(tu->text, tu->len))
                return fail(r, CONV_MALFORMED, "turn %d: <image> in a sample without an image", first + j);
            buf_add(&m->msg[j], tu->text, tu->len);
        }
    }
    if (c->has_image && with_image == 0) return fail(r, CONV_MALFORMED, "the sample has an image but no <image> placeholder");
    if (with_image > 1) return fail(r, CONV_MALFORMED, "<image> in %d turns; one image has one placeholder", with_image);
    if (!v1) {
        // preprocess_plain: exactly two turns, <image> in the first (roles are not checked)
        if (!c->has_image) return fail(r, CONV_MALFORMED, "the plain template needs a sample with an image");
        if (m->n != (o->generation_prompt ? 1 : 2))
            return fail(r, CONV_MALFORMED, "the plain template needs exactly %d turns, got %d",
                        o->generation_prompt ? 1 : 2, m->n);
        if (image_turn != 0) return fail(r, CONV_MALFORMED, "the plain template needs <image> in the first turn");
        return CONV_OK;
    }
    if (m->n == 0) return fail(r, CONV_MALFORMED, "no turns%s", first ? " after dropping the leading gpt turn" : "");
    for (int j = 0; j < m->n; j++) {
        if ((int)m->role[j] != j % 2)
            return fail(r, CONV_MALFORMED, "turn %d is from %s; turns must alternate human, gpt", first + j,
                        m->role[j] == CONV_HUMAN ? "human" : "gpt");
        // get_prompt writes an empty message as "ROLE:" without separator,
        // which fuses it with the next turn: no sample LLaVA could learn from.
        if (m->msg[j].n == 0)
            return fail(r, CONV_MALFORMED, "turn %d: empty %s", first + j, m->role[j] == CONV_GPT ? "answer" : "question");
    }
    if (o->generation_prompt && m->role[m->n - 1] != CONV_HUMAN)
        return fail(r, CONV_MALFORMED, "a generation prompt must end with a human turn");
    if (!o->generation_prompt && m->role[m->n - 1] != CONV_GPT)
        return fail(r, CONV_MALFORMED, m->n == 1 ? "no gpt turn (nothing to learn)"
                                                 : "the last turn is from human (no answer to learn)");
    return CONV_OK;
}

// Conversation.get_prompt() with every answer marked.
static void build_prompt(const ConvOptions *o, const Messages *m, Prompt *p) {
    if (o->tmpl == CONV_PLAIN) {  // source[0] = "<image>"; + caption + sep "\n"
        prompt_add(p, IMAGE, IMAGE_LEN, 0);
        if (m->n > 1) {
            prompt_add(p, m->msg[1].b, m->msg[1].n, 1);
            prompt_add(p, "\n", 1, 1);
        }
        return;
    }
    const char *system = o->system ? o->system : SYSTEM[o->tmpl];
    prompt_add(p, system, strlen(system), 0);
    prompt_add(p, " ", 1, 0);
    for (int j = 0; j < m->n; j++) {
        if (m->role[j] == CONV_HUMAN) {
            prompt_add(p, "USER: ", 6, 0);
            prompt_add(p, m->msg[j].b, m->msg[j].n, 0);
            prompt_add(p, " ", 1, 0);
        } else {
            // "ASSISTANT: " + answer + "</s>": LLaVA's instruction length is
            // that of "...ASSISTANT: " minus its trailing "▁", so the space
            // before the answer goes with the answer.
            prompt_add(p, "ASSISTANT:", 10, 0);
            prompt_add(p, " ", 1, 1);
            prompt_add(p, m->msg[j].b, m->msg[j].n, 1);
            prompt_add(p, "</s>", 4, 1);
        }
    }
    if (o->generation_prompt) prompt_add(p, "ASSISTANT:", 10, 0);
}

// Tokenizes one <image>-separated chunk [a, b) of the prompt twice: with BPE
// breaks where targets begin and end (our ids and labels) and plainly (what
// LLaVA feeds the model). Appends ours; returns the first index (in r->ids)
// where the two differ, or -1.
static int encode_chunk(const Tokenizer *t, const Prompt *p, size_t a, size_t b, ConvResult *r, TokenIds *whole) {
    size_t *breaks = xmalloc((size_t)(p->n + 1) * sizeof *breaks);
    uint8_t *seg_target = xmalloc((size_t)p->n + 1);
    int first = 0;
    while (first + 1 < p->n && p->start[first + 1] <= a) first++;
    int nb = 0;
    seg_target[0] = p->n ? p->target[first] : 0;
    for (int k = first + 1; k < p->n && p->start[k] < b; k++) {
        breaks[nb++] = p->start[k] - a;
        seg_target[nb] = p->target[k];
    }
    TokenIds segs = {0};
    const int n0 = r->ids.n;
    tokenizer_encode_segments(t, p->text.b + a, b - a, 0, breaks, nb, &r->ids, &segs);
    for (int i = 0; i < segs.n; i++)
        token_ids_push(&r->labels, seg_target[segs.data[i]] ? r->ids.data[n0 + i] : CONV_IGNORE_INDEX);
    token_ids_clear(whole);
    tokenizer_encode(t, p->text.b + a, b - a, 0, whole);
    int diff = -1;
    for (int i = 0; diff < 0 && i < (whole->n > segs.n ? whole->n : segs.n); i++)
        if (i >= whole->n || i >= segs.n || whole->data[i] != r->ids.data[n0 + i]) diff = n0 + i;
    token_ids_free(&segs);
    free(breaks);
    free(seg_target);
    return diff;
}

// image_seq_length positions of image_token_index, no loss (the HF LLaVA
// processor's layout); the first marks image_start.
static void push_image(const ConvOptions *o, ConvResult *r) {
    if (r->image_start < 0) r->image_start = r->ids.n;
    for (int k = 0; k < o->image_seq_length; k++) {
        token_ids_push(&r->ids, o->image_token_index);
        token_ids_push(&r->labels, CONV_IGNORE_INDEX);
    }
}

// ---- LLaVA-NeXT chat templates (qwen_2, llama_3) ---------------------------

// One message tokenized on its own, split at <image> (an added token, so
// tokenizers splits there too); its tokens are targets when `target`.
static void encode_message(const Tokenizer *t, const ConvOptions *o, const char *s, size_t n, int target,
                           ConvResult *r) {
    for (size_t a = 0;;) {
        const char *hit = find_image(s + a, n - a);
        size_t b = hit ? (size_t)(hit - s) : n;
        const int n0 = r->ids.n;
        tokenizer_encode(t, s + a, b - a, 0, &r->ids);
        for (int i = n0; i < r->ids.n; i++) token_ids_push(&r->labels, target ? r->ids.data[i] : CONV_IGNORE_INDEX);
        if (!hit) break;
        push_image(o, r);
        a = b + IMAGE_LEN;
    }
}

// The text of one message in the template's spelling.
static void chat_message(ConvTemplate tmpl, const char *role, const char *s, size_t n, int first, Buf *out) {
    out->n = 0;
    buf_add(out, "", 0);
    if (tmpl == CONV_QWEN_2) {
        buf_add(out, "<|im_start|>", 12);
        buf_add(out, role, strlen(role));
        buf_add(out, "\n", 1);
        buf_add(out, s, n);
        buf_add(out, "<|im_end|>\n", 11);
        return;
    }
    size_t a, b;
    py_strip(s, n, &a, &b);  // Jinja's trim
    if (first) buf_add(out, "<|begin_of_text|>", 17);
    buf_add(out, "<|start_header_id|>", 19);
    buf_add(out, role, strlen(role));
    buf_add(out, "<|end_header_id|>\n\n", 19);
    buf_add(out, s + a, b - a);
    buf_add(out, "<|eot_id|>", 10);
}

static void build_chat(const Tokenizer *t, const ConvOptions *o, const Messages *m, ConvResult *r) {
    const int qwen = o->tmpl == CONV_QWEN_2;
    Buf msg = {0};
    const char *sys = o->system ? o->system : qwen ? QWEN_SYSTEM : LLAMA3_SYSTEM;
    chat_message(o->tmpl, "system", sys, strlen(sys), 1, &msg);
    encode_message(t, o, msg.b, msg.n, 0, r);
    for (int j = 0; j < m->n; j++) {
        int gpt = m->role[j] == CONV_GPT;
        chat_message(o->tmpl, gpt ? "assistant" : "user", m->msg[j].b, m->msg[j].n, 0, &msg);
        encode_message(t, o, msg.b, msg.n, gpt, r);
    }
    if (o->generation_prompt) {
        const char *gen = qwen ? "<|im_start|>assistant\n" : "<|start_header_id|>assistant<|end_header_id|>\n\n";
        encode_message(t, o, gen, strlen(gen), 0, r);
    }
    free(msg.b);
    if (o->generation_prompt) {  // a prompt has no labels
        for (int i = 0; i < r->labels.n; i++) r->labels.data[i] = CONV_IGNORE_INDEX;
        return;
    }
    // The tokens NeXT sets back to targets wherever they are, by id.
    static const char *const qwen_unmask[] = {"\xC4\x8A", "<|im_start|>", "<|im_end|>"};
    static const char *const llama3_unmask[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                                "<|eot_id|>", "\n\n"};
    const char *const *names = qwen ? qwen_unmask : llama3_unmask;
    int n_names = qwen ? 3 : 5;
    int32_t ids[5];
    for (int k = 0; k < n_names; k++) ids[k] = tokenizer_token_to_id(t, names[k]);
    for (int i = 0; i < r->ids.n; i++)
        for (int k = 0; k < n_names; k++)
            if (ids[k] >= 0 && r->ids.data[i] == ids[k] && r->ids.data[i] != o->image_token_index)
                r->labels.data[i] = r->ids.data[i];
}

ConvStatus conv_build(const Tokenizer *t, const Conversation *c, const ConvOptions *o, ConvResult *r) {
    CHECK(o->tmpl >= CONV_PLAIN && o->tmpl <= CONV_LLAMA_3, "bad template %d", (int)o->tmpl);
    CHECK(!c->has_image || o->image_seq_length > 0, "image_seq_length must be > 0 for samples with an image");
    token_ids_clear(&r->ids);
    token_ids_clear(&r->labels);
    r->n_before_truncation = r->truncated = r->n_targets = 0;
    r->image_start = r->mismatch_at = -1;
    r->reason[0] = 0;
    Messages m = {0};
    Prompt p = {0};
    ConvStatus st = prepare(c, o, &m, r);
    if (st != CONV_OK) goto done;
    if (is_chat_template(o->tmpl)) {
        build_chat(t, o, &m, r);
        goto finish;
    }
    build_prompt(o, &m, &p);

    // tokenizer_image_token: chunks between <image>s, each tokenized on its
    // own; the first keeps its BOS, the image positions go between chunks.
    if (tokenizer_adds_bos(t)) {
        token_ids_push(&r->ids, tokenizer_bos_id(t));
        token_ids_push(&r->labels, CONV_IGNORE_INDEX);
    }
    TokenIds whole = {0};
    size_t a = 0;
    for (;;) {
        const char *hit = find_image(p.text.b + a, p.text.n - a);
        size_t b = hit ? (size_t)(hit - p.text.b) : p.text.n;
        int diff = encode_chunk(t, &p, a, b, r, &whole);
        if (diff >= 0 && r->mismatch_at < 0) r->mismatch_at = diff;
        if (!hit) break;
        push_image(o, r);
        a = b + IMAGE_LEN;
    }
    token_ids_free(&whole);

finish:
    r->n_before_truncation = r->ids.n;
    if (!o->generation_prompt && o->max_length > 0 && r->ids.n > o->max_length) {
        r->truncated = 1;
        r->ids.n = r->labels.n = o->max_length;
    }
    for (int i = 0; i < r->labels.n; i++) r->n_targets += r->labels.data[i] != CONV_IGNORE_INDEX;
    if (r->mismatch_at >= 0) {
        const char *tok = tokenizer_id_to_token(t, r->ids.data[r->mismatch_at < r->ids.n ? r->mismatch_at : 0]);
        st = fail(r, CONV_MASK_MISMATCH,
                  "at token %d (\"%s\"), building the prompt piece by piece gives other tokens than "
                  "tokenizing it whole: a BPE merge crosses the boundary of an answer",
                  r->mismatch_at, tok ? tok : "?");
    } else if (r->truncated && r->n_targets == 0) {
        st = fail(r, CONV_EMPTY_AFTER_TRUNCATION, "no answer token left in the first %d tokens (%d before truncation)",
                  o->max_length, r->n_before_truncation);
    } else if (r->truncated && r->image_start >= 0 && r->image_start + o->image_seq_length > o->max_length) {
        st = fail(r, CONV_IMAGE_TRUNCATED, "max_length %d cuts the image positions %d..%d", o->max_length,
                  r->image_start, r->image_start + o->image_seq_length - 1);
    }
done:
    if (st == CONV_MALFORMED) {
        token_ids_clear(&r->ids);
        token_ids_clear(&r->labels);
    }
    messages_free(&m);
    prompt_free(&p);
    return st;
}
