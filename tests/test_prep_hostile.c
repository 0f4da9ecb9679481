// `llava prep` on a data set built to fail in every way the issue names:
// corrupt and truncated JPEG/PNG, a text file named .jpg, a decompression
// bomb, a missing image, malformed JSON (line and column in the report), no
// gpt turn, a sample longer than max_length (truncated, and one whose answer
// truncation removes), an image cut by truncation. Each lands in report.json
// with the right reason, prep finishes, the counts add up to the input size,
// and what is written equals the conversation and image modules' own output.
//
// Inputs: the tokenizer fixture (tests/fixtures/tokenizer/legacy), the image
// fixtures (tests/fixtures/images), tiny_llava15's config.json with the
// vocabulary widened to the tokenizer's 4008 ids and <image> = 4004.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "data/conversation.h"
#include "data/image.h"
#include "data/manifest.h"
#include "data/prep_model.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "tests/testlib.h"

static const char *SRC;
static char DIR_[512];

static void copy(const char *from, const char *to) {
    Error err = {{0}};
    size_t len = 0;
    char *b = read_file(from, &len, &err);
    CHECK(b && write_file_atomic(to, b, len, &err) == 0, "%s", err.msg);
    free(b);
}

static void make_model(const char *model) {
    Error err = {{0}};
    CHECK(make_dirs(model, &err) == 0, "%s", err.msg);
    char path[1024], dst[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny_llava15/config.json", SRC);
    cJSON *cfg = json_parse_file(path, &err);
    CHECK(cfg, "%s", err.msg);
    cJSON_SetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "text_config"), "vocab_size"), 4008);
    cJSON_SetNumberValue(cJSON_GetObjectItem(cfg, "image_token_index"), 4004);
    char *text = cJSON_Print(cfg);
    snprintf(dst, sizeof dst, "%s/config.json", model);
    CHECK(write_file_atomic(dst, text, strlen(text), &err) == 0, "%s", err.msg);
    cJSON_free(text);
    cJSON_Delete(cfg);
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "tokenizer_config.json" : "tokenizer.json";
        snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/legacy/%s", SRC, name);
        snprintf(dst, sizeof dst, "%s/%s", model, name);
        copy(path, dst);
    }
}

static void make_images(const char *images) {
    Error err = {{0}};
    CHECK(make_dirs(images, &err) == 0, "%s", err.msg);
    const char *files[][2] = {
        {"src/jpeg_rgb_444.jpg", "good.jpg"},      {"src/png_3x2.png", "good.png"},
        {"bad/truncated.jpg", "truncated.jpg"},    {"bad/truncated.png", "truncated.png"},
        {"bad/corrupt.png", "corrupt.png"},        {"bad/text.jpg", "text.jpg"},
        {"bad/bomb.png", "bomb.png"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char from[1024], to[1024];
        snprintf(from, sizeof from, "%s/tests/fixtures/images/%s", SRC, files[i][0]);
        snprintf(to, sizeof to, "%s/%s", images, files[i][1]);
        copy(from, to);
    }
}

#define Q(s) "{\"from\": \"human\", \"value\": \"" s "\"}"
#define A(s) "{\"from\": \"gpt\", \"value\": \"" s "\"}"
#define LONG "word word word word word word word word word word word word word word word word word word word word"

// id, JSON of the item (one line), expected reason ("" = written cleanly), expected action
static const char *CASES[][4] = {
    {"good", "{\"id\": \"good\", \"image\": \"good.jpg\", \"conversations\": [" Q("What is it?\\n<image>") ", " A("A cat.") "]}", "", "written"},
    {"goodpng", "{\"id\": \"goodpng\", \"image\": \"good.png\", \"conversations\": [" Q("<image>\\nColour?") ", " A("Red.") "]}", "", "written"},
    {"text", "{\"id\": \"text\", \"conversations\": [" Q("Hi") ", " A("Hello.") ", " Q("Bye") ", " A("Goodbye.") "]}", "", "written"},
    {"truncjpg", "{\"id\": \"truncjpg\", \"image\": \"truncated.jpg\", \"conversations\": [" Q("<image>\\nQ") ", " A("A") "]}", "corrupt_image", "skipped"},
    {"truncpng", "{\"id\": \"truncpng\", \"image\": \"truncated.png\", \"conversations\": [" Q("<image>\\nQ") ", " A("A") "]}", "corrupt_image", "skipped"},
    {"corrupt", "{\"id\": \"corrupt\", \"image\": \"corrupt.png\", \"conversations\": [" Q("<image>\\nQ") ", " A("A") "]}", "corrupt_image", "skipped"},
    {"textjpg", "{\"id\": \"textjpg\", \"image\": \"text.jpg\", \"conversations\": [" Q("<image>\\nQ") ", " A("A") "]}", "corrupt_image", "skipped"},
    {"bomb", "{\"id\": \"bomb\", \"image\": \"bomb.png\", \"conversations\": [" Q("<image>\\nQ") ", " A("A") "]}", "corrupt_image", "skipped"},
    {"missing", "{\"id\": \"missing\", \"image\": \"no/such.jpg\", \"conversations\": [" Q("<image>\\nQ") ", " A("A") "]}", "missing_image", "skipped"},
    {"badjson", "{\"id\": \"badjson\", \"conversations\": [{\"from\": \"human\" \"value\": \"x\"}]}", "malformed_json", "skipped"},
    {"nogpt", "{\"id\": \"nogpt\", \"conversations\": [" Q("Anyone?") "]}", "malformed_conversation", "skipped"},
    {"longans", "{\"id\": \"longans\", \"conversations\": [" Q("Talk") ", " A(LONG " " LONG " " LONG) "]}", "truncated", "written"},
    {"longq", "{\"id\": \"longq\", \"conversations\": [" Q(LONG " " LONG " " LONG) ", " A("Yes.") "]}", "empty_answer_after_truncation", "skipped"},
};
#define N_CASES ((int)(sizeof CASES / sizeof *CASES))

static void write_data(const char *path, int jsonl) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "%s", path);
    if (!jsonl) fputs("[\n", f);
    for (int i = 0; i < N_CASES; i++) fprintf(f, "%s%s\n", CASES[i][1], !jsonl && i + 1 < N_CASES ? "," : "");
    if (!jsonl) fputs("]\n", f);
    fclose(f);
}

static int find_case(const char *id) {
    for (int i = 0; i < N_CASES; i++)
        if (strcmp(CASES[i][0], id) == 0) return i;
    return -1;
}

// report.json: one entry per problem with the right reason, action, line.
static void check_report(const char *out, int jsonl, const char *const *override_reason) {
    char path[1024];
    snprintf(path, sizeof path, "%s/report.json", out);
    Error err = {{0}};
    cJSON *rep = json_parse_file(path, &err);
    EXPECT(rep != NULL, "%s", err.msg);
    if (!rep) return;
    const cJSON *c = cJSON_GetObjectItem(rep, "counts");
    const int items = cJSON_GetObjectItem(c, "items")->valueint, written = cJSON_GetObjectItem(c, "written")->valueint;
    const int skipped = cJSON_GetObjectItem(c, "skipped")->valueint;
    EXPECT(items == N_CASES && written + skipped == items, "%s: counts add up: %d items = %d written + %d skipped",
           out, items, written, skipped);
    int seen[64] = {0}, want_written = 0, want_entries = 0;
    for (int i = 0; i < N_CASES; i++) {
        const char *reason = override_reason && override_reason[i] ? override_reason[i] : CASES[i][2];
        want_written += strcmp(reason, "") == 0 || strcmp(reason, "truncated") == 0;
        want_entries += reason[0] != 0;
    }
    EXPECT(written == want_written, "%s: %d written, expected %d", out, written, want_written);
    const cJSON *q;
    int entries = 0;
    cJSON_ArrayForEach(q, cJSON_GetObjectItem(rep, "problems")) {
        entries++;
        const char *id = cJSON_GetObjectItem(q, "id")->valuestring;
        const int k = find_case(id);
        EXPECT(k >= 0, "%s: entry for unknown id '%s'", out, id);
        if (k < 0) continue;
        seen[k]++;
        const char *want = override_reason && override_reason[k] ? override_reason[k] : CASES[k][2];
        const char *reason = cJSON_GetObjectItem(q, "reason")->valuestring;
        const char *action = cJSON_GetObjectItem(q, "action")->valuestring;
        const int line = cJSON_GetObjectItem(q, "line")->valueint, index = cJSON_GetObjectItem(q, "index")->valueint;
        const char *want_action = strcmp(want, "truncated") == 0 ? "written" : "skipped";
        EXPECT(strcmp(reason, want) == 0 && strcmp(action, want_action) == 0, "%s: '%s': %s/%s, expected %s/%s (%s)",
               out, id, reason, action, want, want_action, cJSON_GetObjectItem(q, "detail")->valuestring);
        EXPECT(index == k && line == k + (jsonl ? 1 : 2), "%s: '%s' at index %d line %d", out, id, index, line);
        if (strstr(want, "_image"))
            EXPECT(strstr(cJSON_GetObjectItem(q, "file")->valuestring, "/images/") != NULL,
                   "%s: image problem names the image file", out);
        if (strcmp(want, "malformed_json") == 0) {
            char where[64];
            // the bad byte is the '"' of "value" (no ',' before it)
            const int col = (int)(strstr(CASES[k][1], "\"value\"") - CASES[k][1]) + 1;
            snprintf(where, sizeof where, "line %d, column %d", k + (jsonl ? 1 : 2), col);
            EXPECT(strstr(cJSON_GetObjectItem(q, "detail")->valuestring, where) != NULL, "%s: malformed JSON at %s: %s",
                   out, where, cJSON_GetObjectItem(q, "detail")->valuestring);
        }
    }
    EXPECT(entries == want_entries, "%s: %d entries, expected %d", out, entries, want_entries);
    for (int i = 0; i < N_CASES; i++) {
        const char *want = override_reason && override_reason[i] ? override_reason[i] : CASES[i][2];
        EXPECT(seen[i] == (want[0] != 0), "%s: '%s' has %d entries", out, CASES[i][0], seen[i]);
    }
    cJSON_Delete(rep);
}

// The written "good" sample equals conv_build + image preprocessing run directly.
static void check_good_sample(const char *out, const char *model, const char *images, ConvTemplate tmpl,
                              ImageAspect aspect, int max_length) {
    Error err = {{0}};
    Manifest m;
    CHECK(manifest_read(&m, out, &err) == 0, "%s", err.msg);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out, m.shards[0].file);
    ShardReader r;
    CHECK(shard_reader_open(&r, path, &err) == 0, "%s", err.msg);
    EXPECT(r.item[0] == 0 && r.modality[0] == MODALITY_IMAGE, "sample 0 is item 0 with an image");
    int32_t ids[256], labels[256];
    CHECK(r.length[0] <= 256 && shard_read_tokens(&r, r.offset[0], r.length[0], ids, labels, &err) == 0, "%s",
          err.msg);
    Tokenizer *tok = NULL;
    CHECK(tokenizer_load(&tok, model, &err) == 0, "%s", err.msg);
    ConvTurn turns[2] = {{CONV_HUMAN, "What is it?\n<image>", strlen("What is it?\n<image>")},
                         {CONV_GPT, "A cat.", strlen("A cat.")}};
    Conversation c = {turns, 2, 1};
    ConvOptions o = {.tmpl = tmpl, .image_seq_length = 16, .image_token_index = 4004, .max_length = max_length};
    ConvResult cr = {0};
    EXPECT(conv_build(tok, &c, &o, &cr) == CONV_OK, "direct conv_build");
    EXPECT(cr.ids.n == r.length[0] && memcmp(cr.ids.data, ids, (size_t)cr.ids.n * 4) == 0 &&
               memcmp(cr.labels.data, labels, (size_t)cr.ids.n * 4) == 0,
           "%s: stored tokens and labels = conv_build's", out);
    conv_result_free(&cr);
    tokenizer_free(tok);
    // pixels: image_load_file + image_preprocess_u8 with CLIP defaults at 28 px
    ImagePreprocessConfig icfg;
    image_config_default(&icfg, 28);
    ImageWork work = {0};
    RgbImage rgb = {0};
    uint8_t want[3 * 28 * 28];
    snprintf(path, sizeof path, "%s/good.jpg", images);
    CHECK(image_load_file(path, 0, &work, &rgb, &err) == 0 &&
              image_preprocess_u8(&rgb, &icfg, aspect, &work, want, &err) == 0,
          "%s", err.msg);
    if (r.fmt.store == STORE_PIXELS) {
        uint8_t got[3 * 28 * 28];
        EXPECT(shard_read_pixels(&r, r.image[0], got, &err) == 0 && memcmp(got, want, sizeof want) == 0,
               "%s: stored pixels = image_preprocess_u8's", out);
    } else {
        size_t len = 0;
        char *file = read_file(path, &len, &err);
        uint8_t *got = xmalloc(len);
        EXPECT((int64_t)len == r.image_length[r.image[0]] && shard_read_encoded(&r, r.image[0], got, &err) == 0 &&
                   memcmp(got, file, len) == 0,
               "%s: stored bytes = the file", out);
        free(got);
        free(file);
    }
    image_work_free(&work);
    rgb_image_free(&rgb);
    shard_reader_close(&r);
    manifest_free(&m);
}

static int run_prep(const char *data, const char *images, const char *model, const char *out, const char *tmpl,
                    int max_length, ImageStore store, ImageAspect aspect, PrepSummary *sum, Error *err) {
    PrepRequest rq;
    prep_request_default(&rq);
    rq.data_path = data;
    rq.images_dir = images;
    rq.model_dir = model;
    rq.template_name = tmpl;
    rq.out_dir = out;
    rq.max_length = max_length;
    rq.workers = 3;
    rq.store = store;
    rq.aspect = aspect;
    rq.shard_max_samples = 2;
    rq.progress = 0;
    return prep_from_model(&rq, sum, err);
}

int main(int argc, char **argv) {
    SRC = argc > 1 ? argv[1] : ".";
    snprintf(DIR_, sizeof DIR_, "/tmp/llava_test_prep_hostile_XXXXXX");
    if (!mkdtemp(DIR_)) return 1;
    char model[600], images[600], json[600], jsonl[600], out[700];
    snprintf(model, sizeof model, "%s/model", DIR_);
    snprintf(images, sizeof images, "%s/images", DIR_);
    snprintf(json, sizeof json, "%s/data.json", DIR_);
    snprintf(jsonl, sizeof jsonl, "%s/data.jsonl", DIR_);
    make_model(model);
    make_images(images);
    write_data(json, 0);
    write_data(jsonl, 1);
    PrepSummary sum;
    Error err = {{0}};

    // vicuna_v1, pixels, square, JSON list; max_length 64 cuts the long answer
    // and leaves the long question no answer.
    snprintf(out, sizeof out, "%s/v1", DIR_);
    EXPECT(run_prep(json, images, model, out, "vicuna_v1", 64, STORE_PIXELS, IMAGE_ASPECT_SQUARE, &sum, &err) == 0,
           "prep v1: %s", err.msg);
    EXPECT(sum.items == N_CASES && sum.written + sum.skipped == sum.items && sum.truncated == 1, "v1 summary");
    check_report(out, 0, NULL);
    check_good_sample(out, model, images, CONV_VICUNA_V1, IMAGE_ASPECT_SQUARE, 64);

    // plain (an image and two turns only: LLaVA's preprocess_plain), encoded,
    // pad, JSONL.
    static const char *plain_reasons[N_CASES];
    plain_reasons[2] = plain_reasons[11] = plain_reasons[12] = "malformed_conversation";
    snprintf(out, sizeof out, "%s/plain", DIR_);
    EXPECT(run_prep(jsonl, images, model, out, "plain", 64, STORE_ENCODED, IMAGE_ASPECT_PAD, &sum, &err) == 0,
           "prep plain: %s", err.msg);
    check_report(out, 1, plain_reasons);
    check_good_sample(out, model, images, CONV_PLAIN, IMAGE_ASPECT_PAD, 64);

    // max_length 10 < BOS + 16 image tokens + caption: no answer is left in
    // any image sample (the text is checked before the image file is read).
    static const char *short_reasons[N_CASES];
    for (int k = 0; k <= 8; k++) short_reasons[k] = "empty_answer_after_truncation";
    short_reasons[2] = short_reasons[11] = short_reasons[12] = "malformed_conversation";
    snprintf(out, sizeof out, "%s/short", DIR_);
    EXPECT(run_prep(jsonl, images, model, out, "plain", 10, STORE_PIXELS, IMAGE_ASPECT_SQUARE, &sum, &err) == 0,
           "prep short: %s", err.msg);
    check_report(out, 1, short_reasons);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", DIR_);
    return test_summary("test_prep_hostile");
}
