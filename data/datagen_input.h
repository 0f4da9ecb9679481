// What `llava datagen` knows about each image: captions and labelled boxes,
// read from COCO annotation files as they are (captions_*.json +
// instances_*.json) or from a JSONL of {id?, image, captions[], boxes[]}, and
// the symbolic context the language-only model sees (the paper's "captions"
// and "boxes" representation).
#ifndef LLAVA_DATAGEN_INPUT_H
#define LLAVA_DATAGEN_INPUT_H

#include "common/util.h"

typedef struct {
    char *label;
    double x1, y1, x2, y2;  // normalized to [0, 1]: top-left, bottom-right
} DatagenBox;

typedef struct {
    char *id;     // COCO: the file name's stem ("000000033471"); JSONL: "id" or the stem
    char *image;  // the file name (COCO) or "image" as written (JSONL)
    char **captions;
    int n_captions;
    DatagenBox *boxes;
    int n_boxes;
    char *problem;  // non-NULL: this image cannot be used (why); reported, never dropped
} DatagenImage;

typedef struct {
    DatagenImage *items;
    int n;
} DatagenImages;

// COCO: images in the captions file's order; boxes from the instances file
// (NULL: none) with category names, bbox [x, y, w, h] in pixels normalized by
// the image's width and height and clamped to [0, 1].
int datagen_load_coco(DatagenImages *out, const char *captions_json, const char *instances_json, Error *err);
// JSONL: one {"id"?, "image", "captions": [..], "boxes": [{"label", "bbox":
// [x1, y1, x2, y2]}]} per line, boxes already normalized. A malformed line
// becomes an item with a problem naming the line; a file that cannot be read
// is an error.
int datagen_load_jsonl(DatagenImages *out, const char *path, Error *err);
void datagen_images_free(DatagenImages *imgs);

// The context of one image as LLaVA's prompt files write it: the captions,
// one per line; then, when with_boxes and there are boxes, a blank line and
// "label: [x1, y1, x2, y2]" per box with the coordinates as Python prints
// round(v, 3) (0.5, 0.0, 0.123). malloc'd.
char *datagen_context(const DatagenImage *img, int with_boxes);
// One coordinate as Python's repr(round(v, 3)).
void datagen_format_coord(double v, char *out, size_t cap);

#endif
