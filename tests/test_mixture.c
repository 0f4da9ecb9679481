// Weighted data mixtures (data/mixture.h) over real shard folders, prepped
// from the WebDataset fixtures and the equivalent LLaVA JSON:
//   - the "data" list: parsing, every malformed entry refused by name, the run
//     config keeps it as a list
//   - the draw: proportions of 200,000 draws and of 600 real global batches
//     within 5 sigma of the weights; a pure function of (seed, k)
//   - each mixture batch is exactly the next batch of its source's own loader
//     (so grouping and order within a source are the loader's)
//   - deterministic from the seed; seeking to a saved position reproduces every
//     later batch and the per-source counts bit for bit
//   - per-source counts: steps, and samples = the samples actually drawn
//   - "epochs" per source: weights and the mixture epoch length
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader_source.h"
#include "data/mixture.h"
#include "data/prep_webdataset.h"
#include "train/run_config.h"
#include "tests/testlib.h"

static const char *SRC;
static char TMP[512];
static char DIRS[3][700];

// A: clean/00000.tar (4 samples), B: clean/00001-00002.tar (8), C: llava.json (12).
static void prep_sources(void) {
    char model[600], spec[1024], data[1024], images[1024];
    snprintf(model, sizeof model, "%s/tests/fixtures/tiny_llava_text", SRC);
    Error err = {{0}};
    PrepSummary sum;
    WdsPrepResult res;
    for (int j = 0; j < 3; j++) {
        snprintf(DIRS[j], sizeof DIRS[j], "%s/src%c", TMP, 'A' + j);
        PrepRequest rq;
        prep_request_default(&rq);
        rq.model_dir = model;
        rq.template_name = "plain";
        rq.out_dir = DIRS[j];
        rq.workers = 2;
        rq.progress = 0;
        if (j < 2) {
            snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/clean/%s", SRC,
                     j == 0 ? "00000.tar" : "{00001..00002}.tar");
            WdsPrepRequest wq = {.spec = spec, .caption_key = "txt", .parts = 1};
            CHECK(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0, "%s", err.msg);
        } else {
            snprintf(data, sizeof data, "%s/tests/fixtures/webdataset/clean/llava.json", SRC);
            snprintf(images, sizeof images, "%s/tests/fixtures/webdataset/clean/images", SRC);
            rq.data_path = data;
            rq.images_dir = images;
            CHECK(prep_from_model(&rq, &sum, &err) == 0, "%s", err.msg);
        }
    }
}

static Mixture mixture_of(const char *weights_or_epochs, const double *v) {
    char text[4096];
    snprintf(text, sizeof text,
             "[{\"path\": \"%s\", \"%s\": %g}, {\"path\": \"%s\", \"%s\": %g, \"name\": \"bee\"}, {\"path\": \"%s\", "
             "\"%s\": %g}]",
             DIRS[0], weights_or_epochs, v[0], DIRS[1], weights_or_epochs, v[1], DIRS[2], weights_or_epochs, v[2]);
    Mixture m;
    Error err = {{0}};
    CHECK(mixture_parse(text, &m, &err) == 0, "%s", err.msg);
    return m;
}

static LoaderOptions options(uint64_t seed) {
    LoaderOptions o;
    loader_options_default(&o);
    o.seed = seed;
    o.micro_batch = 2;
    o.grad_accum = 2;
    o.workers = 1;
    o.group_by_modality = 1;
    return o;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ull;
    return h;
}

// A digest of one global batch (this rank's micro-batches) and its sample count.
static uint64_t step_digest(BatchSource *s, int *samples) {
    LlavaBatch mb[8];
    int n = 0;
    Error err = {{0}};
    CHECK(s->next_step(s, mb, &n, &err) == 0, "%s", err.msg);
    uint64_t h = 1469598103934665603ull;
    *samples = 0;
    for (int i = 0; i < n; i++) {
        const LlavaBatch *b = &mb[i];
        *samples += b->B;
        h = fnv(h, &b->B, sizeof b->B);
        h = fnv(h, &b->T, sizeof b->T);
        h = fnv(h, b->input_ids, (size_t)b->B * b->T * 4);
        h = fnv(h, b->labels, (size_t)b->B * b->T * 4);
        h = fnv(h, b->pixels, (size_t)b->n_images * 3 * 28 * 28 * sizeof(float));
    }
    return h;
}

// The source named in step_info ("source": "NAME").
static int step_source(const BatchSource *s, char *info, size_t cap) {
    CHECK(s->step_info(s, info, cap) == 0, "step_info fits");
    const char *names[] = {"\"source\": \"srcA\"", "\"source\": \"bee\"", "\"source\": \"srcC\""};
    for (int j = 0; j < 3; j++)
        if (strncmp(info, names[j], strlen(names[j])) == 0) return j;
    return -1;
}

static void test_parse(void) {
    Error err = {{0}};
    Mixture m;
    const char *bad[][2] = {
        {"[]", "non-empty"},
        {"[{\"weight\": 1}]", "no \"path\""},
        {"[{\"path\": \"a\", \"weight\": 1, \"epochs\": 2}]", "either"},
        {"[{\"path\": \"a\"}]", "either"},
        {"[{\"path\": \"a\", \"weight\": -1}]", "positive"},
        {"[{\"path\": \"a\", \"weight\": \"1\"}]", "positive"},
        {"[{\"path\": \"a\", \"weight\": 1, \"wieght\": 2}]", "unknown key \"wieght\""},
        {"[{\"path\": \"x/a\", \"weight\": 1}, {\"path\": \"y/a/\", \"weight\": 1}]", "same name \"a\""},
        {"[3]", "entry 0 must be an object"},
        {"[{\"path\": \"x.json\", \"weight\": 1}]", "is a data file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = 0;
        EXPECT(mixture_parse(bad[i][0], &m, &err) != 0 && strstr(err.msg, bad[i][1]), "%s refused (%s): %s", bad[i][0],
               bad[i][1], err.msg);
    }
    // A run config keeps the list through load, validate and to_json.
    char path[700];
    snprintf(path, sizeof path, "%s/run.json", TMP);
    const char *cfg = "{\"model\": \"m\", \"data\": [{\"path\": \"a\", \"weight\": 0.3}, {\"path\": \"b\", \"epochs\": 2}]}";
    CHECK(write_file_atomic(path, cfg, strlen(cfg), &err) == 0, "%s", err.msg);
    RunConfig c;
    run_config_default(&c);
    EXPECT(run_config_load_file(&c, path, &err) == 0 && run_config_validate(&c, &err) == 0 && mixture_is_list(c.data),
           "run config with a data list: %s", err.msg);
    char *json = run_config_to_json(&c);
    EXPECT(json && strstr(json, "\"data\":\t[{") && strstr(json, "\"epochs\":\t2"), "to_json writes the list: %s", json);
    free(json);
    const char *bad_cfg = "{\"model\": \"m\", \"data\": [{\"path\": \"a\"}]}";
    CHECK(write_file_atomic(path, bad_cfg, strlen(bad_cfg), &err) == 0, "%s", err.msg);
    run_config_default(&c);
    EXPECT(run_config_load_file(&c, path, &err) == 0 && run_config_validate(&c, &err) != 0 && strstr(err.msg, "entry 0"),
           "validate names the bad entry: %s", err.msg);
}

static void test_draw(void) {
    const double cum[3] = {0.2, 0.5, 1.0};
    int64_t count[3] = {0};
    const int K = 200000;
    for (int k = 0; k < K; k++) count[mixture_draw(cum, 3, 7, k)]++;
    const double p[3] = {0.2, 0.3, 0.5};
    for (int j = 0; j < 3; j++) {
        const double sigma = sqrt(K * p[j] * (1 - p[j]));
        EXPECT(fabs((double)count[j] - K * p[j]) < 5 * sigma, "draw %d: %lld of %d, want %.0f +- %.0f", j,
               (long long)count[j], K, K * p[j], 5 * sigma);
    }
    int same = 0, differs = 0;
    for (int k = 0; k < 1000; k++) {
        same += mixture_draw(cum, 3, 7, k) == mixture_draw(cum, 3, 7, k);
        differs += mixture_draw(cum, 3, 7, k) != mixture_draw(cum, 3, 8, k);
    }
    EXPECT(same == 1000 && differs > 300, "a pure function of (seed, k): %d same, %d differ with another seed", same,
           differs);
}

static void test_source(void) {
    const double w[3] = {0.2, 0.3, 0.5};
    Mixture m = mixture_of("weight", w);
    LoaderOptions o = options(5);
    BatchSource mix, alone[3];
    Error err = {{0}};
    CHECK(mixture_source_open(&mix, &o, &m, &err) == 0, "%s", err.msg);
    EXPECT(mix.steps_per_epoch == 1 + 2 + 3 && mix.step_info, "mixture epoch = 1 + 2 + 3 global batches of 4");
    for (int j = 0; j < 3; j++) {
        LoaderOptions oj = o;
        oj.dir = DIRS[j];
        oj.seed = o.seed + (uint64_t)j;
        CHECK(loader_source_open(&alone[j], &oj, &err) == 0, "%s", err.msg);
    }
    enum { K = 600, CUT = 217 };
    static uint64_t digest[K];
    static char infos[K][512];
    int64_t count[3] = {0}, samples[3] = {0};
    int from_own_loader = 1;
    for (int k = 0; k < K; k++) {
        int n = 0, n_alone = 0;
        digest[k] = step_digest(&mix, &n);
        const int j = step_source(&mix, infos[k], sizeof infos[k]);
        CHECK(j >= 0, "step %d: no source in %s", k, infos[k]);
        count[j]++;
        samples[j] += n;
        from_own_loader &= step_digest(&alone[j], &n_alone) == digest[k] && n == n_alone;
    }
    EXPECT(from_own_loader, "every mixture batch = the next batch of its source's own loader");
    for (int j = 0; j < 3; j++) {
        const double sigma = sqrt(K * w[j] * (1 - w[j]));
        EXPECT(fabs((double)count[j] - K * w[j]) < 5 * sigma, "source %d: %lld of %d batches, want %.0f +- %.0f", j,
               (long long)count[j], K, K * w[j], 5 * sigma);
    }
    char want[256];
    snprintf(want, sizeof want,
             "\"source_steps\": {\"srcA\": %lld, \"bee\": %lld, \"srcC\": %lld}, \"source_samples\": {\"srcA\": %lld, "
             "\"bee\": %lld, \"srcC\": %lld}",
             (long long)count[0], (long long)count[1], (long long)count[2], (long long)samples[0],
             (long long)samples[1], (long long)samples[2]);
    EXPECT(strstr(infos[K - 1], want) != NULL, "per-source counts: %s, want %s", infos[K - 1], want);

    // Resume: a new mixture sought to the position after CUT batches.
    BatchSource again;
    CHECK(mixture_source_open(&again, &o, &m, &err) == 0, "%s", err.msg);
    DataPosition at = {.epoch = CUT / mix.steps_per_epoch, .step = CUT % mix.steps_per_epoch};
    CHECK(again.seek(&again, at, &err) == 0, "%s", err.msg);
    DataPosition p = again.position(&again);
    EXPECT(p.epoch == at.epoch && p.step == at.step, "position after seek");
    int resumed_same = 1;
    char info[512];
    for (int k = CUT; k < K; k++) {
        int n;
        resumed_same &= step_digest(&again, &n) == digest[k];
        CHECK(again.step_info(&again, info, sizeof info) == 0, "step_info");
        resumed_same &= strcmp(info, infos[k]) == 0;
    }
    EXPECT(resumed_same, "resumed at batch %d: every later batch and count bitwise the same", CUT);
    again.close(&again);
    // Determinism from the seed: the same seed repeats, another seed differs.
    BatchSource same, other;
    LoaderOptions o2 = options(6);
    CHECK(mixture_source_open(&same, &o, &m, &err) == 0 && mixture_source_open(&other, &o2, &m, &err) == 0, "%s",
          err.msg);
    int eq = 1, ne = 0;
    for (int k = 0; k < 60; k++) {
        int n;
        eq &= step_digest(&same, &n) == digest[k];
        ne += step_digest(&other, &n) != digest[k];
    }
    EXPECT(eq && ne > 10, "seeded: same seed %d, another seed differs in %d of 60", eq, ne);
    same.close(&same);
    other.close(&other);
    for (int j = 0; j < 3; j++) alone[j].close(&alone[j]);
    mix.close(&mix);
    mixture_free(&m);

    // "epochs": weights epochs x steps, a mixture epoch of sum epochs x steps.
    const double e[3] = {3, 1, 0.5};
    m = mixture_of("epochs", e);
    CHECK(mixture_source_open(&mix, &o, &m, &err) == 0, "%s", err.msg);
    EXPECT(mix.steps_per_epoch == 7 /* ceil(3 x 1 + 1 x 2 + 0.5 x 3) */,
           "epochs: %ld steps per mixture epoch", mix.steps_per_epoch);
    int64_t c3[3] = {0};
    for (int k = 0; k < 400; k++) {
        int n;
        step_digest(&mix, &n);
        c3[step_source(&mix, info, sizeof info)]++;
    }
    const double pe[3] = {3.0 / 6.5, 2.0 / 6.5, 1.5 / 6.5};
    for (int j = 0; j < 3; j++)
        EXPECT(fabs((double)c3[j] - 400 * pe[j]) < 5 * sqrt(400 * pe[j] * (1 - pe[j])), "epochs source %d: %lld of 400",
               j, (long long)c3[j]);
    mix.close(&mix);
    mixture_free(&m);
    // A source that is not a shard folder is named.
    char text[2048];
    snprintf(text, sizeof text, "[{\"path\": \"%s\", \"weight\": 1}, {\"path\": \"%s/nope\", \"weight\": 1}]", DIRS[0], TMP);
    CHECK(mixture_parse(text, &m, &err) == 0, "%s", err.msg);
    EXPECT(mixture_source_open(&mix, &o, &m, &err) != 0 && strstr(err.msg, "\"nope\" (entry 1)"),
           "a missing source is named: %s", err.msg);
    mixture_free(&m);
}

int main(int argc, char **argv) {
    SRC = argc > 1 ? argv[1] : ".";
    snprintf(TMP, sizeof TMP, "/tmp/llava_test_mixture_XXXXXX");
    if (!mkdtemp(TMP)) return 1;
    prep_sources();
    test_parse();
    test_draw();
    test_source();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", TMP);
    if (test_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", TMP);
    return test_summary("test_mixture");
}
