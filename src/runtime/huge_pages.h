// An allocator whose large blocks (2 MB and more) are private mappings with transparent huge
// pages requested before first touch, for the SSM states: every step reads and writes each
// sequence's (19 MB for Mamba-2 130m), and 2 MB pages spare the TLB misses and the prefetchers'
// stops at 4 KB boundaries (docs/performance.md; the cost: up to 2 MB of rounding per state).
// Smaller blocks, and systems without MADV_HUGEPAGE, use operator new.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>

namespace mambalite {

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHugePage = size_t{2} << 20;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: allocators convert implicitly

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
#if defined(MADV_HUGEPAGE)
    if (bytes >= kHugePage) {
      void* p = ::mmap(nullptr, rounded(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      ::madvise(p, rounded(bytes), MADV_HUGEPAGE);
      return static_cast<T*>(p);
    }
#endif
    return static_cast<T*>(::operator new(bytes));
  }
  void deallocate(T* p, size_t n) {
    const size_t bytes = n * sizeof(T);
#if defined(MADV_HUGEPAGE)
    if (bytes >= kHugePage) {
      ::munmap(p, rounded(bytes));
      return;
    }
#endif
    ::operator delete(p);
  }

 private:
  static size_t rounded(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
};

template <typename T, typename U>
bool operator==(const HugePageAllocator<T>&, const HugePageAllocator<U>&) {
  return true;
}
template <typename T, typename U>
bool operator!=(const HugePageAllocator<T>&, const HugePageAllocator<U>&) {
  return false;
}

}  // namespace mambalite
