// A main for a fuzz target without libFuzzer: runs every file given (or
// every file in a folder given) through LLVMFuzzerTestOneInput once, then,
// with --mutate N, N mutations of those inputs (bit flips, JSON punctuation,
// truncations, insertions, splices of two inputs) from a fixed seed, so a
// run is the same each time. ctest replays the seed corpora and the
// regression inputs this way (tests/test_fuzz_replay.sh, test_fuzz_request),
// under AddressSanitizer when the build has it.
// usage: fuzz_TARGET_replay [--mutate N] FILE_OR_FOLDER...
#include <dirent.h>
#include <sys/stat.h>

#include "common/rng.h"
#include "tests/fuzz/fuzz_util.h"

typedef struct {
    char **data;
    size_t *len;
    int n;
} Inputs;

static int add_file(Inputs *in, const char *path) {
    Error err = {{0}};
    size_t len = 0;
    char *data = read_file(path, &len, &err);
    if (!data) {
        fprintf(stderr, "replay: %s\n", err.msg);
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    in->data = xrealloc(in->data, (size_t)(in->n + 1) * sizeof *in->data);
    in->len = xrealloc(in->len, (size_t)(in->n + 1) * sizeof *in->len);
    in->data[in->n] = data;
    in->len[in->n++] = len;
    return 0;
}

static int add_path(Inputs *in, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;  // a glob that matched nothing
    if (!S_ISDIR(st.st_mode)) return add_file(in, path);
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "replay: cannot open the folder %s\n", path);
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) rc = add_file(in, file);
    }
    closedir(d);
    return rc;
}

// One mutant of a random input into buf (capacity cap), its length returned.
static size_t mutate(const Inputs *in, Rng *rng, uint8_t *buf, size_t cap) {
    int a = (int)(rng_next(rng) % (uint64_t)in->n);
    size_t len = in->len[a] < cap / 2 ? in->len[a] : cap / 2;
    memcpy(buf, in->data[a], len);
    int edits = 1 + (int)(rng_next(rng) % 8);
    for (int k = 0; k < edits && len > 0; k++) {
        size_t at = (size_t)(rng_next(rng) % len);
        switch (rng_next(rng) % 5) {
            case 0: buf[at] ^= (uint8_t)(1u << (rng_next(rng) % 8)); break;                   // flip a bit
            case 1: buf[at] = (uint8_t)"{}[]\":,0-1e.\\tnull"[rng_next(rng) % 18]; break;  // JSON punctuation
            case 2: len = at; break;                                                         // truncate
            case 3:                                                                          // insert a byte
                if (len < cap - 1) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = (uint8_t)rng_next(rng);
                    len++;
                }
                break;
            default: {  // splice the tail of another input
                int b = (int)(rng_next(rng) % (uint64_t)in->n);
                size_t from = in->len[b] ? (size_t)(rng_next(rng) % in->len[b]) : 0, take = in->len[b] - from;
                if (at + take > cap) take = cap - at;
                memcpy(buf + at, in->data[b] + from, take);
                len = at + take;
            }
        }
    }
    return len;
}

int main(int argc, char **argv) {
    long mutations = 0;
    Inputs in = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mutate") == 0 && i + 1 < argc) {
            mutations = atol(argv[++i]);
            continue;
        }
        if (add_path(&in, argv[i]) != 0) return 1;
    }
    if (in.n == 0) {
        fprintf(stderr, "usage: %s [--mutate N] FILE_OR_FOLDER...: no input found\n", argv[0]);
        return 1;
    }
    if (mutations > 0) {
        Rng rng;
        rng_seed(&rng, 11);
        const size_t cap = 1 << 16;
        uint8_t *buf = xmalloc(cap);
        for (long it = 0; it < mutations; it++) {
            size_t len = mutate(&in, &rng, buf, cap);
            LLVMFuzzerTestOneInput(buf, len);
        }
        free(buf);
    }
    printf("replayed %d inputs and %ld mutations\n", in.n, mutations);
    for (int i = 0; i < in.n; i++) free(in.data[i]);
    free(in.data);
    free(in.len);
    return 0;
}
