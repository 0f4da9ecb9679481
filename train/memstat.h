// Resident memory of this process (Linux /proc): the current set, the
// high-water mark, and resetting the mark so a phase (the training loop,
// not the model load before it) can be measured on its own.
#ifndef LLAVA_MEMSTAT_H
#define LLAVA_MEMSTAT_H

// Bytes, or -1 where /proc cannot say.
double memstat_rss_bytes(void);
double memstat_peak_bytes(void);
// The high-water mark restarts from the current resident set (clear_refs 5).
// 0, or -1 where the kernel does not allow it (the peak then counts from start).
int memstat_reset_peak(void);

#endif
