// Host buffers for weights the engine owns (random, quantized or copied out of a checkpoint).
// Large ones are anonymous mappings, which can ask the kernel for 2 MiB pages: a decode step
// streams every weight once, and a GEMV harness on the 2-core EPYC VM read bf16 weights 13-18%
// faster from 2 MiB than from 4 KiB pages. That costs at allocation: the kernel may compact memory
// to find the pages (~4 s per GiB on that VM when the page cache fills its memory), so it is asked
// for only where the caller says so (docs/perf.md).
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

// n bytes, 64-byte aligned (page aligned when mapped), uninitialised; huge_pages: on 2 MiB pages
// where the kernel grants them (madvise). Throws jetlm::Error when the memory cannot be had.
HostBytes allocate_host_bytes(size_t n, bool huge_pages = false);

}  // namespace jetlm
