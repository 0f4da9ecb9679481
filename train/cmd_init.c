// `llava init`: writes a fresh LLaVA model folder, either randomly initialized
// from a LLaVA config.json, or composed from a CLIP folder + a LLaMA folder
// (+ a projector) with the tokenizer extended by <image>/<pad>: the folder
// stage 1 starts from.
#include <stdio.h>
#include <string.h>

#include "common/args.h"
#include "model/checkpoint.h"
#include "common/commands.h"
#include "model/hf_files.h"
#include "model/model_source.h"
#include "train/save.h"

int cmd_init(int argc, char **argv) {
    ModelSource src;
    model_source_default(&src);
    const char *config_path = NULL, *out = NULL, *tokenizer = NULL, *dtype = "auto";
    int force = 0;
    ArgSpec specs[16];
    int n = 0;
    specs[n++] = (ArgSpec){"force", ARG_FLAG, &force, "overwrite an existing model folder", 0};
    specs[n++] = (ArgSpec){"out", ARG_STRING, &out, "the model folder to write", 1};
    specs[n++] = (ArgSpec){"config", ARG_STRING, &config_path,
                           "a LlavaForConditionalGeneration config.json: random weights of those shapes", 0};
    specs[n++] = (ArgSpec){"tokenizer", ARG_STRING, &tokenizer, "with --config: folder whose tokenizer files to copy", 0};
    specs[n++] = (ArgSpec){"dtype", ARG_STRING, &dtype, "auto (as the inputs) | bf16 | f32 (default auto)", 0};
    n = model_source_args_compose(&src, specs, n);
    int rc = args_parse(argc, argv, specs, n,
                        "llava init --out DIR (--config CONFIG.json [--tokenizer DIR] | --vision CLIP_DIR --llm LLM_DIR "
                        "[--projector FILE]) [options]",
                        "Writes a LLaVA model folder transformers can load: config.json, model.safetensors, tokenizer\n"
                        "and processor files. Composition adds <image> (and <pad>) to the LLM's vocabulary unless\n"
                        "--image-token names an existing id; the projector is freshly initialized (seeded) unless given.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (!!config_path == !!(src.vision_dir || src.llm_dir)) {
        fprintf(stderr, "llava init: give either --config FILE or --vision DIR --llm DIR\n");
        return EXIT_BAD_INPUT;
    }
    if (strcmp(dtype, "auto") && strcmp(dtype, "bf16") && strcmp(dtype, "f32")) {
        fprintf(stderr, "llava init: --dtype must be auto, bf16 or f32\n");
        return EXIT_BAD_INPUT;
    }
    char existing[4200];
    snprintf(existing, sizeof existing, "%s/config.json", out);
    if (!force && file_exists(existing)) {
        fprintf(stderr, "llava init: %s already holds a model (config.json); pass --force to overwrite it\n", out);
        return EXIT_BAD_INPUT;
    }
    Error err = {{0}};
    LlavaModel m;
    if (config_path) {
        LlavaConfig cfg;
        if (config_load_llava(&cfg, config_path, &err) != 0) {
            fprintf(stderr, "llava init: %s\n", err.msg);
            return EXIT_BAD_INPUT;
        }
        model_init(&m, &cfg, ops_cpu());
        checkpoint_init_random(&m, (unsigned long long)src.seed);
    } else if (model_source_load(&src, &m, ops_cpu(), &err) != 0) {
        fprintf(stderr, "llava init: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    int status = EXIT_OK;
    const char *tok_src = config_path ? tokenizer : src.llm_dir;
    char tok_json[4096];
    if (tok_src && (path_join(tok_json, sizeof tok_json, tok_src, "tokenizer.json") != 0 || !file_exists(tok_json))) {
        fprintf(stderr, "llava init: warning: no tokenizer.json in %s; the folder gets no tokenizer\n", tok_src);
        tok_src = NULL;
    }
    // Composition writes what training a composed model writes into final/.
    if (save_model_folder(&m, out, NULL, dtype, 5000000000ull, &err) != 0 ||
        hf_write_model_files(src.vision_dir, tok_src, out, &m.cfg, &err) != 0) {
        fprintf(stderr, "llava init: %s\n", err.msg);
        status = EXIT_ERROR;
    } else {
        printf("wrote %s: %zu parameters\n", out, model_num_params(&m, 0));
        config_print(&m.cfg, stdout);
    }
    model_free(&m);
    return status;
}
