#include "train/demo_data.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

static const char *COLORS[DEMO_N_COLORS] = {"red", "green", "blue", "yellow"};
static const uint8_t COLOR_RGB[DEMO_N_COLORS][3] = {{210, 40, 40}, {40, 160, 60}, {40, 70, 210}, {225, 200, 30}};
static const char *SHAPES[DEMO_N_SHAPES] = {"circle", "square", "triangle", "diamond"};

const char *demo_color_name(int c) { return COLORS[c]; }
const char *demo_shape_name(int s) { return SHAPES[s]; }

static int inside(const DemoPicture *p, double x, double y) {
    double dx = x - p->cx, dy = y - p->cy, r = p->radius;
    switch (p->shape) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: return fabs(dx) <= r * 0.85 && fabs(dy) <= r * 0.85;
    case 2: return dy <= r * 0.8 && dy >= -r && fabs(dx) <= (dy + r) * 0.62;  // apex up
    default: return fabs(dx) + fabs(dy) <= r;
    }
}

void demo_render(const DemoPicture *p, int size, uint64_t seed, uint8_t *rgb) {
    Rng r;
    rng_seed(&r, seed);
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            uint8_t *px = rgb + ((size_t)y * size + x) * 3;
            int in = p->radius > 0 && inside(p, x + 0.5, y + 0.5);
            for (int c = 0; c < 3; c++) {
                int base = in ? COLOR_RGB[p->color][c] : 235;
                int v = base + (int)(rng_normal(&r) * 8.0f);
                px[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

int demo_write_png(const char *path, const uint8_t *rgb, int width, int height, Error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return err_set(err, "%s: cannot create", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return err_set(err, "%s: PNG encoding failed", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * width * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) return err_set(err, "%s: write failed", path);
    return 0;
}

// One shape filling much of the picture near its centre: at the demo's 32 px
// and 8 px patches, every patch then sees a part of the outline, which is
// what a frozen, randomly initialized vision tower can pass on.
static DemoPicture random_picture(Rng *r, int size) {
    DemoPicture p;
    p.color = (int)rng_below(r, DEMO_N_COLORS);
    p.shape = (int)rng_below(r, DEMO_N_SHAPES);
    p.big = (int)rng_below(r, 2);
    int jitter = size / 16 > 0 ? size / 16 : 1;
    p.radius = p.big ? size * 13 / 32 + (int)rng_below(r, (uint64_t)jitter + 1)
                     : size * 9 / 32 + (int)rng_below(r, (uint64_t)jitter + 1);
    p.cx = size / 2 - jitter + (int)rng_below(r, (uint64_t)(2 * jitter + 1));
    p.cy = size / 2 - jitter + (int)rng_below(r, (uint64_t)(2 * jitter + 1));
    return p;
}

static cJSON *turn(const char *from, const char *value) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "from", from);
    cJSON_AddStringToObject(t, "value", value);
    return t;
}

static cJSON *sample(const char *id, const char *image, const char *human, const char *gpt) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "id", id);
    cJSON_AddStringToObject(s, "image", image);
    cJSON *conv = cJSON_AddArrayToObject(s, "conversations");
    cJSON_AddItemToArray(conv, turn("human", human));
    cJSON_AddItemToArray(conv, turn("gpt", gpt));
    return s;
}

// A question about the colour or the shape in ScienceQA's CQM-A prompt form,
// options shuffled; returns the correct letter through *answer.
static void make_question(Rng *r, const DemoPicture *p, char *human, size_t cap, char *answer, int *n_options) {
    int about_color = (int)rng_below(r, 2);
    int n = about_color ? DEMO_N_COLORS : DEMO_N_SHAPES, truth = about_color ? p->color : p->shape;
    // Options in a fixed order, so the answer letter is a function of the
    // picture alone: a 2-layer model learns it in a minute on 2 cores (with
    // shuffled options it must also learn to match words across the prompt).
    int order[8];
    for (int i = 0; i < n; i++) order[i] = i;
    char options[256] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const char *name = about_color ? COLORS[order[i]] : SHAPES[order[i]];
        used += (size_t)snprintf(options + used, sizeof options - used, "%s(%c) %s", i ? " " : "", 'A' + i, name);
        if (order[i] == truth) *answer = (char)('A' + i);
    }
    snprintf(human, cap,
             "<image>\nContext: N/A\nQuestion: What %s is the shape in the picture?\nOptions: %s\n"
             "Answer with the option's letter from the given choices directly.",
             about_color ? "color" : "kind of shape", options);
    *n_options = n;
}

static int save_json(const char *path, cJSON *root, Error *err) {
    char *text = cJSON_Print(root);
    int rc = write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

int demo_write_dataset(const char *dir, const DemoDataOptions *o, Error *err) {
    char path[4096], images[4096];
    path_join(images, sizeof images, dir, "images");
    if (make_dirs(images, err) != 0) return -1;
    Rng r;
    rng_seed(&r, o->seed);
    int S = o->image_size;
    uint8_t *rgb = xmalloc((size_t)S * S * 3);
    cJSON *files[3] = {cJSON_CreateArray(), cJSON_CreateArray(), cJSON_CreateArray()};
    const int counts[3] = {o->n_caption, o->n_train_qa, o->n_test_qa};
    const char *prefixes[3] = {"cap", "qa", "test"};
    int rc = 0;
    for (int f = 0; f < 3 && rc == 0; f++)
        for (int i = 0; i < counts[f] && rc == 0; i++) {
            DemoPicture p = random_picture(&r, S);
            char id[64], image[96], file[4200];
            snprintf(id, sizeof id, "%s%05d", prefixes[f], i);
            snprintf(image, sizeof image, "%s.png", id);
            snprintf(file, sizeof file, "%s/%s", images, image);
            demo_render(&p, S, o->seed * 7919u + (uint64_t)(f * 1000003 + i), rgb);
            rc = demo_write_png(file, rgb, S, S, err);
            if (f == 0) {
                char caption[128];
                snprintf(caption, sizeof caption, "a %s %s %s.", p.big ? "large" : "small", COLORS[p.color],
                         SHAPES[p.shape]);
                cJSON_AddItemToArray(files[0], sample(id, image, "<image>", caption));
            } else {
                char human[512], answer = 'A', gpt[8];
                int n_options = 0;
                make_question(&r, &p, human, sizeof human, &answer, &n_options);
                snprintf(gpt, sizeof gpt, "%c", answer);
                cJSON *s = sample(id, image, human, gpt);
                if (f == 2) {
                    cJSON_AddStringToObject(s, "answer", gpt);
                    cJSON_AddNumberToObject(s, "options", n_options);
                }
                cJSON_AddItemToArray(files[f], s);
            }
        }
    const char *names[3] = {"stage1.json", "stage2.json", "test.json"};
    for (int f = 0; f < 3; f++) {
        path_join(path, sizeof path, dir, names[f]);
        if (rc == 0) rc = save_json(path, files[f], err);
        cJSON_Delete(files[f]);
    }
    DemoPicture blank = {0, 0, S / 2, S / 2, 0, 0};
    demo_render(&blank, S, o->seed + 17, rgb);
    path_join(path, sizeof path, dir, "blank.png");
    if (rc == 0) rc = demo_write_png(path, rgb, S, S, err);
    free(rgb);
    return rc;
}
