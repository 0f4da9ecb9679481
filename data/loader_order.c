// The loader's pure functions: the order of an epoch (shuffle, LLaVA's
// modality/length grouping), the slice of it each rank and micro-batch takes,
// and the packing of samples into rows. No I/O, no threads: tested directly.
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "data/loader.h"

// Fisher-Yates: out[i] = a random permutation of 0..n-1.
static void randperm(Rng *r, int64_t n, int64_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(r, (uint64_t)i + 1);
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

typedef struct {
    int32_t len;
    int64_t pos, value;
} Keyed;

// Longest first; ties keep their order (Python's sorted is stable).
static int by_length_desc(const void *a, const void *b) {
    const Keyed *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

// LLaVA's split_to_even_chunks: idx[n] (sorted longest first) into `chunks`
// chunks written one after the other to out. Unequal division: strided
// (chunk k = idx[k::chunks]); otherwise each index goes to the chunk with the
// smallest total length so far, a full chunk taking no more.
static void split_to_even_chunks(const int64_t *idx, int64_t n, const int32_t *lengths, int chunks, int64_t *out) {
    if (n % chunks != 0) {
        int64_t k = 0;
        for (int c = 0; c < chunks; c++)
            for (int64_t i = c; i < n; i += chunks) out[k++] = idx[i];
        return;
    }
    const int64_t per = n / chunks;
    int64_t *total = xcalloc((size_t)chunks, sizeof(int64_t));
    int64_t *fill = xcalloc((size_t)chunks, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < chunks; c++)
            if (total[c] < total[best]) best = c;
        out[best * per + fill[best]++] = idx[i];
        total[best] += lengths[idx[i]];
        if (fill[best] == per) total[best] = INT64_MAX;
    }
    free(total);
    free(fill);
}

// LLaVA's get_length_grouped_indices over the samples idx[n]: shuffle, cut
// into megabatches of mb, sort each longest first, split into `chunks`
// length-balanced micro-batches.
static void length_grouped(const int64_t *idx, int64_t n, const int32_t *lengths, int64_t mb, int chunks, Rng *r,
                           int64_t *out) {
    int64_t *perm = xmalloc((size_t)(n ? n : 1) * sizeof(int64_t));
    Keyed *keyed = xmalloc((size_t)(mb ? mb : 1) * sizeof(Keyed));
    int64_t *sorted = xmalloc((size_t)(mb ? mb : 1) * sizeof(int64_t));
    randperm(r, n, perm);
    for (int64_t start = 0; start < n; start += mb) {
        int64_t m = n - start < mb ? n - start : mb;
        for (int64_t i = 0; i < m; i++) {
            int64_t v = idx[perm[start + i]];
            keyed[i] = (Keyed){lengths[v], i, v};
        }
        qsort(keyed, (size_t)m, sizeof *keyed, by_length_desc);
        for (int64_t i = 0; i < m; i++) sorted[i] = keyed[i].value;
        split_to_even_chunks(sorted, m, lengths, chunks, out + start);
    }
    free(perm);
    free(keyed);
    free(sorted);
}

// LLaVA's get_modality_length_grouped_indices.
static void modality_grouped(int64_t *order, int64_t N, const int32_t *lengths, const uint8_t *is_image,
                             int64_t G, int chunks, Rng *r) {
    int64_t n_mm = 0;
    for (int64_t i = 0; i < N; i++) n_mm += is_image[i] != 0;
    const int64_t n_lang = N - n_mm;
    int64_t *all = xmalloc((size_t)N * sizeof(int64_t));
    if (n_mm == 0 || n_lang == 0) {
        for (int64_t i = 0; i < N; i++) all[i] = i;
        length_grouped(all, N, lengths, G, chunks, r, order);
        free(all);
        return;
    }
    int64_t *mm = all, *lang = all + n_mm, a = 0, b = 0;
    for (int64_t i = 0; i < N; i++) {
        if (is_image[i]) mm[a++] = i;
        else lang[b++] = i;
    }
    int64_t *shuffled = xmalloc((size_t)N * sizeof(int64_t));
    int64_t *mm_s = shuffled, *lang_s = shuffled + n_mm;
    length_grouped(mm, n_mm, lengths, G, chunks, r, mm_s);
    length_grouped(lang, n_lang, lengths, G, chunks, r, lang_s);
    // Megabatches of G; the last of each modality (full or not) is held back.
    const int64_t k_mm = (n_mm + G - 1) / G, k_lang = (n_lang + G - 1) / G;
    const int64_t K = (k_mm - 1) + (k_lang - 1);
    int64_t *perm = xmalloc((size_t)(K ? K : 1) * sizeof(int64_t));
    randperm(r, K, perm);
    int64_t o = 0;
    for (int64_t k = 0; k < K; k++) {
        int64_t m = perm[k];
        const int64_t *src = m < k_mm - 1 ? mm_s + m * G : lang_s + (m - (k_mm - 1)) * G;
        memcpy(order + o, src, (size_t)G * sizeof(int64_t));
        o += G;
    }
    // The two held-back megabatches, merged and sorted by sample number.
    const int64_t last_mm = n_mm - (k_mm - 1) * G, last_lang = n_lang - (k_lang - 1) * G;
    memcpy(order + o, mm_s + (k_mm - 1) * G, (size_t)last_mm * sizeof(int64_t));
    memcpy(order + o + last_mm, lang_s + (k_lang - 1) * G, (size_t)last_lang * sizeof(int64_t));
    qsort(order + o, (size_t)(last_mm + last_lang), sizeof(int64_t), by_value);
    CHECK(o + last_mm + last_lang == N, "modality grouping lost samples");
    free(perm);
    free(shuffled);
    free(all);
}

void loader_epoch_order(int64_t *order, int64_t N, const int32_t *lengths, const uint8_t *is_image, uint64_t seed,
                        int64_t epoch, int64_t global_batch, int chunks, int group_by_modality, int shuffle) {
    if (!shuffle) {
        for (int64_t i = 0; i < N; i++) order[i] = i;
        return;
    }
    // One stream per (seed, epoch): independent of world size and rank.
    Rng base, r;
    rng_seed(&base, seed);
    rng_seed(&r, rng_next(&base) ^ ((uint64_t)epoch * 0xD1B54A32D192ED03ull));
    if (group_by_modality) {
        modality_grouped(order, N, lengths, is_image, global_batch, chunks, &r);
    } else {
        randperm(&r, N, order);
    }
}

void loader_slice(int64_t N, int64_t step, int micro, int rank, int world, int micro_batch, int grad_accum,
                  int64_t *begin, int64_t *end) {
    const int64_t G = (int64_t)micro_batch * grad_accum * world;
    const int64_t s0 = step * G, n = (N - s0 < G ? N - s0 : G);
    if (n <= 0) {
        *begin = *end = s0 < N ? s0 : N;
        return;
    }
    // Rank share, then micro-batch share: balanced integer splits, which are
    // exact b x a and b slices when the step is full.
    const int64_t r0 = n * rank / world, r1 = n * (rank + 1) / world, m = r1 - r0;
    *begin = s0 + r0 + m * micro / grad_accum;
    *end = s0 + r0 + m * (micro + 1) / grad_accum;
}

int loader_pack_rows(const int32_t *lengths, int n, int capacity, int *row_of, int *order) {
    Keyed *k = xmalloc((size_t)(n ? n : 1) * sizeof(Keyed));
    for (int i = 0; i < n; i++) k[i] = (Keyed){lengths[i], i, i};
    qsort(k, (size_t)n, sizeof *k, by_length_desc);
    int *room = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    int rows = 0;
    for (int i = 0; i < n; i++) {
        const int s = (int)k[i].value, len = lengths[s];
        int r = 0;
        while (r < rows && room[r] < len) r++;
        if (r == rows) room[rows++] = capacity > len ? capacity : len;
        room[r] -= len;
        row_of[s] = r;
        order[i] = s;
    }
    free(room);
    free(k);
    return rows;
}
