// data/conversation.c: the LLaVA conversations of tests/fixtures/conversation
// (made by scripts/make_conversation_fixtures.py: LLaVA's preprocess_plain /
// preprocess_v1 reimplemented with HF tokenizers, and an offset-based
// construction), then every edge case of the templates one by one; and the
// LLaVA-NeXT chat templates against tests/fixtures/conversation_chat.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "data/conversation.h"
#include "tests/testlib.h"

static Tokenizer *load_tok(const char *src, const char *form) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tokenizer/%s", src, form);
    Error err = {{0}};
    Tokenizer *t = NULL;
    CHECK(tokenizer_load(&t, dir, &err) == 0, "%s", err.msg);
    return t;
}

static int same_ids(const TokenIds *a, const cJSON *b) {
    if (a->n != cJSON_GetArraySize(b)) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->data[i] != cJSON_GetArrayItem(b, i)->valueint) return 0;
    return 1;
}

// tests/fixtures/FOLDER/cases.json, parsed.
static cJSON *load_cases(const char *src, const char *folder) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s/cases.json", src, folder);
    Error err = {{0}};
    cJSON *root = json_parse_file(path, &err);
    CHECK(root, "%s", err.msg);
    return root;
}

// A fixture case's turns (into tv[32]), conversation and options.
static void read_case(const cJSON *c, ConvTurn *tv, Conversation *conv, ConvOptions *o) {
    int nt = 0;
    const cJSON *tu;
    cJSON_ArrayForEach(tu, cJSON_GetObjectItemCaseSensitive(c, "turns")) {
        CHECK(nt < 32, "too many turns");
        tv[nt].role = (ConvRole)conv_role_from_name(cJSON_GetArrayItem(tu, 0)->valuestring);
        tv[nt].text = cJSON_GetArrayItem(tu, 1)->valuestring;
        tv[nt].len = strlen(tv[nt].text);
        nt++;
    }
    *conv = (Conversation){tv, nt, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "has_image"))};
    memset(o, 0, sizeof *o);
    CHECK(conv_template_from_name(cJSON_GetObjectItemCaseSensitive(c, "template")->valuestring, &o->tmpl) == 0,
          "template");
    o->image_seq_length = cJSON_GetObjectItemCaseSensitive(c, "image_seq_length")->valueint;
    o->image_token_index = cJSON_GetObjectItemCaseSensitive(c, "image_token_index")->valueint;
    o->max_length = cJSON_GetObjectItemCaseSensitive(c, "max_length")->valueint;
}

static void check_fixtures(const char *src) {
    cJSON *root = load_cases(src, "conversation");
    Tokenizer *tok[2] = {load_tok(src, "legacy"), load_tok(src, "metaspace")};
    ConvResult r = {0};
    int n = 0, same_as_llava = 0, llava_masked = 0, llava_off = 0, truncated = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        const char *id = cJSON_GetObjectItemCaseSensitive(c, "id")->valuestring;
        const char *form = cJSON_GetObjectItemCaseSensitive(c, "tokenizer")->valuestring;
        ConvTurn tv[32];
        Conversation conv;
        ConvOptions o;
        read_case(c, tv, &conv, &o);
        const cJSON *llava = cJSON_GetObjectItemCaseSensitive(c, "llava");
        const cJSON *cons = cJSON_GetObjectItemCaseSensitive(c, "construct");
        const cJSON *cons_labels = cJSON_GetObjectItemCaseSensitive(cons, "labels");
        int crossing = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cons, "crossing"));
        int mismatch = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(llava, "mismatch"));
        int off = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(llava, "silently_off"));
        int any_target = 0;
        for (int i = 0; i < cJSON_GetArraySize(cons_labels); i++)
            any_target |= cJSON_GetArrayItem(cons_labels, i)->valueint != CONV_IGNORE_INDEX;
        ConvStatus want = crossing ? CONV_MASK_MISMATCH : any_target ? CONV_OK : CONV_EMPTY_AFTER_TRUNCATION;

        ConvStatus st = conv_build(tok[strcmp(form, "metaspace") == 0], &conv, &o, &r);
        EXPECT(st == want, "%s: status %s (%s), want %s", id, conv_status_reason(st), r.reason, conv_status_reason(want));
        EXPECT(same_ids(&r.ids, cJSON_GetObjectItemCaseSensitive(llava, "ids")), "%s: input ids differ from LLaVA's", id);
        EXPECT(same_ids(&r.labels, cons_labels), "%s: labels differ from the offset construction", id);
        if (!mismatch && !off) {
            EXPECT(same_ids(&r.labels, cJSON_GetObjectItemCaseSensitive(llava, "labels")), "%s: labels differ from LLaVA's", id);
            same_as_llava += same_ids(&r.labels, cJSON_GetObjectItemCaseSensitive(llava, "labels"));
        }
        int targets = 0;
        for (int i = 0; i < r.labels.n; i++) {
            targets += r.labels.data[i] != CONV_IGNORE_INDEX;
            EXPECT(r.labels.data[i] == CONV_IGNORE_INDEX || r.labels.data[i] == r.ids.data[i], "%s: label %d", id, i);
        }
        EXPECT(targets == r.n_targets && r.ids.n == r.labels.n, "%s: n_targets", id);
        EXPECT(r.truncated == (r.n_before_truncation > o.max_length) && r.ids.n <= o.max_length, "%s: truncation", id);
        llava_masked += mismatch;
        llava_off += off;
        truncated += r.truncated;
        n++;
    }
    printf("conversation fixtures: %d cases, labels identical to LLaVA's in %d; LLaVA masks %d whole samples "
           "(tokenization mismatch) and shifts %d silently; %d truncated\n",
           n, same_as_llava, llava_masked, llava_off, truncated);
    EXPECT(n >= 100 && same_as_llava >= 100 && truncated >= 4, "fixture coverage");
    conv_result_free(&r);
    tokenizer_free(tok[0]);
    tokenizer_free(tok[1]);
    cJSON_Delete(root);
}

// ---- edge cases ------------------------------------------------------------

#define TURN(role, s) {role, s, sizeof(s) - 1}

static ConvStatus build(const Tokenizer *t, ConvTemplate tmpl, const ConvTurn *turns, int n, int has_image, int max_length,
                        ConvResult *r) {
    Conversation c = {turns, n, has_image};
    ConvOptions o = {tmpl, 4, 7777, max_length, 0, NULL};
    return conv_build(t, &c, &o, r);
}

static void expect_malformed(const Tokenizer *t, ConvTemplate tmpl, const ConvTurn *turns, int n, int has_image,
                             const char *needle, const char *what) {
    ConvResult r = {0};
    ConvStatus st = build(t, tmpl, turns, n, has_image, 0, &r);
    EXPECT(st == CONV_MALFORMED && strstr(r.reason, needle) && r.ids.n == 0,
           "%s: status %s, reason \"%s\" (want malformed, \"%s\")", what, conv_status_reason(st), r.reason, needle);
    EXPECT(strcmp(conv_status_reason(st), "malformed conversation") == 0, "%s: reason category", what);
    conv_result_free(&r);
}

static int first_target(const ConvResult *r) {
    for (int i = 0; i < r->labels.n; i++)
        if (r->labels.data[i] != CONV_IGNORE_INDEX) return i;
    return -1;
}

static void check_edge_cases(const char *src) {
    Tokenizer *t = load_tok(src, "legacy");
    const ConvTurn good[] = {TURN(CONV_HUMAN, "<image>\nWhat is this?"), TURN(CONV_GPT, "A cat.")};
    ConvResult r = {0}, r2 = {0};

    // names
    ConvTemplate tm;
    EXPECT(conv_template_from_name("v1", &tm) == 0 && tm == CONV_VICUNA_V1, "v1 = vicuna_v1");
    EXPECT(conv_template_from_name("vicuna_v1", &tm) == 0 && tm == CONV_VICUNA_V1, "vicuna_v1");
    EXPECT(conv_template_from_name("llava_v1", &tm) == 0 && tm == CONV_LLAVA_V1, "llava_v1");
    EXPECT(conv_template_from_name("plain", &tm) == 0 && tm == CONV_PLAIN, "plain");
    EXPECT(conv_template_from_name("mpt", &tm) == -1, "unknown template");
    EXPECT(conv_role_from_name("human") == CONV_HUMAN && conv_role_from_name("gpt") == CONV_GPT &&
           conv_role_from_name("user") == -1, "roles");

    // every template: the image run, BOS, what is masked
    for (int k = 0; k < 3; k++) {
        ConvStatus st = build(t, (ConvTemplate)k, good, 2, 1, 0, &r);
        EXPECT(st == CONV_OK && r.ids.data[0] == tokenizer_bos_id(t) && r.labels.data[0] == CONV_IGNORE_INDEX,
               "%s: ok, BOS masked", conv_template_name((ConvTemplate)k));
        int run = 0;
        for (int i = 0; i < r.ids.n; i++) run += r.ids.data[i] == 7777 && r.labels.data[i] == CONV_IGNORE_INDEX;
        EXPECT(run == 4 && r.image_start > 0 && r.ids.data[r.image_start] == 7777, "%s: 4 image positions",
               conv_template_name((ConvTemplate)k));
        EXPECT(r.labels.data[r.labels.n - 1] == (k == CONV_PLAIN ? 13 : tokenizer_eos_id(t)),
               "%s: the last target is %s", conv_template_name((ConvTemplate)k), k == CONV_PLAIN ? "\\n" : "</s>");
        size_t len;
        TokenIds ans = {0};
        for (int i = 0; i < r.labels.n; i++)
            if (r.labels.data[i] != CONV_IGNORE_INDEX) token_ids_push(&ans, r.labels.data[i]);
        char *txt = tokenizer_decode(t, ans.data, ans.n, 0, &len);
        EXPECT(strcmp(txt, k == CONV_PLAIN ? "A cat.\n" : "A cat.</s>") == 0, "%s: targets decode to \"%s\"",
               conv_template_name((ConvTemplate)k), txt);
        free(txt);
        token_ids_free(&ans);
    }
    // vicuna_v1 and llava_v1 differ only in the system prompt
    build(t, CONV_VICUNA_V1, good, 2, 1, 0, &r);
    build(t, CONV_LLAVA_V1, good, 2, 1, 0, &r2);
    char *a = tokenizer_decode(t, r.ids.data, r.ids.n, 1, NULL), *b = tokenizer_decode(t, r2.ids.data, r2.ids.n, 1, NULL);
    EXPECT(strstr(a, "curious user") && strstr(b, "curious human") && strstr(b, "human's questions"), "system prompts");
    free(a);
    free(b);

    // first turn from gpt: dropped by v1 (same sample as without it)
    const ConvTurn gpt_first[] = {TURN(CONV_GPT, "ignored"), good[0], good[1]};
    build(t, CONV_VICUNA_V1, good, 2, 1, 0, &r);
    EXPECT(build(t, CONV_VICUNA_V1, gpt_first, 3, 1, 0, &r2) == CONV_OK && r.ids.n == r2.ids.n &&
           memcmp(r.ids.data, r2.ids.data, (size_t)r.ids.n * 4) == 0, "leading gpt turn dropped");

    // malformed conversations
    const ConvTurn no_gpt[] = {good[0]};
    expect_malformed(t, CONV_VICUNA_V1, no_gpt, 1, 1, "no gpt turn", "no gpt turn");
    const ConvTurn ends_human[] = {good[0], good[1], TURN(CONV_HUMAN, "And?")};
    expect_malformed(t, CONV_VICUNA_V1, ends_human, 3, 1, "last turn is from human", "ends with human");
    const ConvTurn empty_answer[] = {good[0], TURN(CONV_GPT, "")};
    expect_malformed(t, CONV_VICUNA_V1, empty_answer, 2, 1, "empty answer", "empty answer");
    const ConvTurn empty_q[] = {TURN(CONV_HUMAN, ""), good[1]};
    expect_malformed(t, CONV_VICUNA_V1, empty_q, 2, 0, "empty question", "empty question");
    const ConvTurn two_human[] = {good[0], TURN(CONV_HUMAN, "again"), good[1]};
    expect_malformed(t, CONV_VICUNA_V1, two_human, 3, 1, "alternate", "two human turns in a row");
    const ConvTurn only_gpt[] = {TURN(CONV_GPT, "hello")};
    expect_malformed(t, CONV_VICUNA_V1, only_gpt, 1, 0, "no turns", "only a gpt turn");
    const ConvTurn no_placeholder[] = {TURN(CONV_HUMAN, "What is this?"), good[1]};
    expect_malformed(t, CONV_VICUNA_V1, no_placeholder, 2, 1, "no <image> placeholder", "image without placeholder");
    expect_malformed(t, CONV_VICUNA_V1, good, 2, 0, "without an image", "<image> in a text-only sample");
    const ConvTurn two_places[] = {good[0], good[1], TURN(CONV_HUMAN, "<image> and this?"), good[1]};
    expect_malformed(t, CONV_VICUNA_V1, two_places, 4, 1, "in 2 turns", "<image> in two turns");
    expect_malformed(t, CONV_PLAIN, gpt_first, 3, 1, "exactly 2 turns", "plain with three turns");
    // plain ignores roles, as preprocess_plain: the first turn is the image
    // prompt and the second the caption, from whoever (issue 9, item 14).
    build(t, CONV_PLAIN, good, 2, 1, 0, &r);
    const ConvTurn swapped[] = {{CONV_GPT, good[0].text, good[0].len}, {CONV_HUMAN, good[1].text, good[1].len}};
    const ConvTurn both_human[] = {good[0], {CONV_HUMAN, good[1].text, good[1].len}};
    for (int v = 0; v < 2; v++) {
        EXPECT(build(t, CONV_PLAIN, v ? both_human : swapped, 2, 1, 0, &r2) == CONV_OK && r.ids.n == r2.ids.n &&
                   memcmp(r.ids.data, r2.ids.data, (size_t)r.ids.n * 4) == 0 &&
                   memcmp(r.labels.data, r2.labels.data, (size_t)r.ids.n * 4) == 0,
               "plain, %s: the same ids and labels as human, gpt", v ? "human + human" : "gpt first");
    }
    const ConvTurn caption_first[] = {TURN(CONV_HUMAN, "Describe."), TURN(CONV_GPT, "<image> a cat")};
    expect_malformed(t, CONV_PLAIN, caption_first, 1, 0, "needs a sample with an image", "plain without image");
    expect_malformed(t, CONV_PLAIN, caption_first, 2, 1, "in the first turn", "plain, <image> in the caption");

    // text-only sample: no image positions
    const ConvTurn text_only[] = {TURN(CONV_HUMAN, "Hi there"), TURN(CONV_GPT, "Hello.")};
    EXPECT(build(t, CONV_VICUNA_V1, text_only, 2, 0, 0, &r) == CONV_OK && r.image_start == -1 && r.n_targets > 0,
           "text-only sample");

    // truncation: answers cut, all answers cut, image cut
    const ConvTurn two_rounds[] = {good[0], TURN(CONV_GPT, "A cat on a mat, sitting quietly in the sun."),
                                   TURN(CONV_HUMAN, "What color is the mat?"), TURN(CONV_GPT, "Red, like a tomato.")};
    build(t, CONV_VICUNA_V1, two_rounds, 4, 1, 0, &r2);
    const int full = r2.ids.n, ft = first_target(&r2);
    EXPECT(build(t, CONV_VICUNA_V1, two_rounds, 4, 1, full - 3, &r) == CONV_OK && r.truncated &&
           r.n_before_truncation == full && r.ids.n == full - 3 && memcmp(r.labels.data, r2.labels.data, (size_t)r.ids.n * 4) == 0,
           "truncation keeps a prefix with the same labels");
    EXPECT(build(t, CONV_VICUNA_V1, two_rounds, 4, 1, full, &r) == CONV_OK && !r.truncated, "exactly max_length fits");
    ConvStatus st = build(t, CONV_VICUNA_V1, two_rounds, 4, 1, ft, &r);
    EXPECT(st == CONV_EMPTY_AFTER_TRUNCATION && r.n_targets == 0 && r.ids.n == ft &&
           strcmp(conv_status_reason(st), "empty answer after truncation") == 0, "all answers truncated away");
    const ConvTurn late_image[] = {TURN(CONV_HUMAN, "Hi"), TURN(CONV_GPT, "Hello."), TURN(CONV_HUMAN, "<image> what?"),
                                   TURN(CONV_GPT, "A cat.")};
    build(t, CONV_VICUNA_V1, late_image, 4, 1, 0, &r2);
    st = build(t, CONV_VICUNA_V1, late_image, 4, 1, r2.image_start + 2, &r);
    EXPECT(st == CONV_IMAGE_TRUNCATED && r.n_targets > 0, "truncation through the image positions: %s",
           conv_status_reason(st));

    // generation prompt = the training sample up to its (last) answer
    Conversation gc = {good, 1, 1};
    ConvOptions go = {CONV_VICUNA_V1, 4, 7777, 8, 1, NULL};
    build(t, CONV_VICUNA_V1, good, 2, 1, 0, &r2);
    EXPECT(conv_build(t, &gc, &go, &r) == CONV_OK && r.n_targets == 0 && !r.truncated &&
           r.ids.n == first_target(&r2) && memcmp(r.ids.data, r2.ids.data, (size_t)r.ids.n * 4) == 0,
           "generation prompt is the training prompt before the answer");
    go.tmpl = CONV_PLAIN;
    EXPECT(conv_build(t, &gc, &go, &r) == CONV_OK && r.ids.n == 5, "plain generation prompt: BOS + image");
    go.tmpl = CONV_VICUNA_V1;
    gc.n_turns = 2;
    EXPECT(conv_build(t, &gc, &go, &r) == CONV_MALFORMED && strstr(r.reason, "end with a human turn"),
           "a generation prompt needs a question last");

    conv_result_free(&r);
    conv_result_free(&r2);
    tokenizer_free(t);
}

// A tokenizer with a merge ":" + "▁" crosses the start of every answer: the
// sample must be reported, not masked.
static void check_mismatch(void) {
    static const char json[] =
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
        " {\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
        " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"},"
        " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},"
        " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
        " \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"\xE2\x96\x81\": 3, \":\": 4, \":\xE2\x96\x81\": 5, \"a\": 6},"
        " \"merges\": [[\":\", \"\xE2\x96\x81\"]]}}";
    char tmp[] = "/tmp/llava_conv_XXXXXX", path[4200];
    CHECK(mkdtemp(tmp), "mkdtemp");
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    Error err = {{0}};
    CHECK(write_file_atomic(path, json, strlen(json), &err) == 0, "%s", err.msg);
    Tokenizer *t = NULL;
    EXPECT(tokenizer_load(&t, tmp, &err) == 0, "%s", err.msg);
    unlink(path);
    rmdir(tmp);
    if (!t) return;
    const ConvTurn turns[] = {TURN(CONV_HUMAN, "a"), TURN(CONV_GPT, "a")};
    ConvResult r = {0};
    ConvStatus st = build(t, CONV_VICUNA_V1, turns, 2, 0, 0, &r);
    EXPECT(st == CONV_MASK_MISMATCH && r.mismatch_at > 0 && r.ids.n > 0 && strstr(r.reason, "token"),
           "merge across an answer boundary: %s (%s)", conv_status_reason(st), r.reason);
    EXPECT(r.mismatch_at < r.ids.n && r.ids.data[r.mismatch_at] == 4, "the mismatch is at ':' (ours) vs ':▁' (whole)");
    conv_result_free(&r);
    tokenizer_free(t);
}

// The LLaVA-NeXT chat templates (qwen_2, llama_3) on the byte-level fixture
// tokenizers, against scripts/make_chat_conversation_fixtures.py's
// reimplementation of NeXT's preprocess_qwen / preprocess_llama3.
static void check_chat_fixtures(const char *src) {
    cJSON *root = load_cases(src, "conversation_chat");
    Tokenizer *tok[2] = {load_tok(src, "../tokenizer_bytelevel/qwen2"), load_tok(src, "../tokenizer_bytelevel/llama3")};
    ConvResult r = {0};
    int n = 0, truncated = 0, with_image = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        const char *id = cJSON_GetObjectItemCaseSensitive(c, "id")->valuestring;
        const char *form = cJSON_GetObjectItemCaseSensitive(c, "tokenizer")->valuestring;
        ConvTurn tv[32];
        Conversation conv;
        ConvOptions o;
        read_case(c, tv, &conv, &o);
        ConvStatus st = conv_build(tok[strcmp(form, "llama3") == 0], &conv, &o, &r);
        EXPECT(st == CONV_OK || (r.truncated && st != CONV_MALFORMED), "%s: status %s (%s)", id,
               conv_status_reason(st), r.reason);
        EXPECT(same_ids(&r.ids, cJSON_GetObjectItemCaseSensitive(c, "ids")), "%s: input ids differ from NeXT's", id);
        EXPECT(same_ids(&r.labels, cJSON_GetObjectItemCaseSensitive(c, "labels")), "%s: labels differ from NeXT's", id);
        truncated += r.truncated;
        with_image += conv.has_image;
        n++;
    }
    printf("chat template fixtures: %d cases (%d with an image, %d truncated)\n", n, with_image, truncated);
    EXPECT(n >= 100 && truncated >= 20 && with_image >= 50, "chat fixture coverage");
    // A generation prompt ends with the assistant header and has no labels.
    ConvTurn q = {CONV_HUMAN, "<image>\nWhat is it?", 19};
    Conversation conv = {&q, 1, 1};
    ConvOptions o = {.tmpl = CONV_QWEN_2, .image_seq_length = 8,
                     .image_token_index = tokenizer_token_to_id(tok[0], "<image>"), .generation_prompt = 1};
    EXPECT(conv_build(tok[0], &conv, &o, &r) == CONV_OK && r.n_targets == 0, "qwen_2 generation prompt: %s", r.reason);
    char *text = tokenizer_decode(tok[0], r.ids.data, r.ids.n, 0, NULL);
    const char *tail = "<|im_start|>assistant\n";
    EXPECT(strlen(text) > strlen(tail) && strcmp(text + strlen(text) - strlen(tail), tail) == 0,
           "qwen_2 prompt ends with the assistant header: %s", text);
    free(text);
    o.tmpl = CONV_LLAMA_3;
    o.image_token_index = tokenizer_token_to_id(tok[1], "<image>");
    EXPECT(conv_build(tok[1], &conv, &o, &r) == CONV_OK && r.n_targets == 0 &&
               r.ids.data[0] == tokenizer_token_to_id(tok[1], "<|begin_of_text|>"),
           "llama_3 generation prompt: %s", r.reason);
    text = tokenizer_decode(tok[1], r.ids.data, r.ids.n, 0, NULL);
    tail = "<|start_header_id|>assistant<|end_header_id|>\n\n";
    EXPECT(strlen(text) > strlen(tail) && strcmp(text + strlen(text) - strlen(tail), tail) == 0,
           "llama_3 prompt ends with the assistant header: %s", text);
    free(text);
    conv_result_free(&r);
    tokenizer_free(tok[0]);
    tokenizer_free(tok[1]);
    cJSON_Delete(root);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    check_fixtures(src);
    check_chat_fixtures(src);
    check_edge_cases(src);
    check_mismatch();
    return test_summary("test_conversation");
}
