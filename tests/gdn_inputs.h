// Random gated-delta-rule inputs shared by the CPU and CUDA op tests.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "backend/ops.h"
#include "test_util.h"

namespace jetlm::test {

struct GdnInputs {
  std::vector<float> q, k, v, g, beta, S;
};

// q, k L2-normalised (q also scaled by dk^-0.5) as the model feeds them; `strong` gives log decays
// down to -50 per token mixed with negligible ones (sums reach -1000 per chunk).
inline GdnInputs gdn_inputs(std::mt19937& rng, int64_t T, int64_t H, int64_t dk, int64_t dv, bool strong) {
  GdnInputs in;
  in.q = random_vector(rng, size_t(T * H * dk));
  in.k = random_vector(rng, size_t(T * H * dk));
  ref::l2norm_rows(in.q.data(), T * H, dk, 1.0f / std::sqrt(float(dk)));
  ref::l2norm_rows(in.k.data(), T * H, dk, 1.0f);
  in.v = random_vector(rng, size_t(T * H * dv), -2, 2);
  in.g = random_vector(rng, size_t(T * H), strong ? -50.0f : -0.5f, 0.0f);
  if (strong)
    for (size_t i = 0; i < in.g.size(); i += 3) in.g[i] = -1e-3f;
  in.beta = random_vector(rng, size_t(T * H), 0, 1);
  in.S = random_vector(rng, size_t(H * dk * dv), -0.5f, 0.5f);
  return in;
}

}  // namespace jetlm::test
