// Runs the fuzz target without libFuzzer (ctest test_fuzz_request): every file
// of the seed corpus as is, then ITER mutations of them (byte flips,
// truncations, insertions, splices of two seeds) from a fixed seed, so the
// run is the same each time.
// usage: fuzz_request_replay CORPUS_DIR [ITER]
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [ITER]\n", argv[0]);
        return 2;
    }
    const long iters = argc > 2 ? atol(argv[2]) : 20000;
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "%s: cannot open the corpus folder\n", argv[1]);
        return 2;
    }
    char **seeds = NULL;
    size_t *lens = NULL;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], de->d_name);
        Error err = {{0}};
        size_t len;
        char *data = read_file(path, &len, &err);
        if (!data) {
            fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
        seeds = xrealloc(seeds, (size_t)(n + 1) * sizeof *seeds);
        lens = xrealloc(lens, (size_t)(n + 1) * sizeof *lens);
        seeds[n] = data;
        lens[n++] = len;
        LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "%s: empty corpus\n", argv[1]);
        return 2;
    }
    Rng rng;
    rng_seed(&rng, 11);
    uint8_t *buf = xmalloc(1 << 16);
    for (long it = 0; it < iters; it++) {
        int a = (int)(rng_next(&rng) % (uint64_t)n);
        size_t len = lens[a] < (1 << 15) ? lens[a] : (1 << 15);
        memcpy(buf, seeds[a], len);
        int edits = 1 + (int)(rng_next(&rng) % 8);
        for (int k = 0; k < edits && len > 0; k++) {
            size_t at = (size_t)(rng_next(&rng) % len);
            switch (rng_next(&rng) % 5) {
                case 0: buf[at] ^= (uint8_t)(1u << (rng_next(&rng) % 8)); break;   // flip a bit
                case 1: buf[at] = (uint8_t)"{}[]\":,0-1e.\\tnull"[rng_next(&rng) % 18]; break;  // JSON punctuation
                case 2: len = at; break;                                            // truncate
                case 3:                                                             // insert a byte
                    if (len < (1 << 16) - 1) {
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = (uint8_t)rng_next(&rng);
                        len++;
                    }
                    break;
                default: {  // splice the tail of another seed
                    int b = (int)(rng_next(&rng) % (uint64_t)n);
                    size_t from = lens[b] ? (size_t)(rng_next(&rng) % lens[b]) : 0, take = lens[b] - from;
                    if (at + take > (1 << 16)) take = (1 << 16) - at;
                    memcpy(buf + at, seeds[b] + from, take);
                    len = at + take;
                }
            }
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("ok   %d seeds and %ld mutations parsed or refused with a 4xx error object\n", n, iters);
    for (int i = 0; i < n; i++) free(seeds[i]);
    free(seeds);
    free(lens);
    free(buf);
    return 0;
}
