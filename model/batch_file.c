#include "model/batch_file.h"

#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"

static int read_ids(const StFile *f, const char *name, int required, int B, int T, int32_t **out, Error *err) {
    const StTensor *t = st_find(f, name);
    *out = NULL;
    if (!t) return required ? err_set(err, "%s: missing tensor '%s'", f->path, name) : 0;
    if (t->ndim != 2 || (B > 0 && (t->shape[0] != B || t->shape[1] != T))) {
        char sh[128];
        return err_set(err, "%s: '%s' has shape %s, expected [B, T]%s", f->path, name,
                       st_shape_str(t->shape, t->ndim, sh, sizeof sh), B > 0 ? " matching input_ids" : "");
    }
    if (t->dtype != ST_I64 && t->dtype != ST_I32 && t->dtype != ST_U8 && t->dtype != ST_BOOL)
        return err_set(err, "%s: '%s' has dtype %s, expected I64 or I32", f->path, name, st_dtype_name(t->dtype));
    int64_t *tmp = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof(int64_t));
    if (st_read_i64(f, t, tmp, err) != 0) {
        free(tmp);
        return -1;
    }
    *out = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < t->numel; i++) {
        if (tmp[i] < -2147483647LL || tmp[i] > 2147483647LL) {
            err_set(err, "%s: '%s' element %lld = %lld does not fit in 32 bits", f->path, name, (long long)i,
                    (long long)tmp[i]);
            free(tmp);
            free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[i] = (int32_t)tmp[i];
    }
    free(tmp);
    return 0;
}

int batch_file_read(BatchFile *bf, const char *path, const LlavaConfig *cfg, Error *err) {
    memset(bf, 0, sizeof *bf);
    StFile f;
    if (st_open(&f, path, err) != 0) return -1;
    int rc = -1;
    const StTensor *ids = st_find(&f, "input_ids");
    if (!ids || ids->ndim != 2 || ids->shape[0] <= 0 || ids->shape[1] <= 0) {
        err_set(err, "%s: needs 'input_ids' of shape [B, T] with B, T > 0", path);
        goto done;
    }
    int B = (int)ids->shape[0], T = (int)ids->shape[1];
    if (ids->shape[0] > 1 << 20 || ids->shape[1] > 1 << 20) {
        err_set(err, "%s: input_ids shape is implausibly large", path);
        goto done;
    }
    int32_t *mask = NULL;
    if (read_ids(&f, "input_ids", 1, B, T, &bf->ids, err) || read_ids(&f, "labels", 0, B, T, &bf->labels, err) ||
        read_ids(&f, "attention_mask", 0, B, T, &mask, err))
        goto done;
    if (mask) {
        for (int i = 0; i < B * T; i++) {
            if (mask[i] != 0 && mask[i] != 1) {
                err_set(err, "%s: attention_mask[%d][%d] = %d (expected 0 or 1)", path, i / T, i % T, mask[i]);
                free(mask);
                goto done;
            }
        }
        bf->seg = mask;  // 1 = document 1, 0 = padding
    }
    int N = 0;
    const StTensor *px = st_find(&f, "pixel_values");
    if (px) {
        int S = cfg->vision.image_size;
        char sh[128];
        if (px->ndim != 4 || px->shape[1] != 3 || px->shape[2] != S || px->shape[3] != S) {
            err_set(err, "%s: 'pixel_values' has shape %s, expected [N, 3, %d, %d] for this model", path,
                    st_shape_str(px->shape, px->ndim, sh, sizeof sh), S, S);
            goto done;
        }
        N = (int)px->shape[0];
        bf->pixels = xmalloc((size_t)(px->numel ? px->numel : 1) * sizeof(float));
        if (st_read_f32(&f, px, bf->pixels, err) != 0) goto done;
    }
    bf->batch = (LlavaBatch){.B = B, .T = T, .input_ids = bf->ids, .labels = bf->labels, .seg = bf->seg,
                             .pos = NULL, .n_images = N, .pixels = bf->pixels};
    rc = 0;
done:
    st_close(&f);
    if (rc) batch_file_free(bf);
    return rc;
}

void batch_file_free(BatchFile *bf) {
    free(bf->ids);
    free(bf->labels);
    free(bf->seg);
    free(bf->pixels);
    memset(bf, 0, sizeof *bf);
}
