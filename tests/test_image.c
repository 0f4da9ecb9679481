// Image decoding and preprocessing against Pillow + transformers'
// CLIPImageProcessor (fixtures from scripts/make_image_reference.py) and
// SiglipImageProcessor (scripts/make_siglip_image_reference.py):
// uint8 pixels after pad/resize/crop, normalized floats, configs, bad input,
// and the same results from two threads at once.
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/safetensors.h"
#include "data/image.h"
#include "tests/testlib.h"

#define MAX_CASES 128
#define MAX_CONFIGS 16

typedef struct {
    char id[64], path[1024], config[32], format[8];
    int cfg;  // index into configs
} Case;

typedef struct {
    char name[32];
    ImagePreprocessConfig cfg;
    int S;
} Config;

typedef struct {
    Case cases[MAX_CASES];
    int n;
    Config configs[MAX_CONFIGS];
    int n_configs;
    StFile ref;
} Fixtures;

static const char *ASPECT_NAME[2] = {"square", "pad"};

// snprintf into an array, failing loudly instead of truncating a path.
#define FORMAT(buf, ...) CHECK(snprintf(buf, sizeof buf, __VA_ARGS__) < (int)sizeof buf, "name too long")

// Ours for one case and aspect: u8 [3,S,S] into u8 (returns 0 on success).
static int run_case(const Fixtures *fx, const Case *c, int aspect, ImageWork *work, RgbImage *im, uint8_t *u8,
                    Error *err) {
    if (image_load_file(c->path, 0, work, im, err) != 0) return -1;
    return image_preprocess_u8(im, &fx->configs[c->cfg].cfg, (ImageAspect)aspect, work, u8, err);
}

static const StTensor *ref_tensor(const Fixtures *fx, const char *kind, const char *id, const char *aspect) {
    char name[160];
    FORMAT(name, "%s/%s/%s", kind, id, aspect);
    return st_find(&fx->ref, name);
}

static void test_configs(Fixtures *fx, const cJSON *manifest, const char *root) {
    const cJSON *cfgs = cJSON_GetObjectItemCaseSensitive(manifest, "configs");
    const cJSON *it;
    cJSON_ArrayForEach(it, cfgs) {
        Config *k = &fx->configs[fx->n_configs++];
        snprintf(k->name, sizeof k->name, "%s", it->string);
        char dir[1024];
        FORMAT(dir, "%s/%s", root, cJSON_GetObjectItemCaseSensitive(it, "dir")->valuestring);
        Error err = {{0}};
        int rc = image_config_load(&k->cfg, dir, &err);
        EXPECT(rc == 0, "config %s: %s", k->name, err.msg);
        k->S = image_config_out_size(&k->cfg);
        EXPECT(k->S == cJSON_GetObjectItemCaseSensitive(it, "out_size")->valueint, "config %s: S = %d", k->name, k->S);
        uint8_t pad[3];
        image_config_pad_color(&k->cfg, pad);
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(it, "pad_color");
        for (int ch = 0; ch < 3; ch++)
            EXPECT(pad[ch] == cJSON_GetArrayItem(want, ch)->valueint, "config %s: pad colour[%d] = %d", k->name, ch,
                   pad[ch]);
        // The processor's float for every value: ours must be bit-identical.
        char tname[64];
        snprintf(tname, sizeof tname, "table/%s", k->name);
        const StTensor *t = st_find(&fx->ref, tname);
        EXPECT(t && t->numel == 3 * 256, "missing %s", tname);
        if (!t) continue;
        float want_t[3 * 256], got_t[3 * 256];
        st_read_f32(&fx->ref, t, want_t, &err);
        image_normalize_table(&k->cfg, got_t);
        int same = 0;
        for (int i = 0; i < 3 * 256; i++) same += memcmp(&want_t[i], &got_t[i], sizeof(float)) == 0;
        EXPECT(same == 3 * 256, "config %s: %d of 768 normalized values differ from transformers'", k->name,
               3 * 256 - same);
    }
}

// The acceptance check: uint8 pixels identical on >= 99.9% of values, never
// off by more than one level; floats within 1e-6 where the pixels agree.
// PNG and GIF are lossless, so their pixels must match exactly.
static void test_parity(Fixtures *fx) {
    const int Smax = 336;
    uint8_t *u8 = xmalloc((size_t)3 * Smax * Smax), *want = xmalloc((size_t)3 * Smax * Smax);
    float *f = xmalloc(sizeof(float) * 3 * Smax * Smax), *wantf = xmalloc(sizeof(float) * 3 * Smax * Smax);
    float table[3 * 256];
    RgbImage im = {0};
    ImageWork work = {0};
    long long values = 0, differ = 0, float_checked = 0, direct_checked = 0;
    int max_diff = 0;
    for (int i = 0; i < fx->n; i++) {
        const Case *c = &fx->cases[i];
        const Config *k = &fx->configs[c->cfg];
        const int S = k->S;
        const size_t n = (size_t)3 * S * S;
        image_normalize_table(&k->cfg, table);
        for (int a = 0; a < 2; a++) {
            Error err = {{0}};
            if (run_case(fx, c, a, &work, &im, u8, &err) != 0) {
                EXPECT(0, "%s/%s: %s", c->id, ASPECT_NAME[a], err.msg);
                continue;
            }
            const StTensor *t = ref_tensor(fx, "u8", c->id, ASPECT_NAME[a]);
            EXPECT(t && t->dtype == ST_U8 && (size_t)t->numel == n, "%s/%s: reference missing or wrong shape",
                   c->id, ASPECT_NAME[a]);
            if (!t || (size_t)t->numel != n) continue;
            memcpy(want, fx->ref.data + t->begin, n);
            int case_differ = 0, case_max = 0;
            for (size_t j = 0; j < n; j++) {
                int d = abs((int)u8[j] - (int)want[j]);
                case_differ += d != 0;
                case_max = d > case_max ? d : case_max;
            }
            values += (long long)n;
            differ += case_differ;
            max_diff = case_max > max_diff ? case_max : max_diff;
            const int lossless = strcmp(c->format, "JPEG") != 0;
            EXPECT(!lossless || case_differ == 0, "%s/%s (%s): %d of %zu pixels differ from Pillow (max %d)", c->id,
                   ASPECT_NAME[a], c->format, case_differ, n, case_max);
            if (case_differ)
                printf("  %s/%s: %d of %zu values differ, max %d\n", c->id, ASPECT_NAME[a], case_differ, n,
                       case_max);
            // Floats, where the pixels agree: against the processor's output
            // (its value table, which the script checked reproduces every
            // output), and directly where the fixture keeps the full output.
            image_normalize(u8, S, &k->cfg, f);
            const StTensor *tf = ref_tensor(fx, "f32", c->id, ASPECT_NAME[a]);
            if (tf) st_read_f32(&fx->ref, tf, wantf, &err);
            int bad = 0;
            for (size_t j = 0; j < n; j++) {
                if (u8[j] != want[j]) continue;
                const float ref = table[(j / ((size_t)S * S)) * 256 + want[j]];
                bad += !(fabsf(f[j] - ref) <= 1e-6f);
                float_checked++;
                if (tf) {
                    bad += !(fabsf(f[j] - wantf[j]) <= 1e-6f);
                    direct_checked++;
                }
            }
            EXPECT(bad == 0, "%s/%s: %d normalized values off by more than 1e-6", c->id, ASPECT_NAME[a], bad);
        }
    }
    printf("parity: %d images x 2 aspects, %lld values, %lld differ (%.4f%%), max diff %d; %lld floats checked "
           "(%lld against stored processor output)\n",
           fx->n, values, differ, values ? 100.0 * differ / values : 0.0, max_diff, float_checked, direct_checked);
#ifdef LLAVA_HAVE_GIF
    EXPECT(fx->n >= 50, "only %d images", fx->n);
#else
    printf("built without giflib: GIF cases skipped\n");
#endif
    EXPECT(differ * 1000 <= values, "%lld of %lld values differ (> 0.1%%)", differ, values);
    EXPECT(max_diff <= 1, "a value is off by %d levels", max_diff);
    free(u8), free(want), free(f), free(wantf);
    rgb_image_free(&im);
    image_work_free(&work);
}

static int contains(const char *s, const char *word) { return strstr(s, word) != NULL; }

static void test_bad_inputs(const cJSON *manifest, const char *root) {
    const cJSON *bad = cJSON_GetObjectItemCaseSensitive(manifest, "bad"), *b;
    RgbImage im = {0};
    ImageWork work = {0};
    int n = 0;
    cJSON_ArrayForEach(b, bad) {
        char path[1024];
        FORMAT(path, "%s/%s", root, cJSON_GetObjectItemCaseSensitive(b, "file")->valuestring);
#ifndef LLAVA_HAVE_GIF
        if (strstr(path, ".gif")) continue;
#endif
        Error err = {{0}};
        int rc = image_load_file(path, 0, &work, &im, &err);
        EXPECT(rc == IMAGE_ERR_DATA, "%s: accepted a bad image (or could not open it: %d)", path, rc);
        EXPECT(contains(err.msg, path), "%s: error does not name the file: %s", path, err.msg);
        const cJSON *w;
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(b, "expect"))
            EXPECT(contains(err.msg, w->valuestring), "%s: error lacks '%s': %s", path, w->valuestring, err.msg);
        n++;
    }
    EXPECT(n >= 10, "only %d bad inputs", n);
    // A missing file, and an in-memory buffer named by a sample id.
    Error err = {{0}};
    char path[1024];
    FORMAT(path, "%s/no_such_image.jpg", root);
    EXPECT(image_load_file(path, 0, &work, &im, &err) == IMAGE_ERR_OPEN && contains(err.msg, "no_such_image.jpg") &&
               contains(err.msg, "cannot open"),
           "missing file: %s", err.msg);
    const uint8_t junk[] = {0xFF, 0xD8, 0xFF, 0xDB, 0x00};
    EXPECT(image_decode(junk, sizeof junk, "sample 42", 0, &im, &err) == -1 && contains(err.msg, "sample 42") &&
               contains(err.msg, "truncated"),
           "in-memory truncated JPEG: %s", err.msg);
    rgb_image_free(&im);
    image_work_free(&work);
}

static void test_limits_and_configs(const Fixtures *fx) {
    // max_pixels: an image of exactly the limit passes, one more pixel fails.
    const Case *c = NULL;
    for (int i = 0; i < fx->n; i++)
        if (strcmp(fx->cases[i].id, "png_rgb") == 0) c = &fx->cases[i];
    EXPECT(c != NULL, "no png_rgb case");
    if (c) {
        RgbImage im = {0};
        ImageWork work = {0};
        Error err = {{0}};
        EXPECT(image_load_file(c->path, 0, &work, &im, &err) == 0, "%s", err.msg);
        const int64_t px = (int64_t)im.w * im.h;
        EXPECT(image_load_file(c->path, px, &work, &im, &err) == 0, "limit = size refused: %s", err.msg);
        EXPECT(image_load_file(c->path, px - 1, &work, &im, &err) == -1 && contains(err.msg, "over the limit"),
               "limit = size - 1 accepted: %s", err.msg);
        // NULL work gives the same pixels.
        const Config *k = &fx->configs[c->cfg];
        size_t n = (size_t)3 * k->S * k->S;
        uint8_t *a = xmalloc(n), *b = xmalloc(n);
        image_preprocess_u8(&im, &k->cfg, IMAGE_ASPECT_PAD, &work, a, &err);
        image_preprocess_u8(&im, &k->cfg, IMAGE_ASPECT_PAD, NULL, b, &err);
        EXPECT(memcmp(a, b, n) == 0, "NULL work differs");
        free(a), free(b);
        rgb_image_free(&im);
        image_work_free(&work);
    }
    ImagePreprocessConfig cfg;
    Error err = {{0}};
    EXPECT(image_config_load(&cfg, "/nonexistent-model-dir", &err) == 1 && image_config_out_size(&cfg) == 336,
           "absent preprocessor_config.json must give the 336 defaults");
    const char *bad[] = {
        "{\"resample\": 2}",
        "{\"crop_size\": {\"height\": 32, \"width\": 48}}",
        "{\"image_processor_type\": \"Siglip2ImageProcessor\"}",
        "{\"image_mean\": [0.5, 0.5]}",
        "{\"do_center_crop\": false, \"size\": {\"shortest_edge\": 32}}",
        "{\"size\": {\"shortest_edge\": 32, \"longest_edge\": 64}}",
        "[1, 2]",
        "{\"do_resize\": 1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = 0;
        EXPECT(image_config_parse(&cfg, bad[i], strlen(bad[i]), "test.json", &err) == -1 &&
                   contains(err.msg, "test.json"),
               "config %s accepted (%s)", bad[i], err.msg);
    }
    const char *ok = "{\"size\": {\"height\": 48, \"width\": 48}, \"do_center_crop\": false}";
    EXPECT(image_config_parse(&cfg, ok, strlen(ok), "ok.json", &err) == 0 && image_config_out_size(&cfg) == 48,
           "height/width resize without crop: %s", err.msg);
    const char *sig = "{\"image_processor_type\": \"SiglipImageProcessor\"}";
    EXPECT(image_config_parse(&cfg, sig, strlen(sig), "siglip.json", &err) == 0 && image_config_out_size(&cfg) == 224 &&
               !cfg.do_center_crop && cfg.image_mean[1] == 0.5 && cfg.image_std[2] == 0.5,
           "SiglipImageProcessor's defaults: 224x224, no crop, mean/std 0.5: %s", err.msg);
}

// Two threads, each with its own buffers, over every case: the same bytes
// as one thread (no shared state in the decoders or the resampler).
typedef struct {
    const Fixtures *fx;
    int start;
    uint8_t **out;  // [n * 2] results
    int failures;
} ThreadJob;

static void *thread_main(void *arg) {
    ThreadJob *j = arg;
    RgbImage im = {0};
    ImageWork work = {0};
    for (int k = 0; k < j->fx->n; k++) {
        const int i = (j->start + k) % j->fx->n;  // the two threads walk in different orders
        const Case *c = &j->fx->cases[i];
        const int S = j->fx->configs[c->cfg].S;
        for (int a = 0; a < 2; a++) {
            Error err = {{0}};
            j->out[2 * i + a] = xmalloc((size_t)3 * S * S);
            j->failures += run_case(j->fx, c, a, &work, &im, j->out[2 * i + a], &err) != 0;
        }
    }
    rgb_image_free(&im);
    image_work_free(&work);
    return NULL;
}

static void test_threads(const Fixtures *fx) {
    uint8_t **res[3];
    ThreadJob jobs[3];
    pthread_t th[2];
    for (int t = 0; t < 3; t++) {
        res[t] = xcalloc((size_t)fx->n * 2, sizeof(uint8_t *));
        jobs[t] = (ThreadJob){fx, t == 2 ? fx->n / 2 : 0, res[t], 0};
    }
    thread_main(&jobs[0]);  // single-threaded baseline
    for (int t = 0; t < 2; t++) CHECK(pthread_create(&th[t], NULL, thread_main, &jobs[t + 1]) == 0, "pthread_create");
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    int same = 0;
    for (int i = 0; i < fx->n * 2; i++) {
        const int S = fx->configs[fx->cases[i / 2].cfg].S;
        const size_t n = (size_t)3 * S * S;
        same += memcmp(res[0][i], res[1][i], n) == 0 && memcmp(res[0][i], res[2][i], n) == 0;
    }
    EXPECT(jobs[0].failures + jobs[1].failures + jobs[2].failures == 0, "threads: decode failures");
    EXPECT(same == fx->n * 2, "threads: %d of %d results differ from the single-thread run", fx->n * 2 - same,
           fx->n * 2);
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < fx->n * 2; i++) free(res[t][i]);
        free(res[t]);
    }
}

// One fixture folder: tests/fixtures/images (CLIPImageProcessor, with the
// bad inputs, limits and threads) or tests/fixtures/images_siglip
// (SiglipImageProcessor on the same images, scripts/make_siglip_image_reference.py).
static void run_fixtures(const char *src, const char *folder, int full) {
    char root[1024], path[1200];
    FORMAT(root, "%s/tests/fixtures/%s", src, folder);
    FORMAT(path, "%s/manifest.json", root);
    Error err = {{0}};
    cJSON *manifest = json_parse_file(path, &err);
    CHECK(manifest, "%s", err.msg);
    static Fixtures fx;
    memset(&fx, 0, sizeof fx);
    FORMAT(path, "%s/reference.safetensors", root);
    CHECK(st_open(&fx.ref, path, &err) == 0, "%s", err.msg);

    test_configs(&fx, manifest, root);
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(manifest, "cases"), *it;
    cJSON_ArrayForEach(it, cs) {
        CHECK(fx.n < MAX_CASES, "too many cases");
        Case *c = &fx.cases[fx.n++];
        snprintf(c->id, sizeof c->id, "%s", cJSON_GetObjectItemCaseSensitive(it, "id")->valuestring);
        FORMAT(c->path, "%s/%s", root, cJSON_GetObjectItemCaseSensitive(it, "file")->valuestring);
        snprintf(c->config, sizeof c->config, "%s", cJSON_GetObjectItemCaseSensitive(it, "config")->valuestring);
        snprintf(c->format, sizeof c->format, "%s", cJSON_GetObjectItemCaseSensitive(it, "format")->valuestring);
#ifndef LLAVA_HAVE_GIF
        if (strcmp(c->format, "GIF") == 0) {  // built without giflib: GIF is refused by design
            fx.n--;
            continue;
        }
#endif
        c->cfg = -1;
        for (int k = 0; k < fx.n_configs; k++)
            if (strcmp(fx.configs[k].name, c->config) == 0) c->cfg = k;
        CHECK(c->cfg >= 0, "case %s: unknown config %s", c->id, c->config);
    }
    test_parity(&fx);
    if (full) {
        test_bad_inputs(manifest, root);
        test_limits_and_configs(&fx);
        test_threads(&fx);
    }
    st_close(&fx.ref);
    cJSON_Delete(manifest);
}

int main(int argc, char **argv) {
    CHECK(argc > 1, "usage: test_image SOURCE_DIR");
    run_fixtures(argv[1], "images", 1);
    run_fixtures(argv[1], "images_siglip", 0);
    return test_summary("test_image");
}
