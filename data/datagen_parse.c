#include "data/datagen_parse.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char *const TYPE_NAMES[DATAGEN_N_TYPES] = {"conv", "detail", "complex"};
static const char *const TYPE_FOLDERS[DATAGEN_N_TYPES] = {"conversation", "detail_description",
                                                          "complex_reasoning"};

const char *datagen_type_name(DatagenType t) { return TYPE_NAMES[t]; }
const char *datagen_type_folder(DatagenType t) { return TYPE_FOLDERS[t]; }

int datagen_types_parse(const char *list, int *mask) {
    *mask = 0;
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int found = -1;
        for (int t = 0; t < DATAGEN_N_TYPES; t++)
            if (strlen(TYPE_NAMES[t]) == n && strncmp(p, TYPE_NAMES[t], n) == 0) found = t;
        if (found < 0) return -1;
        *mask |= 1 << found;
        p += n;
        if (*p == ',') p++;
    }
    return *mask ? 0 : -1;
}

const char *const DATAGEN_DETAIL_QUESTIONS[] = {
    "Describe the following image in detail.",
    "Provide a detailed description of the given image.",
    "Give an elaborate explanation of the image you see.",
    "Share a comprehensive rundown of the presented image.",
    "Offer a thorough analysis of the image.",
    "Explain the various aspects of the image before you.",
    "Clarify the contents of the displayed image with great detail.",
    "Characterize the image using a well-detailed description.",
    "Break down the elements of the image in a detailed manner.",
    "Walk through the important details of the image.",
    "Portray the image with a rich, descriptive narrative.",
    "Narrate the contents of the image with precision.",
    "Analyze the image in a comprehensive and detailed manner.",
    "Illustrate the image through a descriptive explanation.",
    "Examine the image closely and share its details.",
    "Write an exhaustive depiction of the given image.",
};
const int DATAGEN_N_DETAIL_QUESTIONS = (int)(sizeof DATAGEN_DETAIL_QUESTIONS / sizeof *DATAGEN_DETAIL_QUESTIONS);

void datagen_turns_free(DatagenTurns *t) {
    for (int i = 0; i < t->n; i++) free(t->value[i]);
    free(t->value);
    t->value = NULL;
    t->n = 0;
}

static void turns_push(DatagenTurns *t, const char *s, size_t n) {
    t->value = xrealloc(t->value, (size_t)(t->n + 1) * sizeof *t->value);
    char *v = xmalloc(n + 1);
    memcpy(v, s, n);
    v[n] = 0;
    t->value[t->n++] = v;
}

// [s, s+n) without surrounding whitespace.
static void trim(const char **s, size_t *n) {
    while (*n && isspace((unsigned char)**s)) (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
}

static int starts_with(const char *s, size_t n, const char *prefix) {
    size_t pl = strlen(prefix);
    return n >= pl && strncmp(s, prefix, pl) == 0;
}

// One block of the "===" format: "Question:" or "Answer:" then its text (on the
// same line or the next ones). A "Question:" block may also hold its
// "Answer:" on a later line (models sometimes drop the separator).
static int add_block(const char *s, size_t n, DatagenTurns *out, char *why, size_t cap) {
    trim(&s, &n);
    if (n == 0) return 0;  // "===" twice, or a trailing separator
    int is_q = starts_with(s, n, "Question:"), is_a = starts_with(s, n, "Answer:");
    if (!is_q && !is_a) {
        snprintf(why, cap, "a block starts with neither \"Question:\" nor \"Answer:\": \"%.40s\"", s);
        return -1;
    }
    size_t skip = is_q ? 9 : 7;
    const char *body = s + skip;
    size_t bl = n - skip;
    if (is_q) {
        // "Question: ...\nAnswer: ..." inside one block.
        for (const char *p = body; p < body + bl; p++) {
            if (*p == '\n' && starts_with(p + 1, (size_t)(body + bl - p - 1), "Answer:")) {
                if (add_block(s, (size_t)(p - s), out, why, cap) != 0) return -1;
                return add_block(p + 1, (size_t)(s + n - p - 1), out, why, cap);
            }
        }
    }
    if ((out->n % 2 == 0) != is_q) {
        snprintf(why, cap, "%s", is_q ? "a question follows a question without an answer"
                                      : "an answer comes before any question");
        return -1;
    }
    trim(&body, &bl);
    if (bl == 0) {
        snprintf(why, cap, "an empty %s", is_q ? "question" : "answer");
        return -1;
    }
    turns_push(out, body, bl);
    return 0;
}

static int parse_blocks(const char *text, DatagenTurns *out, char *why, size_t cap) {
    const char *block = text, *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        const char *l = p;
        size_t tl = ll;
        trim(&l, &tl);
        if (tl == 3 && strncmp(l, "===", 3) == 0) {
            if (add_block(block, (size_t)(p - block), out, why, cap) != 0) return -1;
            block = nl ? nl + 1 : p + ll;
        }
        p = nl ? nl + 1 : p + ll;
    }
    return add_block(block, strlen(block), out, why, cap);
}

// One {"question", "answer"} object per line; ``` fences are ignored.
// 1 when every non-blank line is such an object, 0 when the text is not in
// this format, -1 when it is but a line is broken.
static int parse_json_lines(const char *text, DatagenTurns *out, char *why, size_t cap) {
    int pairs = 0, line = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        const char *l = p;
        size_t tl = ll;
        trim(&l, &tl);
        line++;
        p = nl ? nl + 1 : p + ll;
        if (tl == 0 || starts_with(l, tl, "```")) continue;
        if (*l != '{') {
            if (pairs == 0) return 0;
            snprintf(why, cap, "line %d is not a {\"question\", \"answer\"} object", line);
            return -1;
        }
        cJSON *o = cJSON_ParseWithLength(l, tl);
        const cJSON *q = o ? cJSON_GetObjectItemCaseSensitive(o, "question") : NULL;
        const cJSON *a = o ? cJSON_GetObjectItemCaseSensitive(o, "answer") : NULL;
        if (!cJSON_IsString(q) || !cJSON_IsString(a) || !q->valuestring[0] || !a->valuestring[0]) {
            cJSON_Delete(o);
            snprintf(why, cap, "line %d is not a {\"question\", \"answer\"} object with non-empty strings", line);
            return -1;
        }
        turns_push(out, q->valuestring, strlen(q->valuestring));
        turns_push(out, a->valuestring, strlen(a->valuestring));
        cJSON_Delete(o);
        pairs++;
    }
    return pairs > 0;
}

int datagen_parse_qa(const char *text, DatagenTurns *out, char *why, size_t cap) {
    out->value = NULL;
    out->n = 0;
    int j = parse_json_lines(text, out, why, cap);
    if (j == 1) return 0;
    datagen_turns_free(out);
    if (j < 0) return -1;
    if (parse_blocks(text, out, why, cap) != 0) {
        datagen_turns_free(out);
        return -1;
    }
    if (out->n == 0 || out->n % 2) {
        snprintf(why, cap, "%s", out->n ? "the last question has no answer" : "no question/answer pair found");
        datagen_turns_free(out);
        return -1;
    }
    return 0;
}

static void place_image(DatagenTurns *t, int front) {
    const char *q = t->value[0];
    size_t n = strlen(q);
    char *v = xmalloc(n + 9);
    if (front)
        snprintf(v, n + 9, "<image>\n%s", q);
    else
        snprintf(v, n + 9, "%s\n<image>", q);
    free(t->value[0]);
    t->value[0] = v;
}

int datagen_build_turns(DatagenType type, const char *response, const char *detail_question, int image_front,
                        DatagenTurns *out, char *why, size_t cap) {
    out->value = NULL;
    out->n = 0;
    if (strstr(response, "<image>")) {
        snprintf(why, cap, "the response contains the literal \"<image>\" token");
        return -1;
    }
    if (type == DATAGEN_DETAIL) {
        const char *s = response;
        size_t n = strlen(s);
        trim(&s, &n);
        if (n == 0) {
            snprintf(why, cap, "an empty description");
            return -1;
        }
        turns_push(out, detail_question, strlen(detail_question));
        turns_push(out, s, n);
    } else {
        if (datagen_parse_qa(response, out, why, cap) != 0) return -1;
        if (type == DATAGEN_COMPLEX && out->n != 2) {
            snprintf(why, cap, "complex reasoning wants one question and answer, found %d pairs", out->n / 2);
            datagen_turns_free(out);
            return -1;
        }
    }
    place_image(out, image_front);
    return 0;
}
