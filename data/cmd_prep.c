// `llava prep`: a LLaVA data file + image folder -> HDF5 shards, manifest.json
// and report.json (docs/data.md, "Prep").
#include <stdio.h>
#include <string.h>

#include "common/args.h"
#include "data/prep_model.h"
#include "data/prep_webdataset.h"
#include "common/commands.h"

// The summary lines of a finished (or already complete) prep.
static void print_summary(const char *out, const PrepSummary *sum) {
    if (sum->already_complete) {
        printf("prep: %s is complete (%lld samples in %d shards): nothing to do\n", out, (long long)sum->written,
               sum->shards);
        return;
    }
    printf("prep: %lld items: %lld written (%lld truncated), %lld skipped; %lld images, %lld tokens in %d shards; "
           "%.1f s\n",
           (long long)sum->items, (long long)sum->written, (long long)sum->truncated, (long long)sum->skipped,
           (long long)sum->images, (long long)sum->tokens, sum->shards, sum->seconds);
    printf("prep: report: %s/report.json%s\n", out,
           sum->skipped || sum->truncated ? " (lists every skipped and truncated sample)" : "");
}

// --webdataset (one part or all) and --merge.
static int cmd_prep_webdataset(const PrepRequest *rq, WdsPrepRequest *wq, const char *part, int merge,
                               int max_member_mb) {
    Error err = {{0}};
    PrepSummary sum;
    if (!rq->out_dir) {
        fprintf(stderr, "llava prep: --out is required\n");
        return EXIT_BAD_INPUT;
    }
    if (merge && !wq->spec) {
        if (prep_merge_parts(rq->out_dir, &sum, &err) != 0) {
            fprintf(stderr, "llava prep --merge: %s\n", err.msg);
            return EXIT_BAD_INPUT;
        }
        printf("prep: merged the parts into %s\n", rq->out_dir);
        print_summary(rq->out_dir, &sum);
        return EXIT_OK;
    }
    if (!rq->model_dir || max_member_mb <= 0 || (part && wds_part_parse(part, &wq->part, &wq->parts, &err) != 0)) {
        fprintf(stderr, "llava prep: %s\n", err.msg[0] ? err.msg : "--webdataset needs --model and --max-member-mb > 0");
        return EXIT_BAD_INPUT;
    }
    wq->max_member_bytes = (int64_t)max_member_mb << 20;
    WdsPrepResult res;
    if (prep_webdataset(rq, wq, &sum, &res, &err) != 0) {
        fprintf(stderr, "llava prep: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    print_summary(wq->parts > 1 ? res.part_dir : rq->out_dir, &sum);
    if (wq->parts > 1 && res.merged)
        printf("prep: all %d parts complete: merged into %s (manifest.json, report.json)\n", wq->parts, rq->out_dir);
    else if (wq->parts > 1)
        printf("prep: part %d/%d done, %d of %d parts complete; the last one merges (or: llava prep --merge --out %s)\n",
               wq->part, wq->parts, res.parts_complete, wq->parts, rq->out_dir);
    return EXIT_OK;
}

int cmd_prep(int argc, char **argv) {
    PrepRequest rq;
    prep_request_default(&rq);
    const char *store = "pixels", *aspect = "square";
    int shard_samples = (int)rq.shard_max_samples, shard_mb = (int)rq.shard_max_mb, quiet = 0;
    int max_pixels = (int)IMAGE_DEFAULT_MAX_PIXELS;
    WdsPrepRequest wq = {.caption_key = "txt", .parts = 1};
    const char *part = NULL;
    int merge = 0, max_member_mb = WDS_DEFAULT_MAX_MEMBER_MB;
    ArgSpec specs[] = {
        {"data", ARG_STRING, &rq.data_path, "LLaVA data file: a JSON list or JSONL", 0},
        {"webdataset", ARG_STRING, &wq.spec, "WebDataset tar shards instead of --data: 'DIR/{00000..00999}.tar', a glob, or a list file", 0},
        {"caption-key", ARG_STRING, &wq.caption_key, "webdataset caption: txt (the KEY.txt member, default) or a field of KEY.json", 0},
        {"part", ARG_STRING, &part, "webdataset: prep part i/N of the tars into OUT/part-i-of-N (auto: MPI/Slurm rank); the last part merges", 0},
        {"merge", ARG_FLAG, &merge, "merge OUT/part-*-of-N into one manifest.json and report.json (needs only --out)", 0},
        {"max-member-mb", ARG_INT, &max_member_mb, "webdataset: refuse tar members larger than this (default 64)", 0},
        {"images", ARG_STRING, &rq.images_dir, "image folder the \"image\" paths are relative to (default: the data file's folder)", 0},
        {"model", ARG_STRING, &rq.model_dir, "model folder: config.json, tokenizer files, preprocessor_config.json", 0},
        {"tokenizer", ARG_STRING, &rq.tokenizer_dir, "folder with tokenizer.json / tokenizer_config.json (default: --model)", 0},
        {"template", ARG_STRING, &rq.template_name, "plain | vicuna_v1 | v1 | llava_v1 | qwen_2 | llama_3 (webdataset default: plain)", 0},
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
                        "llava prep --data FILE --images DIR --model DIR --template NAME --out DIR [options]\n"
                        "       llava prep --webdataset 'DIR/{00000..00999}.tar' --model DIR --out DIR [--part i/N]\n"
                        "       llava prep --merge --out DIR",
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
    if (merge || wq.spec) return cmd_prep_webdataset(&rq, &wq, part, merge, max_member_mb);
    if (!rq.data_path || !rq.model_dir || !rq.template_name) {
        fprintf(stderr, "llava prep: --data, --model and --template are required (or --webdataset; see --help)\n");
        return EXIT_BAD_INPUT;
    }
    PrepSummary sum;
    Error err = {{0}};
    if (prep_from_model(&rq, &sum, &err) != 0) {
        fprintf(stderr, "llava prep: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    print_summary(rq.out_dir, &sum);
    return EXIT_OK;
}
