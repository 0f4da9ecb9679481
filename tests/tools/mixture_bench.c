// Loader throughput over a data mixture: global batches per second through
// the mixture BatchSource (data/mixture.h) of two shard folders, weights
// 1:1, each with its own loader threads. Used by scripts/bench_webdataset.sh.
// usage: mixture_bench DIR_A DIR_B MICRO_BATCH WORKERS STEPS
#include <stdio.h>
#include <stdlib.h>

#include "data/mixture.h"

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: mixture_bench DIR_A DIR_B MICRO_BATCH WORKERS STEPS\n");
        return 2;
    }
    char text[4096];
    snprintf(text, sizeof text, "[{\"path\": \"%s\", \"weight\": 1, \"name\": \"a\"}, {\"path\": \"%s\", \"weight\": 1, \"name\": \"b\"}]",
             argv[1], argv[2]);
    Mixture m;
    Error err = {{0}};
    LoaderOptions o;
    loader_options_default(&o);
    o.micro_batch = atoi(argv[3]);
    o.workers = atoi(argv[4]);
    const int steps = atoi(argv[5]);
    BatchSource s;
    if (mixture_parse(text, &m, &err) != 0 || mixture_source_open(&s, &o, &m, &err) != 0) {
        fprintf(stderr, "mixture_bench: %s\n", err.msg);
        return 1;
    }
    LlavaBatch mb[1];
    long images = 0;
    const double t0 = now_seconds();
    for (int k = 0; k < steps; k++) {
        int n = 0;
        if (s.next_step(&s, mb, &n, &err) != 0) {
            fprintf(stderr, "mixture_bench: %s\n", err.msg);
            return 1;
        }
        for (int i = 0; i < n; i++) images += mb[i].n_images;
    }
    const double sec = now_seconds() - t0;
    char info[512] = "";
    s.step_info(&s, info, sizeof info);
    printf("%d global batches of %d in %.2f s: %.0f images/s (%s)\n", steps, o.micro_batch, sec, images / sec, info);
    s.close(&s);
    mixture_free(&m);
    return 0;
}
