#include "core/host_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"

namespace jetlm {

namespace {
// From this size on, a buffer gets its own mapping (huge pages need 2 MiB-aligned ranges).
constexpr size_t kMapFrom = size_t(1) << 21;
}  // namespace

void HostBytesFree::operator()(uint8_t* p) const {
  if (p == nullptr) return;
  if (mapped_bytes > 0) ::munmap(p, mapped_bytes);
  else ::operator delete[](p, std::align_val_t(64));
}

HostBytes allocate_host_bytes(size_t n, bool huge_pages) {
  if (n < kMapFrom) {
    auto* p = static_cast<uint8_t*>(::operator new[](n == 0 ? 1 : n, std::align_val_t(64)));
    return HostBytes(p, HostBytesFree{0});
  }
  // Over-map by one huge page so the buffer can start on a 2 MiB boundary (then every one of its
  // pages can be a huge page), and give the unused head and tail back.
  const size_t huge = kMapFrom, span = n + huge;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    throw_error("host memory", "cannot allocate " + std::to_string(n) + " bytes: " + std::strerror(errno));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (begin + huge - 1) & ~uintptr_t(huge - 1);
  const size_t head = aligned - begin;
  const size_t length = (n + 4095) & ~size_t(4095);
  if (head > 0) ::munmap(raw, head);
  if (span - head > length) ::munmap(reinterpret_cast<void*>(aligned + length), span - head - length);
#ifdef MADV_HUGEPAGE
  if (huge_pages) ::madvise(reinterpret_cast<void*>(aligned), length, MADV_HUGEPAGE);  // advice: may be refused
#endif
  return HostBytes(reinterpret_cast<uint8_t*>(aligned), HostBytesFree{length});
}

}  // namespace jetlm
