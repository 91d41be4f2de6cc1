// Small helpers shared by the subcommands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "jetlm/model.h"

namespace jetlm::cli {

// Parses "5,17,42" (spaces allowed) into ids; throws jetlm::Error naming `flag` on bad text.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);

// Writes bytes to `path` through a temporary file and a rename, so a failed run leaves no
// half-written output.
void write_file_atomic(const std::string& path, const void* data, size_t size);

// The model dir a command runs: `given` when not empty, else $JETLM_MODEL, else the embedded
// default model (models/jet-postnas-tiny, the PostNAS export committed with jetlm) found next to the
// executable (../models, ./models) or in the source tree it was built from. Throws jetlm::Error
// listing where it looked when none exists.
std::string resolve_model_dir(const std::string& given);

// --hugepages / --no-hugepages as given; `auto_copy`: what neither means for the command. The
// long-running ones (chat, serve) and bench decide by auto_weights_on_hugepages; one-shot generate
// maps, because the copy's seconds at load outweigh the faster decode of a short run.
struct HugepagesFlags {
  bool on = false, off = false;
  bool auto_copy = true;
};
// Where a command's weights live on the CPU: copied onto 2 MiB pages (WeightPlacement::Memory) or
// mapped from the checkpoint. --hugepages / --no-hugepages decide; without either, the copy is
// made when `auto_copy` and auto_weights_on_hugepages say so for this machine and checkpoint. The
// GPU uploads the weights once, so it always maps.
WeightPlacement weight_placement(const HugepagesFlags& flags, const std::string& device, const std::string& model_dir);
// The same rule for weights of `weight_bytes` that are made, not loaded (bench --random-weights).
WeightPlacement weight_placement_for_bytes(const HugepagesFlags& flags, const std::string& device,
                                           int64_t weight_bytes);
// The auto rule: the kernel hands out transparent huge pages (`thp_enabled`, the contents of
// /sys/kernel/mm/transparent_hugepage/enabled, selects [always] or [madvise]) and the checkpoint's
// weights take at most half of the available memory (so the copy does not push the machine into
// swapping; the mapped file's pages stay reclaimable page cache).
bool auto_weights_on_hugepages(const std::string& thp_enabled, int64_t checkpoint_bytes, int64_t available_bytes);
constexpr const char* kHugepagesHelp =
    "CPU: copy the weights (as stored, or their q8 form with --weights q8) into memory on 2 MiB pages: "
    "faster weight streaming in decode (Jet-Nemotron-2B bf16 on a 2-core EPYC VM: median 12.2 vs 9.8 "
    "tok/s), seconds per GB at load. Default: on when the kernel offers transparent huge pages and the "
    "weights take at most half of the available memory, else memory-mapped";
constexpr const char* kHugepagesHelpOptIn =
    "CPU: copy the weights (as stored, or their q8 form with --weights q8) into memory on 2 MiB pages: "
    "faster weight streaming in decode (Jet-Nemotron-2B bf16 on a 2-core EPYC VM: median 12.2 vs 9.8 "
    "tok/s), seconds per GB at load; default: memory-mapped (no copy)";
constexpr const char* kNoHugepagesHelp = "CPU: use the weights memory-mapped from the checkpoint (no copy)";

// Where the embedded default model lives relative to a jetlm checkout or install prefix.
constexpr const char* kDefaultModelSubdir = "models/jet-postnas-tiny";

}  // namespace jetlm::cli
