#include "data/datagen_input.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/strmap.h"

static char *stem_of(const char *file_name) {
    const char *slash = strrchr(file_name, '/');
    const char *base = slash ? slash + 1 : file_name;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot > base ? (size_t)(dot - base) : strlen(base);
    char *s = xmalloc(n + 1);
    memcpy(s, base, n);
    s[n] = 0;
    return s;
}

static void image_add_caption(DatagenImage *img, const char *text) {
    img->captions = xrealloc(img->captions, (size_t)(img->n_captions + 1) * sizeof *img->captions);
    // COCO captions often carry stray whitespace and newlines: one caption per line.
    size_t n = strlen(text);
    char *c = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) c[k++] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
    while (k > 0 && c[k - 1] == ' ') k--;
    c[k] = 0;
    char *start = c;
    while (*start == ' ') start++;
    img->captions[img->n_captions++] = start == c ? c : memmove(c, start, strlen(start) + 1);
}

static void image_add_box(DatagenImage *img, const char *label, double x1, double y1, double x2, double y2) {
    img->boxes = xrealloc(img->boxes, (size_t)(img->n_boxes + 1) * sizeof *img->boxes);
    img->boxes[img->n_boxes++] = (DatagenBox){xstrdup(label), x1, y1, x2, y2};
}

static void image_set_problem(DatagenImage *img, const char *msg) {
    if (!img->problem) img->problem = xstrdup(msg);
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

static int int_key(const cJSON *v, char *key, size_t cap) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) return -1;
    snprintf(key, cap, "%.0f", v->valuedouble);
    return 0;
}

int datagen_load_coco(DatagenImages *out, const char *captions_json, const char *instances_json, Error *err) {
    memset(out, 0, sizeof *out);
    cJSON *caps = json_parse_file(captions_json, err), *inst = NULL;
    if (!caps) return -1;
    int rc = -1;
    StrMap by_id, cats;
    strmap_init(&by_id);
    strmap_init(&cats);
    double *wh = NULL;
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(caps, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(caps, "annotations");
    if (!cJSON_IsArray(images) || !cJSON_IsArray(anns)) {
        err_set(err, "%s: expected COCO captions: an object with \"images\" and \"annotations\" arrays",
                captions_json);
        goto done;
    }
    int n = cJSON_GetArraySize(images);
    out->items = xcalloc((size_t)(n ? n : 1), sizeof *out->items);
    wh = xcalloc((size_t)(n ? n : 1) * 2, sizeof *wh);
    char key[64];
    int i = 0;
    for (const cJSON *im = images->child; im; im = im->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(im, "id");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(im, "file_name");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(im, "width");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(im, "height");
        if (int_key(id, key, sizeof key) != 0 || !cJSON_IsString(fn)) {
            err_set(err, "%s: images[%d]: needs an integer \"id\" and a \"file_name\" string", captions_json, i);
            out->n = i;
            goto done;
        }
        DatagenImage *img = &out->items[i];
        img->id = stem_of(fn->valuestring);
        img->image = xstrdup(fn->valuestring);
        wh[2 * i] = cJSON_IsNumber(w) ? w->valuedouble : 0;
        wh[2 * i + 1] = cJSON_IsNumber(h) ? h->valuedouble : 0;
        if (strmap_put(&by_id, key, i) == 0) {
            err_set(err, "%s: images[%d]: image id %s appears twice", captions_json, i, key);
            out->n = i + 1;
            goto done;
        }
    }
    out->n = n;
    int a = 0;
    for (const cJSON *an = anns->child; an; an = an->next, a++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(an, "caption");
        int at = int_key(cJSON_GetObjectItemCaseSensitive(an, "image_id"), key, sizeof key) == 0
                     ? strmap_get(&by_id, key)
                     : -1;
        if (at < 0 || !cJSON_IsString(c)) {
            err_set(err, "%s: annotations[%d]: needs an \"image_id\" of a listed image and a \"caption\" string",
                    captions_json, a);
            goto done;
        }
        image_add_caption(&out->items[at], c->valuestring);
    }
    if (instances_json) {
        inst = json_parse_file(instances_json, err);
        if (!inst) goto done;
        const cJSON *categories = cJSON_GetObjectItemCaseSensitive(inst, "categories");
        const cJSON *ianns = cJSON_GetObjectItemCaseSensitive(inst, "annotations");
        if (!cJSON_IsArray(categories) || !cJSON_IsArray(ianns)) {
            err_set(err, "%s: expected COCO instances: \"categories\" and \"annotations\" arrays", instances_json);
            goto done;
        }
        int k = 0;
        for (const cJSON *cat = categories->child; cat; cat = cat->next, k++) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(cat, "name");
            if (int_key(cJSON_GetObjectItemCaseSensitive(cat, "id"), key, sizeof key) != 0 || !cJSON_IsString(name)) {
                err_set(err, "%s: categories[%d]: needs an integer \"id\" and a \"name\"", instances_json, k);
                goto done;
            }
            strmap_put(&cats, key, k);
        }
        a = 0;
        for (const cJSON *an = ianns->child; an; an = an->next, a++) {
            int at = int_key(cJSON_GetObjectItemCaseSensitive(an, "image_id"), key, sizeof key) == 0
                         ? strmap_get(&by_id, key)
                         : -1;
            if (at < 0) continue;  // an image the captions file does not list
            DatagenImage *img = &out->items[at];
            char why[256];
            int cat = int_key(cJSON_GetObjectItemCaseSensitive(an, "category_id"), key, sizeof key) == 0
                          ? strmap_get(&cats, key)
                          : -1;
            const cJSON *bb = cJSON_GetObjectItemCaseSensitive(an, "bbox");
            double v[4];
            int ok = cat >= 0 && cJSON_IsArray(bb) && cJSON_GetArraySize(bb) == 4;
            for (int j = 0; ok && j < 4; j++) {
                const cJSON *x = cJSON_GetArrayItem(bb, j);
                ok = cJSON_IsNumber(x) && isfinite(x->valuedouble);
                if (ok) v[j] = x->valuedouble;
            }
            double W = wh[2 * at], H = wh[2 * at + 1];
            if (!ok || !(W > 0) || !(H > 0)) {
                snprintf(why, sizeof why,
                         "%s: annotations[%d]: %s", instances_json, a,
                         !ok ? "needs a known \"category_id\" and a \"bbox\" of 4 numbers"
                             : "the image has no positive width/height in the captions file");
                image_set_problem(img, why);
                continue;
            }
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(categories, cat), "name");
            image_add_box(img, name->valuestring, clamp01(v[0] / W), clamp01(v[1] / H), clamp01((v[0] + v[2]) / W),
                          clamp01((v[1] + v[3]) / H));
        }
    }
    for (i = 0; i < out->n; i++)
        if (out->items[i].n_captions == 0) image_set_problem(&out->items[i], "the image has no caption");
    rc = 0;
done:
    if (rc != 0) datagen_images_free(out);
    free(wh);
    strmap_free(&by_id);
    strmap_free(&cats);
    cJSON_Delete(caps);
    cJSON_Delete(inst);
    return rc;
}

// One JSONL line -> img (problem set on a malformed line).
static void parse_jsonl_item(DatagenImage *img, const char *line, size_t len, const char *path, long lineno) {
    char what[4200], why[4400];
    snprintf(what, sizeof what, "%s:%ld", path, lineno);
    Error err = {{0}};
    cJSON *o = json_parse_text(line, len, what, &err);
    const cJSON *image = o ? cJSON_GetObjectItemCaseSensitive(o, "image") : NULL;
    const cJSON *id = o ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
    const cJSON *caps = o ? cJSON_GetObjectItemCaseSensitive(o, "captions") : NULL;
    const cJSON *boxes = o ? cJSON_GetObjectItemCaseSensitive(o, "boxes") : NULL;
    img->image = xstrdup(cJSON_IsString(image) ? image->valuestring : "");
    if (cJSON_IsString(id)) {
        img->id = xstrdup(id->valuestring);
    } else if (cJSON_IsNumber(id)) {
        char b[64];
        snprintf(b, sizeof b, "%.0f", id->valuedouble);
        img->id = xstrdup(b);
    } else {
        img->id = cJSON_IsString(image) ? stem_of(image->valuestring) : NULL;
    }
    if (!img->id) {
        char b[64];
        snprintf(b, sizeof b, "line%ld", lineno);
        img->id = xstrdup(b);
    }
    if (!o) {
        image_set_problem(img, err.msg);
        return;
    }
    if (!cJSON_IsString(image) || !cJSON_IsArray(caps)) {
        snprintf(why, sizeof why, "%s: needs an \"image\" string and a \"captions\" array", what);
        image_set_problem(img, why);
    }
    for (const cJSON *c = cJSON_IsArray(caps) ? caps->child : NULL; c; c = c->next) {
        if (cJSON_IsString(c)) {
            image_add_caption(img, c->valuestring);
        } else {
            snprintf(why, sizeof why, "%s: \"captions\" must hold strings", what);
            image_set_problem(img, why);
        }
    }
    if (boxes && !cJSON_IsNull(boxes) && !cJSON_IsArray(boxes)) {
        snprintf(why, sizeof why, "%s: \"boxes\" must be an array", what);
        image_set_problem(img, why);
    }
    int k = 0;
    for (const cJSON *b = cJSON_IsArray(boxes) ? boxes->child : NULL; b; b = b->next, k++) {
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(b, "label");
        const cJSON *bb = cJSON_GetObjectItemCaseSensitive(b, "bbox");
        double v[4];
        int ok = cJSON_IsString(label) && cJSON_IsArray(bb) && cJSON_GetArraySize(bb) == 4;
        for (int j = 0; ok && j < 4; j++) {
            const cJSON *x = cJSON_GetArrayItem(bb, j);
            ok = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble <= 1;
            if (ok) v[j] = x->valuedouble;
        }
        if (!ok || v[0] > v[2] || v[1] > v[3]) {
            snprintf(why, sizeof why,
                     "%s: boxes[%d]: needs a \"label\" and a \"bbox\" [x1, y1, x2, y2] in [0, 1] with x1 <= x2, "
                     "y1 <= y2",
                     what, k);
            image_set_problem(img, why);
            continue;
        }
        image_add_box(img, label->valuestring, v[0], v[1], v[2], v[3]);
    }
    if (img->n_captions == 0 && !img->problem) {
        snprintf(why, sizeof why, "%s: no caption", what);
        image_set_problem(img, why);
    }
    cJSON_Delete(o);
}

int datagen_load_jsonl(DatagenImages *out, const char *path, Error *err) {
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    int cap = 0;
    long lineno = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        lineno++;
        int blank = 1;
        for (size_t i = 0; i < ll && blank; i++) blank = p[i] == ' ' || p[i] == '\t' || p[i] == '\r';
        if (!blank) {
            if (out->n == cap) {
                cap = cap ? 2 * cap : 64;
                out->items = xrealloc(out->items, (size_t)cap * sizeof *out->items);
            }
            DatagenImage *img = &out->items[out->n++];
            memset(img, 0, sizeof *img);
            parse_jsonl_item(img, p, ll, path, lineno);
        }
        p += ll + 1;
    }
    free(text);
    return 0;
}

void datagen_images_free(DatagenImages *imgs) {
    for (int i = 0; i < imgs->n; i++) {
        DatagenImage *img = &imgs->items[i];
        free(img->id);
        free(img->image);
        for (int j = 0; j < img->n_captions; j++) free(img->captions[j]);
        free(img->captions);
        for (int j = 0; j < img->n_boxes; j++) free(img->boxes[j].label);
        free(img->boxes);
        free(img->problem);
    }
    free(imgs->items);
    memset(imgs, 0, sizeof *imgs);
}

void datagen_format_coord(double v, char *out, size_t cap) {
    snprintf(out, cap, "%.3f", v);
    // Python's repr of a rounded float: shortest digits, at least one decimal.
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '0' && n >= 2 && out[n - 2] != '.') out[--n] = 0;
    if (strcmp(out, "-0.0") == 0) snprintf(out, cap, "0.0");
}

char *datagen_context(const DatagenImage *img, int with_boxes) {
    size_t cap = 256;
    for (int i = 0; i < img->n_captions; i++) cap += strlen(img->captions[i]) + 1;
    for (int i = 0; with_boxes && i < img->n_boxes; i++) cap += strlen(img->boxes[i].label) + 64;
    char *s = xmalloc(cap);
    size_t n = 0;
    for (int i = 0; i < img->n_captions; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s%s", i ? "\n" : "", img->captions[i]);
    if (with_boxes && img->n_boxes > 0) {
        n += (size_t)snprintf(s + n, cap - n, "\n");
        for (int i = 0; i < img->n_boxes; i++) {
            const DatagenBox *b = &img->boxes[i];
            char c[4][32];
            datagen_format_coord(b->x1, c[0], sizeof c[0]);
            datagen_format_coord(b->y1, c[1], sizeof c[1]);
            datagen_format_coord(b->x2, c[2], sizeof c[2]);
            datagen_format_coord(b->y2, c[3], sizeof c[3]);
            n += (size_t)snprintf(s + n, cap - n, "\n%s: [%s, %s, %s, %s]", b->label, c[0], c[1], c[2], c[3]);
        }
    }
    return s;
}
