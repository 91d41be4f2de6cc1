// Host buffers for weights the engine owns (random, quantized or copied out of a checkpoint).
// Large ones are anonymous mappings that ask the kernel for 2 MiB pages: a decode step streams
// every weight once, and with 4 KiB pages the TLB misses cost ~15-20% of the read bandwidth on the
// 2-core EPYC VM (docs/perf.md); small ones come from the heap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace jetlm {

struct HostBytesFree {
  size_t mapped_bytes = 0;  // 0: heap memory
  void operator()(uint8_t* p) const;
};
using HostBytes = std::unique_ptr<uint8_t[], HostBytesFree>;
// Buffers that back a model's weights; their Matrix views must not outlive them.
using WeightStorage = std::vector<HostBytes>;

// n bytes, 64-byte aligned (page aligned when mapped), uninitialised. Throws jetlm::Error when the
// memory cannot be had.
HostBytes allocate_host_bytes(size_t n);

}  // namespace jetlm
