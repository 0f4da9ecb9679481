// The chat page served at / (serve/page.html, embedded in the binary by
// cmake/embed_assets.cmake: one self-contained file, no CDN).
#ifndef LLAVA_SERVE_PAGE_H
#define LLAVA_SERVE_PAGE_H

#include <stddef.h>

extern const unsigned char serve_page_html[];
extern const size_t serve_page_html_size;

#endif
