// The per-sample work of `llava prep`: a DatasetSample -> template + tokens +
// labels (data/conversation.h) and image pixels or bytes (data/image.h),
// with every way a sample can fail mapped to a report.json reason.
#include "data/prep_model.h"

#include <libgen.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/conversation.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/hf_files.h"

typedef struct {
    ConvResult conv;
    ConvTurn *turns;
    int turns_cap;
    ImageWork work;
    RgbImage rgb;
} WorkerState;

typedef struct {
    const PrepRequest *rq;
    char images_dir[PATH_MAX], tokenizer_dir[PATH_MAX], model_dir[PATH_MAX];
    LlavaConfig cfg;
    Tokenizer *tok;
    ConvOptions conv;
    ImagePreprocessConfig icfg;
    int S;
    WorkerState *w;  // [workers]
    int workers;
} ModelPrep;

void prep_request_default(PrepRequest *r) {
    memset(r, 0, sizeof *r);
    r->store = STORE_PIXELS;
    r->aspect = IMAGE_ASPECT_SQUARE;
    r->shard_max_samples = 10000;
    r->shard_max_mb = 1024;
    r->progress = 1;
}

// ---- one sample -------------------------------------------------------------------

static int skip(PrepResult *out, ProblemReason reason, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int skip(PrepResult *out, ProblemReason reason, const char *file, const char *fmt, ...) {
    out->write = 0;
    out->truncated = 0;
    out->has_problem = 1;
    out->problem.reason = reason;
    snprintf(out->problem.file, sizeof out->problem.file, "%s", file ? file : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->problem.detail, sizeof out->problem.detail, fmt, ap);
    va_end(ap);
    free(out->ids);
    free(out->labels);
    out->ids = out->labels = NULL;
    return 0;
}

static void note(PrepResult *out, ProblemReason reason, const char *detail) {
    out->has_problem = 1;
    out->problem.reason = reason;
    snprintf(out->problem.detail, sizeof out->problem.detail, "%s", detail);
}

// Template + tokens + labels. Returns 1 when the sample goes on to its image.
static int build_tokens(ModelPrep *mp, WorkerState *ws, const DatasetSample *s, PrepResult *out) {
    if (ws->turns_cap < s->n_turns) {
        ws->turns_cap = s->n_turns;
        ws->turns = xrealloc(ws->turns, (size_t)s->n_turns * sizeof *ws->turns);
    }
    for (int i = 0; i < s->n_turns; i++)
        ws->turns[i] = (ConvTurn){s->turns[i].role == ROLE_HUMAN ? CONV_HUMAN : CONV_GPT, s->turns[i].value,
                                  strlen(s->turns[i].value)};
    const Conversation c = {ws->turns, s->n_turns, s->image != NULL};
    ConvResult *r = &ws->conv;
    const ConvStatus st = conv_build(mp->tok, &c, &mp->conv, r);
    switch (st) {
    case CONV_MALFORMED: return skip(out, PROBLEM_MALFORMED_CONVERSATION, NULL, "%s", r->reason);
    case CONV_EMPTY_AFTER_TRUNCATION:
        return skip(out, PROBLEM_EMPTY_ANSWER, NULL, "%s (%d tokens, max_length %d)", r->reason,
                    r->n_before_truncation, mp->conv.max_length);
    case CONV_IMAGE_TRUNCATED:
        return skip(out, PROBLEM_IMAGE_TRUNCATED, NULL, "%s (image at token %d, max_length %d)", r->reason,
                    r->image_start, mp->conv.max_length);
    case CONV_OK:
    case CONV_MASK_MISMATCH: break;
    }
    out->write = 1;
    out->length = r->ids.n;
    out->ids = xmalloc((size_t)r->ids.n * sizeof(int32_t));
    out->labels = xmalloc((size_t)r->ids.n * sizeof(int32_t));
    memcpy(out->ids, r->ids.data, (size_t)r->ids.n * sizeof(int32_t));
    memcpy(out->labels, r->labels.data, (size_t)r->ids.n * sizeof(int32_t));
    out->truncated = r->truncated;
    char detail[512];
    if (st == CONV_MASK_MISMATCH) {
        snprintf(detail, sizeof detail, "%s; written with the by-construction labels%s", r->reason,
                 r->truncated ? "; also truncated" : "");
        note(out, PROBLEM_MASK_MISMATCH, detail);
    } else if (r->truncated) {
        snprintf(detail, sizeof detail, "cut from %d to %d tokens (max_length)", r->n_before_truncation, r->ids.n);
        note(out, PROBLEM_TRUNCATED, detail);
    }
    return 1;
}

// An image whose bytes came with the sample (a tar member): the same decode
// and preprocessing as a file, named by the member.
static int load_image_bytes(ModelPrep *mp, WorkerState *ws, const DatasetSample *s, PrepResult *out) {
    Error ierr = {{0}};
    if (image_decode(s->image_data, s->image_len, s->image, mp->rq->max_pixels, &ws->rgb, &ierr) != 0)
        return skip(out, PROBLEM_CORRUPT_IMAGE, s->image, "%s", ierr.msg);
    if (mp->rq->store == STORE_ENCODED) {
        out->encoded = xmalloc(s->image_len);
        memcpy(out->encoded, s->image_data, s->image_len);
        out->encoded_len = s->image_len;
        return 0;
    }
    out->pixels = xmalloc((size_t)3 * mp->S * mp->S);
    if (image_preprocess_u8(&ws->rgb, &mp->icfg, mp->rq->aspect, &ws->work, out->pixels, &ierr) != 0) {
        free(out->pixels);
        out->pixels = NULL;
        return skip(out, PROBLEM_CORRUPT_IMAGE, s->image, "%s", ierr.msg);
    }
    return 0;
}

// The image: pixels or validated bytes.
static int load_image(ModelPrep *mp, WorkerState *ws, const DatasetSample *s, PrepResult *out) {
    if (s->image_data) return load_image_bytes(mp, ws, s, out);
    char path[PATH_MAX * 2];
    if (s->image[0] == '/') snprintf(path, sizeof path, "%s", s->image);  // as os.path.join does
    else snprintf(path, sizeof path, "%s/%s", mp->images_dir, s->image);
    Error ierr = {{0}};
    if (mp->rq->store == STORE_ENCODED) {
        size_t len = 0;
        char *bytes = read_file(path, &len, &ierr);
        if (!bytes) return skip(out, PROBLEM_MISSING_IMAGE, path, "%s", ierr.msg);
        if (len == 0 || image_decode((const uint8_t *)bytes, len, path, mp->rq->max_pixels, &ws->rgb, &ierr) != 0) {
            free(bytes);
            return skip(out, PROBLEM_CORRUPT_IMAGE, path, "%s", len ? ierr.msg : "empty file");
        }
        // The loader preprocesses it later: refuse now what it could not.
        if (image_preprocess_check(ws->rgb.w, ws->rgb.h, &mp->icfg, mp->rq->aspect, &ierr) != 0) {
            free(bytes);
            return skip(out, PROBLEM_CORRUPT_IMAGE, path, "%s: %s", path, ierr.msg);
        }
        out->encoded = (uint8_t *)bytes;
        out->encoded_len = len;
        return 0;
    }
    const int rc = image_load_file(path, mp->rq->max_pixels, &ws->work, &ws->rgb, &ierr);
    if (rc == IMAGE_ERR_OPEN) return skip(out, PROBLEM_MISSING_IMAGE, path, "%s", ierr.msg);
    if (rc != 0) return skip(out, PROBLEM_CORRUPT_IMAGE, path, "%s", ierr.msg);
    out->pixels = xmalloc((size_t)3 * mp->S * mp->S);
    if (image_preprocess_u8(&ws->rgb, &mp->icfg, mp->rq->aspect, &ws->work, out->pixels, &ierr) != 0) {
        free(out->pixels);
        out->pixels = NULL;
        return skip(out, PROBLEM_CORRUPT_IMAGE, path, "%s", ierr.msg);
    }
    return 0;
}

static int model_process(void *ctx, int worker, const DatasetSample *s, PrepResult *out, Error *err) {
    (void)err;
    ModelPrep *mp = ctx;
    WorkerState *ws = &mp->w[worker];
    if (build_tokens(mp, ws, s, out) && s->image) load_image(mp, ws, s, out);
    return 0;
}

// ---- the folder: tokenizer copy, image settings -------------------------------------

static int copy_file(const char *src_dir, const char *dst_dir, const char *name, int required, Error *err) {
    char src[PATH_MAX + 64], dst[PATH_MAX + 64];
    snprintf(src, sizeof src, "%s/%s", src_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dst_dir, name);
    if (!file_exists(src)) return required ? err_set(err, "%s: missing", src) : 0;
    size_t len = 0;
    char *text = read_file(src, &len, err);
    if (!text) return -1;
    int rc = write_file_atomic(dst, text, len, err);
    free(text);
    return rc;
}

static int prepare_folder(void *ctx, const char *out_dir, Error *err) {
    ModelPrep *mp = ctx;
    char tok_dst[PATH_MAX + 16];
    snprintf(tok_dst, sizeof tok_dst, "%s/tokenizer", out_dir);
    if (make_dirs(tok_dst, err) != 0 || copy_file(mp->tokenizer_dir, tok_dst, "tokenizer.json", 1, err) != 0 ||
        copy_file(mp->tokenizer_dir, tok_dst, "tokenizer_config.json", 0, err) != 0 ||
        copy_file(mp->tokenizer_dir, tok_dst, "special_tokens_map.json", 0, err) != 0)
        return -1;
    // preprocessor_config.json: the model's, or CLIP defaults at its size
    // (what image_config_load fell back to as well).
    return hf_write_processor_files(mp->model_dir, out_dir, &mp->cfg, err);
}

// FNV-1a 64 over tokenizer.json then tokenizer_config.json: a fingerprint.
static int tokenizer_hash(const char *dir, char *out, size_t cap, Error *err) {
    uint64_t h = 1469598103934665603ull;
    const char *names[2] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (i == 1 && !file_exists(path)) continue;
        size_t len = 0;
        char *text = read_file(path, &len, err);
        if (!text) return -1;
        for (size_t k = 0; k < len; k++) h = (h ^ (uint8_t)text[k]) * 1099511628211ull;
        free(text);
    }
    snprintf(out, cap, "fnv1a64:%016llx", (unsigned long long)h);
    return 0;
}

static int resolve_dir(const char *in, char *out, const char *what, Error *err) {
    if (!realpath(in, out) || !dir_exists(out)) return err_set(err, "%s folder %s does not exist", what, in);
    return 0;
}

// ---- setup ---------------------------------------------------------------------------

static int setup(ModelPrep *mp, const PrepRequest *rq, Manifest *recipe, Error *err) {
    if (!rq->data_path || !rq->model_dir || !rq->template_name || !rq->out_dir)
        return err_set(err, "prep needs a data file, a model folder, a template and an output folder");
    if (resolve_dir(rq->model_dir, mp->model_dir, "model", err) != 0) return -1;
    if (rq->images_dir) {
        if (resolve_dir(rq->images_dir, mp->images_dir, "image", err) != 0) return -1;
    } else {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", rq->data_path);
        if (resolve_dir(dirname(tmp), mp->images_dir, "image", err) != 0) return -1;
    }
    if (resolve_dir(rq->tokenizer_dir ? rq->tokenizer_dir : rq->model_dir, mp->tokenizer_dir, "tokenizer", err) != 0)
        return -1;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.json", mp->model_dir);
    if (config_load_llava(&mp->cfg, path, err) != 0) return -1;
    if (tokenizer_load(&mp->tok, mp->tokenizer_dir, err) != 0) return -1;
    ConvTemplate tmpl;
    if (conv_template_from_name(rq->template_name, &tmpl) != 0)
        return err_set(err, "unknown template \"%s\" (plain, vicuna_v1, v1, llava_v1, qwen_2, llama_3)", rq->template_name);
    const TextConfig *tc = &mp->cfg.text;
    if (tokenizer_vocab_size(mp->tok) > tc->vocab)
        return err_set(err, "%s: the tokenizer has %d ids but the model's vocabulary is %d", mp->tokenizer_dir,
                       tokenizer_vocab_size(mp->tok), tc->vocab);
    int max_length = rq->max_length > 0 ? rq->max_length : (tc->max_positions < 2048 ? tc->max_positions : 2048);
    if (max_length > tc->max_positions)
        return err_set(err, "--max-length %d exceeds the model's max_position_embeddings %d", max_length,
                       tc->max_positions);
    mp->conv = (ConvOptions){.tmpl = tmpl, .image_seq_length = mp->cfg.image_tokens,
                             .image_token_index = mp->cfg.image_token_index, .max_length = max_length};
    const int icfg_rc = image_config_load(&mp->icfg, mp->model_dir, err);
    if (icfg_rc < 0) return -1;
    if (icfg_rc == 1) image_config_default(&mp->icfg, mp->cfg.vision.image_size);
    mp->S = image_config_out_size(&mp->icfg);
    if (mp->S != mp->cfg.vision.image_size)
        return err_set(err, "%s: preprocessor_config.json makes %d px images but the vision tower takes %d px",
                       mp->model_dir, mp->S, mp->cfg.vision.image_size);
    // The recipe: everything that decides the shards' contents.
    memset(recipe, 0, sizeof *recipe);
    snprintf(recipe->images_dir, sizeof recipe->images_dir, "%s", mp->images_dir);
    snprintf(recipe->model_dir, sizeof recipe->model_dir, "%s", mp->model_dir);
    snprintf(recipe->template_name, sizeof recipe->template_name, "%s", conv_template_name(tmpl));
    recipe->max_length = max_length;
    recipe->store = rq->store;
    snprintf(recipe->aspect, sizeof recipe->aspect, "%s", rq->aspect == IMAGE_ASPECT_PAD ? "pad" : "square");
    recipe->image_size = mp->S;
    recipe->max_pixels = rq->max_pixels;
    recipe->image_seq_length = mp->cfg.image_tokens;
    recipe->image_token_index = mp->cfg.image_token_index;
    const int32_t pad = tokenizer_pad_id(mp->tok);
    recipe->pad_token_id = pad >= 0 ? pad : 0;
    for (int c = 0; c < 3; c++) {
        recipe->image_mean[c] = mp->icfg.image_mean[c];
        recipe->image_std[c] = mp->icfg.image_std[c];
    }
    if (tokenizer_hash(mp->tokenizer_dir, recipe->tokenizer_hash, sizeof recipe->tokenizer_hash, err) != 0) return -1;
    snprintf(recipe->tokenizer_dir, sizeof recipe->tokenizer_dir, "tokenizer");
    return 0;
}

int prep_from_model(const PrepRequest *rq, PrepSummary *sum, Error *err) {
    memset(sum, 0, sizeof *sum);
    ModelPrep mp;
    memset(&mp, 0, sizeof mp);
    mp.rq = rq;
    Manifest recipe;
    int rc = setup(&mp, rq, &recipe, err);
    if (rc == 0) {
        mp.workers = rq->workers > 0 ? rq->workers : prep_default_workers();
        mp.w = xcalloc((size_t)mp.workers, sizeof *mp.w);
        PrepOptions o = {.data_path = rq->data_path, .source = rq->source, .out_dir = rq->out_dir, .workers = mp.workers,
                         .shard_max_samples = rq->shard_max_samples, .shard_max_mb = rq->shard_max_mb,
                         .progress = rq->progress, .prepare_folder = prepare_folder, .prepare_ctx = &mp,
                         .crash_after_shards = rq->crash_after_shards};
        const PrepProcessor proc = {&mp, model_process};
        rc = prep_run(&o, &recipe, &proc, sum, err);
    }
    for (int i = 0; mp.w && i < mp.workers; i++) {
        conv_result_free(&mp.w[i].conv);
        free(mp.w[i].turns);
        image_work_free(&mp.w[i].work);
        rgb_image_free(&mp.w[i].rgb);
    }
    free(mp.w);
    tokenizer_free(mp.tok);
    return rc;
}
