// `llava generate`: one prompt in, the model's continuation out.
//   --ids '[1, 5, ...]' [--pixels F.safetensors]   token-level (no tokenizer
//   needed): prints {"ids": [...], "stop": ...} as one JSON line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "eval/generate.h"
#include "eval/image_input.h"
#include "kernels/backend.h"
#include "train/commands.h"
#include "train/model_source.h"

// Parses "[1, 2, 3]" into ids.
static int parse_ids(const char *text, int32_t **ids, int *n, Error *err) {
    cJSON *a = json_parse_text(text, strlen(text), "--ids", err);
    if (!a) return -1;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) == 0) {
        cJSON_Delete(a);
        return err_set(err, "--ids must be a non-empty JSON list of token ids, e.g. '[1, 319, 29871]'");
    }
    *n = cJSON_GetArraySize(a);
    *ids = xmalloc((size_t)*n * sizeof(int32_t));
    int i = 0;
    for (const cJSON *it = a->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)it->valueint) {
            cJSON_Delete(a);
            free(*ids);
            return err_set(err, "--ids item %d is not an integer", i);
        }
        (*ids)[i] = it->valueint;
    }
    cJSON_Delete(a);
    return 0;
}

// pixel_values [N, 3, S, S] from a safetensors file.
static int read_pixels(const char *path, const LlavaConfig *cfg, float **pixels, int *n_images, Error *err) {
    StFile f;
    if (st_open(&f, path, err) != 0) return -1;
    const StTensor *t = st_find(&f, "pixel_values");
    const int S = cfg->vision.image_size;
    int rc = 0;
    if (!t || t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != S || t->shape[3] != S) {
        rc = err_set(err, "%s: needs 'pixel_values' of shape [N, 3, %d, %d] for this model", path, S, S);
    } else {
        *n_images = (int)t->shape[0];
        *pixels = xmalloc((size_t)t->numel * sizeof(float));
        rc = st_read_f32(&f, t, *pixels, err);
    }
    st_close(&f);
    return rc;
}

// Prompts may mark each image with one image token (as LLaVA's
// tokenizer_image_token does) or with image_seq_length of them (as
// transformers' processor does); the model takes the latter.
static int expand_image_tokens(const LlavaConfig *cfg, int32_t **ids, int *n, int n_images, Error *err) {
    int count = 0;
    for (int i = 0; i < *n; i++) count += (*ids)[i] == cfg->image_token_index;
    if (count == n_images * cfg->image_tokens) return 0;
    if (count != n_images)
        return err_set(err, "the prompt has %d image tokens (id %d) for %d image(s): give one per image or %d per image",
                       count, cfg->image_token_index, n_images, cfg->image_tokens);
    int m = *n + count * (cfg->image_tokens - 1);
    int32_t *out = xmalloc((size_t)m * sizeof(int32_t));
    int k = 0;
    for (int i = 0; i < *n; i++) {
        int reps = (*ids)[i] == cfg->image_token_index ? cfg->image_tokens : 1;
        for (int r = 0; r < reps; r++) out[k++] = (*ids)[i];
    }
    free(*ids);
    *ids = out;
    *n = m;
    return 0;
}

// One image file -> pixels [1, 3, S, S] with the model's preprocessing.
static int load_image(const ModelSource *src, const LlavaConfig *cfg, const char *path, const char *aspect,
                      float **pixels, int *n_images, Error *err) {
    ImageInput in;
    const char *dir = src->model_dir ? src->model_dir : src->vision_dir;
    if (image_input_init(&in, dir, cfg, aspect, err) != 0) return -1;
    *pixels = xmalloc((size_t)3 * in.S * in.S * sizeof(float));
    int rc = image_input_load(&in, path, *pixels, err);
    *n_images = rc == 0;
    image_input_free(&in);
    return rc;
}

static void print_stats(const GenStats *s) {
    double tps = s->decode_s > 0 ? s->decode_tokens / s->decode_s : 0.0;
    fprintf(stderr, "prefill: %ld tokens in %.1f ms; decode: %ld tokens in %.1f ms (%.1f tokens/s)\n",
            s->prefill_tokens, s->prefill_s * 1e3, s->decode_tokens, s->decode_s * 1e3, tps);
}

int cmd_generate(int argc, char **argv) {
    ModelSource src;
    model_source_default(&src);
    const char *ids_text = NULL, *pixels_path = NULL, *image_path = NULL, *aspect = "pad", *device = "cpu";
    float temperature = 0.0f, top_p = 1.0f;
    int top_k = 0, max_new = 512, seed = 0, eos = -2, threads = 0, verify = 0;
    ArgSpec specs[24];
    int n = model_source_args(&src, specs, 0);
    specs[n++] = (ArgSpec){"ids", ARG_STRING, &ids_text, "prompt as token ids, a JSON list (debugging; images as "
                                                         "image tokens, one or image_seq_length per image)", 0};
    specs[n++] = (ArgSpec){"image", ARG_STRING, &image_path, "image file (JPEG, PNG, GIF)", 0};
    specs[n++] = (ArgSpec){"aspect", ARG_STRING, &aspect,
                           "pad (LLaVA-1.5: expand to a square first) | square (resize + centre crop) (default pad)", 0};
    specs[n++] = (ArgSpec){"pixels", ARG_STRING, &pixels_path,
                           "instead of --image: preprocessed images, safetensors with pixel_values [N, 3, S, S]", 0};
    specs[n++] = (ArgSpec){"temperature", ARG_FLOAT, &temperature, "0 = greedy (default 0)", 0};
    specs[n++] = (ArgSpec){"top-p", ARG_FLOAT, &top_p, "nucleus sampling mass, 1 = off (default 1)", 0};
    specs[n++] = (ArgSpec){"top-k", ARG_INT, &top_k, "keep the k most likely tokens, 0 = off (default 0)", 0};
    specs[n++] = (ArgSpec){"max-new-tokens", ARG_INT, &max_new, "stop after this many new tokens (default 512)", 0};
    specs[n++] = (ArgSpec){"seed", ARG_INT, &seed, "sampling seed (default 0)", 0};
    specs[n++] = (ArgSpec){"eos", ARG_INT, &eos, "stop token id (default: the model's eos_token_id; -1 = none)", 0};
    specs[n++] = (ArgSpec){"verify", ARG_FLAG, &verify,
                           "check the KV-cache logits of every step against a full forward (debugging)", 0};
    specs[n++] = (ArgSpec){"device", ARG_STRING, &device, "cpu | cuda (default cpu)", 0};
    specs[n++] = (ArgSpec){"threads", ARG_INT, &threads, "CPU threads (default: all cores)", 0};
    int rc = args_parse(argc, argv, specs, n, "llava generate --model DIR --ids '[...]' [--pixels F] [options]",
                        "Generates a continuation with a KV cache. Prints the new token ids as JSON and timing on "
                        "stderr.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (!ids_text) {
        fprintf(stderr, "llava generate: give the prompt with --ids (see --help)\n");
        return EXIT_BAD_INPUT;
    }
    if (image_path && pixels_path) {
        fprintf(stderr, "llava generate: give --image or --pixels, not both\n");
        return EXIT_BAD_INPUT;
    }
    if (max_new < 1 || temperature < 0 || top_p <= 0 || top_p > 1 || top_k < 0) {
        fprintf(stderr, "llava generate: need --max-new-tokens >= 1, --temperature >= 0, 0 < --top-p <= 1, "
                        "--top-k >= 0\n");
        return EXIT_BAD_INPUT;
    }
    backend_set_threads(threads);
    Error err = {{0}};
    const Ops *ops = backend_select(device, &err);
    LlavaModel m;
    if (!ops || model_source_load(&src, &m, ops, &err) != 0) {
        fprintf(stderr, "llava generate: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    model_set_stage(&m, 0);
    int status = EXIT_BAD_INPUT, n_ids = 0, n_images = 0;
    int32_t *ids = NULL;
    float *pixels = NULL;
    Generator g = {0};
    if (parse_ids(ids_text, &ids, &n_ids, &err) != 0 ||
        (pixels_path && read_pixels(pixels_path, &m.cfg, &pixels, &n_images, &err) != 0) ||
        (image_path && load_image(&src, &m.cfg, image_path, aspect, &pixels, &n_images, &err) != 0) ||
        expand_image_tokens(&m.cfg, &ids, &n_ids, n_images, &err) != 0 ||
        gen_init(&g, &m, 1, n_ids + max_new, &err) != 0) {
        fprintf(stderr, "llava generate: %s\n", err.msg);
        goto done;
    }
    GenPrompt prompt = {.ids = ids, .n = n_ids, .n_images = n_images, .pixels = pixels};
    GenOptions opt = {.sample = {.temperature = temperature, .top_p = top_p, .top_k = top_k},
                      .max_new_tokens = max_new, .eos_id = eos == -2 ? m.cfg.text.eos_id : eos,
                      .seed = (uint64_t)seed};
    GenOutput out;
    if (gen_generate(&g, &prompt, 1, &opt, &out, &err) != 0) {
        fprintf(stderr, "llava generate: %s\n", err.msg);
        goto done;
    }
    printf("{\"ids\": [");
    for (int i = 0; i < out.n; i++) printf("%s%d", i ? ", " : "", out.ids[i]);
    printf("], \"stop\": \"%s\", \"prompt_tokens\": %d}\n", gen_stop_name(out.stop), n_ids);
    print_stats(&g.stats);
    status = EXIT_OK;
    if (verify) {
        // fp32 agrees to ~1e-6; bf16 to ~1e-2.
        const double tol = ops->act_size == 4 ? 1e-4 : 3e-2;
        double worst;
        int checked;
        if (gen_verify(&g, &prompt, out.ids, out.n, &worst, &checked, &err) != 0) {
            fprintf(stderr, "llava generate: verify: %s\n", err.msg);
            status = EXIT_ERROR;
        } else {
            fprintf(stderr, "verify: %d steps, KV-cache logits vs full forward: max rel. error %.2e (%s, tolerance "
                            "%.0e)\n", checked, worst, worst <= tol ? "ok" : "FAIL", tol);
            if (worst > tol) status = EXIT_ERROR;
        }
    }
    gen_output_free(&out);
done:
    gen_free(&g);
    free(ids);
    free(pixels);
    model_free(&m);
    return status;
}
