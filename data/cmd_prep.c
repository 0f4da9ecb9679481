// `llava prep`: a LLaVA data file + image folder -> HDF5 shards, manifest.json
// and report.json (docs/data.md, "Prep").
#include <stdio.h>
#include <string.h>

#include "common/args.h"
#include "data/prep_model.h"
#include "train/commands.h"

int cmd_prep(int argc, char **argv) {
    PrepRequest rq;
    prep_request_default(&rq);
    const char *store = "pixels", *aspect = "square";
    int shard_samples = (int)rq.shard_max_samples, shard_mb = (int)rq.shard_max_mb, quiet = 0;
    int max_pixels = (int)IMAGE_DEFAULT_MAX_PIXELS;
    ArgSpec specs[] = {
        {"data", ARG_STRING, &rq.data_path, "LLaVA data file: a JSON list or JSONL", 1},
        {"images", ARG_STRING, &rq.images_dir, "image folder the \"image\" paths are relative to (default: the data file's folder)", 0},
        {"model", ARG_STRING, &rq.model_dir, "model folder: config.json, tokenizer files, preprocessor_config.json", 1},
        {"tokenizer", ARG_STRING, &rq.tokenizer_dir, "folder with tokenizer.json / tokenizer_config.json (default: --model)", 0},
        {"template", ARG_STRING, &rq.template_name, "plain | vicuna_v1 | v1 | llava_v1", 1},
        {"max-length", ARG_INT, &rq.max_length, "tokens per sample, images included (default: min(2048, max positions))", 0, 8, 1048576},
        {"out", ARG_STRING, &rq.out_dir, "shard folder to write (or to resume)", 1},
        {"workers", ARG_INT, &rq.workers, "worker threads (default: all cores)", 0, 0, 256},
        {"store", ARG_STRING, &store, "pixels (preprocessed uint8, default) | encoded (original file bytes)", 0},
        {"aspect", ARG_STRING, &aspect, "square (LLaVA default, stage 1) | pad (LLaVA-1.5 stage 2)", 0},
        {"shard-samples", ARG_INT, &shard_samples, "samples per shard at most (default 10000)", 0, 1, 16777216},
        {"shard-mb", ARG_INT, &shard_mb, "payload MB per shard at most (default 1024)", 0, 1, 1048576},
        {"max-pixels", ARG_INT, &max_pixels, "refuse images with more pixels (default 178956970, as Pillow)", 0, 1, 2147483647},
        {"quiet", ARG_FLAG, &quiet, "no progress lines", 0},
    };
    int rc = args_parse(argc, argv, specs, (int)(sizeof specs / sizeof *specs),
                        "llava prep --data FILE --images DIR --model DIR --template NAME --out DIR [options]",
                        "Tokenizes LLaVA conversations with the model's template and tokenizer, decodes and\n"
                        "preprocesses their images, and writes HDF5 shards, manifest.json and report.json\n"
                        "(every skipped or truncated sample with its reason). Runs on all cores; run it again\n"
                        "after an interruption to resume; on a complete folder it does nothing.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    const int st = image_store_parse(store);
    if (st < 0 || (strcmp(aspect, "pad") != 0 && strcmp(aspect, "square") != 0) || rq.max_length < 0 ||
        rq.workers < 0 || max_pixels <= 0 || shard_samples < 0 || shard_mb < 0 || (shard_samples == 0 && shard_mb == 0)) {
        fprintf(stderr, "llava prep: --store pixels|encoded, --aspect pad|square, non-negative numbers, and at least "
                        "one shard bound\n");
        return EXIT_BAD_INPUT;
    }
    rq.store = (ImageStore)st;
    rq.aspect = strcmp(aspect, "pad") == 0 ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE;
    rq.shard_max_samples = shard_samples;
    rq.shard_max_mb = shard_mb;
    rq.progress = !quiet;
    rq.max_pixels = max_pixels == (int)IMAGE_DEFAULT_MAX_PIXELS ? 0 : max_pixels;
    PrepSummary sum;
    Error err = {{0}};
    if (prep_from_model(&rq, &sum, &err) != 0) {
        fprintf(stderr, "llava prep: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (sum.already_complete) {
        printf("prep: %s is complete (%lld samples in %d shards): nothing to do\n", rq.out_dir,
               (long long)sum.written, sum.shards);
        return EXIT_OK;
    }
    printf("prep: %lld items: %lld written (%lld truncated), %lld skipped; %lld images, %lld tokens in %d shards; "
           "%.1f s\n",
           (long long)sum.items, (long long)sum.written, (long long)sum.truncated, (long long)sum.skipped,
           (long long)sum.images, (long long)sum.tokens, sum.shards, sum.seconds);
    printf("prep: report: %s/report.json%s\n", rq.out_dir,
           sum.skipped || sum.truncated ? " (lists every skipped and truncated sample)" : "");
    return EXIT_OK;
}
