// libFuzzer targets (built with -DJETLM_FUZZ=ON and clang): JETLM_FUZZ_TARGET picks the parser.
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
#if JETLM_FUZZ_TARGET == 0
  jetlm::fuzz::safetensors_entry(data, size);
#else
  jetlm::fuzz::config_entry(data, size);
#endif
  return 0;
}
