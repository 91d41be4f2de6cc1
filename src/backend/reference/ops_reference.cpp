// Plain reference implementations of the op contract: obviously correct loops with float64
// accumulation. They are the oracle of tests/op, not a fast path.
#include <cmath>
#include <vector>

#include "backend/ops.h"
#include "core/error.h"

namespace jetlm::ref {

namespace {

double weight_at(const Matrix& W, int64_t r, int64_t c) {
  const int64_t i = r * W.cols + c;
  switch (W.dtype) {
    case DType::F32: return static_cast<const float*>(W.data)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(W.data)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(W.data)[i]);
    case DType::I8:  // q8: the stored integer times its block's scale
      JETLM_ASSERT(W.scales != nullptr, "q8 matrix without scales");
      return double(static_cast<const int8_t*>(W.data)[i]) * f16_to_f32(W.scales[r * q8_blocks(W.cols) + c / kQ8Block]);
    default: JETLM_ASSERT(false, "unsupported weight dtype");
  }
  return 0;
}

double silu_d(double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace

void matmul(const float* x, int64_t T, const Matrix& W, const float* bias, float* y) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < W.rows; ++r) {
      double acc = bias ? bias[r] : 0.0;
      for (int64_t c = 0; c < W.cols; ++c) acc += double(x[t * W.cols + c]) * weight_at(W, r, c);
      y[t * W.rows + r] = float(acc);
    }
}

void embedding(const int32_t* ids, int64_t T, const Matrix& E, float* out) {
  for (int64_t t = 0; t < T; ++t) {
    JETLM_ASSERT(ids[t] >= 0 && ids[t] < E.rows);
    for (int64_t c = 0; c < E.cols; ++c) out[t * E.cols + c] = float(weight_at(E, ids[t], c));
  }
}

void rmsnorm(const float* x, int64_t R, int64_t N, const float* w, float eps, float* out) {
  for (int64_t r = 0; r < R; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < N; ++i) ss += double(x[r * N + i]) * x[r * N + i];
    const double inv = 1.0 / std::sqrt(ss / double(N) + eps);
    for (int64_t i = 0; i < N; ++i) out[r * N + i] = float(double(w[i]) * x[r * N + i] * inv);
  }
}

void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t pos0, double theta) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      float* row = x + (t * H + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(pos0 + t) * std::pow(theta, -2.0 * double(i) / double(hd));
        const double a = row[i], b = row[i + half];
        row[i] = float(a * std::cos(angle) - b * std::sin(angle));
        row[i + half] = float(b * std::cos(angle) + a * std::sin(angle));
      }
    }
}

void attention(const float* q, const float* k, const float* v, int64_t T, int64_t S, int64_t Hq,
               int64_t Hkv, int64_t hd, int64_t qpos0, int64_t kpos0, int64_t window, float* o) {
  const int64_t group = Hq / Hkv;
  std::vector<double> scores(static_cast<size_t>(S));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kh = h / group;
      const int64_t qpos = qpos0 + t;
      double max_score = -INFINITY;
      for (int64_t s = 0; s < S; ++s) {
        const int64_t kpos = kpos0 + s;
        const bool allowed = kpos <= qpos && (window <= 0 || kpos > qpos - window);
        if (!allowed) {
          scores[s] = -INFINITY;
          continue;
        }
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i)
          dot += double(q[(t * Hq + h) * hd + i]) * k[(s * Hkv + kh) * hd + i];
        scores[s] = dot / std::sqrt(double(hd));
        max_score = std::max(max_score, scores[s]);
      }
      JETLM_ASSERT(max_score > -INFINITY, "a query sees no key");
      double denom = 0;
      for (int64_t s = 0; s < S; ++s) {
        scores[s] = std::exp(scores[s] - max_score);
        denom += scores[s];
      }
      for (int64_t i = 0; i < hd; ++i) {
        double acc = 0;
        for (int64_t s = 0; s < S; ++s) acc += scores[s] * v[(s * Hkv + kh) * hd + i];
        o[(t * Hq + h) * hd + i] = float(acc / denom);
      }
    }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(silu_d(gate[i]) * up[i]);
}

void silu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = float(silu_d(x[i]));
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void l2norm_rows(float* x, int64_t R, int64_t N, float scale) {
  for (int64_t r = 0; r < R; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < N; ++i) ss += double(x[r * N + i]) * x[r * N + i];
    const double f = double(scale) / std::sqrt(ss + 1e-6);
    for (int64_t i = 0; i < N; ++i) x[r * N + i] = float(x[r * N + i] * f);
  }
}

void dconv(const float* u, const float* kernel, int64_t T, int64_t C, int64_t K, float* state,
           float* v) {
  // history[j] for j in [-(K-1), T): rows before 0 come from the state.
  auto history = [&](int64_t j, int64_t c) -> double {
    return j >= 0 ? u[j * C + c] : state[(j + K - 1) * C + c];
  };
  std::vector<float> out(size_t(T * C));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0;
      for (int64_t i = 0; i < K; ++i) acc += double(kernel[(t * C + c) * K + i]) * history(t - K + 1 + i, c);
      out[t * C + c] = float(silu_d(acc));
    }
  std::vector<float> new_state(size_t((K - 1) * C));
  for (int64_t r = 0; r < K - 1; ++r)
    for (int64_t c = 0; c < C; ++c) new_state[r * C + c] = float(history(T - (K - 1) + r, c));
  for (size_t i = 0; i < new_state.size(); ++i) state[i] = new_state[i];
  for (size_t i = 0; i < out.size(); ++i) v[i] = out[i];
}

void gdn_recurrent(const float* q, const float* k, const float* v, const float* g,
                   const float* beta, int64_t T, int64_t H, int64_t dk, int64_t dv, float* S,
                   float* o) {
  std::vector<double> state(static_cast<size_t>(dk * dv)), kS(static_cast<size_t>(dv));
  for (int64_t h = 0; h < H; ++h) {
    float* Sh = S + h * dk * dv;
    for (int64_t i = 0; i < dk * dv; ++i) state[i] = Sh[i];
    for (int64_t t = 0; t < T; ++t) {
      const float* qt = q + (t * H + h) * dk;
      const float* kt = k + (t * H + h) * dk;
      const float* vt = v + (t * H + h) * dv;
      const double decay = std::exp(double(g[t * H + h]));
      const double b = beta[t * H + h];
      for (auto& s : state) s *= decay;
      for (int64_t j = 0; j < dv; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < dk; ++i) acc += state[i * dv + j] * kt[i];
        kS[j] = b * (vt[j] - acc);
      }
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j) state[i * dv + j] += double(kt[i]) * kS[j];
      for (int64_t j = 0; j < dv; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < dk; ++i) acc += state[i * dv + j] * qt[i];
        o[(t * H + h) * dv + j] = float(acc);
      }
    }
    for (int64_t i = 0; i < dk * dv; ++i) Sh[i] = float(state[i]);
  }
}

// The reference has one form of the recurrence; the chunked contract is the same function.
void gdn_chunked(const float* q, const float* k, const float* v, const float* g, const float* beta,
                 int64_t T, int64_t H, int64_t dk, int64_t dv, float* S, float* o) {
  gdn_recurrent(q, k, v, g, beta, T, H, dk, dv, S, o);
}

void gated_rmsnorm(float* o, const float* gate, int64_t T, int64_t H, int64_t dv, const float* w,
                   float eps) {
  for (int64_t r = 0; r < T * H; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dv; ++i) ss += double(o[r * dv + i]) * o[r * dv + i];
    const double inv = 1.0 / std::sqrt(ss / double(dv) + eps);
    for (int64_t i = 0; i < dv; ++i)
      o[r * dv + i] = float(double(w[i]) * o[r * dv + i] * inv * silu_d(gate[r * dv + i]));
  }
}

}  // namespace jetlm::ref

namespace jetlm::ref {

void jet_gates(const float* b_raw, const float* a_raw, const float* A_log, const float* dt_bias,
               int64_t T, int64_t H, float* beta, float* g) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t i = t * H + h;
      beta[i] = float(1.0 / (1.0 + std::exp(-double(b_raw[i]))));
      const double x = double(a_raw[i]) + dt_bias[h];
      const double softplus = x > 30.0 ? x : std::log1p(std::exp(x));
      g[i] = float(-std::exp(double(A_log[h])) * softplus);
    }
}

}  // namespace jetlm::ref
