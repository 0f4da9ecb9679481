// Request images: data: URLs and files under --image-root (image_url.h).
#include "serve/image_url.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;  // standard and URL-safe alphabets
    if (c == '/' || c == '_') return 63;
    return -1;
}

long base64_decode(const char *text, size_t len, uint8_t *out) {
    while (len > 0 && text[len - 1] == '=') len--;
    if (len % 4 == 1) return -1;
    long n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)text[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

// "data:image/png;base64,...." -> the encoded image bytes (malloc'd).
static int data_url_bytes(const char *url, size_t max_bytes, const char *param, uint8_t **bytes, size_t *n,
                          ApiError *e) {
    const char *comma = strchr(url, ',');
    if (strncmp(url, "data:image/", 11) != 0 || !comma || comma - url < 18 || strncmp(comma - 7, ";base64", 7) != 0)
        return api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                             "'%s' must be a data:image/...;base64, URL (or a file under --image-root)", param);
    const char *b64 = comma + 1;
    const size_t len = strlen(b64);
    if (len / 4 * 3 > max_bytes)
        return api_error_set(e, 400, "invalid_request_error", "image_too_large", param,
                             "'%s': the image is about %zu bytes; the limit is %zu", param, len / 4 * 3, max_bytes);
    *bytes = xmalloc(len / 4 * 3 + 3);
    long got = base64_decode(b64, len, *bytes);
    if (got <= 0) {
        free(*bytes);
        *bytes = NULL;
        return api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                             "'%s': the base64 data is malformed", param);
    }
    *n = (size_t)got;
    return 0;
}

// A file URL or path -> its bytes, only inside the image root.
static int file_bytes(const ImageUrlPolicy *p, const char *url, const char *param, uint8_t **bytes, size_t *n,
                      ApiError *e) {
    if (!p->image_root)
        return api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                             "'%s': the server reads image files only when started with --image-root; send a "
                             "data: URL", param);
    const char *path = strncmp(url, "file://", 7) == 0 ? url + 7 : url;
    char joined[PATH_MAX], real[PATH_MAX];
    int w = path[0] == '/' ? snprintf(joined, sizeof joined, "%s", path)
                           : snprintf(joined, sizeof joined, "%s/%s", p->image_root, path);
    if (w < 0 || (size_t)w >= sizeof joined)
        return api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param, "'%s': path too long",
                             param);
    const size_t root_len = strlen(p->image_root);
    if (!realpath(joined, real) || strncmp(real, p->image_root, root_len) != 0 ||
        (real[root_len] != '/' && real[root_len] != '\0'))
        // One message for "missing" and "outside": it tells nothing about files beyond the root.
        return api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                             "'%s': no such image under the server's --image-root", param);
    Error err = {{0}};
    size_t len;
    char *data = read_file(real, &len, &err);
    if (!data)
        return api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                             "'%s': cannot read the image under --image-root", param);
    if (len > p->max_bytes) {
        free(data);
        return api_error_set(e, 400, "invalid_request_error", "image_too_large", param,
                             "'%s': the image is %zu bytes; the limit is %zu", param, len, p->max_bytes);
    }
    *bytes = (uint8_t *)data;
    *n = len;
    return 0;
}

int image_url_load(const ImageUrlPolicy *p, const LlavaConfig *mc, const char *url, const char *param,
                   float *pixels, ApiError *e) {
    if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
        return api_error_set(e, 400, "invalid_request_error", "invalid_image_url", param,
                             "'%s': the server fetches nothing from the network; send the image as a "
                             "data:image/...;base64, URL", param);
    uint8_t *bytes = NULL;
    size_t n = 0;
    int rc = strncmp(url, "data:", 5) == 0 ? data_url_bytes(url, p->max_bytes, param, &bytes, &n, e)
                                           : file_bytes(p, url, param, &bytes, &n, e);
    if (rc != 0) return -1;
    ImageInput in;
    Error err = {{0}};
    if (image_input_init(&in, p->processor_dir, mc, p->aspect, &err) != 0) {
        free(bytes);
        return api_error_set(e, 500, "server_error", NULL, param, "image preprocessing: %s", err.msg);
    }
    rc = image_input_decode(&in, bytes, n, param, p->max_pixels, pixels, &err);
    image_input_free(&in);
    free(bytes);
    if (rc != 0)
        return api_error_set(e, 400, "invalid_request_error", "invalid_image", param, "%s", err.msg);
    return 0;
}
