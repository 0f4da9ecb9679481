// The driver's virtual memory calls (cuMem*), as the CUDA backend reaches
// them through cudaGetDriverEntryPointByVersion, emulated with host pages: a
// reserved range is mmap'ed PROT_NONE, a mapped chunk is made readable and
// writable (and filled with garbage, as fresh device memory), an unmapped one
// is given back (MADV_DONTNEED) and made PROT_NONE again. So a kernel, a copy
// or a (deferred) collective that touches a range that is not mapped crashes
// the emulated run, where a GPU would raise an illegal address.
//
// As strict as the driver's documentation where the backend could go wrong:
// a reservation's alignment is 0 or a power of two; sizes and addresses are
// multiples of the granularity; cuMemMap's offset is 0, its size the
// handle's, and it maps only into reserved, unmapped address space; a mapped
// chunk is NOT accessible until cuMemSetAccess grants read/write on this
// device (every mapping starts without access, also one remapped at the
// address of an earlier one); cuMemUnmap takes whole mappings only; and
// cuMemAddressFree fails while anything is still mapped in the range.
#include "tests/gpu/emu/emu_cuda.h"  // first: it defines __shared__ before the CUDA headers

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <map>

namespace {

// The granularity reported: 64 KiB, smaller than a GPU's 2 MiB, so that tests
// of tiny models can set LLAVA_CUDA_VMM_CHUNK_KB=64 (the backend's default
// chunk is 2 MiB either way).
const size_t kChunk = (size_t)64 << 10;

struct Mapping {
    size_t size;
    bool accessible;  // cuMemSetAccess done
};
std::map<uintptr_t, size_t> g_reserved;   // base -> size
std::map<uintptr_t, Mapping> g_mappings;  // address -> mapping

bool reserved(uintptr_t a, size_t size) {
    auto it = g_reserved.upper_bound(a);
    if (it == g_reserved.begin()) return false;
    --it;
    return a >= it->first && a + size <= it->first + it->second;
}
bool overlaps_mapping(uintptr_t a, size_t size) {
    auto it = g_mappings.lower_bound(a);
    if (it != g_mappings.end() && it->first < a + size) return true;
    if (it == g_mappings.begin()) return false;
    --it;
    return it->first + it->second.size > a;
}
// Calls f on every mapping of [a, a + size), which must be whole mappings end to end.
template <class F> bool whole_mappings(uintptr_t a, size_t size, F f) {
    for (uintptr_t at = a; at < a + size;) {
        auto it = g_mappings.find(at);
        if (it == g_mappings.end() || at + it->second.size > a + size) return false;
        at += it->second.size;
    }
    for (uintptr_t at = a; at < a + size;) {
        auto it = g_mappings.find(at);
        at += it->second.size;
        f(it);
    }
    return true;
}

CUresult emu_reserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr, unsigned long long flags) {
    if (!size || size % kChunk || (alignment & (alignment - 1)) || flags) return CUDA_ERROR_INVALID_VALUE;
    size_t align = alignment > kChunk ? alignment : kChunk;
    // over-reserve, then trim to an aligned range
    void *p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    uintptr_t a = ((uintptr_t)p + align - 1) / align * align;
    if (a > (uintptr_t)p) munmap(p, a - (uintptr_t)p);
    uintptr_t end = (uintptr_t)p + size + align;
    if (end > a + size) munmap((void *)(a + size), end - (a + size));
    *ptr = (CUdeviceptr)a;
    g_reserved[a] = size;
    return CUDA_SUCCESS;
}
CUresult emu_address_free(CUdeviceptr ptr, size_t size) {
    auto it = g_reserved.find((uintptr_t)ptr);
    if (it == g_reserved.end() || it->second != size) return CUDA_ERROR_INVALID_VALUE;  // as reserved, exactly
    if (overlaps_mapping((uintptr_t)ptr, size)) return CUDA_ERROR_INVALID_VALUE;     // unmap first
    g_reserved.erase(it);
    return munmap((void *)ptr, size) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
struct Handle {
    size_t size;
};
CUresult emu_create(CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
                    unsigned long long flags) {
    if (!size || size % kChunk || flags) return CUDA_ERROR_INVALID_VALUE;
    if (!prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE;
    *h = (CUmemGenericAllocationHandle)(uintptr_t) new Handle{size};
    return CUDA_SUCCESS;
}
CUresult emu_release(CUmemGenericAllocationHandle h) {
    if (!h) return CUDA_ERROR_INVALID_VALUE;
    delete (Handle *)(uintptr_t)h;  // a mapping keeps the memory until unmapped, as the driver's
    return CUDA_SUCCESS;
}
CUresult emu_map(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle h, unsigned long long flags) {
    const Handle *hd = (const Handle *)(uintptr_t)h;
    if (!hd || offset || flags || size != hd->size || ptr % kChunk) return CUDA_ERROR_INVALID_VALUE;
    if (!reserved((uintptr_t)ptr, size) || overlaps_mapping((uintptr_t)ptr, size)) return CUDA_ERROR_INVALID_VALUE;
    g_mappings[(uintptr_t)ptr] = Mapping{size, false};  // no access yet: PROT_NONE until cuMemSetAccess
    return CUDA_SUCCESS;
}
CUresult emu_unmap(CUdeviceptr ptr, size_t size) {
    if (ptr % kChunk || size % kChunk) return CUDA_ERROR_INVALID_VALUE;
    bool ok = whole_mappings((uintptr_t)ptr, size, [](std::map<uintptr_t, Mapping>::iterator it) {
        madvise((void *)it->first, it->second.size, MADV_DONTNEED);
        mprotect((void *)it->first, it->second.size, PROT_NONE);
        g_mappings.erase(it);
    });
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
CUresult emu_set_access(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count) {
    if (count != 1 || !desc || desc->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        desc->flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
        return CUDA_ERROR_INVALID_VALUE;
    bool ok = whole_mappings((uintptr_t)ptr, size, [](std::map<uintptr_t, Mapping>::iterator it) {
        if (it->second.accessible) return;
        if (mprotect((void *)it->first, it->second.size, PROT_READ | PROT_WRITE) != 0) abort();
        memset((void *)it->first, 0xa5, it->second.size);  // garbage, like fresh device memory
        it->second.accessible = true;
    });
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
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
