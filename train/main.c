// `llava <command>`: dispatch to the command implementations. Each command
// lives in its own train/cmd_*.c (or eval/, data/) and parses its own flags.
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "common/commands.h"

#ifndef LLAVA_VERSION
#define LLAVA_VERSION "unknown"
#endif
#ifndef LLAVA_GIT_COMMIT
#define LLAVA_GIT_COMMIT "unknown"
#endif

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"demo", cmd_demo, "the embedded default: synthetic data, both stages on a tiny model, evaluation"},
    {"train", cmd_train, "train a stage (1: projector, 2: projector + LLM) from a JSON run config"},
    {"init", cmd_init, "write a fresh model folder: random from a config, or CLIP + LLM (+ projector)"},
    {"plan", cmd_plan, "memory per GPU/process by part for zero_stage 0-3, and whether a run fits"},
    {"bench", cmd_bench, "time training steps on synthetic batches (JSON output)"},
    {"merge", cmd_merge, "fold a PEFT LoRA adapter into its base: a complete model folder"},
    {"forward", cmd_forward, "run one batch forward (and backward) and write logits, loss, gradients"},
    {"preprocess", cmd_preprocess, "decode and preprocess one image as LLaVA does; write pixel_values"},
    {"tokenize", cmd_tokenize, "text -> token ids (or ids -> text) with a model's tokenizer.json"},
    {"generate", cmd_generate, "generate a continuation of a prompt with a KV cache"},
    {"chat", cmd_chat, "talk about an image, turn by turn (LLaVA's CLI)"},
    {"eval", cmd_eval, "evaluate on a benchmark (scienceqa, vqa: LLaVA-Bench / MM-Vet answers)"},
    {"prep", cmd_prep, "prepare a LLaVA data set: HDF5 shards, manifest.json, report.json"},
    {"serve", cmd_serve, "an OpenAI-compatible chat server with a web chat page, batching requests"},
    {"datagen", cmd_datagen, "generate instruction data from captions + boxes with a chat-completions model"},
    {"judge", cmd_judge, "score answers against references with a chat-completions judge (LLaVA-Bench)"},
    {"inspect", cmd_inspect, "summarize a shard folder, or show one sample's ids, labels and text"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: llava <command> [options]   (llava <command> --help for its options; llava --version)\n\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(out, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

static void print_version(void) {
    printf("llava.c %s (commit %s)\nbackends: %s\nmpi: %s\n", LLAVA_VERSION, LLAVA_GIT_COMMIT, backend_compiled(),
#ifdef LLAVA_HAVE_MPI
           "yes"
#else
           "no"
#endif
    );
}

int main(int argc, char **argv) {
    backend_default_wait_policy(argv);
    if (argc < 2) {
        usage(stderr);
        return EXIT_BAD_INPUT;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        print_version();
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "llava: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_BAD_INPUT;
}
