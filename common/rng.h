// A small deterministic random generator (splitmix64 seeding xoshiro128+ style
// floats). Used for weight init, data shuffling and demo data: the same seed
// gives the same numbers on every machine.
#ifndef LLAVA_RNG_H
#define LLAVA_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} Rng;

static inline void rng_seed(Rng *r, uint64_t seed) { r->state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull; }

static inline uint64_t rng_next(Rng *r) {  // splitmix64
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [0, 1).
static inline float rng_uniform(Rng *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }
// Uniform integer in [0, n).
static inline uint64_t rng_below(Rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }
// Standard normal (Box-Muller).
float rng_normal(Rng *r);

#endif
