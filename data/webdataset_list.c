// The tar list of `llava prep --webdataset`: brace ranges, globs, list files,
// and the split of that list into --part i/N blocks (data/webdataset.h).
#include <ctype.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/webdataset.h"

#define WDS_MAX_TARS 10000000  // a bound on what a pattern may expand to

static void list_push(WdsList *l, const char *path) {
    if ((l->n & (l->n - 1)) == 0) l->paths = xrealloc(l->paths, (size_t)(l->n ? 2 * l->n : 1) * sizeof *l->paths);
    l->paths[l->n++] = xstrdup(path);
}

void wds_list_free(WdsList *l) {
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    l->paths = NULL;
    l->n = 0;
}

static int has_glob(const char *s) { return strpbrk(s, "*?[") != NULL; }

static int add_glob_or_path(WdsList *l, const char *path, Error *err) {
    if (!has_glob(path)) {
        list_push(l, path);
        return 0;
    }
    glob_t g;
    const int rc = glob(path, 0, NULL, &g);  // sorted
    if (rc == GLOB_NOMATCH) return err_set(err, "--webdataset: no file matches %s", path);
    if (rc != 0) return err_set(err, "--webdataset: cannot expand %s (glob error %d)", path, rc);
    for (size_t i = 0; i < g.gl_pathc; i++) list_push(l, g.gl_pathv[i]);
    globfree(&g);
    return 0;
}

// Parses a decimal number of at most 9 digits at s[0..n).
static int parse_num(const char *s, size_t n, long *v) {
    if (n == 0 || n > 9) return -1;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

// Expands the first {...} of s (then the rest, recursively) into l.
static int expand_braces(WdsList *l, const char *s, Error *err) {
    const char *open = strchr(s, '{');
    if (!open) return add_glob_or_path(l, s, err);
    const char *close = strchr(open, '}');
    if (!close) return err_set(err, "--webdataset: unmatched '{' in %s", s);
    const size_t head = (size_t)(open - s), body = (size_t)(close - open - 1);
    const char *b = open + 1, *dots = strstr(b, "..");
    char *buf = xmalloc(strlen(s) + 32);
    int rc = 0;
    if (dots && dots < close) {
        long lo = 0, hi = -1;
        const size_t nlo = (size_t)(dots - b), nhi = (size_t)(close - dots - 2);
        if (parse_num(b, nlo, &lo) != 0 || parse_num(dots + 2, nhi, &hi) != 0 || hi < lo)
            rc = err_set(err, "--webdataset: %.*s is not a range {A..B} of numbers with A <= B", (int)body + 2, open);
        else if (hi - lo >= WDS_MAX_TARS)
            rc = err_set(err, "--webdataset: the range %.*s names more than %d tars", (int)body + 2, open, WDS_MAX_TARS);
        // Zero padding as written: {00000..00999} gives 00000, 00001, ...
        const int width = nlo > 1 && b[0] == '0' ? (int)nlo : 0;
        for (long v = lo; rc == 0 && v <= hi; v++) {
            snprintf(buf, strlen(s) + 32, "%.*s%0*ld%s", (int)head, s, width, v, close + 1);
            rc = expand_braces(l, buf, err);
        }
    } else {
        // {a,b,c}
        const char *item = b;
        while (rc == 0 && item <= close) {
            const char *comma = memchr(item, ',', (size_t)(close - item));
            const char *end = comma ? comma : close;
            snprintf(buf, strlen(s) + 32, "%.*s%.*s%s", (int)head, s, (int)(end - item), item, close + 1);
            rc = expand_braces(l, buf, err);
            item = end + 1;
        }
    }
    free(buf);
    return rc;
}

static int ends_with_tar(const char *s) {
    const size_t n = strlen(s);
    const char *exts[] = {".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2"};
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        const size_t k = strlen(exts[i]);
        if (n >= k && strcmp(s + n - k, exts[i]) == 0) return 1;
    }
    return 0;
}

// A list file: each line a path or pattern, relative to the list's folder.
static int expand_list_file(WdsList *l, const char *list_path, Error *err) {
    size_t len = 0;
    char *text = read_file(list_path, &len, err);
    if (!text) return -1;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", list_path);
    const char *base = dirname(dir);
    int rc = 0, line_no = 0;
    for (char *line = text, *next; rc == 0 && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        line_no++;
        size_t n = strlen(line);
        while (n && isspace((unsigned char)line[n - 1])) line[--n] = '\0';
        while (isspace((unsigned char)*line)) line++;
        if (!*line || *line == '#') continue;
        char path[PATH_MAX * 2];
        if (line[0] == '/') snprintf(path, sizeof path, "%s", line);
        else snprintf(path, sizeof path, "%s/%s", base, line);
        rc = expand_braces(l, path, err);
        if (rc) err_prefix(err, "%s:%d: ", list_path, line_no);
    }
    free(text);
    return rc;
}

int wds_list_expand(const char *spec, WdsList *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return err_set(err, "--webdataset: empty argument");
    int rc;
    if (!strchr(spec, '{') && !has_glob(spec) && !ends_with_tar(spec) && file_exists(spec))
        rc = expand_list_file(out, spec, err);
    else
        rc = expand_braces(out, spec, err);
    int present = 0;
    for (int i = 0; rc == 0 && i < out->n; i++) present += file_exists(out->paths[i]);
    if (rc == 0 && out->n == 0) rc = err_set(err, "--webdataset %s names no tar", spec);
    if (rc == 0 && present == 0)
        rc = err_set(err, "--webdataset %s: none of the %d named tars exists (first: %s)", spec, out->n,
                     out->paths[0]);
    if (rc) wds_list_free(out);
    return rc;
}

// ---- parts ------------------------------------------------------------------------

static int env_int(const char *name, int *v) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > 1000000) return 0;
    *v = (int)x;
    return 1;
}

int wds_part_parse(const char *text, int *part, int *parts, Error *err) {
    if (strcmp(text, "auto") == 0) {
        const char *pairs[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                  {"PMI_RANK", "PMI_SIZE"},
                                  {"SLURM_PROCID", "SLURM_NTASKS"}};
        *part = 0;
        *parts = 1;
        for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++)
            if (env_int(pairs[i][0], part) && env_int(pairs[i][1], parts)) break;
        if (*parts < 1 || *part >= *parts) return err_set(err, "--part auto: rank %d of %d from the launcher", *part, *parts);
        return 0;
    }
    int end = 0;
    if (sscanf(text, "%d/%d%n", part, parts, &end) != 2 || text[end] || *parts < 1 || *parts > 100000 ||
        *part < 0 || *part >= *parts)
        return err_set(err, "--part %s: expected i/N with 0 <= i < N (e.g. 0/4), or auto", text);
    return 0;
}

void wds_part_range(int n, int part, int parts, int *first, int *end) {
    *first = (int)((int64_t)n * part / parts);
    *end = (int)((int64_t)n * (part + 1) / parts);
}
