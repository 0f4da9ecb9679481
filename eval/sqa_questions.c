// ScienceQA question files and LLaVA's question text (see sqa_questions.h).
#include "eval/sqa_questions.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static int is_py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

// Decodes the UTF-8 character at s; *len = its bytes (1 for an invalid byte,
// decoded as a value that is never whitespace).
static uint32_t utf8_at(const unsigned char *s, int *len) {
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    int n = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    uint32_t c = n == 2 ? s[0] & 0x1F : n == 3 ? s[0] & 0x0F : s[0] & 0x07;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) n = 0;
        else c = (c << 6) | (s[i] & 0x3F);
    }
    if (n == 0) {
        *len = 1;
        return 0xFFFFFFFFu;
    }
    *len = n;
    return c;
}

char *py_strip(char *s) {
    size_t start = 0, end = 0, i = 0, len = strlen(s);
    int seen = 0;
    while (i < len) {
        int n;
        uint32_t c = utf8_at((const unsigned char *)s + i, &n);
        if (!is_py_space(c)) {
            if (!seen) start = i;
            seen = 1;
            end = i + (size_t)n;
        }
        i += (size_t)n;
    }
    if (!seen) start = end = 0;
    memmove(s, s + start, end - start);
    s[end - start] = '\0';
    return s;
}

// s with every occurrence of `what` removed (new string).
static char *remove_all(const char *s, const char *what) {
    const size_t wl = strlen(what);
    char *out = xmalloc(strlen(s) + 1), *o = out;
    while (*s) {
        if (strncmp(s, what, wl) == 0) {
            s += wl;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

static char *concat3(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *out = xmalloc(la + lb + lc + 1);
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc + 1);
    return out;
}

int sqa_questions_load(const char *path, int single_pred, SqaQuestion **out, int *n, Error *err) {
    *out = NULL;
    *n = 0;
    cJSON *root = json_parse_file(path, err);
    if (!root) return -1;
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return err_set(err, "%s: expected a JSON list of questions", path);
    }
    const int count = cJSON_GetArraySize(root);
    SqaQuestion *q = xcalloc((size_t)(count ? count : 1), sizeof(SqaQuestion));
    int i = 0, rc = 0;
    for (const cJSON *it = root->child; it; it = it->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(it, "image");
        const cJSON *conv = cJSON_GetObjectItemCaseSensitive(it, "conversations");
        const cJSON *first = cJSON_IsArray(conv) ? conv->child : NULL;
        const cJSON *value = first ? cJSON_GetObjectItemCaseSensitive(first, "value") : NULL;
        if (!cJSON_IsString(id) || !cJSON_IsString(value) || (image && !cJSON_IsString(image))) {
            rc = err_set(err, "%s: item %d needs \"id\" (string), \"conversations\"[0].\"value\" (string) and "
                              "optionally \"image\" (string)", path, i);
            break;
        }
        q[i].id = xstrdup(id->valuestring);
        q[i].image = image ? xstrdup(image->valuestring) : NULL;
        char *text = py_strip(remove_all(value->valuestring, "<image>"));
        char *with_image = q[i].image ? concat3("<image>\n", text, "") : xstrdup(text);
        q[i].qs = single_pred ? concat3(with_image, "\n", SQA_SINGLE_PRED_PROMPT) : xstrdup(with_image);
        free(text);
        free(with_image);
    }
    cJSON_Delete(root);
    if (rc) {
        sqa_questions_free(q, count);
        return -1;
    }
    *out = q;
    *n = count;
    return 0;
}

void sqa_questions_free(SqaQuestion *q, int n) {
    for (int i = 0; q && i < n; i++) {
        free(q[i].id);
        free(q[i].image);
        free(q[i].qs);
        free(q[i].prompt);
    }
    free(q);
}
