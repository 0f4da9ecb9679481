#include "data/datagen_prompts.h"

#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

// Files end with a newline or not depending on the editor: the text sent is
// the same either way.
static void trim_trailing_space(char *s) {
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = 0;
}

static char *read_text(const char *dir, const char *name, Error *err) {
    char path[4096];
    if (path_join(path, sizeof path, dir, name) != 0) {
        err_set(err, "%s/%s: path too long", dir, name);
        return NULL;
    }
    size_t len;
    char *t = read_file(path, &len, err);
    if (!t) return NULL;
    if (strlen(t) != len) {
        free(t);
        err_set(err, "%s: contains a NUL byte (not a text file?)", path);
        return NULL;
    }
    trim_trailing_space(t);
    return t;
}

typedef struct {
    long number;
    char *file[2];  // caps, conv file names as found
} Shot;

static int cmp_shot(const void *a, const void *b) {
    long x = ((const Shot *)a)->number, y = ((const Shot *)b)->number;
    return (x > y) - (x < y);
}

// "NNN_caps.txt" / "NNN_conv.txt" -> NNN and which (0 caps, 1 conv); -1 otherwise.
static long shot_number(const char *name, int *which) {
    char *end;
    if (!isdigit((unsigned char)name[0])) return -1;
    long v = strtol(name, &end, 10);
    if (v < 0 || v > 1000000) return -1;
    if (strcmp(end, "_caps.txt") == 0) *which = 0;
    else if (strcmp(end, "_conv.txt") == 0) *which = 1;
    else return -1;
    return v;
}

int prompt_folder_load(PromptFolder *pf, const char *dir, Error *err) {
    memset(pf, 0, sizeof *pf);
    DIR *d = opendir(dir);
    if (!d) return err_set(err, "%s: cannot open the prompt folder (expected system_message.txt and "
                                "NNN_caps.txt / NNN_conv.txt pairs)", dir);
    Shot *shots = NULL;
    int n = 0, cap = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int which;
        long v = shot_number(e->d_name, &which);
        if (v < 0) continue;
        int at = -1;
        for (int i = 0; i < n; i++)
            if (shots[i].number == v) at = i;
        if (at < 0) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                shots = xrealloc(shots, (size_t)cap * sizeof *shots);
            }
            at = n++;
            shots[at] = (Shot){v, {NULL, NULL}};
        }
        if (shots[at].file[which]) {
            rc = err_set(err, "%s: %s and %s are the same example number", dir, shots[at].file[which], e->d_name);
            break;
        }
        shots[at].file[which] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(shots, (size_t)n, sizeof *shots, cmp_shot);
    pf->dir = xstrdup(dir);
    pf->caps = xcalloc((size_t)(n ? n : 1), sizeof *pf->caps);
    pf->conv = xcalloc((size_t)(n ? n : 1), sizeof *pf->conv);
    if (rc == 0) {
        pf->system = read_text(dir, "system_message.txt", err);
        if (!pf->system) rc = -1;
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!shots[i].file[0] || !shots[i].file[1]) {
            fprintf(stderr, "datagen: %s: %s has no %s partner: that example is not used\n", dir,
                    shots[i].file[0] ? shots[i].file[0] : shots[i].file[1], shots[i].file[0] ? "_conv" : "_caps");
            continue;
        }
        char *caps = read_text(dir, shots[i].file[0], err);
        char *conv = caps ? read_text(dir, shots[i].file[1], err) : NULL;
        if (!caps || !conv) {
            free(caps);
            rc = -1;
            break;
        }
        pf->caps[pf->n_shots] = caps;
        pf->conv[pf->n_shots] = conv;
        pf->n_shots++;
    }
    for (int i = 0; i < n; i++) {
        free(shots[i].file[0]);
        free(shots[i].file[1]);
    }
    free(shots);
    if (rc != 0) prompt_folder_free(pf);
    return rc;
}

void prompt_folder_free(PromptFolder *pf) {
    for (int i = 0; i < pf->n_shots; i++) {
        free(pf->caps[i]);
        free(pf->conv[i]);
    }
    free(pf->caps);
    free(pf->conv);
    free(pf->system);
    free(pf->dir);
    memset(pf, 0, sizeof *pf);
}

ChatMessage *prompt_folder_messages(const PromptFolder *pf, const char *context, int *n) {
    *n = 2 + 2 * pf->n_shots;
    ChatMessage *m = xmalloc((size_t)*n * sizeof *m);
    int k = 0;
    m[k++] = (ChatMessage){"system", pf->system};
    for (int i = 0; i < pf->n_shots; i++) {
        m[k++] = (ChatMessage){"user", pf->caps[i]};
        m[k++] = (ChatMessage){"assistant", pf->conv[i]};
    }
    m[k++] = (ChatMessage){"user", context};
    return m;
}
