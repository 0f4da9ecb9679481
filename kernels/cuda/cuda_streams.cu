// The communication stream, events and virtual memory of kernels/streams.h.
// The stream is created at the first call (a one-GPU run never makes it),
// with the greatest priority so that a collective's kernels start as soon as
// their inputs are ready, beside the compute stream's. The virtual-memory
// calls are the driver's (cuMem*), reached through cudaGetDriverEntryPoint:
// the plugin links cudart statically and never links libcuda itself.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdlib.h>
#include <string.h>


#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/streams.h"

#include <type_traits>

// One reserved address range and the memory mapped at each of its chunks
// (0: none). Plain C on purpose: a standard container here would pull parts
// of the static libstdc++ that raise the bundle's glibc floor (tests/gpu/pack.sh).
struct VmmRange {
    uintptr_t base;
    size_t chunks;
    CUmemGenericAllocationHandle *handles;  // [chunks] valid where mapped
    unsigned char *mapped;                  // [chunks] 1 while a chunk is mapped
    VmmRange *next;
};

// The driver's entry points, typed from cuda.h.
struct DriverVmm {
    decltype(&cuMemAddressReserve) reserve;
    decltype(&cuMemAddressFree) address_free;
    decltype(&cuMemCreate) create;
    decltype(&cuMemRelease) release;
    decltype(&cuMemMap) map;
    decltype(&cuMemUnmap) unmap;
    decltype(&cuMemSetAccess) set_access;
    decltype(&cuMemGetAllocationGranularity) granularity;
    CUmemAllocationProp prop;
    size_t min_granularity;  // the device's (a power of two): the reservations' alignment
    size_t chunk;        // a multiple of it: every size and offset given to cuMemCreate/Map/Unmap
    VmmRange *ranges;  // the reserved ranges (a few: one per module and kind)
};
static DriverVmm g_vmm;

#define CU_CHECK(call)                                                                        \
    do {                                                                                     \
        CUresult r_ = (call);                                                                \
        if (r_ != CUDA_SUCCESS) cuda_fatal(__FILE__, __LINE__, "%s: CUresult %d", #call, (int)r_); \
    } while (0)

// The entry points are asked for by ABI version 12000 (a fixed version, as the
// runtime's documentation asks: one above the driver's fails, and the
// plugin's static runtime needs a driver of at least 12.x anyway): the ABI
// the driver gives for it must be the one cuda.h declares, which is each
// call's first and only version (10020) so far; a toolkit that adds a _v2 of
// one of them stops the build here instead of calling it with the wrong ABI.
static_assert(std::is_same<decltype(&cuMemAddressReserve), PFN_cuMemAddressReserve_v10020>::value, "cuMem ABI");
static_assert(std::is_same<decltype(&cuMemAddressFree), PFN_cuMemAddressFree_v10020>::value, "cuMem ABI");
static_assert(std::is_same<decltype(&cuMemCreate), PFN_cuMemCreate_v10020>::value, "cuMem ABI");
static_assert(std::is_same<decltype(&cuMemRelease), PFN_cuMemRelease_v10020>::value, "cuMem ABI");
static_assert(std::is_same<decltype(&cuMemMap), PFN_cuMemMap_v10020>::value, "cuMem ABI");
static_assert(std::is_same<decltype(&cuMemUnmap), PFN_cuMemUnmap_v10020>::value, "cuMem ABI");
static_assert(std::is_same<decltype(&cuMemSetAccess), PFN_cuMemSetAccess_v10020>::value, "cuMem ABI");
static_assert(std::is_same<decltype(&cuMemGetAllocationGranularity), PFN_cuMemGetAllocationGranularity_v10020>::value,
              "cuMem ABI");

static void vmm_symbol(const char *name, void **slot) {
    cudaDriverEntryPointQueryResult found;
    CUDA_CHECK(cudaGetDriverEntryPointByVersion(name, slot, 12000, cudaEnableDefault, &found));
    CUDA_REQUIRE(found == cudaDriverEntryPointSuccess && *slot, "the CUDA driver lacks %s (too old for "
                 "virtual memory management, which ZeRO-2/3 need)", name);
}

static void vmm_init(void) {
    vmm_symbol("cuMemAddressReserve", (void **)&g_vmm.reserve);
    vmm_symbol("cuMemAddressFree", (void **)&g_vmm.address_free);
    vmm_symbol("cuMemCreate", (void **)&g_vmm.create);
    vmm_symbol("cuMemRelease", (void **)&g_vmm.release);
    vmm_symbol("cuMemMap", (void **)&g_vmm.map);
    vmm_symbol("cuMemUnmap", (void **)&g_vmm.unmap);
    vmm_symbol("cuMemSetAccess", (void **)&g_vmm.set_access);
    vmm_symbol("cuMemGetAllocationGranularity", (void **)&g_vmm.granularity);
    memset(&g_vmm.prop, 0, sizeof g_vmm.prop);
    g_vmm.prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    g_vmm.prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    g_vmm.prop.location.id = cuda_ctx()->device;
    // cuMemCreate/cuMemMap sizes must be multiples of the MINIMUM granularity;
    // the recommended one is a multiple of it (both 2 MiB on current GPUs).
    size_t g = 0, least = 0;
    CU_CHECK(g_vmm.granularity(&least, &g_vmm.prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    CU_CHECK(g_vmm.granularity(&g, &g_vmm.prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    CUDA_REQUIRE(least > 0 && (least & (least - 1)) == 0 && g % least == 0,
                 "the device's memory granularity (minimum %zu, recommended %zu bytes) is not a power of two", least, g);
    g_vmm.min_granularity = least;
    // 2 MiB (the granularity GPUs report); LLAVA_CUDA_VMM_CHUNK_KB makes it
    // smaller where the device allows (tests on the emulator: tiny models).
    const char *kb = getenv("LLAVA_CUDA_VMM_CHUNK_KB");
    const size_t want = kb && atol(kb) > 0 ? (size_t)atol(kb) << 10 : (size_t)2 << 20;
    g_vmm.chunk = want <= g ? g : (want + g - 1) / g * g;
}

static void *vmm_reserve(size_t bytes) {
    CUDA_REQUIRE(bytes > 0 && bytes % g_vmm.chunk == 0, "reserving %zu bytes: not a multiple of the %zu-byte chunk",
                 bytes, g_vmm.chunk);
    CUdeviceptr p = 0;
    // The alignment must be a power of two (or 0): the granularity's, as the
    // chunk (LLAVA_CUDA_VMM_CHUNK_KB) can be e.g. 6 MiB; every chunk offset
    // from the base is then a multiple of the granularity too.
    const CUresult res = g_vmm.reserve(&p, bytes, g_vmm.min_granularity, 0, 0);
    if (res == CUDA_ERROR_OUT_OF_MEMORY) return NULL;
    CU_CHECK(res);
    VmmRange *r = (VmmRange *)calloc(1, sizeof *r);
    const size_t chunks = (bytes + g_vmm.chunk - 1) / g_vmm.chunk;
    CUmemGenericAllocationHandle *h = (CUmemGenericAllocationHandle *)calloc(chunks ? chunks : 1, sizeof *h);
    unsigned char *mapped = (unsigned char *)calloc(chunks ? chunks : 1, 1);
    CUDA_REQUIRE(r && h && mapped, "out of host memory for the device memory map");
    r->base = (uintptr_t)p;
    r->chunks = chunks;
    r->handles = h;
    r->mapped = mapped;
    r->next = g_vmm.ranges;
    g_vmm.ranges = r;
    return (void *)p;
}
static void vmm_unreserve(void *base, size_t bytes) {
    for (VmmRange **pr = &g_vmm.ranges; *pr; pr = &(*pr)->next) {
        if ((*pr)->base != (uintptr_t)base) continue;
        VmmRange *r = *pr;
        *pr = r->next;
        free(r->handles);
        free(r->mapped);
        free(r);
        break;
    }
    CU_CHECK(g_vmm.address_free((CUdeviceptr)base, bytes));
}
// The range holding the chunk at `at`, and the chunk's index in it.
static VmmRange *vmm_find(void *at, size_t *index) {
    const uintptr_t a = (uintptr_t)at;
    for (VmmRange *r = g_vmm.ranges; r; r = r->next)
        if (a >= r->base && a < r->base + r->chunks * g_vmm.chunk) {
            *index = (a - r->base) / g_vmm.chunk;
            return r;
        }
    cuda_fatal(__FILE__, __LINE__, "device memory %p is outside every reserved range", at);
    return NULL;
}
static void vmm_map(void *at) {
    CUmemGenericAllocationHandle h;
    CU_CHECK(g_vmm.create(&h, g_vmm.chunk, &g_vmm.prop, 0));
    CU_CHECK(g_vmm.map((CUdeviceptr)at, g_vmm.chunk, 0, h, 0));
    CUmemAccessDesc access;
    memset(&access, 0, sizeof access);
    access.location = g_vmm.prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CU_CHECK(g_vmm.set_access((CUdeviceptr)at, g_vmm.chunk, &access, 1));
    size_t i;
    VmmRange *r = vmm_find(at, &i);
    r->handles[i] = h;
    r->mapped[i] = 1;
}
static void vmm_unmap(void *at) {
    size_t i;
    VmmRange *r = vmm_find(at, &i);
    CUDA_REQUIRE(r->mapped[i], "unmapping device memory that is not mapped");
    CU_CHECK(g_vmm.unmap((CUdeviceptr)at, g_vmm.chunk));
    CU_CHECK(g_vmm.release(r->handles[i]));  // the memory goes back once unmapped
    r->mapped[i] = 0;
}

static void *stream_event_new(void) {
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return (void *)e;
}
static void stream_event_free(void *e) {
    if (e) CUDA_CHECK(cudaEventDestroy((cudaEvent_t)e));
}
static void stream_record(void *e, void *s) { CUDA_CHECK(cudaEventRecord((cudaEvent_t)e, (cudaStream_t)s)); }
static void stream_wait(void *s, void *e) { CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)s, (cudaEvent_t)e, 0)); }
static void stream_event_sync(void *e) { CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)e)); }
static int stream_event_done(void *e) {
    cudaError_t r = cudaEventQuery((cudaEvent_t)e);
    if (r == cudaErrorNotReady) return 0;
    CUDA_CHECK(r);
    return 1;
}

extern "C" const BackendStreams *ops_cuda_streams(void) {
    static BackendStreams streams;
    static bool made = false;
    if (!ops_cuda_stream()) return NULL;  // the op table first
    if (!made) {
        int least = 0, greatest = 0;
        CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        cudaStream_t comm;
        CUDA_CHECK(cudaStreamCreateWithPriority(&comm, cudaStreamNonBlocking, greatest));
        streams.compute = ops_cuda_stream();
        streams.comm = (void *)comm;
        streams.event_new = stream_event_new;
        streams.event_free = stream_event_free;
        streams.record = stream_record;
        streams.wait = stream_wait;
        streams.event_sync = stream_event_sync;
        streams.event_done = stream_event_done;
        vmm_init();
        streams.chunk = g_vmm.chunk;
        streams.reserve = vmm_reserve;
        streams.unreserve = vmm_unreserve;
        streams.map = vmm_map;
        streams.unmap = vmm_unmap;
        made = true;
    }
    return &streams;
}
