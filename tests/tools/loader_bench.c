// Loader throughput on a shard folder: micro-batches and images per second
// through loader_next (reading, padding, pixel normalization or decoding on
// the worker threads). Used by scripts/bench_prep.sh.
// usage: loader_bench DIR MICRO_BATCH WORKERS BATCHES
#include <stdio.h>
#include <stdlib.h>

#include "data/loader.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: loader_bench DIR MICRO_BATCH WORKERS BATCHES\n");
        return 2;
    }
    LoaderOptions o;
    loader_options_default(&o);
    o.dir = argv[1];
    o.micro_batch = atoi(argv[2]);
    o.workers = atoi(argv[3]);
    const int batches = atoi(argv[4]);
    Error err = {{0}};
    Loader *L = loader_open(&o, &err);
    if (!L) {
        fprintf(stderr, "loader_bench: %s\n", err.msg);
        return 1;
    }
    long images = 0, tokens = 0;
    const double t0 = now_seconds();
    for (int i = 0; i < batches; i++) {
        LoaderBatch lb;
        if (loader_next(L, &lb, &err) != 0) {
            fprintf(stderr, "loader_bench: %s\n", err.msg);
            loader_close(L);
            return 1;
        }
        images += lb.batch.n_images;
        tokens += (long)lb.batch.B * lb.batch.T;
    }
    const double s = now_seconds() - t0;
    printf("%d micro-batches of %d in %.2f s: %.1f batches/s, %.0f images/s, %.0f tokens/s\n", batches,
           o.micro_batch, s, batches / s, images / s, tokens / s);
    loader_close(L);
    return 0;
}
