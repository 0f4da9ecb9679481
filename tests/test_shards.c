// HDF5 shards: what is written is read back exactly (tokens, labels, tables,
// ids, pixels, encoded bytes, prep_info), writing is atomic, bad files are
// refused with a message naming them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/shards.h"
#include "tests/testlib.h"

#define S 5

static void make_sample(int i, int32_t *ids, int32_t *labels, int len) {
    for (int t = 0; t < len; t++) {
        ids[t] = 1000 * i + t;
        labels[t] = t % 3 == 0 ? -100 : 7 * i + t;
    }
}

static void test_store(const char *dir, ImageStore store) {
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/shard-%s.h5", dir, image_store_name(store));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    Error err = {{0}};
    ShardFormat fmt = {store, S};
    ShardWriter *w = shard_writer_create(path, &fmt, &err);
    EXPECT(w != NULL, "create: %s", err.msg);
    if (!w) return;
    EXPECT(file_exists(tmp) && !file_exists(path), "writes to .tmp first");
    const int n = 6;
    const int lens[6] = {3, 9, 1, 4, 12, 2};
    const int has_image[6] = {0, 1, 0, 1, 1, 0};
    uint8_t images[6][3 * S * S + 40];
    size_t image_len[6];
    int64_t want_targets[6];
    for (int i = 0; i < n; i++) {
        int32_t ids[16], labels[16];
        make_sample(i, ids, labels, lens[i]);
        want_targets[i] = 0;
        for (int t = 1; t < lens[i]; t++) want_targets[i] += labels[t] != -100;
        image_len[i] = store == STORE_PIXELS ? 3 * S * S : (size_t)(10 + 7 * i);
        for (size_t k = 0; k < image_len[i]; k++) images[i][k] = (uint8_t)(31 * i + k);
        char id[32], ipath[32];
        snprintf(id, sizeof id, "sample-%d", i);
        snprintf(ipath, sizeof ipath, "dir/img%d.jpg", i);
        ShardSample s = {.id = id, .item = 10 + 2 * i, .input_ids = ids, .labels = labels, .length = lens[i],
                         .image_path = has_image[i] ? ipath : NULL,
                         .pixels = store == STORE_PIXELS && has_image[i] ? images[i] : NULL,
                         .encoded = store == STORE_ENCODED && has_image[i] ? images[i] : NULL,
                         .encoded_len = image_len[i]};
        EXPECT(shard_writer_add(w, &s, &err) == 0, "add %d: %s", i, err.msg);
    }
    EXPECT(shard_writer_samples(w) == n, "sample count");
    const char *info = "{\"first_item\": 10, \"end_item\": 22, \"problems\": [{\"id\": \"x\"}]}";
    EXPECT(shard_writer_finish(w, info, &err) == 0, "finish: %s", err.msg);
    EXPECT(file_exists(path) && !file_exists(tmp), "renamed to the final name");

    ShardReader r;
    EXPECT(shard_reader_open(&r, path, &err) == 0, "open: %s", err.msg);
    if (r.hid <= 0) return;
    EXPECT(r.n_samples == n && r.n_images == 3 && r.fmt.store == store && r.fmt.image_size == S, "header");
    int64_t tokens = 0;
    for (int i = 0; i < n; i++) tokens += lens[i];
    EXPECT(r.n_tokens == tokens, "token count %lld", (long long)r.n_tokens);
    int image_no = 0;
    for (int i = 0; i < n; i++) {
        int32_t ids[16], labels[16], want_ids[16], want_labels[16];
        make_sample(i, want_ids, want_labels, lens[i]);
        EXPECT(r.length[i] == lens[i] && r.item[i] == 10 + 2 * i && r.targets[i] == want_targets[i],
               "sample %d table", i);
        EXPECT(r.modality[i] == (has_image[i] ? MODALITY_IMAGE : MODALITY_TEXT) &&
                   r.image[i] == (has_image[i] ? image_no : -1),
               "sample %d modality/image", i);
        EXPECT(shard_read_tokens(&r, r.offset[i], r.length[i], ids, labels, &err) == 0 &&
                   memcmp(ids, want_ids, (size_t)lens[i] * 4) == 0 && memcmp(labels, want_labels, (size_t)lens[i] * 4) == 0,
               "sample %d tokens", i);
        char id[64], want[32];
        snprintf(want, sizeof want, "sample-%d", i);
        EXPECT(shard_read_id(&r, i, id, sizeof id, &err) == 0 && strcmp(id, want) == 0, "sample %d id", i);
        if (!has_image[i]) continue;
        uint8_t got[3 * S * S + 40];
        if (store == STORE_PIXELS) {
            EXPECT(shard_read_pixels(&r, image_no, got, &err) == 0 && memcmp(got, images[i], 3 * S * S) == 0,
                   "sample %d pixels", i);
        } else {
            EXPECT(r.image_length[image_no] == (int64_t)image_len[i] &&
                       shard_read_encoded(&r, image_no, got, &err) == 0 && memcmp(got, images[i], image_len[i]) == 0,
                   "sample %d encoded bytes", i);
        }
        char *p = shard_read_image_path(&r, image_no, &err);
        char want_path[32];
        snprintf(want_path, sizeof want_path, "dir/img%d.jpg", i);
        EXPECT(p && strcmp(p, want_path) == 0, "image path %s", p ? p : err.msg);
        free(p);
        image_no++;
    }
    char *got_info = shard_read_prep_info(&r, &err);
    EXPECT(got_info && strcmp(got_info, info) == 0, "prep_info round trip");
    free(got_info);
    EXPECT(shard_read_tokens(&r, r.n_tokens - 1, 2, NULL, NULL, &err) != 0, "out-of-range read refused");
    shard_reader_close(&r);
    got_info = shard_file_prep_info(path, &err);
    EXPECT(got_info && strcmp(got_info, info) == 0, "shard_file_prep_info");
    free(got_info);
}

static void test_empty_and_abort(const char *dir) {
    char path[512], tmp[600];
    Error err = {{0}};
    ShardFormat fmt = {STORE_PIXELS, S};
    snprintf(path, sizeof path, "%s/empty.h5", dir);
    ShardWriter *w = shard_writer_create(path, &fmt, &err);
    EXPECT(w && shard_writer_finish(w, "{}", &err) == 0, "empty shard: %s", err.msg);
    ShardReader r;
    EXPECT(shard_reader_open(&r, path, &err) == 0 && r.n_samples == 0 && r.n_images == 0, "empty shard reads: %s",
           err.msg);
    shard_reader_close(&r);

    snprintf(path, sizeof path, "%s/aborted.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    w = shard_writer_create(path, &fmt, &err);
    shard_writer_abort(w);
    EXPECT(!file_exists(path) && !file_exists(tmp), "abort leaves nothing");

    snprintf(path, sizeof path, "%s/not_a_shard.h5", dir);
    FILE *f = fopen(path, "wb");
    fputs("hello", f);
    fclose(f);
    EXPECT(shard_reader_open(&r, path, &err) != 0 && strstr(err.msg, path) && strstr(err.msg, "HDF5"),
           "not HDF5: %s", err.msg);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/llava_test_shards_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_store(dir, STORE_PIXELS);
    test_store(dir, STORE_ENCODED);
    test_empty_and_abort(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    return test_summary("test_shards");
}
