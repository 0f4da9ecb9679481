#include "common/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_usage(FILE *out, const ArgSpec *specs, int n, const char *usage_line, const char *description) {
    fprintf(out, "usage: %s\n", usage_line);
    if (description) fprintf(out, "\n%s\n", description);
    fprintf(out, "\noptions:\n");
    for (int i = 0; i < n; i++) {
        char head[64];
        const char *meta = specs[i].type == ARG_FLAG ? "" : specs[i].type == ARG_STRING ? " VALUE"
                           : specs[i].type == ARG_FLOAT  ? " X"
                                                         : " N";
        snprintf(head, sizeof head, "--%s%s", specs[i].name, meta);
        fprintf(out, "  %-24s %s%s\n", head, specs[i].help, specs[i].required ? " (required)" : "");
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
}

// 1 (after the message) when v is outside the spec's declared range.
static int out_of_range(const char *cmd, const ArgSpec *s, double v, const char *text) {
    if (s->min == 0 && s->max == 0) return 0;
    if (v >= s->min && v <= s->max) return 0;
    fprintf(stderr, "llava %s: --%s = %s is outside [%.10g, %.10g]\n", cmd, s->name, text, s->min, s->max);
    return 1;
}

int args_parse(int argc, char **argv, const ArgSpec *specs, int n_specs, const char *usage_line,
               const char *description, const char **positional, int max_positional, int *n_positional) {
    int seen[64] = {0};
    if (n_positional) *n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(stdout, specs, n_specs, usage_line, description);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (!positional || !n_positional || *n_positional >= max_positional) {
                fprintf(stderr, "llava %s: unexpected argument '%s' (see --help)\n", argv[0], a);
                return 2;
            }
            positional[(*n_positional)++] = a;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        int k = -1;
        for (int j = 0; j < n_specs; j++)
            if (strlen(specs[j].name) == name_len && strncmp(specs[j].name, name, name_len) == 0) k = j;
        if (k < 0) {
            fprintf(stderr, "llava %s: unknown option '%s' (see --help)\n", argv[0], a);
            return 2;
        }
        const ArgSpec *s = &specs[k];
        if (k < 64) seen[k] = 1;
        if (s->type == ARG_FLAG) {
            *(int *)s->dest = 1;
            continue;
        }
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) {
            fprintf(stderr, "llava %s: option --%s needs a value\n", argv[0], s->name);
            return 2;
        }
        char *end = NULL;
        errno = 0;
        switch (s->type) {
        case ARG_STRING: *(const char **)s->dest = value; break;
        case ARG_INT: {
            long v = strtol(value, &end, 10);
            if (errno || !*value || *end || v < -2147483647L || v > 2147483647L) {
                fprintf(stderr, "llava %s: --%s expects an integer, got '%s'\n", argv[0], s->name, value);
                return 2;
            }
            if (out_of_range(argv[0], s, (double)v, value)) return 2;
            *(int *)s->dest = (int)v;
            break;
        }
        case ARG_FLOAT: {
            float v = strtof(value, &end);
            // strtof accepts "inf" and "nan": no option means either.
            if (errno || !*value || *end || !isfinite(v)) {
                fprintf(stderr, "llava %s: --%s expects a finite number, got '%s'\n", argv[0], s->name, value);
                return 2;
            }
            if (out_of_range(argv[0], s, (double)v, value)) return 2;
            *(float *)s->dest = v;
            break;
        }
        case ARG_FLAG: break;
        }
    }
    for (int j = 0; j < n_specs && j < 64; j++) {
        if (specs[j].required && !seen[j]) {
            fprintf(stderr, "llava %s: missing required option --%s (see --help)\n", argv[0], specs[j].name);
            return 2;
        }
    }
    return 0;
}
