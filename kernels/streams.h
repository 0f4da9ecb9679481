// The CUDA backend's second stream and its events, for collectives that run
// beside the ops (kernels/nccl.c, train/zero.c): the ops run on `compute`,
// collectives on `comm`; an event recorded on one stream and waited for by
// the other orders them on the device, without stopping the host. And device
// virtual memory (cuMemAddressReserve + cuMemCreate/cuMemMap, reached through
// cudaGetDriverEntryPoint): a buffer's address range reserved whole, physical
// memory mapped into it chunk by chunk, which is how ZeRO-2/3 hold only their
// slices and the layers in flight on a GPU. NULL from backend_cuda_streams()
// on the CPU backend. C and C++ (the plugin fills it in).
#ifndef LLAVA_STREAMS_H
#define LLAVA_STREAMS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    void *compute;  // cudaStream_t of every op
    void *comm;     // cudaStream_t for collectives (greatest priority)
    void *(*event_new)(void);            // cudaEvent_t, timing disabled
    void (*event_free)(void *event);
    void (*record)(void *event, void *stream);  // the event completes when the stream's work so far has
    void (*wait)(void *stream, void *event);    // the stream's later work waits for the event
    void (*event_sync)(void *event);             // the host waits for the event
    int (*event_done)(void *event);              // 1 when it has completed (does not wait)
    // Virtual memory, in chunks of `chunk` bytes (the device's granularity,
    // 2 MiB): a range reserved (no memory; touching it is a fault), chunks
    // mapped (read and write, contents undefined) and unmapped again; the
    // caller never unmaps a chunk that queued work still touches.
    size_t chunk;
    void *(*reserve)(size_t bytes);      // a multiple of chunk; NULL when out of address space
    void (*unreserve)(void *base, size_t bytes);
    void (*map)(void *chunk_at);         // one chunk, at a multiple of chunk from base
    void (*unmap)(void *chunk_at);
} BackendStreams;

#ifdef __cplusplus
}
#endif

#endif
