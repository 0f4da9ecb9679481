// LLaVA JSON / JSONL reading. A JSON list is not parsed whole: a small scanner
// finds where each item of the list starts and ends (tracking strings and
// bracket depth), and only that item goes through cJSON. So a 1 GB list needs
// memory for one item, and a malformed item costs that item, not the file.
#include "data/dataset.h"

#include "common/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF (1 << 16)

struct DatasetReader {
    char *path;
    FILE *f;
    int jsonl;
    unsigned char buf[READ_BUF];
    size_t buf_len, buf_pos;
    int64_t offset;       // absolute offset of buf[buf_pos]
    int64_t line, col;    // of the next byte
    int64_t index;        // index of the next item
    int list_ended;
    char *item;           // text of the current item
    size_t item_len, item_cap;
    int64_t item_line, item_col, item_offset;  // where the current item starts
};

static const char *REASON_NAMES[PROBLEM_COUNT] = {
    "malformed_json",    "malformed_sample",
    "malformed_conversation", "missing_image",
    "corrupt_image",     "empty_answer_after_truncation", "image_cut_by_truncation",
    "mask_mismatch",     "truncated",
    "missing_caption",   "corrupt_archive",   "duplicate_key",   "unsafe_member",
};

const char *problem_reason_name(ProblemReason r) {
    return (unsigned)r < PROBLEM_COUNT ? REASON_NAMES[r] : "unknown";
}

int problem_reason_parse(const char *name) {
    for (int i = 0; i < PROBLEM_COUNT; i++)
        if (strcmp(name, REASON_NAMES[i]) == 0) return i;
    return -1;
}

// ---- buffered byte reader with line/column tracking -------------------------

static int rd_getc(DatasetReader *r) {
    if (r->buf_pos == r->buf_len) {
        r->buf_len = fread(r->buf, 1, READ_BUF, r->f);
        r->buf_pos = 0;
        if (r->buf_len == 0) return EOF;
    }
    int c = r->buf[r->buf_pos++];
    r->offset++;
    if (c == '\n') {
        r->line++;
        r->col = 1;
    } else {
        r->col++;
    }
    return c;
}

static int rd_seek(DatasetReader *r, int64_t offset, int64_t line, int64_t col) {
    if (fseeko(r->f, (off_t)offset, SEEK_SET) != 0) return -1;
    r->buf_len = r->buf_pos = 0;
    r->offset = offset;
    r->line = line;
    r->col = col;
    return 0;
}

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int skip_space(DatasetReader *r) {
    int c;
    do c = rd_getc(r);
    while (c != EOF && is_space(c));
    return c;
}

static void item_reset(DatasetReader *r) {
    r->item_len = 0;
    r->item_line = r->line;
    r->item_col = r->col;
    r->item_offset = r->offset;
}

static void item_push(DatasetReader *r, int c) {
    if (r->item_len + 2 > r->item_cap) {
        r->item_cap = r->item_cap ? 2 * r->item_cap : 4096;
        r->item = xrealloc(r->item, r->item_cap);
    }
    r->item[r->item_len++] = (char)c;
    r->item[r->item_len] = '\0';
}

static int io_failed(DatasetReader *r, Error *err) {
    if (ferror(r->f)) return err_set(err, "%s: read error near line %lld: %s", r->path, (long long)r->line,
                                     strerror(errno));
    return 0;
}

// ---- open / close / position -----------------------------------------------

DatasetReader *dataset_open(const char *path, Error *err) {
    FILE *f = file_open_regular(path, err);
    if (!f) {
        err_prefix(err, "the data file: ");
        return NULL;
    }
    DatasetReader *r = xcalloc(1, sizeof *r);
    r->path = xstrdup(path);
    r->f = f;
    r->line = r->col = 1;
    // A UTF-8 byte-order mark is not part of the JSON.
    int64_t start = 0;
    unsigned char bom[3];
    if (fread(bom, 1, 3, f) == 3 && bom[0] == 0xEF && bom[1] == 0xBB && bom[2] == 0xBF) start = 3;
    rd_seek(r, start, 1, 1);
    int c = skip_space(r);
    if (io_failed(r, err)) goto fail;
    if (c == '[') {
        r->jsonl = 0;  // positioned after '['
    } else {
        r->jsonl = 1;
        if (rd_seek(r, start, 1, 1) != 0) {
            err_set(err, "%s: cannot seek: %s", path, strerror(errno));
            goto fail;
        }
    }
    return r;
fail:
    dataset_close(r);
    return NULL;
}

void dataset_close(DatasetReader *r) {
    if (!r) return;
    if (r->f) fclose(r->f);
    free(r->path);
    free(r->item);
    free(r);
}

int dataset_is_jsonl(const DatasetReader *r) { return r->jsonl; }
const char *dataset_path(const DatasetReader *r) { return r->path; }

void dataset_tell(const DatasetReader *r, DatasetPos *pos) {
    pos->offset = r->offset;
    pos->index = r->index;
    pos->line = r->line;
    pos->col = r->col;
    pos->list_ended = r->list_ended;
}

int dataset_seek(DatasetReader *r, const DatasetPos *pos, Error *err) {
    if (pos->offset < 0 || pos->index < 0 || pos->line < 1 || pos->col < 1)
        return err_set(err, "%s: invalid resume position (offset %lld)", r->path, (long long)pos->offset);
    if (rd_seek(r, pos->offset, pos->line, pos->col) != 0)
        return err_set(err, "%s: cannot seek to byte %lld: %s", r->path, (long long)pos->offset, strerror(errno));
    r->index = pos->index;
    r->list_ended = pos->list_ended;
    return 0;
}

// ---- item scanning ------------------------------------------------------------

// JSONL: the next non-blank line. Returns 1 with the line in r->item, 0 at EOF.
static int scan_jsonl_item(DatasetReader *r) {
    for (;;) {
        item_reset(r);
        int c, blank = 1;
        while ((c = rd_getc(r)) != EOF && c != '\n') {
            item_push(r, c);
            if (!is_space(c)) blank = 0;
        }
        if (!blank) return 1;
        if (c == EOF) return 0;
    }
}

// JSON list: the text of the next item, up to (not including) the ',' or ']'
// that ends it at depth 0. Returns 1 with the item in r->item, 0 at the end of
// the list, -1 (err set) when the list's structure is broken.
static int scan_list_item(DatasetReader *r, Error *err) {
    if (r->list_ended) {
        int c = skip_space(r);
        if (c != EOF)
            return err_set(err, "%s:%lld:%lld: unexpected text after the end of the list", r->path,
                           (long long)r->line, (long long)r->col - 1);
        return 0;
    }
    int c = skip_space(r);
    int64_t line = r->line, col = r->col - 1;
    if (c == EOF) return err_set(err, "%s:%lld:%lld: unexpected end of file: the list is not closed with ']'",
                                 r->path, (long long)line, (long long)col);
    if (c == ']') {
        if (r->index > 0)
            return err_set(err, "%s:%lld:%lld: ']' after ',': a trailing comma is not valid JSON", r->path,
                           (long long)line, (long long)col);
        r->list_ended = 1;
        return scan_list_item(r, err);
    }
    if (c == ',')
        return err_set(err, "%s:%lld:%lld: empty item (',' where an item should start)", r->path, (long long)line,
                       (long long)col);
    item_reset(r);
    r->item_line = line;
    r->item_col = col;
    r->item_offset = r->offset - 1;  // c is already read
    int depth = 0, in_string = 0, escape = 0;
    for (; c != EOF; c = rd_getc(r)) {
        if (in_string) {
            if (escape) escape = 0;
            else if (c == '\\') escape = 1;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth > 0) {
                depth--;
            } else if (c == ']') {
                r->list_ended = 1;
                return 1;
            }
        } else if (c == ',' && depth == 0) {
            return 1;
        }
        item_push(r, c);
    }
    if (depth == 0 && !in_string)
        return err_set(err, "%s:%lld:%lld: unexpected end of file: the list is not closed with ']'", r->path,
                       (long long)r->line, (long long)r->col);
    return err_set(err,
                   "%s:%lld:%lld: unexpected end of file inside item %lld (which starts at line %lld): an "
                   "unterminated %s",
                   r->path, (long long)r->line, (long long)r->col, (long long)r->index, (long long)line,
                   in_string ? "string" : "bracket");
}

// ---- validation -----------------------------------------------------------------

static void problem_init(DatasetProblem *p, int64_t index, int64_t line) {
    memset(p, 0, sizeof *p);
    p->index = index;
    p->line = line;
}

static int problem_set(DatasetProblem *p, ProblemReason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int problem_set(DatasetProblem *p, ProblemReason reason, const char *fmt, ...) {
    p->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

static char *id_text(const cJSON *v) {
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    char *printed = cJSON_PrintUnformatted(v);  // numbers as written (shortest round-trip form)
    CHECK(printed, "cJSON_PrintUnformatted failed");
    char *s = xstrdup(printed);
    cJSON_free(printed);
    return s;
}

void dataset_sample_free(DatasetSample *s) {
    if (!s) return;
    free(s->id);
    free(s->image);
    free(s->image_data);
    for (int i = 0; i < s->n_turns; i++) free(s->turns[i].value);
    free(s->turns);
    memset(s, 0, sizeof *s);
}

static int parse_turns(const cJSON *conv, DatasetSample *s, DatasetProblem *p) {
    if (!conv || cJSON_IsNull(conv)) return problem_set(p, PROBLEM_MALFORMED_CONVERSATION, "no \"conversations\"");
    if (!cJSON_IsArray(conv))
        return problem_set(p, PROBLEM_MALFORMED_CONVERSATION, "\"conversations\" is %s, not a list",
                           json_type_name(conv));
    int n = cJSON_GetArraySize(conv);
    if (n == 0) return problem_set(p, PROBLEM_MALFORMED_CONVERSATION, "\"conversations\" is empty");
    s->turns = xcalloc((size_t)n, sizeof *s->turns);
    int k = 0;
    const cJSON *turn;
    cJSON_ArrayForEach(turn, conv) {
        if (!cJSON_IsObject(turn))
            return problem_set(p, PROBLEM_MALFORMED_CONVERSATION, "turn %d is %s, not an object", k,
                               json_type_name(turn));
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(turn, "from");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(turn, "value");
        if (!cJSON_IsString(from))
            return problem_set(p, PROBLEM_MALFORMED_CONVERSATION, "turn %d: \"from\" is %s, not \"human\" or \"gpt\"",
                               k, from ? json_type_name(from) : "missing");
        TurnRole role;
        if (strcmp(from->valuestring, "human") == 0) {
            role = ROLE_HUMAN;
        } else if (strcmp(from->valuestring, "gpt") == 0) {
            role = ROLE_GPT;
        } else {
            return problem_set(p, PROBLEM_MALFORMED_CONVERSATION, "turn %d: \"from\" is \"%.64s\", not \"human\" or \"gpt\"",
                               k, from->valuestring);
        }
        if (!cJSON_IsString(value))
            return problem_set(p, PROBLEM_MALFORMED_CONVERSATION, "turn %d: \"value\" is %s, not a string", k,
                               value ? json_type_name(value) : "missing");
        // The order of the roles is the template's business (data/conversation.c):
        // vicuna_v1 drops a leading gpt turn and needs human, gpt, ...; plain
        // takes two turns whatever their roles, as LLaVA's preprocess_plain.
        s->turns[k].role = role;
        s->turns[k].value = xstrdup(value->valuestring);
        s->n_turns = ++k;
    }
    return 0;
}

int dataset_sample_from_json(const cJSON *item, int64_t index, int64_t line, DatasetSample *s, DatasetProblem *p) {
    memset(s, 0, sizeof *s);
    problem_init(p, index, line);
    s->index = index;
    s->line = line;
    if (!cJSON_IsObject(item))
        return problem_set(p, PROBLEM_MALFORMED_SAMPLE, "the item is %s, not an object", json_type_name(item));
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
    if (id && !cJSON_IsNull(id)) {
        if (!cJSON_IsString(id) && !cJSON_IsNumber(id))
            return problem_set(p, PROBLEM_MALFORMED_SAMPLE, "\"id\" is %s, not a string or number",
                               json_type_name(id));
        s->id = id_text(id);
        snprintf(p->id, sizeof p->id, "%s", s->id);
    } else {
        s->id = xstrdup("");
    }
    const cJSON *image = cJSON_GetObjectItemCaseSensitive(item, "image");
    if (image && !cJSON_IsNull(image)) {
        if (cJSON_IsArray(image)) {
            problem_set(p, PROBLEM_MALFORMED_SAMPLE, "\"image\" is a list: one image per sample is supported");
            goto fail;
        }
        if (!cJSON_IsString(image) || image->valuestring[0] == '\0') {
            problem_set(p, PROBLEM_MALFORMED_SAMPLE, "\"image\" is %s, not a file name",
                        cJSON_IsString(image) ? "an empty string" : json_type_name(image));
            goto fail;
        }
        s->image = xstrdup(image->valuestring);
    }
    if (parse_turns(cJSON_GetObjectItemCaseSensitive(item, "conversations"), s, p) != 0) goto fail;
    return 0;
fail:
    dataset_sample_free(s);
    return -1;
}

// The line and column of byte `at` of the current item.
static void item_position(const DatasetReader *r, size_t at, int64_t *line, int64_t *col) {
    *line = r->item_line;
    *col = r->item_col;
    for (size_t i = 0; i < at && i < r->item_len; i++) {
        if (r->item[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

// Copies a short printable excerpt of the item around byte `at` into dst.
static void item_excerpt(const DatasetReader *r, size_t at, char *dst, size_t cap) {
    size_t from = at > 20 ? at - 20 : 0, k = 0;
    for (size_t i = from; i < r->item_len && i < at + 20 && k + 1 < cap; i++) {
        unsigned char ch = (unsigned char)r->item[i];
        dst[k++] = ch < 0x20 ? ' ' : (char)ch;
    }
    dst[k] = '\0';
}

// Best effort for a report entry: the string after the first "id": of an
// item that does not parse. Leaves dst empty when there is none.
static void guess_id(const char *text, size_t len, char *dst, size_t cap) {
    const char *end = text + len;
    for (const char *q = text; q + 4 < end; q++) {
        if (memcmp(q, "\"id\"", 4) != 0) continue;
        q += 4;
        while (q < end && (is_space((unsigned char)*q) || *q == ':')) q++;
        if (q >= end || *q != '"') return;
        size_t k = 0;
        for (q++; q < end && *q != '"' && *q != '\\' && k + 1 < cap; q++) dst[k++] = *q;
        dst[k] = '\0';
        return;
    }
}

static int parse_item(DatasetReader *r, DatasetSample *s, DatasetProblem *p) {
    int64_t index = r->index++;
    problem_init(p, index, r->item_line);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(r->item, r->item_len, &end, 0);
    size_t bad_at = SIZE_MAX;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        bad_at = (at && at >= r->item && at <= r->item + r->item_len) ? (size_t)(at - r->item) : r->item_len;
    } else {
        for (const char *q = end; q && q < r->item + r->item_len; q++)
            if (!is_space((unsigned char)*q)) {
                bad_at = (size_t)(q - r->item);
                break;
            }
    }
    if (bad_at != SIZE_MAX) {
        cJSON_Delete(root);
        int64_t line, col;
        item_position(r, bad_at, &line, &col);
        char excerpt[64];
        item_excerpt(r, bad_at, excerpt, sizeof excerpt);
        guess_id(r->item, r->item_len, p->id, sizeof p->id);
        problem_set(p, PROBLEM_MALFORMED_JSON, "malformed JSON at line %lld, column %lld (byte offset %lld)%s near '%s'",
                    (long long)line, (long long)col, (long long)(r->item_offset + (int64_t)bad_at),
                    root ? ": text after the end of the item" : "", excerpt);
        return DATASET_BAD_ITEM;
    }
    // cJSON strings end at the first NUL: a "\u0000" in a turn would cut
    // the turn short (or hide its <image>), so the sample is refused instead.
    long nul = json_find_nul_escape(r->item, r->item_len);
    if (nul >= 0) {
        cJSON_Delete(root);
        int64_t line, col;
        item_position(r, (size_t)nul, &line, &col);
        guess_id(r->item, r->item_len, p->id, sizeof p->id);
        problem_set(p, PROBLEM_MALFORMED_SAMPLE, "a string holds \\u0000 (a NUL character) at line %lld, column %lld: "
                    "it would cut the text short", (long long)line, (long long)col);
        return DATASET_BAD_ITEM;
    }
    int rc = dataset_sample_from_json(root, index, r->item_line, s, p);
    cJSON_Delete(root);
    return rc == 0 ? DATASET_SAMPLE : DATASET_BAD_ITEM;
}

int dataset_next(DatasetReader *r, DatasetSample *s, DatasetProblem *p, Error *err) {
    memset(s, 0, sizeof *s);
    int got = r->jsonl ? scan_jsonl_item(r) : scan_list_item(r, err);
    if (io_failed(r, err)) return DATASET_ERROR;
    if (got < 0) return DATASET_ERROR;
    if (got == 0) return DATASET_END;
    return parse_item(r, s, p);
}
