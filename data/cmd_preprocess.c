// `llava preprocess`: one image through LLaVA's image pipeline, written as
// pixel_values F32 [3,S,S] so it can be compared with what transformers'
// CLIPImageProcessor gives (the inspection command for the image path).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "data/image.h"
#include "common/commands.h"

// Without preprocessor_config.json, the vision tower's own input size (from
// config.json: vision_config.image_size, or image_size of a CLIP folder) is
// a better default than 336. 0 when there is none.
static int model_image_size(const char *model_dir) {
    char path[4096];
    if (path_join(path, sizeof path, model_dir, "config.json") != 0 || !file_exists(path)) return 0;
    Error err = {{0}};
    cJSON *root = json_parse_file(path, &err);
    if (!root) return 0;
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_IsObject(vc) ? vc : root, "image_size");
    int64_t n = 0;
    // Outside [1, IMAGE_MAX_SIDE]: no usable default (the model load refuses such a config anyway).
    int size = json_number_to_int64(v, 1, IMAGE_MAX_SIDE, &n) == 0 ? (int)n : 0;
    cJSON_Delete(root);
    return size;
}

// --repeat: each thread decodes, preprocesses and normalizes the image
// `count` times with its own buffers, as a prep or loader worker would.
typedef struct {
    const char *path;
    const ImagePreprocessConfig *cfg;
    ImageAspect aspect;
    int64_t max_pixels;
    int count, failed;
    double t_decode, t_pre, t_norm;
} BenchJob;

static void *bench_thread(void *arg) {
    BenchJob *j = arg;
    const int S = image_config_out_size(j->cfg);
    RgbImage im = {0};
    ImageWork work = {0};
    uint8_t *u8 = xmalloc((size_t)3 * S * S);
    float *pix = xmalloc((size_t)3 * S * S * sizeof(float));
    for (int i = 0; i < j->count && !j->failed; i++) {
        Error err = {{0}};
        double t0 = now_seconds();
        j->failed = image_load_file(j->path, j->max_pixels, &work, &im, &err) != 0;
        double t1 = now_seconds();
        j->failed |= image_preprocess_u8(&im, j->cfg, j->aspect, &work, u8, &err) != 0;
        double t2 = now_seconds();
        image_normalize(u8, S, j->cfg, pix);
        double t3 = now_seconds();
        j->t_decode += t1 - t0, j->t_pre += t2 - t1, j->t_norm += t3 - t2;
    }
    free(u8);
    free(pix);
    rgb_image_free(&im);
    image_work_free(&work);
    return NULL;
}

static int run_bench(const char *path, const ImagePreprocessConfig *cfg, ImageAspect aspect, int64_t max_pixels,
                     int repeat, int threads) {
    BenchJob jobs[64];
    pthread_t th[64];
    if (threads > 64) threads = 64;
    double t0 = now_seconds();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (BenchJob){path, cfg, aspect, max_pixels, repeat / threads + (t < repeat % threads), 0, 0, 0, 0};
        CHECK(pthread_create(&th[t], NULL, bench_thread, &jobs[t]) == 0, "pthread_create failed");
    }
    double dec = 0, pre = 0, norm = 0;
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        dec += jobs[t].t_decode, pre += jobs[t].t_pre, norm += jobs[t].t_norm;
        failed |= jobs[t].failed;
    }
    double wall = now_seconds() - t0;
    if (failed) return -1;
    printf("%d runs on %d thread%s: %.1f images/s (per image: decode %.2f ms, pad/resize/crop %.2f ms, "
           "normalize %.2f ms)\n",
           repeat, threads, threads > 1 ? "s" : "", repeat / wall, 1e3 * dec / repeat, 1e3 * pre / repeat,
           1e3 * norm / repeat);
    return 0;
}

int cmd_preprocess(int argc, char **argv) {
    const char *image_path = NULL, *model_dir = NULL, *aspect_name = "square", *out_path = NULL;
    int size = 0, max_pixels = (int)IMAGE_DEFAULT_MAX_PIXELS, save_u8 = 0, repeat = 0, threads = 1;
    ArgSpec specs[] = {
        {"image", ARG_STRING, &image_path, "input image: JPEG, PNG or GIF (format read from the content)", 1},
        {"model", ARG_STRING, &model_dir, "model folder with preprocessor_config.json", 0},
        {"size", ARG_INT, &size, "no model: CLIP defaults (OpenAI mean/std) at this size, e.g. 336", 0, 1, 4096},
        {"aspect", ARG_STRING, &aspect_name, "square (LLaVA default: resize + centre crop) | pad (expand2square "
                                             "with the mean colour first, LLaVA-1.5 stage 2) (default square)", 0},
        {"out", ARG_STRING, &out_path, "output safetensors: pixel_values F32 [3,S,S]", 1},
        {"max-pixels", ARG_INT, &max_pixels, "refuse images with more pixels (default 178956970, as Pillow)", 0, 1, 2147483647},
        {"u8", ARG_FLAG, &save_u8, "also write pixels_u8 U8 [3,S,S] (before rescale/normalize)", 0},
        {"repeat", ARG_INT, &repeat, "benchmark: decode + preprocess + normalize N more times, print images/s", 0, 0, 1000000000},
        {"threads", ARG_INT, &threads, "benchmark threads, each with its own buffers (default 1)", 0, 1, 256},
    };
    int rc = args_parse(argc, argv, specs, (int)(sizeof specs / sizeof *specs),
                        "llava preprocess --image FILE (--model DIR | --size S) [--aspect pad|square] --out OUT",
                        "Decodes one image and runs LLaVA's preprocessing (optional expand-to-square, BICUBIC\n"
                        "shortest-edge resize, centre crop, rescale, normalize) exactly as Pillow and\n"
                        "transformers' CLIPImageProcessor do; writes pixel_values F32 [3,S,S].",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    ImageAspect aspect;
    if (strcmp(aspect_name, "square") == 0) {
        aspect = IMAGE_ASPECT_SQUARE;
    } else if (strcmp(aspect_name, "pad") == 0) {
        aspect = IMAGE_ASPECT_PAD;
    } else {
        fprintf(stderr, "llava preprocess: --aspect must be pad or square, got '%s'\n", aspect_name);
        return EXIT_BAD_INPUT;
    }
    if ((model_dir != NULL) == (size > 0) || size < 0 || max_pixels <= 0 || repeat < 0 || threads < 1) {
        fprintf(stderr, "llava preprocess: give exactly one of --model DIR or --size S (S > 0); --max-pixels and "
                        "--threads must be positive, --repeat >= 0\n");
        return EXIT_BAD_INPUT;
    }
    Error err = {{0}};
    ImagePreprocessConfig cfg;
    if (model_dir) {
        int got = image_config_load(&cfg, model_dir, &err);
        if (got < 0) {
            fprintf(stderr, "llava preprocess: %s\n", err.msg);
            return EXIT_BAD_INPUT;
        }
        if (got == 1) {
            int s = model_image_size(model_dir);
            image_config_default(&cfg, s > 0 ? s : 336);
            fprintf(stderr, "llava preprocess: note: %s has no preprocessor_config.json; using CLIP defaults at %d px%s\n",
                    model_dir, s > 0 ? s : 336, s > 0 ? " (the vision tower's image_size)" : "");
        }
    } else {
        image_config_default(&cfg, size);
    }
    const int S = image_config_out_size(&cfg);
    RgbImage im = {0};
    ImageWork work = {0};
    uint8_t *u8 = xmalloc((size_t)3 * S * S);
    float *pix = xmalloc((size_t)3 * S * S * sizeof(float));
    int status = EXIT_OK;
    if (image_load_file(image_path, max_pixels, &work, &im, &err) != 0 ||
        image_preprocess_u8(&im, &cfg, aspect, &work, u8, &err) != 0) {
        fprintf(stderr, "llava preprocess: %s\n", err.msg);
        status = EXIT_BAD_INPUT;
        goto done;
    }
    image_normalize(u8, S, &cfg, pix);
    StWriter w;
    st_writer_init(&w);
    const int64_t shape[3] = {3, S, S};
    st_writer_add(&w, "pixel_values", ST_F32, 3, shape, pix);
    if (save_u8) st_writer_add(&w, "pixels_u8", ST_U8, 3, shape, u8);
    st_writer_set_metadata(&w, "image", image_path);
    st_writer_set_metadata(&w, "aspect", aspect_name);
    if (st_writer_save(&w, out_path, NULL, &err) != 0) {
        fprintf(stderr, "llava preprocess: %s\n", err.msg);
        status = EXIT_ERROR;
    } else {
        printf("%s: %dx%d -> pixel_values [3, %d, %d] (aspect %s); wrote %s\n", image_path, im.w, im.h, S, S,
               aspect_name, out_path);
        if (repeat > 0 && run_bench(image_path, &cfg, aspect, max_pixels, repeat, threads) != 0) status = EXIT_ERROR;
    }
    st_writer_free(&w);
done:
    free(u8);
    free(pix);
    rgb_image_free(&im);
    image_work_free(&work);
    return status;
}
