// Small shared helpers: the Error type every loader reports through, checked
// allocation, whole-file reading, timing. No global mutable state.
#ifndef LLAVA_UTIL_H
#define LLAVA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Exit codes of the `llava` command. Bad input (a malformed file, a shape that
// disagrees with config.json, a bad flag) is 2; anything else that fails is 1.
enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_BAD_INPUT = 2 };

// An error report carried back to whoever can tell the user about it. Functions
// that can fail on input take an Error* and return -1 (or NULL) after err_set.
typedef struct {
    char msg[2048];
} Error;

// Formats the message (the first error set wins; later calls add context only
// through err_prefix). Always returns -1 so `return err_set(...)` reads well.
int err_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Prepends context ("file.json: ") to an existing message.
void err_prefix(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Internal invariants (programming errors, out of memory): print file:line and
// abort. Never used for bad user input.
void fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
#define FATAL(...) fatal_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond, ...) do { if (!(cond)) fatal_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)

void *xmalloc(size_t bytes);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t bytes);
char *xstrdup(const char *s);

// fopen(path, "rb") that refuses folders and other non-regular files with a
// message naming the path. NULL + err on failure.
FILE *file_open_regular(const char *path, Error *err);
// Reads a whole regular file into a NUL-terminated buffer. NULL + err on
// failure (a folder included).
char *read_file(const char *path, size_t *len_out, Error *err);
// Writes `len` bytes to path atomically: path.tmp, fsync, rename, fsync dir.
int write_file_atomic(const char *path, const void *data, size_t len, Error *err);
// fsyncs the folder holding path, so a rename in it is durable.
int fsync_parent_dir(const char *path);
int file_exists(const char *path);
int dir_exists(const char *path);
// mkdir -p
int make_dirs(const char *path, Error *err);
// dst = a + "/" + b (truncation is an error)
int path_join(char *dst, size_t cap, const char *a, const char *b);

double now_seconds(void);
// Peak resident memory of this process so far (getrusage ru_maxrss), in GB.
double max_rss_gb(void);

// fp32 <-> bf16/fp16 conversions (round-to-nearest-even for bf16).
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
