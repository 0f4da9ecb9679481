// Command-line flags of the `--name value` / `--flag` form, declared as a
// table so that every command gets the same parsing, errors and --help.
#ifndef LLAVA_ARGS_H
#define LLAVA_ARGS_H

typedef enum { ARG_STRING, ARG_INT, ARG_FLOAT, ARG_FLAG } ArgType;

typedef struct {
    const char *name;   // without the leading "--"
    ArgType type;
    void *dest;         // const char **, int *, float *, int * (flag: set to 1)
    const char *help;   // shown by --help; include the default
    int required;
    double min, max;    // ARG_INT / ARG_FLOAT: the allowed range, checked with a message naming
                        // the flag (both 0: any int / any finite float)
} ArgSpec;

// Parses argv[1..] (argv[0] is the command name). Unknown flags, missing
// values and bad numbers print a message and return 2; --help prints the
// usage and returns 1 (the caller then exits 0); success returns 0.
// Positional arguments are collected into positional (up to max_positional).
int args_parse(int argc, char **argv, const ArgSpec *specs, int n_specs, const char *usage_line,
               const char *description, const char **positional, int max_positional, int *n_positional);

#endif
