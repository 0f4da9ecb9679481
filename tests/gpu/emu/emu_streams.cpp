// The emulated CUDA runtime's memory, copies, streams and events (see
// emu_cuda.h for the kernels). Device memory is host memory.
//
// Streams: the legacy default stream and the FIRST stream a process creates
// (the backend's compute stream) are eager: what is enqueued on them runs
// during the call. Every later stream (a communication stream) is deferred:
// its work is queued and runs only when something waits for it: an event of
// it that another stream waits for (cudaStreamWaitEvent) or the host
// synchronizes with (cudaEventSynchronize), cudaStreamSynchronize,
// cudaDeviceSynchronize, cudaFree, a copy from it to pageable host memory, or
// the stream's destruction. So code that forgets that a deferred stream's
// result must be waited for reads the old bytes, and code that reuses a
// buffer the deferred stream still reads has its new bytes read, both as late
// as CUDA allows, and a test comparing results fails. What this cannot show:
// a deferred stream that forgets to wait for the eager stream (that work has
// always already run), and real concurrency (the schedule is one of the
// allowed orders, not all of them).
//
// Pinned host memory: a copy out of pinned memory (cudaMallocHost) on the
// eager stream lands only when the stream is next observed to run (a launch,
// a memset, another copy, a synchronization, a cuBLASLt call), so a host that
// rewrites pinned memory before its copy completed uploads the new bytes.
#include "tests/gpu/emu/emu_cuda.h"  // first: it defines __shared__ before the CUDA headers

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <deque>
#include <functional>
#include <vector>


namespace {

struct PendingCopy {
    void *dst;
    const void *src;
    size_t n;
};
std::vector<std::pair<const unsigned char *, size_t>> g_pinned;
std::vector<PendingCopy> g_pending;

void flush_copies() {
    for (const PendingCopy &c : g_pending) memmove(c.dst, c.src, c.n);
    g_pending.clear();
}
bool is_pinned(const void *p) {
    for (const auto &r : g_pinned)
        if ((const unsigned char *)p >= r.first && (const unsigned char *)p < r.first + r.second) return true;
    return false;
}

struct Stream {
    bool deferred = false;
    bool running = false;                    // inside run_until (a wait cycle would re-enter it)
    std::deque<std::function<void()>> work;  // queued, not yet run (deferred streams)
    unsigned long queued = 0, done = 0;      // items enqueued / run so far
};
struct Event {
    Stream *stream = nullptr;  // NULL: never recorded (waits on it return at once)
    unsigned long seq = 0;     // the stream's items before the record
};

Stream g_legacy;               // stream 0
std::vector<Stream *> g_streams;  // created ones, the first is eager
int g_created = 0;

Stream *stream_of(cudaStream_t s) { return s ? (Stream *)s : &g_legacy; }

// Runs stream s's queued work up to item `seq`, in order.
void run_until(Stream *s, unsigned long seq) {
    if (s->done >= seq) return;
    if (s->running) EMU_FAIL("a stream waits, through events, for its own later work (a deadlock on a GPU)");
    s->running = true;
    while (s->done < seq) {
        std::function<void()> f = std::move(s->work.front());
        s->work.pop_front();
        flush_copies();
        f();
        s->done++;
    }
    s->running = false;
}

void run_all() {
    run_until(&g_legacy, g_legacy.queued);
    for (Stream *s : g_streams) run_until(s, s->queued);
    flush_copies();
}

void enqueue(Stream *s, std::function<void()> f) {
    s->queued++;
    if (s->deferred) {
        s->work.push_back(std::move(f));
        return;
    }
    flush_copies();  // the work reads what was uploaded before it
    f();
    s->done++;
}

}  // namespace

namespace emu {
void launch(cudaStream_t stream, std::function<void()> work) { enqueue(stream_of(stream), std::move(work)); }
void observe(cudaStream_t stream, const char *what) {
    if (stream_of(stream)->deferred) EMU_FAIL("%s on a deferred (communication) stream is not emulated", what);
    flush_copies();
}
}  // namespace emu

extern "C" {

// ---- streams and events ----------------------------------------------------------------

static cudaError_t stream_new(cudaStream_t *s) {
    Stream *st = new Stream();
    st->deferred = g_created++ > 0;
    g_streams.push_back(st);
    *s = (cudaStream_t)st;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int) { return stream_new(s); }
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int, int) { return stream_new(s); }
cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest) {
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    Stream *st = stream_of(s);
    run_until(st, st->queued);  // CUDA lets the queued work finish
    for (size_t i = 0; i < g_streams.size(); i++)
        if (g_streams[i] == st) g_streams.erase(g_streams.begin() + (long)i);
    if (st != &g_legacy) delete st;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    Stream *st = stream_of(s);
    run_until(st, st->queued);
    flush_copies();
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    run_all();
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int) {
    *e = (cudaEvent_t) new Event();
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete (Event *)e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    Event *ev = (Event *)e;
    ev->stream = stream_of(s);
    ev->seq = ev->stream->queued;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    const Event *ev = (const Event *)e;
    if (ev->stream) run_until(ev->stream, ev->seq);
    flush_copies();
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
    const Event *ev = (const Event *)e;
    return !ev->stream || ev->stream->done >= ev->seq ? cudaSuccess : cudaErrorNotReady;
}
// The wait sees the event as recorded now (a later record does not move it).
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
    const Event ev = *(const Event *)e;
    if (!ev.stream) return cudaSuccess;
    enqueue(stream_of(s), [ev]() { run_until(ev.stream, ev.seq); });
    return cudaSuccess;
}
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void *data) {
    enqueue(stream_of(s), [fn, data]() { fn(data); });
    return cudaSuccess;
}

// ---- memory and copies --------------------------------------------------------------------

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    g_pinned.push_back({(const unsigned char *)*p, bytes});
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    run_all();  // as cudaFreeHost, which synchronizes the device
    for (size_t i = 0; i < g_pinned.size(); i++)
        if (g_pinned[i].first == p) g_pinned.erase(g_pinned.begin() + (long)i);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t bytes) {
    size_t n = (bytes + 255) & ~(size_t)255;
    *p = aligned_alloc(256, n ? n : 256);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xa5, n);  // garbage, like fresh device memory
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    run_all();  // cudaFree synchronizes the device
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *free_b = *total_b = (size_t)16 << 30;
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    enqueue(stream_of(s), [p, v, n]() { memset(p, v, n); });
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t s) {
    Stream *st = stream_of(s);
    if (kind == cudaMemcpyHostToDevice && is_pinned(src)) {
        if (st->deferred)
            enqueue(st, [dst, src, n]() { memmove(dst, src, n); });
        else
            g_pending.push_back({dst, src, n});  // lands at the next observation
        return cudaSuccess;
    }
    if (kind == cudaMemcpyHostToDevice) {
        // pageable: CUDA has read the source before the call returns
        std::vector<unsigned char> copy((const unsigned char *)src, (const unsigned char *)src + n);
        enqueue(st, [dst, copy]() { memcpy(dst, copy.data(), copy.size()); });
        return cudaSuccess;
    }
    if (kind == cudaMemcpyDeviceToHost && !is_pinned(dst)) {
        // pageable: the call returns once the bytes are there
        run_until(st, st->queued);
        flush_copies();
        memmove(dst, src, n);
        st->queued++, st->done++;
        return cudaSuccess;
    }
    enqueue(st, [dst, src, n]() { memmove(dst, src, n); });
    return cudaSuccess;
}

}  // extern "C"
