// `llava generate`: one question in, the model's answer out.
//   --prompt TEXT [--image FILE]: the question in the conversation template
//   (as LLaVA's run_llava.py builds it); prints the answer text.
//   --ids '[1, 5, ...]' [--pixels F.safetensors]: token level (no tokenizer
//   needed); prints {"ids": [...], "stop": ...} as one JSON line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "eval/gen_cli.h"
#include "eval/image_input.h"
#include "eval/text_prompt.h"
#include "common/commands.h"

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
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)it->valueint || it->valueint < 0) {
            cJSON_Delete(a);
            free(*ids);
            *ids = NULL;  // the caller frees *ids on every path
            return err_set(err, "--ids item %d is not a token id (an integer >= 0)", i);
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
static int load_image(const GenCli *c, const LlavaConfig *cfg, const char *path, float **pixels, int *n_images,
                      Error *err) {
    ImageInput in;
    if (image_input_init(&in, gen_cli_processor_dir(c), cfg, c->aspect, err) != 0) return -1;
    *pixels = xmalloc((size_t)3 * in.S * in.S * sizeof(float));
    int rc = image_input_load(&in, path, *pixels, err);
    *n_images = rc == 0;
    image_input_free(&in);
    return rc;
}

// --prompt: the user's text as the first (and only) question of the
// template; with an image, "<image>\n" in front unless the text places
// "<image>" itself (LLaVA's run_llava.py).
static int text_ids(TextPrompt *tp, const char *prompt, int has_image, int32_t **ids, int *n, Error *err) {
    char *turn = xmalloc(strlen(prompt) + 16);
    sprintf(turn, "%s%s", has_image && !strstr(prompt, "<image>") ? "<image>\n" : "", prompt);
    const char *turns[1] = {turn};
    const int32_t *built;
    int rc = text_prompt_build(tp, turns, 1, has_image, &built, n, err);
    if (rc == 0) {
        *ids = xmalloc((size_t)*n * sizeof(int32_t));
        memcpy(*ids, built, (size_t)*n * sizeof(int32_t));
    }
    free(turn);
    return rc;
}

static void print_stats(const GenStats *s) {
    double tps = s->decode_s > 0 ? s->decode_tokens / s->decode_s : 0.0;
    fprintf(stderr, "prefill: %ld tokens in %.1f ms; decode: %ld tokens in %.1f ms (%.1f tokens/s)\n",
            s->prefill_tokens, s->prefill_s * 1e3, s->decode_tokens, s->decode_s * 1e3, tps);
}

int cmd_generate(int argc, char **argv) {
    GenCli cli;
    gen_cli_default(&cli, 0.0f, 512);
    const char *prompt_text = NULL, *ids_text = NULL, *pixels_path = NULL, *image_path = NULL;
    int eos = -2, verify = 0;
    ArgSpec specs[32];
    int n = 0;
    specs[n++] = (ArgSpec){"prompt", ARG_STRING, &prompt_text, "the question (put in the conversation template)", 0};
    specs[n++] = (ArgSpec){"image", ARG_STRING, &image_path, "image file (JPEG, PNG, GIF)", 0};
    n = gen_cli_args(&cli, specs, n);
    specs[n++] = (ArgSpec){"ids", ARG_STRING, &ids_text, "instead of --prompt: token ids, a JSON list, printed back "
                                                         "as ids (images: one or image_seq_length image tokens each)", 0};
    specs[n++] = (ArgSpec){"pixels", ARG_STRING, &pixels_path,
                           "instead of --image: preprocessed images, safetensors with pixel_values [N, 3, S, S]", 0};
    specs[n++] = (ArgSpec){"eos", ARG_INT, &eos, "stop token id (default: the tokenizer's / model's eos; -1 = none)", 0, -1, 16777215};
    specs[n++] = (ArgSpec){"verify", ARG_FLAG, &verify,
                           "check the KV-cache logits of every step against a full forward (debugging)", 0};
    int rc = args_parse(argc, argv, specs, n,
                        "llava generate --model DIR [--image FILE] --prompt TEXT [options]\n"
                        "       llava generate --model DIR [--pixels F.safetensors] --ids '[1, ...]' [options]",
                        "Answers one question with a KV cache and prints the answer (timing on stderr). With --ids\n"
                        "the prompt is token ids and the output {\"ids\": [...], \"stop\": ...} as JSON.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (!prompt_text == !ids_text) {
        fprintf(stderr, "llava generate: give the prompt with --prompt TEXT or --ids '[...]' (see --help)\n");
        return EXIT_BAD_INPUT;
    }
    if (image_path && pixels_path) {
        fprintf(stderr, "llava generate: give --image or --pixels, not both\n");
        return EXIT_BAD_INPUT;
    }
    if (gen_cli_check(&cli, "generate") != 0) return EXIT_BAD_INPUT;
    Error err = {{0}};
    LlavaModel m;
    if (gen_cli_load(&cli, &m, &err) != 0) {
        fprintf(stderr, "llava generate: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    int status = EXIT_BAD_INPUT, n_ids = 0, n_images = 0;
    int32_t *ids = NULL;
    float *pixels = NULL;
    Generator g = {0};
    TextPrompt tp = {0};
    if ((pixels_path && read_pixels(pixels_path, &m.cfg, &pixels, &n_images, &err) != 0) ||
        (image_path && load_image(&cli, &m.cfg, image_path, &pixels, &n_images, &err) != 0))
        goto fail;
    if (ids_text) {
        if (parse_ids(ids_text, &ids, &n_ids, &err) != 0 || expand_image_tokens(&m.cfg, &ids, &n_ids, n_images, &err))
            goto fail;
    } else if (text_prompt_init(&tp, gen_cli_tokenizer_dir(&cli), cli.template_name, &m.cfg, &err) != 0 ||
               text_ids(&tp, prompt_text, n_images > 0, &ids, &n_ids, &err) != 0) {
        goto fail;
    }
    if (gen_init(&g, &m, 1, n_ids + cli.max_new, &err) != 0) goto fail;
    GenPrompt prompt = {.ids = ids, .n = n_ids, .n_images = n_images, .pixels = pixels};
    const int default_eos = tp.tok ? tp.eos_id : m.cfg.text.eos_id;
    GenOptions opt = gen_cli_options(&cli, eos == -2 ? default_eos : eos);
    GenOutput out;
    if (gen_generate(&g, &prompt, 1, &opt, &out, &err) != 0) goto fail;
    if (ids_text) {
        printf("{\"ids\": [");
        for (int i = 0; i < out.n; i++) printf("%s%d", i ? ", " : "", out.ids[i]);
        printf("], \"stop\": \"%s\", \"prompt_tokens\": %d}\n", gen_stop_name(out.stop), n_ids);
    } else {
        char *answer = text_prompt_answer(&tp, out.ids, out.n);
        printf("%s\n", answer);
        free(answer);
    }
    print_stats(&g.stats);
    status = EXIT_OK;
    if (verify) {
        // fp32 agrees to ~1e-6; bf16 to ~1e-2.
        const double tol = m.ops->act_size == 4 ? 1e-4 : 3e-2;
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
    goto done;
fail:
    fprintf(stderr, "llava generate: %s\n", err.msg);
done:
    gen_free(&g);
    text_prompt_free(&tp);
    free(ids);
    free(pixels);
    model_free(&m);
    return status;
}
