#include "common/dynlib.h"

#include <dlfcn.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Expands a leading "$VAR" of pattern into out; 0 when the variable is unset
// or empty (the pattern does not apply), 1 otherwise.
static int expand_var(const char *pattern, char *out, size_t cap) {
    if (pattern[0] != '$') return snprintf(out, cap, "%s", pattern) < (int)cap;
    const char *slash = strchr(pattern, '/');
    size_t len = slash ? (size_t)(slash - pattern - 1) : strlen(pattern + 1);
    char var[64];
    if (len == 0 || len >= sizeof var) return 0;
    memcpy(var, pattern + 1, len);
    var[len] = 0;
    const char *val = getenv(var);
    if (!val || !*val) return 0;
    return snprintf(out, cap, "%s%s", val, slash ? slash : "") < (int)cap;
}

void *dynlib_open(const char *name, const char *const *dirs, char *msg, size_t cap) {
    void *h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (h) return h;
    const char *first = dlerror();
    snprintf(msg, cap, "%s", first ? first : name);
    for (size_t i = 0; dirs && dirs[i]; i++) {
        char pattern[512];
        if (!expand_var(dirs[i], pattern, sizeof pattern)) continue;
        size_t used = strlen(pattern);
        if (snprintf(pattern + used, sizeof pattern - used, "/%s", name) >= (int)(sizeof pattern - used)) continue;
        glob_t g;
        if (glob(pattern, 0, NULL, &g) != 0) continue;  // no match (or an unreadable folder): next pattern
        for (size_t k = 0; k < g.gl_pathc && !h; k++) {
            h = dlopen(g.gl_pathv[k], RTLD_NOW | RTLD_GLOBAL);
            if (!h) {
                const char *e = dlerror();
                snprintf(msg, cap, "%s", e ? e : g.gl_pathv[k]);  // found but unloadable: say why
            }
        }
        globfree(&g);
        if (h) return h;
    }
    return NULL;
}

const char *dynlib_resolve(void *lib, const DynlibSymbol *syms, size_t n) {
    for (size_t i = 0; i < n; i++) {
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (!*syms[i].slot) return syms[i].name;
    }
    return NULL;
}

const char *const *dynlib_wheel_dirs(DynlibDirs *d, const char *wheel_lib) {
    static const char *const roots[] = {
        "$VIRTUAL_ENV/lib/python3*/site-packages",  "$CONDA_PREFIX/lib/python3*/site-packages",
        "/opt/*/.venv/lib/python3*/site-packages",  "/opt/*/lib/python3*/site-packages",
        "/usr/local/lib/python3*/dist-packages",    "/usr/local/lib/python3*/site-packages",
        "$HOME/.local/lib/python3*/site-packages",  "/usr/lib/python3/dist-packages",
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof roots / sizeof *roots; i++)
        if (snprintf(d->text[n], sizeof d->text[n], "%s/%s", roots[i], wheel_lib) < (int)sizeof d->text[n]) n++;
    snprintf(d->text[n++], sizeof d->text[0], "/usr/local/cuda/lib64");
    snprintf(d->text[n++], sizeof d->text[0], "/usr/local/cuda/targets/*/lib");
    for (size_t i = 0; i < n; i++) d->list[i] = d->text[i];
    d->list[n] = NULL;
    return d->list;
}
