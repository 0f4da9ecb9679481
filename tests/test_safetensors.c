// safetensors: writer/reader round trip, dtype conversions, and every class
// of malformed file REFERENCE.md section 4 lists, each rejected with a
// message (and no crash; the ASan build runs this too).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/safetensors.h"
#include "tests/testlib.h"

static char tmpdir[256];

static void path_in_tmp(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmpdir, name); }

// Writes a raw file: 8-byte length (declared_len, or the real one when < 0),
// the header text, then data_len zero bytes.
static void write_raw(const char *path, const char *header, long long declared_len, size_t data_len) {
    FILE *f = fopen(path, "wb");
    uint64_t n = declared_len < 0 ? strlen(header) : (uint64_t)declared_len;
    for (int i = 0; i < 8; i++) fputc((int)((n >> (8 * i)) & 0xff), f);
    fputs(header, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
}

static void expect_rejected(const char *label, const char *header, long long declared_len, size_t data_len,
                            const char *must_contain) {
    char path[512];
    path_in_tmp(path, sizeof path, "bad.safetensors");
    write_raw(path, header, declared_len, data_len);
    StFile f;
    Error err = {{0}};
    int rc = st_open(&f, path, &err);
    EXPECT(rc == -1, "%s: accepted a malformed file", label);
    EXPECT(strstr(err.msg, must_contain) != NULL, "%s: message '%s' lacks '%s'", label, err.msg, must_contain);
    EXPECT(strstr(err.msg, "bad.safetensors") != NULL, "%s: message does not name the file: %s", label, err.msg);
    if (rc == 0) st_close(&f);
}

static void test_hostile_headers(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_rejected("header larger than file", ok, 1000, 8, "larger than the file");
    expect_rejected("header over the limit", ok, 200000000LL, 8, "exceeds");
    expect_rejected("invalid json", "{\"a\":{\"dtype\":\"F32\",", -1, 8, "not valid JSON");
    expect_rejected("not an object", "[1,2,3]", -1, 0, "not a JSON object");
    expect_rejected("unknown dtype", "{\"a\":{\"dtype\":\"F8_E9\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8,
                    "unknown dtype");
    expect_rejected("size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8,
                    "needs 12 bytes");
    expect_rejected("out of range",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                    -1, 8, "out of range");
    expect_rejected("overlap",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    -1, 12, "overlaps");
    expect_rejected("gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8, "gap");
    expect_rejected("trailing data", ok, -1, 12, "file size");
    expect_rejected("end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", -1, 8,
                    "< begin");
    expect_rejected("negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8,
                    "shape[0]");
    expect_rejected("huge dims overflow",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}",
                    -1, 8, "overflows");
    expect_rejected("duplicate",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    -1, 8, "twice");
    expect_rejected("entry not object", "{\"a\":5}", -1, 0, "not an object");
    expect_rejected("metadata not strings", "{\"__metadata__\":{\"k\":1}}", -1, 0, "not a string");
    expect_rejected("trailing garbage", "{}  x     ", -1, 0, "trailing");
    // JSON allows a repeated key; a second metadata block must not append to the first one's arrays.
    expect_rejected("metadata twice", "{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"c\":\"d\",\"e\":\"f\"}}", -1,
                    0, "twice");

    // A file shorter than the 8-byte length prefix, and one cut inside the data.
    char path[512];
    path_in_tmp(path, sizeof path, "short.safetensors");
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    StFile st;
    Error err = {{0}};
    EXPECT(st_open(&st, path, &err) == -1 && strstr(err.msg, "truncated"), "3-byte file: %s", err.msg);
    path_in_tmp(path, sizeof path, "cut.safetensors");
    write_raw(path, ok, -1, 5);
    EXPECT(st_open(&st, path, &err) == -1 && strstr(err.msg, "out of range"), "cut data: %s", err.msg);
    path_in_tmp(path, sizeof path, "missing.safetensors");
    EXPECT(st_open(&st, path, &err) == -1 && strstr(err.msg, "cannot open"), "missing file: %s", err.msg);
}

static void test_round_trip(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "rt.safetensors");
    float f32[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 65504.0f};
    int64_t i64[3] = {-100, 0, 1LL << 40};
    int32_t i32[2] = {7, -7};
    uint8_t u8[4] = {0, 1, 128, 255};
    float scalar = 42.0f;
    StWriter w;
    st_writer_init(&w);
    st_writer_set_metadata(&w, "format", "pt");
    st_writer_add(&w, "f32", ST_F32, 2, (const int64_t[]){2, 3}, f32);
    st_writer_add_f32_as(&w, "bf16", ST_BF16, 2, (const int64_t[]){3, 2}, f32);
    st_writer_add_f32_as(&w, "f16", ST_F16, 1, (const int64_t[]){6}, f32);
    st_writer_add(&w, "i64", ST_I64, 1, (const int64_t[]){3}, i64);
    st_writer_add(&w, "i32", ST_I32, 1, (const int64_t[]){2}, i32);
    st_writer_add(&w, "u8", ST_U8, 1, (const int64_t[]){4}, u8);
    st_writer_add(&w, "scalar", ST_F32, 0, NULL, &scalar);
    st_writer_add(&w, "empty", ST_F32, 2, (const int64_t[]){0, 5}, NULL);
    st_writer_add(&w, "name with \"quotes\"", ST_U8, 1, (const int64_t[]){1}, u8);
    Error err = {{0}};
    EXPECT(st_writer_save(&w, path, NULL, &err) == 0, "save: %s", err.msg);
    st_writer_free(&w);

    StFile f;
    EXPECT(st_open(&f, path, &err) == 0, "reopen: %s", err.msg);
    if (test_failures) return;
    EXPECT(f.n == 9, "tensor count %d", f.n);
    EXPECT(st_metadata(&f, "format") && strcmp(st_metadata(&f, "format"), "pt") == 0, "metadata");
    float out[6];
    int64_t iout[4];
    const StTensor *t = st_find(&f, "f32");
    EXPECT(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "f32 shape");
    st_read_f32(&f, t, out, &err);
    EXPECT(memcmp(out, f32, sizeof f32) == 0, "f32 values");
    // bf16 keeps 8 significant bits: these values are exact in bf16.
    t = st_find(&f, "bf16");
    st_read_f32(&f, t, out, &err);
    EXPECT(out[0] == 1.0f && out[1] == -2.5f && out[2] == 3.25f && out[3] == 0.0f, "bf16 exact values");
    EXPECT(fabsf(out[4] - 1e-3f) < 1e-5f, "bf16 rounding of 1e-3: %g", out[4]);
    t = st_find(&f, "f16");
    st_read_f32(&f, t, out, &err);
    EXPECT(out[0] == 1.0f && out[1] == -2.5f && out[5] == 65504.0f, "f16 values");
    EXPECT(fabsf(out[4] - 1e-3f) < 1e-6f, "f16 1e-3: %g", out[4]);
    t = st_find(&f, "i64");
    st_read_i64(&f, t, iout, &err);
    EXPECT(iout[0] == -100 && iout[2] == (1LL << 40), "i64 values");
    t = st_find(&f, "i32");
    st_read_i64(&f, t, iout, &err);
    EXPECT(iout[0] == 7 && iout[1] == -7, "i32 -> i64");
    t = st_find(&f, "u8");
    st_read_i64(&f, t, iout, &err);
    EXPECT(iout[2] == 128 && iout[3] == 255, "u8 -> i64");
    t = st_find(&f, "scalar");
    EXPECT(t && t->ndim == 0 && t->numel == 1, "scalar shape");
    t = st_find(&f, "empty");
    EXPECT(t && t->numel == 0 && t->begin == t->end, "empty tensor");
    EXPECT(st_find(&f, "name with \"quotes\"") != NULL, "escaped name");
    t = st_find(&f, "u8");
    EXPECT(st_read_f32(&f, t, out, &err) == -1 && strstr(err.msg, "floating"), "u8 as f32 refused: %s", err.msg);
    st_close(&f);
}

static void test_conversions(void) {
    // bf16 round-to-nearest-even: 1 + 2^-8 is exactly halfway between
    // 1 and 1 + 2^-7 and must round to the even one (1.0).
    EXPECT(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256.0f)) == 1.0f, "bf16 ties to even");
    EXPECT(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256.0f)) == 1.0f + 4.0f / 256.0f, "bf16 ties to even (odd)");
    EXPECT(isnan(bf16_to_f32(f32_to_bf16(NAN))), "bf16 NaN stays NaN");
    EXPECT(isinf(f16_to_f32(f32_to_f16(1e6f))), "f16 overflow to inf");
    EXPECT(f16_to_f32(f32_to_f16(5.9604645e-8f)) == 5.9604645e-8f, "f16 smallest subnormal");
    for (int i = 0; i < 65536; i++) {  // every f16 value survives f16 -> f32 -> f16
        uint16_t h = (uint16_t)i;
        float x = f16_to_f32(h);
        if (isnan(x)) continue;
        if (f32_to_f16(x) != h) {
            EXPECT(0, "f16 round trip of 0x%04x", h);
            break;
        }
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/llava_test_st_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd) != 0) return 1;
    test_conversions();
    test_round_trip();
    test_hostile_headers();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return test_summary("test_safetensors");
}
