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

// Where a command's as-stored weights live: copied onto 2 MiB pages with --hugepages on the CPU,
// else mapped from the checkpoint (the GPU uploads them once either way).
WeightPlacement weight_placement(bool hugepages_flag, const std::string& device);
constexpr const char* kHugepagesHelp =
    "CPU: put the weights (as stored, or their q8 form with --weights q8) in memory on 2 MiB pages "
    "(faster weight streaming in decode; the kernel may take seconds per GB to find the pages at "
    "load); default: use them memory-mapped (q8: in ordinary pages)";

// Where the embedded default model lives relative to a jetlm checkout or install prefix.
constexpr const char* kDefaultModelSubdir = "models/jet-postnas-tiny";

}  // namespace jetlm::cli
