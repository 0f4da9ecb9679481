// The driver's virtual memory calls (cuMem*), as the CUDA backend reaches
// them through cudaGetDriverEntryPointByVersion, emulated with host pages: a
// reserved range is mmap'ed PROT_NONE, a mapped chunk is made readable and
// writable (and filled with garbage, as fresh device memory), an unmapped one
// is given back (MADV_DONTNEED) and made PROT_NONE again. So a kernel, a copy
// or a (deferred) collective that touches a range that is not mapped crashes
// the emulated run, where a GPU would raise an illegal address.
#include "tests/gpu/emu/emu_cuda.h"  // first: it defines __shared__ before the CUDA headers

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

namespace {

// The granularity reported: 64 KiB, smaller than a GPU's 2 MiB, so that tests
// of tiny models can set LLAVA_CUDA_VMM_CHUNK_KB=64 (the backend's default
// chunk is 2 MiB either way).
const size_t kChunk = (size_t)64 << 10;

CUresult emu_reserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr, unsigned long long) {
    if (!size || size % kChunk) return CUDA_ERROR_INVALID_VALUE;
    size_t align = alignment > kChunk ? alignment : kChunk;
    // over-reserve, then trim to an aligned range
    void *p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    uintptr_t a = ((uintptr_t)p + align - 1) / align * align;
    if (a > (uintptr_t)p) munmap(p, a - (uintptr_t)p);
    uintptr_t end = (uintptr_t)p + size + align;
    if (end > a + size) munmap((void *)(a + size), end - (a + size));
    *ptr = (CUdeviceptr)a;
    return CUDA_SUCCESS;
}
CUresult emu_address_free(CUdeviceptr ptr, size_t size) {
    return munmap((void *)ptr, size) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
struct Handle {
    size_t size;
};
CUresult emu_create(CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *, unsigned long long) {
    if (!size || size % kChunk) return CUDA_ERROR_INVALID_VALUE;
    *h = (CUmemGenericAllocationHandle)(uintptr_t) new Handle{size};
    return CUDA_SUCCESS;
}
CUresult emu_release(CUmemGenericAllocationHandle h) {
    delete (Handle *)(uintptr_t)h;
    return CUDA_SUCCESS;
}
CUresult emu_map(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle h, unsigned long long) {
    const Handle *hd = (const Handle *)(uintptr_t)h;
    if (offset || size != hd->size || ptr % kChunk) return CUDA_ERROR_INVALID_VALUE;
    if (mprotect((void *)ptr, size, PROT_READ | PROT_WRITE) != 0) return CUDA_ERROR_INVALID_VALUE;
    memset((void *)ptr, 0xa5, size);  // garbage, like fresh device memory
    return CUDA_SUCCESS;
}
CUresult emu_unmap(CUdeviceptr ptr, size_t size) {
    if (ptr % kChunk || size % kChunk) return CUDA_ERROR_INVALID_VALUE;
    madvise((void *)ptr, size, MADV_DONTNEED);
    return mprotect((void *)ptr, size, PROT_NONE) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
CUresult emu_set_access(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t count) {
    return count == 1 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
CUresult emu_granularity(size_t *g, const CUmemAllocationProp *, CUmemAllocationGranularity_flags) {
    *g = kChunk;
    return CUDA_SUCCESS;
}

}  // namespace

extern "C" cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn, unsigned int, unsigned long long,
                                                        cudaDriverEntryPointQueryResult *status) {
    static const struct {
        const char *name;
        void *fn;
    } table[] = {
        {"cuMemAddressReserve", (void *)emu_reserve}, {"cuMemAddressFree", (void *)emu_address_free},
        {"cuMemCreate", (void *)emu_create},          {"cuMemRelease", (void *)emu_release},
        {"cuMemMap", (void *)emu_map},                {"cuMemUnmap", (void *)emu_unmap},
        {"cuMemSetAccess", (void *)emu_set_access},   {"cuMemGetAllocationGranularity", (void *)emu_granularity},
    };
    for (const auto &e : table)
        if (strcmp(e.name, symbol) == 0) {
            *fn = e.fn;
            if (status) *status = cudaDriverEntryPointSuccess;
            return cudaSuccess;
        }
    *fn = NULL;
    if (status) *status = cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;
}
