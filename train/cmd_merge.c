// `llava merge --base DIR --adapter DIR --out DIR`: folds a PEFT LoRA adapter
// into its base (W + scale B A for every adapted linear, the adapter's
// projector when it carries one) and writes a complete LLaVA folder that
// transformers and every llava command load without knowing about LoRA.
#include <stdio.h>
#include <string.h>

#include "common/args.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"
#include "common/commands.h"
#include "model/lora_io.h"
#include "train/save.h"

int cmd_merge(int argc, char **argv) {
    const char *base = NULL, *adapter = NULL, *out = NULL, *dtype = "auto";
    int threads = 0;
    ArgSpec specs[] = {
        {"base", ARG_STRING, &base, "the LLaVA model folder the adapter was trained on", 1},
        {"adapter", ARG_STRING, &adapter, "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)", 1},
        {"out", ARG_STRING, &out, "the merged model folder to write", 1},
        {"dtype", ARG_STRING, &dtype, "auto (as the base stores each tensor) | bf16 | f32 (default auto)", 0},
        {"threads", ARG_INT, &threads, "CPU threads (default: all cores)", 0},
    };
    int rc = args_parse(argc, argv, specs, (int)(sizeof specs / sizeof *specs),
                        "llava merge --base DIR --adapter DIR --out DIR [--dtype auto|bf16|f32]",
                        "Writes base + adapter as one LLaVA folder: every adapted weight becomes W + scale * B @ A\n"
                        "(scale = lora_alpha / r, or / sqrt(r) with use_rslora), the projector is the adapter's when\n"
                        "it has one (modules_to_save); tokenizer and processor files are copied from the base.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (strcmp(dtype, "auto") && strcmp(dtype, "bf16") && strcmp(dtype, "f32")) {
        fprintf(stderr, "llava merge: --dtype must be auto, bf16 or f32\n");
        return EXIT_BAD_INPUT;
    }
    if (strcmp(base, out) == 0 || strcmp(adapter, out) == 0) {
        fprintf(stderr, "llava merge: --out must be a new folder, not the base or the adapter\n");
        return EXIT_BAD_INPUT;
    }
    backend_set_threads(threads);
    Error err = {{0}};
    LlavaModel m;
    if (checkpoint_load_llava(&m, base, ops_cpu(), &err) != 0) {
        fprintf(stderr, "llava merge: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (lora_load_adapter(&m, adapter, &err) != 0) {
        fprintf(stderr, "llava merge: %s\n", err.msg);
        model_free(&m);
        return EXIT_BAD_INPUT;
    }
    int r = m.lora.r;
    float scale = m.lora.scale;
    lora_merge(&m);
    int status = EXIT_OK;
    if (save_model_folder(&m, out, base, dtype, 5000000000ull, &err) != 0) {
        fprintf(stderr, "llava merge: %s\n", err.msg);
        status = EXIT_ERROR;
    } else {
        printf("merged %s (r %d, scale %g) into %s: wrote %s\n", adapter, r, (double)scale, base, out);
    }
    model_free(&m);
    return status;
}
