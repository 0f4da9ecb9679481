// WebDataset tar shards as a prep source (see data/webdataset.h): a stream
// of tar members -> groups by key -> DatasetSample (stage-1 caption sample
// with the image bytes) or DatasetProblem.
#include "data/webdataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/strmap.h"

#define WDS_KEY_MAX 512
#define WDS_EXT_MAX 64

// The members of one key seen so far.
typedef struct {
    int active;
    char key[WDS_KEY_MAX];
    int64_t line;              // 1-based number of the group's first member in its tar
    int duplicate;             // the key was seen before in this tar
    uint8_t *image;            // first image member's bytes
    size_t image_len;
    char image_name[WDS_KEY_MAX + WDS_EXT_MAX];
    char *txt, *json;          // .txt and .json members (NUL-terminated), or NULL
    size_t txt_len, json_len;
    char exts[8][WDS_EXT_MAX]; // extensions seen (a repeat starts a new group)
    int n_exts;
} WdsGroup;

struct WdsSource {
    char *const *paths;
    int n;
    WdsOptions o;
    char caption_key[128];
    char label[1024];
    // reading state
    int t;                     // current tar (index into paths)
    struct archive *a;         // open tar, or NULL
    int64_t members;           // headers read in the current tar
    int peek;                  // a header was read but its member not yet consumed
    char peek_name[4096];
    int64_t peek_size;
    int peek_regular, peek_dir;
    int64_t items;             // items returned so far
    StrMap seen;               // keys of the current tar
    WdsGroup g;
    int damaged;               // the current tar cannot be read further: report, then next tar
    char damage_why[1024];
};

static const char *const IMAGE_EXTS[] = {"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", NULL};

static int is_image_ext(const char *ext) {
    for (int i = 0; IMAGE_EXTS[i]; i++)
        if (strcasecmp(ext, IMAGE_EXTS[i]) == 0) return 1;
    return 0;
}

int wds_split_name(const char *name, char *key, size_t key_cap, char *ext, size_t ext_cap) {
    if (!name || !*name || name[0] == '/') return -1;
    // No ".." component anywhere.
    for (const char *c = name; *c;) {
        const char *slash = strchr(c, '/');
        const size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.') return -1;
        c += n + (slash != NULL);
    }
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strchr(base, '.');
    const size_t klen = dot ? (size_t)(dot - name) : strlen(name);
    if (dot == base || klen == 0 || klen >= key_cap) return -1;  // ".jpg", or no key
    memcpy(key, name, klen);
    key[klen] = '\0';
    snprintf(ext, ext_cap, "%s", dot ? dot + 1 : "");
    return 0;
}

static void group_clear(WdsGroup *g) {
    free(g->image);
    free(g->txt);
    free(g->json);
    memset(g, 0, sizeof *g);
}

static void problem_fill(DatasetProblem *q, int64_t index, int64_t line, const char *id, const char *file,
                         ProblemReason reason, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void problem_fill(DatasetProblem *q, int64_t index, int64_t line, const char *id, const char *file,
                         ProblemReason reason, const char *fmt, ...) {
    memset(q, 0, sizeof *q);
    q->index = index;
    q->line = line;
    q->reason = reason;
    snprintf(q->id, sizeof q->id, "%s", id ? id : "");
    snprintf(q->file, sizeof q->file, "%s", file);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->detail, sizeof q->detail, fmt, ap);
    va_end(ap);
}

// ---- the tar stream ---------------------------------------------------------------

static void tar_close(WdsSource *ws) {
    if (ws->a) archive_read_free(ws->a);
    ws->a = NULL;
    ws->peek = 0;
    ws->members = 0;
    strmap_free(&ws->seen);
    strmap_init(&ws->seen);
}

// Moves on to the next tar (after its end or an error).
static void tar_next(WdsSource *ws) {
    tar_close(ws);
    ws->t++;
}

static int tar_open(WdsSource *ws, char *why, size_t cap) {
    struct archive *a = archive_read_new();
    if (!a) return snprintf(why, cap, "archive_read_new failed (out of memory)"), -1;
    // ustar, pax and GNU tar; .tar.gz and friends if anyone compresses them
    // (ARCHIVE_WARN: a filter that would need an external program).
    if (archive_read_support_format_tar(a) != ARCHIVE_OK || archive_read_support_filter_all(a) < ARCHIVE_WARN) {
        snprintf(why, cap, "libarchive cannot read tars: %s", archive_error_string(a) ? archive_error_string(a) : "?");
        archive_read_free(a);
        return -1;
    }
    if (archive_read_open_filename(a, ws->paths[ws->t], 1 << 16) != ARCHIVE_OK) {
        snprintf(why, cap, "cannot open: %s", archive_error_string(a) ? archive_error_string(a) : strerror(errno));
        archive_read_free(a);
        return -1;
    }
    ws->a = a;
    ws->members = 0;
    ws->peek = 0;
    return 0;
}

// Reads the next member header into peek. 1 = a header, 0 = end of the tar,
// -1 = damaged (why filled).
static int tar_peek(WdsSource *ws, char *why, size_t cap) {
    if (ws->peek) return 1;
    struct archive_entry *e;
    const int rc = archive_read_next_header(ws->a, &e);
    if (rc == ARCHIVE_EOF) return 0;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
        snprintf(why, cap, "after %lld members: %s", (long long)ws->members,
                 archive_error_string(ws->a) ? archive_error_string(ws->a) : "unreadable header");
        return -1;
    }
    const char *name = archive_entry_pathname(e);
    snprintf(ws->peek_name, sizeof ws->peek_name, "%s", name ? name : "");
    ws->peek_size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    ws->peek_regular = archive_entry_filetype(e) == AE_IFREG;
    ws->peek_dir = archive_entry_filetype(e) == AE_IFDIR;
    ws->peek = 1;
    ws->members++;
    return 1;
}

// Skips the peeked member's data. -1 = the tar ends inside it.
static int tar_skip(WdsSource *ws, char *why, size_t cap) {
    ws->peek = 0;
    if (archive_read_data_skip(ws->a) != ARCHIVE_OK) {
        snprintf(why, cap, "member %.300s: %.300s", ws->peek_name,
                 archive_error_string(ws->a) ? archive_error_string(ws->a) : "data past the end");
        return -1;
    }
    return 0;
}

// Reads the peeked member's data (size already checked). -1 = truncated.
static uint8_t *tar_read(WdsSource *ws, size_t *len, char *why, size_t cap) {
    ws->peek = 0;
    const size_t n = (size_t)ws->peek_size;
    uint8_t *buf = xmalloc(n + 1);
    size_t got = 0;
    while (got < n) {
        const la_ssize_t r = archive_read_data(ws->a, buf + got, n - got);
        if (r <= 0) {
            snprintf(why, cap, "member %.300s: %.300s after %zu of %zu bytes", ws->peek_name,
                     r < 0 && archive_error_string(ws->a) ? archive_error_string(ws->a) : "the tar ends", got, n);
            free(buf);
            return NULL;
        }
        got += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

// ---- groups -> samples ------------------------------------------------------------

static char *caption_of(WdsSource *ws, const WdsGroup *g, ProblemReason *reason, char *why, size_t cap) {
    const char *text = NULL;
    size_t len = 0;
    cJSON *meta = NULL;
    char *out = NULL;
    if (strcmp(ws->caption_key, "txt") == 0) {
        text = g->txt;
        len = g->txt_len;
        if (!text) snprintf(why, cap, "no %.200s.txt member", g->key);
    } else if (!g->json) {
        snprintf(why, cap, "no %.200s.json member for --caption-key %.100s", g->key, ws->caption_key);
    } else if (!(meta = cJSON_ParseWithLength(g->json, g->json_len)) || !cJSON_IsObject(meta)) {
        *reason = PROBLEM_MALFORMED_JSON;
        snprintf(why, cap, "%.200s.json is not a JSON object", g->key);
        cJSON_Delete(meta);
        return NULL;
    } else {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, ws->caption_key);
        if (cJSON_IsString(v)) {
            text = v->valuestring;
            len = strlen(text);
        } else {
            snprintf(why, cap, "%.200s.json has no string field \"%.100s\"", g->key, ws->caption_key);
        }
    }
    if (text && (len == 0 || memchr(text, '\0', len))) {
        snprintf(why, cap, "the caption of %.200s is %s", g->key, len ? "not text (a NUL byte)" : "empty");
        text = NULL;
    }
    if (text) {
        out = xmalloc(len + 1);
        memcpy(out, text, len);
        out[len] = '\0';
    }
    cJSON_Delete(meta);
    *reason = PROBLEM_MISSING_CAPTION;
    return out;
}

// The finished group -> a sample or a problem. Frees the group.
static int group_emit(WdsSource *ws, DatasetSample *s, DatasetProblem *q) {
    WdsGroup *g = &ws->g;
    const char *tar = ws->paths[ws->t];
    const int64_t index = ws->items++;
    char why[512] = "";
    ProblemReason reason = PROBLEM_MISSING_CAPTION;
    char *caption = NULL;
    int rc = DATASET_BAD_ITEM;
    if (g->duplicate)
        problem_fill(q, index, g->line, g->key, tar, PROBLEM_DUPLICATE_KEY,
                     "key %s appears again (member %lld); the first one was kept", g->key, (long long)g->line);
    else if (!g->image)
        problem_fill(q, index, g->line, g->key, tar, PROBLEM_MISSING_IMAGE, "no image member (%s) for key %s",
                     "jpg, jpeg, png, gif, webp", g->key);
    else if (!(caption = caption_of(ws, g, &reason, why, sizeof why)))
        problem_fill(q, index, g->line, g->key, tar, reason, "%s", why);
    else
        rc = DATASET_SAMPLE;
    if (rc == DATASET_SAMPLE) {
        memset(s, 0, sizeof *s);
        s->index = index;
        s->line = g->line;
        s->id = xstrdup(g->key);
        char img[8192];
        snprintf(img, sizeof img, "%s/%s", tar, g->image_name);
        s->image = xstrdup(img);
        s->image_data = g->image;
        s->image_len = g->image_len;
        g->image = NULL;
        s->n_turns = 2;
        s->turns = xcalloc(2, sizeof *s->turns);
        s->turns[0] = (DatasetTurn){ROLE_HUMAN, xstrdup("<image>\n")};
        s->turns[1] = (DatasetTurn){ROLE_GPT, caption};
    }
    group_clear(g);
    return rc;
}

// Adds the peeked member to the group. 0, or -1 when the tar ends inside it.
static int group_add(WdsSource *ws, const char *key, const char *ext, char *why, size_t cap) {
    WdsGroup *g = &ws->g;
    if (!g->active) {
        g->active = 1;
        snprintf(g->key, sizeof g->key, "%s", key);
        g->line = ws->members;
        g->duplicate = strmap_get(&ws->seen, key) >= 0;
        strmap_put(&ws->seen, key, 1);
    }
    if (g->n_exts < 8) snprintf(g->exts[g->n_exts++], WDS_EXT_MAX, "%s", ext);
    const int want_image = !g->image && is_image_ext(ext);
    const int want_txt = !g->txt && strcasecmp(ext, "txt") == 0, want_json = !g->json && strcasecmp(ext, "json") == 0;
    if (g->duplicate || !(want_image || want_txt || want_json)) return tar_skip(ws, why, cap);
    size_t len = 0;
    uint8_t *data = tar_read(ws, &len, why, cap);
    if (!data) return -1;
    if (want_image) {
        g->image = data;
        g->image_len = len;
        snprintf(g->image_name, sizeof g->image_name, "%s.%s", key, ext);
    } else if (want_txt) {
        g->txt = (char *)data;
        g->txt_len = len;
    } else {
        g->json = (char *)data;
        g->json_len = len;
    }
    return 0;
}

static int group_has_ext(const WdsGroup *g, const char *ext) {
    for (int i = 0; i < g->n_exts; i++)
        if (strcasecmp(g->exts[i], ext) == 0) return 1;
    return 0;
}

// ---- PrepSource ---------------------------------------------------------------------

// The damage report for the current tar, then on to the next one.
static int emit_damage(WdsSource *ws, DatasetProblem *q) {
    problem_fill(q, ws->items++, ws->members, "", ws->paths[ws->t], PROBLEM_CORRUPT_ARCHIVE,
                 "%s; the rest of this tar is not read", ws->damage_why);
    ws->damaged = 0;
    tar_next(ws);
    return DATASET_BAD_ITEM;
}

static int src_next(void *ctx, DatasetSample *s, DatasetProblem *q, Error *err) {
    (void)err;
    WdsSource *ws = ctx;
    char why[1024];
    for (;;) {
        // A damaged tar: the group in hand is complete, then the damage report.
        if (ws->damaged) return ws->g.active ? group_emit(ws, s, q) : emit_damage(ws, q);
        if (!ws->a) {
            if (ws->t >= ws->n) return DATASET_END;
            if (tar_open(ws, why, sizeof why) != 0) {
                problem_fill(q, ws->items++, 0, "", ws->paths[ws->t], PROBLEM_CORRUPT_ARCHIVE, "%s", why);
                tar_next(ws);
                return DATASET_BAD_ITEM;
            }
        }
        const int pk = tar_peek(ws, ws->damage_why, sizeof ws->damage_why);
        if (pk <= 0) {
            // End of the tar or a damaged header: the group in hand is complete.
            ws->damaged = pk < 0;
            if (ws->damaged) continue;
            const int had_group = ws->g.active;
            const int rc = had_group ? group_emit(ws, s, q) : DATASET_END;
            tar_next(ws);
            if (had_group) return rc;
            continue;
        }
        char key[WDS_KEY_MAX] = "", ext[WDS_EXT_MAX] = "";
        const int unsafe_name = wds_split_name(ws->peek_name, key, sizeof key, ext, sizeof ext) != 0;
        if (ws->peek_dir && !unsafe_name) {  // directories carry no sample
            if (tar_skip(ws, ws->damage_why, sizeof ws->damage_why) != 0) ws->damaged = 1;
            continue;
        }
        const int unsafe = unsafe_name || !ws->peek_regular || ws->peek_size < 0 ||
                           ws->peek_size > ws->o.max_member_bytes;
        // A member of another key (or a repeated extension) closes the group;
        // the peeked header stays for the next call.
        if (ws->g.active && (unsafe || strcmp(key, ws->g.key) != 0 || group_has_ext(&ws->g, ext)))
            return group_emit(ws, s, q);
        if (unsafe) {
            const char *what = unsafe_name ? "an unsafe name (absolute, \"..\" or no key): never extracted"
                               : !ws->peek_regular ? "not a regular file (link, device or fifo)"
                                                   : "a size beyond --max-member-mb";
            problem_fill(q, ws->items++, ws->members, unsafe_name ? "" : key, ws->paths[ws->t], PROBLEM_UNSAFE_MEMBER,
                         "member \"%.300s\" (%lld bytes): %s", ws->peek_name, (long long)ws->peek_size, what);
            if (tar_skip(ws, ws->damage_why, sizeof ws->damage_why) != 0) ws->damaged = 1;
            return DATASET_BAD_ITEM;
        }
        if (group_add(ws, key, ext, why, sizeof why) != 0) {
            // The tar ends inside a member: the group it belongs to is lost.
            problem_fill(q, ws->items++, ws->g.line, ws->g.key, ws->paths[ws->t], PROBLEM_CORRUPT_ARCHIVE,
                         "%s; the rest of this tar is not read", why);
            group_clear(&ws->g);
            tar_next(ws);
            return DATASET_BAD_ITEM;
        }
    }
}

static void src_tell(void *ctx, DatasetPos *pos) {
    const WdsSource *ws = ctx;
    memset(pos, 0, sizeof *pos);
    pos->offset = ws->t;
    pos->line = ws->a ? ws->members - ws->peek : 0;
    pos->index = ws->items;
}

static int src_open(void *ctx, const DatasetPos *pos, Error *err) {
    WdsSource *ws = ctx;
    tar_close(ws);
    group_clear(&ws->g);
    ws->t = 0;
    ws->items = 0;
    ws->damaged = 0;
    if (!pos) return 0;
    if (pos->offset < 0 || pos->offset > ws->n || pos->line < 0)
        return err_set(err, "webdataset resume position (tar %lld, member %lld) is invalid: delete the folder and "
                       "prep again", (long long)pos->offset, (long long)pos->line);
    ws->t = (int)pos->offset;
    ws->items = pos->index;
    if (pos->line == 0 || ws->t >= ws->n) return 0;
    char why[1024];
    if (tar_open(ws, why, sizeof why) != 0) return err_set(err, "%s: %s (resuming)", ws->paths[ws->t], why);
    // Skip the members already prepared, remembering their keys.
    while (ws->members < pos->line) {
        if (tar_peek(ws, why, sizeof why) != 1)
            return err_set(err, "%s changed since the interrupted run (member %lld): delete the folder and prep again",
                           ws->paths[ws->t], (long long)ws->members);
        char key[WDS_KEY_MAX], ext[WDS_EXT_MAX];
        if (wds_split_name(ws->peek_name, key, sizeof key, ext, sizeof ext) == 0 && !ws->peek_dir)
            strmap_put(&ws->seen, key, 1);
        // A member whose data runs past the end (after an unsafe member was
        // reported): the uninterrupted run reported the damage next, so will we.
        if (tar_skip(ws, ws->damage_why, sizeof ws->damage_why) != 0) {
            ws->damaged = 1;
            break;
        }
    }
    return 0;
}

static void src_close(void *ctx) {
    WdsSource *ws = ctx;
    tar_close(ws);
    group_clear(&ws->g);
}

// The input's identity: the label, the total size, and a hash of every tar's
// name, size and mtime (in data_mtime_ns), so a resume on other tars is refused.
static int src_describe(void *ctx, Manifest *m, Error *err) {
    WdsSource *ws = ctx;
    uint64_t h = 1469598103934665603ull;
    int64_t total = 0;
    for (int i = 0; i < ws->n; i++) {
        struct stat st;
        int64_t v[2] = {-1, -1};
        if (stat(ws->paths[i], &st) == 0) {
            v[0] = (int64_t)st.st_size;
            v[1] = (int64_t)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
            total += v[0];
        }
        for (const char *c = ws->paths[i]; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
        for (int k = 0; k < 16; k++) h = (h ^ ((const uint8_t *)v)[k]) * 1099511628211ull;
    }
    if (strlen(ws->label) >= sizeof m->data_path) return err_set(err, "--webdataset argument too long");
    snprintf(m->data_path, sizeof m->data_path, "%s", ws->label);
    m->data_size = total;
    m->data_mtime_ns = (int64_t)(h >> 1);
    return 0;
}

WdsSource *wds_source_create(char *const *paths, int n, const WdsOptions *o, Error *err) {
    const char *ck = o->caption_key && *o->caption_key ? o->caption_key : "txt";
    if (strlen(ck) >= 128) return err_set(err, "--caption-key too long"), NULL;
    WdsSource *ws = xcalloc(1, sizeof *ws);
    ws->paths = paths;
    ws->n = n;
    ws->o = *o;
    if (ws->o.max_member_bytes <= 0) ws->o.max_member_bytes = (int64_t)WDS_DEFAULT_MAX_MEMBER_MB << 20;
    snprintf(ws->caption_key, sizeof ws->caption_key, "%s", ck);
    snprintf(ws->label, sizeof ws->label, "%s", o->label ? o->label : "webdataset");
    ws->o.caption_key = ws->caption_key;
    ws->o.label = ws->label;
    strmap_init(&ws->seen);
    return ws;
}

PrepSource wds_source_prep(WdsSource *ws) {
    return (PrepSource){ws, src_describe, src_open, src_next, src_tell, src_close};
}

void wds_source_free(WdsSource *ws) {
    if (!ws) return;
    src_close(ws);
    strmap_free(&ws->seen);
    free(ws);
}
