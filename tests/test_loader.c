// The loader: every sample exactly once per epoch on 1, 2 and 3 ranks; the
// same samples per step whatever the world size; batches hold the stored
// tokens, padding and normalized pixels; resume reproduces the batches bit
// for bit; LLaVA's modality/length grouping; packing never lets two samples
// see each other (checked with the CPU attention op's own visibility rule and
// by perturbing one sample).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/loader.h"
#include "data/loader_source.h"
#include "data/manifest.h"
#include "data/shards.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/testlib.h"

#define S 4
#define MAX_LEN 40
#define MAXN 64

static const float MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// ---- a synthetic shard folder ----------------------------------------------------------

static int sample_len(int i) { return 3 + (i * 37) % 19; }
static int sample_has_image(int i, int all_text) { return !all_text && i % 3 != 0; }
static int32_t sample_token(int i, int t) { return 1 + (i * 31 + t * 7) % 140; }
static int32_t sample_label(int i, int t) { return (t + i) % 4 == 0 ? -100 : sample_token(i, t); }
static uint8_t sample_pixel(int i, int k) { return (uint8_t)(i * 13 + k * 5); }

// N samples in shards of `per_shard`; lengths[i] from sample_len unless given.
static void make_folder(const char *dir, int N, int per_shard, int all_text, const int *lengths) {
    Error err = {{0}};
    Manifest m;
    memset(&m, 0, sizeof m);
    m.complete = 1;
    snprintf(m.template_name, sizeof m.template_name, "plain");
    snprintf(m.aspect, sizeof m.aspect, "square");
    snprintf(m.tokenizer_hash, sizeof m.tokenizer_hash, "none");
    snprintf(m.tokenizer_dir, sizeof m.tokenizer_dir, "tokenizer");
    m.max_length = MAX_LEN;
    m.store = STORE_PIXELS;
    m.image_size = S;
    m.image_seq_length = 2;
    m.image_token_index = 150;
    m.pad_token_id = 0;
    for (int c = 0; c < 3; c++) {
        m.image_mean[c] = MEAN[c];
        m.image_std[c] = STD[c];
    }
    ShardFormat fmt = {STORE_PIXELS, S};
    for (int first = 0, k = 0; first < N; first += per_shard, k++) {
        ManifestShard ms;
        memset(&ms, 0, sizeof ms);
        snprintf(ms.file, sizeof ms.file, "shard-%05d.h5", k);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, ms.file);
        ShardWriter *w = shard_writer_create(path, &fmt, &err);
        CHECK(w, "%s", err.msg);
        for (int i = first; i < N && i < first + per_shard; i++) {
            const int len = lengths ? lengths[i] : sample_len(i);
            int32_t ids[MAX_LEN], labels[MAX_LEN];
            for (int t = 0; t < len; t++) {
                ids[t] = sample_token(i, t);
                labels[t] = sample_label(i, t);
            }
            uint8_t px[3 * S * S];
            for (int q = 0; q < 3 * S * S; q++) px[q] = sample_pixel(i, q);
            char id[32];
            snprintf(id, sizeof id, "s%d", i);
            ShardSample s = {.id = id, .item = i, .input_ids = ids, .labels = labels, .length = len,
                             .image_path = sample_has_image(i, all_text) ? "img.png" : NULL, .pixels = px};
            CHECK(shard_writer_add(w, &s, &err) == 0, "%s", err.msg);
            ms.samples++;
        }
        CHECK(shard_writer_finish(w, "{}", &err) == 0, "%s", err.msg);
        manifest_add_shard(&m, &ms);
    }
    CHECK(manifest_write(&m, dir, &err) == 0, "%s", err.msg);
    manifest_free(&m);
    // What prep copies from the model folder: CLIP statistics at S px.
    char path[1024], text[1024];
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    snprintf(text, sizeof text,
             "{\"do_resize\": true, \"size\": {\"shortest_edge\": %d}, \"resample\": 3, \"do_center_crop\": true, "
             "\"crop_size\": {\"height\": %d, \"width\": %d}, \"do_rescale\": true, \"rescale_factor\": "
             "0.00392156862745098, \"do_normalize\": true, \"image_mean\": [%.8g, %.8g, %.8g], \"image_std\": "
             "[%.8g, %.8g, %.8g]}",
             S, S, S, MEAN[0], MEAN[1], MEAN[2], STD[0], STD[1], STD[2]);
    CHECK(write_file_atomic(path, text, strlen(text), &err) == 0, "%s", err.msg);
}

static Loader *open_loader(const char *dir, int b, int a, int rank, int world, int group, int pack, LoaderPos resume) {
    LoaderOptions o;
    loader_options_default(&o);
    o.dir = dir;
    o.seed = 1234;
    o.micro_batch = b;
    o.grad_accum = a;
    o.rank = rank;
    o.world = world;
    o.group_by_modality = group;
    o.pack = pack;
    o.workers = 2;
    o.prefetch = 3;
    o.resume = resume;
    Error err = {{0}};
    Loader *L = loader_open(&o, &err);
    CHECK(L, "loader_open: %s", err.msg);
    return L;
}

static const LoaderPos START = {0, 0, 0};

// ---- checks of one batch ------------------------------------------------------------------

// Tokens, labels, padding, seg/pos conventions, pixels and target count.
static void check_batch(const LoaderBatch *lb, int pack, int all_text) {
    const LlavaBatch *b = &lb->batch;
    int ok = 1, n_img = 0, doc = 0, row_docs = 0;
    int64_t targets = 0;
    if (!pack) ok &= b->B == lb->n_samples && b->pos == NULL;
    int any_pad = 0;
    for (int r = 0; r < b->B; r++) {
        int t = 0;
        row_docs = 0;
        while (t < b->T) {
            const size_t at = (size_t)r * b->T + t;
            if (b->seg && b->seg[at] == 0) break;  // padding from here
            // the document starting here is sample lb->sample_index[doc]
            CHECK(doc < lb->n_samples, "more documents than samples");
            const int i = (int)lb->sample_index[doc];
            const int len = sample_len(i);
            char id[32];
            snprintf(id, sizeof id, "s%d", i);
            ok &= strcmp(lb->sample_id[doc], id) == 0;
            row_docs++;
            for (int k = 0; k < len; k++) {
                const size_t x = at + k;
                ok &= b->input_ids[x] == sample_token(i, k) && b->labels[x] == sample_label(i, k);
                if (b->seg) ok &= b->seg[x] == row_docs;
                if (b->pos) ok &= b->pos[x] == k;
                if (k > 0) targets += sample_label(i, k) != -100;
            }
            if (sample_has_image(i, all_text)) {
                for (int q = 0; q < 3 * S * S; q++) {
                    const int c = q / (S * S);
                    const double want = ((double)sample_pixel(i, q) / 255.0 - MEAN[c]) / STD[c];
                    ok &= fabs(b->pixels[(size_t)n_img * 3 * S * S + q] - want) < 1e-5;
                }
                n_img++;
            }
            t += len;
            doc++;
            if (!pack) break;
        }
        for (; t < b->T; t++) {
            const size_t x = (size_t)r * b->T + t;
            any_pad = 1;
            ok &= b->seg && b->seg[x] == 0 && b->labels[x] == -100 && b->input_ids[x] == 0;
        }
    }
    ok &= doc == lb->n_samples && n_img == b->n_images && targets == lb->targets;
    ok &= b->pixels_bf16 == NULL;  // fp32 only unless LoaderOptions.pixels_bf16 asks
    if (!pack) ok &= (b->seg != NULL) == any_pad;
    EXPECT(ok, "batch at epoch %lld step %lld micro %d has wrong contents", (long long)lb->pos.epoch,
           (long long)lb->pos.step, lb->pos.micro);
}

// ---- exactly once, same samples per step ------------------------------------------------------

// Runs all ranks through `epochs` epochs; step_set[e][s] gets a bitmask-free
// canonical form: the sorted list of samples of each step.
static void run_epochs(const char *dir, int N, int b, int a, int world, int group, int pack, int epochs,
                       int64_t steps_out[][MAXN][MAXN], int *n_steps, int all_text) {
    Loader *L[3] = {NULL, NULL, NULL};
    for (int r = 0; r < world; r++) L[r] = open_loader(dir, b, a, r, world, group, pack, START);
    const int64_t steps = loader_num_steps_per_epoch(L[0]);
    *n_steps = (int)steps;
    for (int e = 0; e < epochs; e++) {
        int seen[MAXN] = {0};
        for (int64_t s = 0; s < steps; s++) {
            int fill = 0;
            int64_t step_targets = 0, declared = -1;
            for (int r = 0; r < world; r++)
                for (int j = 0; j < a; j++) {
                    LoaderBatch lb;
                    Error err = {{0}};
                    EXPECT(loader_next(L[r], &lb, &err) == 0, "loader_next: %s", err.msg);
                    EXPECT(lb.pos.epoch == e && lb.pos.step == s && lb.pos.micro == j, "position");
                    EXPECT(lb.last_of_step == (j == a - 1) && lb.last_of_epoch == (j == a - 1 && s == steps - 1),
                           "boundary flags");
                    check_batch(&lb, pack, all_text);
                    for (int k = 0; k < lb.n_samples; k++) {
                        seen[lb.sample_index[k]]++;
                        steps_out[e][s][1 + fill++] = lb.sample_index[k];
                    }
                    step_targets += lb.targets;
                    if (declared >= 0) EXPECT(declared == lb.step_targets, "step_targets agree across ranks");
                    declared = lb.step_targets;
                }
            EXPECT(declared == step_targets, "step_targets %lld = sum of the micro-batches %lld", (long long)declared,
                   (long long)step_targets);
            steps_out[e][s][0] = fill;
            // sort the step's samples (canonical set)
            for (int x = 1; x <= fill; x++)
                for (int y = x + 1; y <= fill; y++)
                    if (steps_out[e][s][y] < steps_out[e][s][x]) {
                        int64_t t = steps_out[e][s][x];
                        steps_out[e][s][x] = steps_out[e][s][y];
                        steps_out[e][s][y] = t;
                    }
        }
        int once = 1;
        for (int i = 0; i < N; i++) once &= seen[i] == 1;
        EXPECT(once, "world %d b %d a %d group %d pack %d epoch %d: every sample exactly once", world, b, a, group,
               pack, e);
    }
    for (int r = 0; r < world; r++) loader_close(L[r]);
}

static int64_t steps_a[2][MAXN][MAXN], steps_b[2][MAXN][MAXN];

static void test_exactly_once_and_step_sets(const char *dir, int N) {
    for (int group = 0; group <= 1; group++)
        for (int pack = 0; pack <= 1; pack++) {
            int na, nb;
            // G = 12 in all three: world 1 x b 6 x a 2, world 2 x b 3 x a 2, world 3 x b 2 x a 2
            run_epochs(dir, N, 6, 2, 1, group, pack, 2, steps_a, &na, 0);
            for (int world = 2; world <= 3; world++) {
                run_epochs(dir, N, 12 / (2 * world), 2, world, group, pack, 2, steps_b, &nb, 0);
                int same = na == nb;
                for (int e = 0; e < 2 && same; e++)
                    for (int s = 0; s < na && same; s++)
                        same &= memcmp(steps_a[e][s], steps_b[e][s], (size_t)(steps_a[e][s][0] + 1) * 8) == 0;
                EXPECT(same, "group %d pack %d: world %d sees the same samples per step as world 1", group, pack,
                       world);
            }
            // and world 2 x b 6 x a 1 (G 12, no accumulation)
            run_epochs(dir, N, 6, 1, 2, group, pack, 1, steps_b, &nb, 0);
            int same = na == nb;
            for (int s = 0; s < na && same; s++)
                same &= memcmp(steps_a[0][s], steps_b[0][s], (size_t)(steps_a[0][s][0] + 1) * 8) == 0;
            EXPECT(same, "group %d pack %d: accumulation does not change the step sets", group, pack);
            // epochs differ
            int differ = 0;
            for (int s = 0; s < na; s++)
                differ |= memcmp(steps_a[0][s], steps_a[1][s], (size_t)(steps_a[0][s][0] + 1) * 8) != 0;
            EXPECT(differ, "epoch 1 is shuffled differently from epoch 0");
        }
}

// ---- resume ------------------------------------------------------------------------------------

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t batch_digest(const LoaderBatch *lb) {
    const LlavaBatch *b = &lb->batch;
    const size_t BT = (size_t)b->B * b->T;
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, &b->B, sizeof b->B);
    h = fnv(h, &b->T, sizeof b->T);
    h = fnv(h, b->input_ids, BT * 4);
    h = fnv(h, b->labels, BT * 4);
    if (b->seg) h = fnv(h, b->seg, BT * 4);
    if (b->pos) h = fnv(h, b->pos, BT * 4);
    h = fnv(h, b->pixels, (size_t)b->n_images * 3 * S * S * 4);
    h = fnv(h, lb->sample_index, (size_t)lb->n_samples * 8);
    h = fnv(h, &lb->pos, sizeof lb->pos);
    return h;
}

static void test_resume(const char *dir, int group, int pack) {
    enum { K = 40 };
    const int b = 3, a = 2, world = 2, rank = 1;
    uint64_t want[K];
    LoaderPos at[K];
    Loader *L = open_loader(dir, b, a, rank, world, group, pack, START);
    for (int k = 0; k < K; k++) {
        loader_state(L, &at[k]);
        LoaderBatch lb;
        Error err = {{0}};
        CHECK(loader_next(L, &lb, &err) == 0, "%s", err.msg);
        want[k] = batch_digest(&lb);
        EXPECT(at[k].epoch == lb.pos.epoch && at[k].step == lb.pos.step && at[k].micro == lb.pos.micro,
               "loader_state names the next batch");
    }
    loader_close(L);
    const int starts[] = {1, 7, 13, 22, 31};  // mid-step (odd) and step boundaries, across epochs
    for (int q = 0; q < 5; q++) {
        const int k0 = starts[q];
        L = open_loader(dir, b, a, rank, world, group, pack, at[k0]);
        int same = 1;
        for (int k = k0; k < K; k++) {
            LoaderBatch lb;
            Error err = {{0}};
            CHECK(loader_next(L, &lb, &err) == 0, "%s", err.msg);
            same &= batch_digest(&lb) == want[k];
        }
        loader_close(L);
        EXPECT(same, "group %d pack %d: resume at (%lld, %lld, %d) reproduces the batches", group, pack,
               (long long)at[k0].epoch, (long long)at[k0].step, at[k0].micro);
    }
}

// ---- LLaVA's grouping ----------------------------------------------------------------------------

static void test_grouping(void) {
    // split_to_even_chunks by hand: lengths 10, 9, 8, 1 in one megabatch of 4
    // into 2 micro-batches: 10 -> chunk 0, 9 -> 1, 8 -> 1 (full), 1 -> 0: [10, 1, 9, 8].
    const int32_t len4[4] = {8, 1, 10, 9};
    const uint8_t text4[4] = {0, 0, 0, 0};
    int64_t order[64];
    for (int seed = 0; seed < 5; seed++) {
        loader_epoch_order(order, 4, len4, text4, (uint64_t)seed, 0, 4, 2, 1, 1);
        EXPECT(len4[order[0]] == 10 && len4[order[1]] == 1 && len4[order[2]] == 9 && len4[order[3]] == 8,
               "split_to_even_chunks order (seed %d): %d %d %d %d", seed, len4[order[0]], len4[order[1]],
               len4[order[2]], len4[order[3]]);
    }
    // 9 image and 5 text samples, G = 4: two full image megabatches and one
    // text megabatch (shuffled), then the held-back 1 + 1 sorted by number.
    int32_t len[14];
    uint8_t img[14];
    for (int i = 0; i < 14; i++) {
        len[i] = 5 + (i * 7) % 11;
        img[i] = i % 3 != 0;  // text: 0, 3, 6, 9, 12
    }
    int n_img = 0;
    for (int i = 0; i < 14; i++) n_img += img[i];
    CHECK(n_img == 9, "fixture: %d images", n_img);
    for (int epoch = 0; epoch < 4; epoch++) {
        loader_epoch_order(order, 14, len, img, 99, epoch, 4, 2, 1, 1);
        int ok = 1, seen[14] = {0};
        for (int i = 0; i < 14; i++) seen[order[i]]++;
        for (int i = 0; i < 14; i++) ok &= seen[i] == 1;
        for (int m = 0; m < 3; m++)
            for (int k = 1; k < 4; k++) ok &= img[order[4 * m + k]] == img[order[4 * m]];
        ok &= order[12] < order[13];
        // each rank's half of a full megabatch: built from a longest-first list
        // by the even-chunk rule, so chunk 0 starts with the megabatch's longest
        for (int m = 0; m < 3; m++) {
            int longest = 0;
            for (int k = 0; k < 4; k++) longest = len[order[4 * m + k]] > longest ? len[order[4 * m + k]] : longest;
            ok &= len[order[4 * m]] == longest;
        }
        EXPECT(ok, "modality grouping structure, epoch %d", epoch);
    }
    // The same (seed, epoch) gives the same order; world size only permutes
    // inside a megabatch.
    int64_t o1[14], o2[14];
    loader_epoch_order(o1, 14, len, img, 5, 3, 4, 1, 1, 1);
    loader_epoch_order(o2, 14, len, img, 5, 3, 4, 2, 1, 1);
    int same_sets = 1;
    for (int m = 0; m < 3; m++) {
        int64_t x = 0, y = 0;
        for (int k = 0; k < 4; k++) {
            x += 1ll << o1[4 * m + k];
            y += 1ll << o2[4 * m + k];
        }
        same_sets &= x == y;
    }
    EXPECT(same_sets, "megabatch sets do not depend on the world size");
}

// ---- packing isolation ------------------------------------------------------------------------

static void test_packing_isolation(const char *dir) {
    Loader *L = open_loader(dir, 6, 1, 0, 1, 0, 1, START);
    const Ops *ops = backend_select("cpu", NULL);
    const int NH = 2, NKV = 1, HS = 4, row = (NH + 2 * NKV) * HS;
    int packed_rows = 0, checked = 0;
    for (int k = 0; k < 6; k++) {
        LoaderBatch lb;
        Error err = {{0}};
        CHECK(loader_next(L, &lb, &err) == 0, "%s", err.msg);
        const LlavaBatch *b = &lb.batch;
        if (b->B == 0) continue;
        EXPECT(b->T <= MAX_LEN, "rows fit max_length");
        // (1) the visibility rule of the CPU attention op, pair by pair
        int isolated = 1;
        for (int r = 0; r < b->B; r++) {
            const int32_t *seg = b->seg + (size_t)r * b->T;
            packed_rows += seg[0] && seg[b->T - 1] != seg[0];
            for (int i = 0; i < b->T; i++)
                for (int j = 0; j < b->T; j++) {
                    const int vis = cpu_attn_visible(seg, 1, i, j);
                    if (seg[i] != 0 && vis) isolated &= seg[i] == seg[j];
                    if (seg[i] != 0 && seg[i] == seg[j] && j <= i) isolated &= vis;  // causal within a document
                }
        }
        EXPECT(isolated, "packed documents see exactly their own earlier tokens");
        // (2) perturb one document's q, k, v: no other document's output moves
        const size_t M = (size_t)b->B * b->T;
        float *qkv = xmalloc(M * row * sizeof(float)), *out0 = xmalloc(M * NH * HS * sizeof(float));
        float *out1 = xmalloc(M * NH * HS * sizeof(float)), *lse = xmalloc(M * NH * sizeof(float));
        for (size_t i = 0; i < M * row; i++) qkv[i] = sinf(0.37f * (float)i);
        AttnShape as = {.B = b->B, .T = b->T, .NH = NH, .NKV = NKV, .HS = HS, .causal = 1, .seg = b->seg};
        ops->attention_forward(out0, lse, qkv, &as);
        for (int r = 0; r < b->B; r++) {
            const int32_t *seg = b->seg + (size_t)r * b->T;
            for (int t = 0; t < b->T; t++)
                if (seg[t] == 1)
                    for (int d = 0; d < row; d++) qkv[((size_t)r * b->T + t) * row + d] += 3.0f;
        }
        ops->attention_forward(out1, lse, qkv, &as);
        int others_same = 1, own_changed = 0;
        for (size_t m = 0; m < M; m++) {
            const int32_t sg = b->seg[m];
            const int same = memcmp(out0 + m * NH * HS, out1 + m * NH * HS, (size_t)NH * HS * sizeof(float)) == 0;
            if (sg > 1) others_same &= same;
            if (sg == 1) own_changed |= !same;
        }
        EXPECT(others_same && own_changed, "perturbing document 1 changes only document 1's outputs");
        checked++;
        free(qkv);
        free(out0);
        free(out1);
        free(lse);
    }
    EXPECT(checked > 0 && packed_rows > 0, "some rows hold several documents (%d)", packed_rows);
    loader_close(L);
}

// ---- the trainer's BatchSource -------------------------------------------------------------------

static uint64_t llava_digest(const LlavaBatch *b) {
    LoaderBatch lb;
    memset(&lb, 0, sizeof lb);
    lb.batch = *b;
    return batch_digest(&lb);
}

// next_step yields the non-empty micro-batches loader_next gives one by one;
// position + seek resume at a step.
static void test_batch_source(const char *dir) {
    const int b = 2, a = 4, world = 3, rank = 2;  // G = 24: the last step has 5 samples
    LoaderOptions o;
    loader_options_default(&o);
    o.dir = dir;
    o.seed = 1234;
    o.micro_batch = b;
    o.grad_accum = a;
    o.rank = rank;
    o.world = world;
    o.workers = 2;
    o.prefetch = 1;
    Error err = {{0}};
    Loader *L = loader_open(&o, &err);
    CHECK(L, "%s", err.msg);
    enum { STEPS = 8 };
    uint64_t want[STEPS][8];
    int want_n[STEPS];
    for (int s = 0; s < STEPS; s++) {
        want_n[s] = 0;
        for (int j = 0; j < a; j++) {
            LoaderBatch lb;
            CHECK(loader_next(L, &lb, &err) == 0, "%s", err.msg);
            if (lb.batch.B > 0) want[s][want_n[s]++] = llava_digest(&lb.batch);
        }
    }
    loader_close(L);
    BatchSource src;
    EXPECT(loader_source_open(&src, &o, &err) == 0, "loader_source_open: %s", err.msg);
    EXPECT(src.max_micro == a && src.steps_per_epoch == 2, "steps per epoch %ld", src.steps_per_epoch);
    int same = 1, short_step = 0;
    DataPosition at3 = {0, 0};
    for (int s = 0; s < STEPS; s++) {
        if (s == 3) at3 = src.position(&src);
        LlavaBatch micro[8];
        int n = 0;
        CHECK(src.next_step(&src, micro, &n, &err) == 0, "%s", err.msg);
        same &= n == want_n[s];
        short_step |= n < a;
        for (int j = 0; j < n && j < want_n[s]; j++) same &= llava_digest(&micro[j]) == want[s][j];
    }
    EXPECT(same, "next_step = the non-empty micro-batches of loader_next");
    EXPECT(short_step, "a short last step yields fewer micro-batches on this rank");
    EXPECT(at3.epoch == 1 && at3.step == 1, "position before step 3 is epoch 1 step 1 (%ld, %ld)", at3.epoch, at3.step);
    EXPECT(src.seek(&src, at3, &err) == 0, "seek: %s", err.msg);
    same = 1;
    for (int s = 3; s < STEPS; s++) {
        LlavaBatch micro[8];
        int n = 0;
        CHECK(src.next_step(&src, micro, &n, &err) == 0, "%s", err.msg);
        same &= n == want_n[s];
        for (int j = 0; j < n && j < want_n[s]; j++) same &= llava_digest(&micro[j]) == want[s][j];
    }
    EXPECT(same, "seek reproduces the steps");
    src.close(&src);
}

// ---- encoded images: decoded on the workers -----------------------------------------------------

// Shards holding image files; the loader's pixels must equal decoding and
// preprocessing those files directly with data/image.h; a corrupt file is an
// error naming the sample.
static void test_encoded(const char *src, const char *dir, int corrupt) {
    static const char *files[] = {"jpeg_rgb_444.jpg", "png_3x2.png", "jpeg_very_wide.jpg", "jpeg_grey.jpg"};
    enum { N = 4, SZ = 32 };
    Error err = {{0}};
    CHECK(make_dirs(dir, &err) == 0, "%s", err.msg);
    char path[2048];
    snprintf(path, sizeof path, "%s/tests/fixtures/images/configs/clip32/preprocessor_config.json", src);
    size_t len = 0;
    char *cfg_text = read_file(path, &len, &err);
    CHECK(cfg_text, "%s", err.msg);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    CHECK(write_file_atomic(path, cfg_text, len, &err) == 0, "%s", err.msg);
    free(cfg_text);
    ShardFormat fmt = {STORE_ENCODED, SZ};
    snprintf(path, sizeof path, "%s/shard-00000.h5", dir);
    ShardWriter *w = shard_writer_create(path, &fmt, &err);
    CHECK(w, "%s", err.msg);
    ImagePreprocessConfig icfg;
    CHECK(image_config_load(&icfg, dir, &err) == 0, "%s", err.msg);
    float *want = xmalloc((size_t)N * 3 * SZ * SZ * sizeof(float));
    uint8_t *chw = xmalloc(3 * SZ * SZ);
    for (int i = 0; i < N; i++) {
        char file[2048];
        snprintf(file, sizeof file, "%s/tests/fixtures/images/src/%s", src, files[i]);
        size_t n = 0;
        char *bytes = read_file(file, &n, &err);
        CHECK(bytes, "%s", err.msg);
        if (corrupt && i == 2) memset(bytes + n / 4, 0xFF, n / 2);  // wreck the middle of a JPEG
        RgbImage rgb = {0};
        CHECK(image_decode((const uint8_t *)bytes, n, file, 0, &rgb, &err) == 0 || corrupt, "%s", err.msg);
        if (!(corrupt && i == 2)) {
            CHECK(image_preprocess_u8(&rgb, &icfg, IMAGE_ASPECT_PAD, NULL, chw, &err) == 0, "%s", err.msg);
            image_normalize(chw, SZ, &icfg, want + (size_t)i * 3 * SZ * SZ);
        }
        rgb_image_free(&rgb);
        int32_t ids[3] = {5, 6, 7}, labels[3] = {-100, 6, 7};
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        ShardSample s = {.id = id, .item = i, .input_ids = ids, .labels = labels, .length = 3, .image_path = files[i],
                         .encoded = (const uint8_t *)bytes, .encoded_len = n};
        CHECK(shard_writer_add(w, &s, &err) == 0, "%s", err.msg);
        free(bytes);
    }
    CHECK(shard_writer_finish(w, "{}", &err) == 0, "%s", err.msg);
    Manifest m;
    memset(&m, 0, sizeof m);
    m.complete = 1;
    snprintf(m.aspect, sizeof m.aspect, "pad");
    m.max_length = 8;
    m.store = STORE_ENCODED;
    m.image_size = SZ;
    ManifestShard ms = {.file = "shard-00000.h5", .samples = N, .images = N, .tokens = 3 * N, .end_item = N};
    manifest_add_shard(&m, &ms);
    CHECK(manifest_write(&m, dir, &err) == 0, "%s", err.msg);
    manifest_free(&m);
    LoaderOptions o;
    loader_options_default(&o);
    o.dir = dir;
    o.micro_batch = N;
    o.shuffle = 0;
    o.workers = 2;
    o.pixels_bf16 = 1;  // as for the CUDA backend: rounded on the workers too
    Loader *L = loader_open(&o, &err);
    EXPECT(L != NULL, "open encoded folder: %s", err.msg);
    if (!L) return;
    LoaderBatch lb;
    int rc = loader_next(L, &lb, &err);
    if (corrupt) {
        EXPECT(rc != 0 && strstr(err.msg, "'e2'"), "corrupt stored image: error names the sample: %s", err.msg);
        EXPECT(loader_next(L, &lb, &err) != 0, "and the loader stays failed");
    } else {
        EXPECT(rc == 0 && lb.batch.n_images == N &&
                   memcmp(lb.batch.pixels, want, (size_t)N * 3 * SZ * SZ * sizeof(float)) == 0,
               "decoded on the loader = decoded directly (%s)", err.msg);
        // bf16 pixels: every element f32_to_bf16 of the fp32 one (the rounding
        // the CUDA upload applied on the main thread before).
        size_t bad = 0;
        const size_t n_px = (size_t)N * 3 * SZ * SZ;
        for (size_t e = 0; rc == 0 && lb.batch.pixels_bf16 && e < n_px; e++)
            bad += lb.batch.pixels_bf16[e] != f32_to_bf16(lb.batch.pixels[e]);
        EXPECT(rc == 0 && lb.batch.pixels_bf16 && bad == 0, "bf16 pixels from the workers: %zu of %zu differ", bad,
               n_px);
    }
    loader_close(L);
    free(want);
    free(chw);
}

// ---- bad options ---------------------------------------------------------------------------------

static void test_errors(const char *dir, const char *tiny_dir) {
    LoaderOptions o;
    Error err = {{0}};
    loader_options_default(&o);
    o.dir = dir;
    o.rank = 2;
    o.world = 2;
    EXPECT(!loader_open(&o, &err) && strstr(err.msg, "rank"), "rank outside world: %s", err.msg);
    loader_options_default(&o);
    o.dir = dir;
    o.max_length = 10;
    EXPECT(!loader_open(&o, &err) && strstr(err.msg, "max_length 10"), "sample longer than max_length: %s", err.msg);
    loader_options_default(&o);
    o.dir = dir;
    o.resume.step = 1000;
    EXPECT(!loader_open(&o, &err) && strstr(err.msg, "resume step"), "resume outside the epoch: %s", err.msg);
    loader_options_default(&o);
    o.dir = tiny_dir;
    o.micro_batch = 8;
    Loader *L = loader_open(&o, &err);
    EXPECT(L && loader_num_steps_per_epoch(L) == 1, "drop_last off: 5 samples < G = 8 make one partial step: %s",
           err.msg);
    loader_close(L);
    o.drop_last = 1;
    EXPECT(!loader_open(&o, &err) && strstr(err.msg, "fewer than one global batch"), "drop_last: %s", err.msg);
    // an unfinished prep
    Manifest m;
    CHECK(manifest_read(&m, tiny_dir, &err) == 0, "%s", err.msg);
    m.complete = 0;
    CHECK(manifest_write(&m, tiny_dir, &err) == 0, "%s", err.msg);
    manifest_free(&m);
    loader_options_default(&o);
    o.dir = tiny_dir;
    EXPECT(!loader_open(&o, &err) && strstr(err.msg, "not finished"), "incomplete folder: %s", err.msg);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    char dir[] = "/tmp/llava_test_loader_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char tiny[600];
    snprintf(tiny, sizeof tiny, "%s/tiny", dir);
    Error err = {{0}};
    CHECK(make_dirs(tiny, &err) == 0, "%s", err.msg);
    const int N = 29;  // not a multiple of G = 12: a partial last step
    make_folder(dir, N, 8, 0, NULL);
    make_folder(tiny, 5, 8, 0, NULL);
    test_exactly_once_and_step_sets(dir, N);
    for (int group = 0; group <= 1; group++)
        for (int pack = 0; pack <= 1; pack++) test_resume(dir, group, pack);
    test_grouping();
    test_packing_isolation(dir);
    test_batch_source(dir);
    char enc[700];
    snprintf(enc, sizeof enc, "%s/encoded", dir);
    test_encoded(src, enc, 0);
    snprintf(enc, sizeof enc, "%s/encoded_bad", dir);
    test_encoded(src, enc, 1);
    test_errors(dir, tiny);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    return test_summary("test_loader");
}
