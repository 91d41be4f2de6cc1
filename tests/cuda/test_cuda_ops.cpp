// CUDA op harness: every jetlm::cuda op against its ref:: oracle (float64) on random inputs of
// many shapes: odd sizes, GQA ratios, windows, offsets, chunk boundaries, strong decays.
// Outputs are poisoned with NaN before each run, so an unwritten element fails the comparison.
// Without a GPU every test is skipped with the reason (CI has no GPU).
//
// Tolerances (normalised error max|a-b| / max|b|, test_util.h):
//   kTolF32  = 1e-5  element-wise and row ops, rope (float32 arithmetic)
//   kTolAcc  = 1e-4  float32 reductions over long sums: GEMV/SGEMM, attention, gated delta rule
//   kTolHalf = 1e-2  GEMMs whose activations are rounded to bf16/f16 (T > kGemvMaxT)
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/ops_cuda.h"
#include "backend/ops.h"
#include "backend/quantize.h"
#include "core/error.h"
#include "core/dtype.h"
#include "gdn_inputs.h"
#include "test_util.h"

namespace jetlm {
namespace {

using test::normalized_error;
using test::random_vector;

constexpr double kTolF32 = 1e-5;
constexpr double kTolAcc = 1e-4;
constexpr double kTolHalf = 1e-2;

// The largest normalised error seen per op (and its tolerance), printed after all tests.
std::map<std::string, std::pair<double, double>>& error_table() {
  static std::map<std::string, std::pair<double, double>> table;
  return table;
}
double record(const std::string& op, double err, double tol) {
  auto& entry = error_table()[op];
  entry.first = std::max(entry.first, std::isnan(err) ? INFINITY : err);
  entry.second = tol;
  return err;
}
class ErrorTablePrinter : public ::testing::Environment {
 public:
  void TearDown() override {
    if (error_table().empty()) return;
    std::printf("\n%-28s %12s %10s\n", "op", "max error", "tolerance");
    for (const auto& [op, e] : error_table()) std::printf("%-28s %12.3g %10.0e\n", op.c_str(), e.first, e.second);
  }
};
const auto* const g_printer = ::testing::AddGlobalTestEnvironment(new ErrorTablePrinter);

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::available(&why)) GTEST_SKIP() << "CUDA op tests skipped: " << why;
  }
};

// Device copy of a host vector, and a NaN-poisoned device output.
template <typename T>
cuda::Buffer<T> dev(const std::vector<T>& host) {
  return cuda::Buffer<T>(host.data(), host.size());
}
cuda::Buffer<float> poisoned(size_t n) {
  cuda::Buffer<float> b(n);
  cuda::fill_bytes(b.data(), 0xff, n * sizeof(float));  // 0xffffffff is a NaN
  return b;
}
std::vector<float> host(const cuda::Buffer<float>& b) {
  std::vector<float> out(b.size());
  cuda::synchronize();
  b.download(out.data(), out.size());
  return out;
}

struct StoredMatrix {
  std::vector<uint16_t> half;
  std::vector<float> full;
  WeightStorage q8;
  Matrix view;
};

StoredMatrix make_matrix(std::mt19937& rng, int64_t rows, int64_t cols, DType dtype) {
  StoredMatrix m;
  std::vector<float> values = random_vector(rng, size_t(rows * cols));
  if (dtype == DType::F32) {
    m.full = values;
    m.view = Matrix{m.full.data(), dtype, rows, cols};
  } else {
    const DType stored = dtype == DType::I8 ? DType::BF16 : dtype;
    for (float x : values) m.half.push_back(stored == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x));
    m.view = Matrix{m.half.data(), stored, rows, cols};
    if (dtype == DType::I8) m.view = quantize_matrix_q8(m.view, m.q8);
  }
  return m;
}

TEST_F(CudaOps, Matmul) {
  std::mt19937 rng(1);
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {5, 7}, {33, 95}, {108, 96}, {257, 130}, {64, 1536}, {300, 256}, {37, 8960}};
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::I8})
    for (int64_t T : {1, 2, 3, 8, 9, 64, 200, 256})  // 256: a tuned GEMM plan (autotune)
      for (auto [rows, cols] : shapes) {
        StoredMatrix W = make_matrix(rng, rows, cols, dtype);
        cuda::MatrixBuffer Wd = cuda::upload(W.view);
        std::vector<float> x = random_vector(rng, size_t(T * cols)), bias = random_vector(rng, size_t(rows));
        auto xd = dev(x), biasd = dev(bias);
        std::vector<float> b(size_t(T * rows));
        for (bool with_bias : {false, true}) {
          auto yd = poisoned(size_t(T * rows));
          cuda::matmul(xd.data(), T, Wd.view, with_bias ? biasd.data() : nullptr, yd.data());
          ref::matmul(x.data(), T, W.view, with_bias ? bias.data() : nullptr, b.data());
          const bool half_acts = T > cuda::kGemvMaxT && dtype != DType::F32;
          EXPECT_LT(record(std::string("matmul ") + dtype_name(dtype) + (half_acts ? " gemm" : " gemv"), normalized_error(host(yd), b), half_acts ? kTolHalf : kTolAcc), half_acts ? kTolHalf : kTolAcc)
              << dtype_name(dtype) << " T=" << T << " " << rows << "x" << cols << (with_bias ? " bias" : "");
        }
      }
}

// Every single-token GEMV layout (chosen by shape in use; forced here, so small matrices reach the
// layouts that serve large ones), with rows that leave partial warps, groups and split-K blocks,
// and columns off the 16-byte vector width (the scalar loop).
TEST_F(CudaOps, MatmulEveryGemvLayout) {
  std::mt19937 rng(7);
  const std::pair<int64_t, int64_t> shapes[] = {{1, 8}, {5, 7}, {37, 384}, {130, 96}, {257, 1536}, {45, 2056}};
  for (cuda::GemvLayout layout : {cuda::GemvLayout::SplitK, cuda::GemvLayout::Rows1, cuda::GemvLayout::Rows2,
                                  cuda::GemvLayout::Rows4, cuda::GemvLayout::Rows4Deep, cuda::GemvLayout::Group16Rows2,
                                  cuda::GemvLayout::Group8Rows4}) {
    cuda::set_gemv_layout(layout);
    for (DType dtype : {DType::F32, DType::BF16, DType::I8})
      for (auto [rows, cols] : shapes) {
        StoredMatrix W = make_matrix(rng, rows, cols, dtype);
        cuda::MatrixBuffer Wd = cuda::upload(W.view);
        std::vector<float> x = random_vector(rng, size_t(cols)), bias = random_vector(rng, size_t(rows));
        auto xd = dev(x), biasd = dev(bias);
        std::vector<float> b(static_cast<size_t>(rows));
        for (bool with_bias : {false, true}) {
          auto yd = poisoned(size_t(rows));
          cuda::matmul(xd.data(), 1, Wd.view, with_bias ? biasd.data() : nullptr, yd.data());
          ref::matmul(x.data(), 1, W.view, with_bias ? bias.data() : nullptr, b.data());
          EXPECT_LT(normalized_error(host(yd), b), kTolAcc)
              << cuda::gemv_layout_name(layout) << " " << dtype_name(dtype) << " " << rows << "x" << cols
              << (with_bias ? " bias" : "");
        }
      }
  }
  cuda::set_gemv_layout(cuda::GemvLayout::Auto);
}

// Batch-1 decode fusions: matmul_decode with the input norm inside the GEMV (an RMSNorm over the
// row, or the JetBlock's gated per-head norm) and the residual add in the epilogue, under every
// GEMV layout, against the reference norm followed by the reference matmul (and add). K = 2050 is
// off the 16-byte vector width (the norm-kernel fallback); gated norms of 2 and 24 groups take the
// warp-per-group path.
TEST_F(CudaOps, MatmulDecodeFusesNormAndResidual) {
  std::mt19937 rng(13);
  const std::pair<int64_t, int64_t> shapes[] = {{37, 384}, {130, 96}, {257, 1536}, {45, 2050}, {9, 4104}};
  for (cuda::GemvLayout layout : {cuda::GemvLayout::Auto, cuda::GemvLayout::SplitK, cuda::GemvLayout::Rows1,
                                  cuda::GemvLayout::Rows2, cuda::GemvLayout::Rows4, cuda::GemvLayout::Rows4Deep,
                                  cuda::GemvLayout::Group16Rows2, cuda::GemvLayout::Group8Rows4}) {
    cuda::set_gemv_layout(layout);
    for (DType dtype : {DType::F32, DType::BF16, DType::I8})
      for (auto [rows, K] : shapes)
        for (int64_t groups : {int64_t(1), int64_t(K % 24 == 0 ? 24 : 2)}) {
          const int64_t group = K / groups;
          const bool gated = groups > 1;
          StoredMatrix W = make_matrix(rng, rows, K, dtype);
          cuda::MatrixBuffer Wd = cuda::upload(W.view);
          std::vector<float> x = random_vector(rng, size_t(K)), w = random_vector(rng, size_t(group), 0.5f, 1.5f);
          std::vector<float> gate = random_vector(rng, size_t(K), -3.0f, 3.0f), bias = random_vector(rng, size_t(rows));
          std::vector<float> y0 = random_vector(rng, size_t(rows));
          for (float& v : x) v *= 4.0f;  // a norm that differs from 1
          // Reference: the normalized input, then the product (+ bias) (+ y0).
          std::vector<float> xn = x;
          if (gated) ref::gated_rmsnorm(xn.data(), gate.data(), 1, groups, group, w.data(), 1e-5f);
          else ref::rmsnorm(x.data(), 1, K, w.data(), 1e-5f, xn.data());
          auto xd = dev(x), wd = dev(w), gated_d = dev(gate), biasd = dev(bias);
          const cuda::GemvInputNorm norm{wd.data(), 1e-5f, group, gated ? gated_d.data() : nullptr};
          for (bool accumulate : {false, true}) {
            std::vector<float> expected(static_cast<size_t>(rows));
            ref::matmul(xn.data(), 1, W.view, accumulate ? bias.data() : nullptr, expected.data());
            if (accumulate) ref::add(expected.data(), y0.data(), rows);
            auto yd = accumulate ? dev(y0) : poisoned(size_t(rows));
            cuda::matmul_decode(xd.data(), Wd.view, accumulate ? biasd.data() : nullptr, yd.data(), &norm, accumulate);
            EXPECT_LT(record("matmul_decode (fused norm)", normalized_error(host(yd), expected), kTolAcc), kTolAcc)
                << cuda::gemv_layout_name(layout) << " " << dtype_name(dtype) << " " << rows << "x" << K
                << (gated ? " gated" : "") << (accumulate ? " accumulate" : "");
            if (!accumulate) {
              // silu in the epilogue on the first and last rows: the bits of silu() after the GEMV.
              const cuda::GemvSiluRows act{rows / 3, rows - rows / 4};
              auto ya = poisoned(size_t(rows));
              cuda::matmul_decode(xd.data(), Wd.view, nullptr, ya.data(), &norm, false, act);
              cuda::silu(yd.data(), act.end);
              cuda::silu(yd.data() + act.begin, rows - act.begin);
              EXPECT_EQ(host(ya), host(yd)) << "silu rows, " << cuda::gemv_layout_name(layout) << " "
                                            << dtype_name(dtype) << " " << rows << "x" << K;
              continue;
            }
            auto yd2 = dev(y0);  // the residual add alone, no norm
            std::vector<float> plain(static_cast<size_t>(rows));
            ref::matmul(x.data(), 1, W.view, nullptr, plain.data());
            ref::add(plain.data(), y0.data(), rows);
            cuda::matmul_decode(xd.data(), Wd.view, nullptr, yd2.data(), nullptr, true);
            EXPECT_LT(normalized_error(host(yd2), plain), kTolAcc)
                << "residual only, " << cuda::gemv_layout_name(layout) << " " << dtype_name(dtype) << " " << rows
                << "x" << K;
          }
        }
  }
  cuda::set_gemv_layout(cuda::GemvLayout::Auto);
  // matmul_swiglu_decode: the fused norm, then the SwiGLU GEMV, against matmul_swiglu (tested above)
  // of the reference-normalized input.
  // The last shape has enough rows for the large-matrix layout (6 rows per warp from 4 x 32 rows
  // per SM on), with a partial last warp.
  int sms = 0;
  ASSERT_EQ(cudaSuccess, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  for (DType dtype : {DType::F32, DType::BF16, DType::I8})
    for (auto [pairs, K] : {std::pair<int64_t, int64_t>{37, 96}, {300, 1536}, {20, 2050}, {64 * sms + 2, 1536}}) {
      StoredMatrix W = make_matrix(rng, 2 * pairs, K, dtype);
      cuda::MatrixBuffer Wd = cuda::upload(W.view);
      std::vector<float> x = random_vector(rng, size_t(K)), w = random_vector(rng, size_t(K), 0.5f, 1.5f);
      std::vector<float> xn(x.size());
      ref::rmsnorm(x.data(), 1, K, w.data(), 1e-6f, xn.data());
      auto xd = dev(x), xnd = dev(xn), wd = dev(w);
      auto fused = poisoned(size_t(pairs)), separate = poisoned(size_t(pairs));
      cuda::matmul_swiglu_decode(xd.data(), Wd.view, fused.data(), cuda::GemvInputNorm{wd.data(), 1e-6f, K, nullptr});
      cuda::matmul_swiglu(xnd.data(), 1, Wd.view, separate.data());
      EXPECT_LT(record("matmul_swiglu_decode", normalized_error(host(fused), host(separate)), kTolAcc), kTolAcc)
          << dtype_name(dtype) << " " << pairs << " pairs x " << K;
    }
}

// Prefill shares one rounding of an input among its GEMMs: round_input + matmul_rounded gives the
// bits matmul gives, and matmul_swiglu's rounded output is its float32 output rounded.
TEST_F(CudaOps, MatmulFromASharedRoundingIsBitEqual) {
  std::mt19937 rng(5);
  for (DType dtype : {DType::BF16, DType::F16, DType::I8})
    for (int64_t T : {9, 70})
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{33, 96}, {300, 256}, {64, 1536}}) {
        StoredMatrix W = make_matrix(rng, rows, cols, dtype);
        cuda::MatrixBuffer Wd = cuda::upload(W.view);
        ASSERT_TRUE(cuda::gemm_rounds_input(T, Wd.view));
        ASSERT_FALSE(cuda::gemm_rounds_input(cuda::kGemvMaxT, Wd.view));
        std::vector<float> x = random_vector(rng, size_t(T * cols)), bias = random_vector(rng, size_t(rows));
        auto xd = dev(x), biasd = dev(bias);
        cuda::Buffer<uint16_t> xr(size_t(T * cols));
        cuda::round_input(xd.data(), T * cols, Wd.view, xr.data());
        for (bool with_bias : {false, true}) {
          auto direct = poisoned(size_t(T * rows)), shared = poisoned(size_t(T * rows));
          cuda::matmul(xd.data(), T, Wd.view, with_bias ? biasd.data() : nullptr, direct.data());
          cuda::matmul_rounded(xr.data(), T, Wd.view, with_bias ? biasd.data() : nullptr, shared.data());
          const std::vector<float> a = host(direct), b = host(shared);
          EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
              << dtype_name(dtype) << " T=" << T << " " << rows << "x" << cols << (with_bias ? " bias" : "");
          EXPECT_FALSE(std::isnan(b[0]));
        }
        if (rows % 2 == 0) {  // the same matrix read as gate/up pairs
          auto y = poisoned(size_t(T * rows / 2));
          cuda::matmul_swiglu(xd.data(), T, Wd.view, y.data());
          cuda::Buffer<uint16_t> yr(size_t(T * rows / 2));
          cuda::matmul_swiglu(nullptr, T, Wd.view, nullptr, xr.data(), yr.data());
          const std::vector<float> yf = host(y);
          std::vector<uint16_t> got(yf.size());
          yr.download(got.data(), got.size());
          size_t mismatches = 0;
          for (size_t i = 0; i < yf.size(); ++i)
            mismatches += got[i] != (dtype == DType::F16 ? f32_to_f16(yf[i]) : f32_to_bf16(yf[i]));
          EXPECT_EQ(mismatches, 0u) << dtype_name(dtype) << " T=" << T << " " << rows << "x" << cols;
        }
      }
}

// matmul_swiglu on gate/up rows interleaved equals silu(x gate^T) * (x up^T) of the reference.
TEST_F(CudaOps, MatmulSwiglu) {
  std::mt19937 rng(11);
  for (DType dtype : {DType::F32, DType::BF16, DType::I8})
    for (int64_t T : {1, 3, 8, 9, 70})
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 32}, {37, 96}, {300, 64}, {128, 1536}}) {
        StoredMatrix G = make_matrix(rng, rows, cols, dtype), U = make_matrix(rng, rows, cols, dtype);
        // Interleave the stored rows (and q8 scales) as the engine does.
        const size_t esize = dtype_size(G.view.dtype), row_bytes = size_t(cols) * esize;
        const size_t blocks = size_t(q8_blocks(cols));
        std::vector<uint8_t> data(size_t(2 * rows) * row_bytes);
        std::vector<uint16_t> scales(G.view.scales ? size_t(2 * rows) * blocks : 0);
        for (int64_t r = 0; r < rows; ++r)
          for (int part = 0; part < 2; ++part) {
            const Matrix& m = part == 0 ? G.view : U.view;
            std::memcpy(data.data() + size_t(2 * r + part) * row_bytes,
                        static_cast<const uint8_t*>(m.data) + size_t(r) * row_bytes, row_bytes);
            if (!scales.empty())
              std::memcpy(scales.data() + size_t(2 * r + part) * blocks, m.scales + size_t(r) * blocks, blocks * 2);
          }
        const Matrix both{data.data(), G.view.dtype, 2 * rows, cols, scales.empty() ? nullptr : scales.data()};
        cuda::MatrixBuffer Wd = cuda::upload(both);
        std::vector<float> x = random_vector(rng, size_t(T * cols));
        auto xd = dev(x);
        auto yd = poisoned(size_t(T * rows));
        cuda::matmul_swiglu(xd.data(), T, Wd.view, yd.data());
        std::vector<float> g(size_t(T * rows)), u(g.size()), expected(g.size());
        ref::matmul(x.data(), T, G.view, nullptr, g.data());
        ref::matmul(x.data(), T, U.view, nullptr, u.data());
        ref::silu_mul(g.data(), u.data(), int64_t(g.size()), expected.data());
        const bool half_acts = T > cuda::kGemvMaxT && dtype != DType::F32;
        // silu(g) * u carries the relative errors of both products (silu's slope is below 1.1).
        const double tol = half_acts ? 2.2 * kTolHalf : kTolAcc;
        EXPECT_LT(record(std::string("matmul_swiglu ") + dtype_name(dtype), normalized_error(host(yd), expected), tol),
                  tol)
            << dtype_name(dtype) << " T=" << T << " " << rows << "x" << cols;
      }
}

// Host value of a bf16/f16 element and the float32 -> half rounding (round to nearest even).
float half_value(uint16_t bits, DType type) { return type == DType::F16 ? f16_to_f32(bits) : bf16_to_f32(bits); }
float round_half(float x, DType type) {
  return half_value(type == DType::F16 ? f32_to_f16(x) : f32_to_bf16(x), type);
}
std::vector<float> host_half(const cuda::Buffer<uint16_t>& b, DType type) {
  std::vector<uint16_t> bits(b.size());
  cuda::synchronize();
  b.download(bits.data(), bits.size());
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = half_value(bits[i], type);
  return out;
}

// `got` is `exact` rounded to `type`: every element within one half-precision step of it (the
// two GEMMs may sum in different orders, which can move a value across a rounding boundary), and
// at least 99% of them exactly its rounding.
void expect_rounded(const std::vector<float>& got, const std::vector<float>& exact, DType type, const std::string& what) {
  ASSERT_EQ(got.size(), exact.size()) << what;
  size_t same = 0, far = 0;
  const float step = type == DType::F16 ? 0x1p-10f : 0x1p-7f;
  for (size_t i = 0; i < got.size(); ++i) {
    const float r = round_half(exact[i], type);
    same += got[i] == r;
    // f16 subnormals (below 2^-14) are spaced 2^-24 apart.
    const float floor = type == DType::F16 ? 0x1p-25f : 1e-30f;
    far += !(std::fabs(got[i] - exact[i]) <= step * std::fabs(exact[i]) + floor);
  }
  EXPECT_EQ(far, 0u) << what;
  EXPECT_GE(double(same), 0.99 * double(got.size())) << what << ": " << same << " of " << got.size() << " exact";
}

// The GEMM with a half-precision output is the float32-output GEMM rounded once.
TEST_F(CudaOps, MatmulHalfOutIsTheFloat32GemmRounded) {
  std::mt19937 rng(21);
  for (DType dtype : {DType::BF16, DType::F16, DType::I8})
    for (int64_t T : {9, 70})
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{5, 7}, {108, 96}, {384, 1536}, {257, 130}}) {
        StoredMatrix W = make_matrix(rng, rows, cols, dtype);
        cuda::MatrixBuffer Wd = cuda::upload(W.view);
        const DType out_type = cuda::gemm_half_type(Wd.view);
        EXPECT_EQ(out_type, dtype == DType::F16 ? DType::F16 : DType::BF16);
        std::vector<float> x = random_vector(rng, size_t(T * cols));
        auto xd = dev(x);
        for (bool pre_rounded : {false, true}) {
          auto y32 = poisoned(size_t(T * rows));
          cuda::matmul(xd.data(), T, Wd.view, nullptr, y32.data());
          cuda::Buffer<uint16_t> xr(size_t(T * cols)), yh(size_t(T * rows));
          cuda::fill_bytes(yh.data(), 0xff, yh.size() * 2);  // NaN in both half types
          if (pre_rounded) cuda::round_input(xd.data(), T * cols, Wd.view, xr.data());
          cuda::matmul_half_out(xd.data(), pre_rounded ? xr.data() : nullptr, T, Wd.view, yh.data());
          expect_rounded(host_half(yh, out_type), host(y32), out_type,
                         std::string(dtype_name(dtype)) + " T=" + std::to_string(T) + " " + std::to_string(rows) +
                             "x" + std::to_string(cols) + (pre_rounded ? " pre-rounded" : ""));
        }
      }
}

// matmul_swiglu with the gate/up GEMM writing half precision: silu(gate) * up of the rounded
// float32 GEMM outputs (to the float32 and to the rounded output).
TEST_F(CudaOps, MatmulSwigluFromHalfGateUp) {
  std::mt19937 rng(22);
  for (DType dtype : {DType::BF16, DType::F16, DType::I8})
    for (int64_t T : {9, 33})
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 32}, {37, 96}, {300, 1536}}) {
        StoredMatrix W = make_matrix(rng, 2 * rows, cols, dtype);  // rows 2i / 2i+1: a gate/up pair
        cuda::MatrixBuffer Wd = cuda::upload(W.view);
        const DType half = cuda::gemm_half_type(Wd.view);
        std::vector<float> x = random_vector(rng, size_t(T * cols));
        auto xd = dev(x);
        auto y2 = poisoned(size_t(T * 2 * rows));
        cuda::matmul(xd.data(), T, Wd.view, nullptr, y2.data());
        const std::vector<float> both = host(y2);
        std::vector<float> expected(size_t(T * rows));
        for (size_t i = 0; i < expected.size(); ++i) {
          const double g = round_half(both[2 * i], half), u = round_half(both[2 * i + 1], half);
          expected[i] = float(g / (1.0 + std::exp(-g)) * u);
        }
        const std::string what = std::string(dtype_name(dtype)) + " T=" + std::to_string(T) + " " +
                                 std::to_string(rows) + "x" + std::to_string(cols);
        auto yd = poisoned(size_t(T * rows));
        cuda::matmul_swiglu(xd.data(), T, Wd.view, yd.data(), nullptr, nullptr, /*half_gate_up=*/true);
        const std::vector<float> got = host(yd);
        // A gate or up value that rounds the other way (see expect_rounded) moves its product by
        // one half-precision step; all others agree to float32 precision.
        size_t close = 0;
        for (size_t i = 0; i < got.size(); ++i) close += std::fabs(got[i] - expected[i]) <= 1e-5f * (std::fabs(expected[i]) + 1e-3f);
        EXPECT_GE(double(close), 0.98 * double(got.size())) << what;
        EXPECT_LT(normalized_error(got, expected), 2e-2) << what;
        cuda::Buffer<uint16_t> yr(size_t(T * rows));
        cuda::matmul_swiglu(xd.data(), T, Wd.view, nullptr, nullptr, yr.data(), true);
        expect_rounded(host_half(yr, half), got, half, what + " rounded output");
      }
}

TEST_F(CudaOps, Embedding) {
  std::mt19937 rng(2);
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::I8}) {
    StoredMatrix E = make_matrix(rng, 50, 33, dtype);
    cuda::MatrixBuffer Ed = cuda::upload(E.view);
    const std::vector<int32_t> ids = {0, 49, 7, 7, 13};
    auto idsd = dev(ids);
    auto outd = poisoned(ids.size() * 33);
    std::vector<float> b(ids.size() * 33);
    cuda::embedding(idsd.data(), int64_t(ids.size()), Ed.view, outd.data());
    ref::embedding(ids.data(), int64_t(ids.size()), E.view, b.data());
    EXPECT_EQ(host(outd), b) << dtype_name(dtype);
  }
}

TEST_F(CudaOps, NormsAndElementwise) {
  std::mt19937 rng(3);
  for (int64_t N : {1, 7, 24, 96, 131, 1536})
    for (int64_t R : {1, 5, 300}) {
      const std::string what = "R=" + std::to_string(R) + " N=" + std::to_string(N);
      std::vector<float> x = random_vector(rng, size_t(R * N), -3, 3), w = random_vector(rng, size_t(N), 0.5f, 1.5f);
      std::vector<float> b(x.size());
      auto xd = dev(x), wd = dev(w);
      auto outd = poisoned(x.size());
      cuda::rmsnorm(xd.data(), R, N, wd.data(), 1e-6f, outd.data());
      ref::rmsnorm(x.data(), R, N, w.data(), 1e-6f, b.data());
      EXPECT_LT(record("rmsnorm", normalized_error(host(outd), b), kTolF32), kTolF32) << "rmsnorm " << what;
      {  // in place (out aliases x)
        auto yd = dev(x);
        cuda::rmsnorm(yd.data(), R, N, wd.data(), 1e-6f, yd.data());
        EXPECT_LT(record("rmsnorm", normalized_error(host(yd), b), kTolF32), kTolF32) << "rmsnorm in place " << what;
      }
      {
        auto yd = dev(x);
        b = x;
        cuda::l2norm_rows(yd.data(), R, N, 0.3f);
        ref::l2norm_rows(b.data(), R, N, 0.3f);
        EXPECT_LT(record("l2norm_rows", normalized_error(host(yd), b), kTolF32), kTolF32) << "l2norm " << what;
      }
      std::vector<float> gate = random_vector(rng, x.size(), -8, 8);
      auto gated = dev(gate);
      {
        auto od = poisoned(x.size());
        cuda::silu_mul(gated.data(), xd.data(), int64_t(x.size()), od.data());
        ref::silu_mul(gate.data(), x.data(), int64_t(x.size()), b.data());
        EXPECT_LT(record("silu_mul", normalized_error(host(od), b), kTolF32), kTolF32) << "silu_mul " << what;
        auto gd2 = dev(gate);  // out aliases gate
        cuda::silu_mul(gd2.data(), xd.data(), int64_t(x.size()), gd2.data());
        EXPECT_LT(record("silu_mul", normalized_error(host(gd2), b), kTolF32), kTolF32) << "silu_mul in place " << what;
      }
      {
        auto yd = dev(gate);
        b = gate;
        cuda::silu(yd.data(), int64_t(b.size()));
        ref::silu(b.data(), int64_t(b.size()));
        EXPECT_LT(record("silu", normalized_error(host(yd), b), kTolF32), kTolF32) << "silu " << what;
      }
      {
        auto yd = dev(gate);
        b = gate;
        cuda::add(yd.data(), xd.data(), int64_t(b.size()));
        ref::add(b.data(), x.data(), int64_t(b.size()));
        EXPECT_LT(record("add", normalized_error(host(yd), b), kTolF32), kTolF32) << "add " << what;
      }
      for (int64_t H : {1, 3}) {  // gated_rmsnorm over T = R tokens of H heads of dv = N
        std::vector<float> o = random_vector(rng, size_t(R * H * N)), gt = random_vector(rng, o.size(), -6, 6);
        auto od = dev(o), gtd = dev(gt);
        cuda::gated_rmsnorm(od.data(), gtd.data(), R, H, N, wd.data(), 1e-5f);
        ref::gated_rmsnorm(o.data(), gt.data(), R, H, N, w.data(), 1e-5f);
        EXPECT_LT(record("gated_rmsnorm", normalized_error(host(od), o), kTolF32), kTolF32) << "gated_rmsnorm H=" << H << " " << what;
      }
    }
  for (int64_t T : {1, 10, 333})
    for (int64_t H : {1, 3, 12}) {
      std::vector<float> b_raw = random_vector(rng, size_t(T * H), -30, 30), a_raw = random_vector(rng, size_t(T * H), -30, 30);
      std::vector<float> A_log = random_vector(rng, size_t(H), -4, 4), dt_bias = random_vector(rng, size_t(H), -5, 5);
      std::vector<float> beta(size_t(T * H)), g(size_t(T * H));
      auto brd = dev(b_raw), ard = dev(a_raw), ald = dev(A_log), dtd = dev(dt_bias);
      auto betad = poisoned(beta.size()), gd = poisoned(g.size());
      cuda::jet_gates(brd.data(), ard.data(), ald.data(), dtd.data(), T, H, betad.data(), gd.data());
      ref::jet_gates(b_raw.data(), a_raw.data(), A_log.data(), dt_bias.data(), T, H, beta.data(), g.data());
      EXPECT_LT(record("jet_gates beta", normalized_error(host(betad), beta), kTolF32), kTolF32) << "jet_gates beta T=" << T << " H=" << H;
      EXPECT_LT(record("jet_gates g", normalized_error(host(gd), g), kTolF32), kTolF32) << "jet_gates g T=" << T << " H=" << H;
    }
}

TEST_F(CudaOps, Rope) {
  std::mt19937 rng(4);
  for (int64_t hd : {2, 20, 24, 128})
    for (int64_t pos0 : {0, 5, 100000, 262000})
      for (int64_t T : {1, 7, 65}) {
        std::vector<float> a = random_vector(rng, size_t(T * 3 * hd)), b = a;
        auto ad = dev(a);
        cuda::rope(ad.data(), T, 3, hd, pos0, 1e6);
        ref::rope(b.data(), T, 3, hd, pos0, 1e6);
        EXPECT_LT(record("rope", normalized_error(host(ad), b), kTolF32), kTolF32) << "hd=" << hd << " pos0=" << pos0 << " T=" << T;
      }
}

TEST_F(CudaOps, Attention) {
  std::mt19937 rng(5);
  struct Case { int64_t T, S, Hq, Hkv, hd, qpos0, kpos0, window; };
  const Case cases[] = {
      {1, 1, 1, 1, 8, 0, 0, 0},        {5, 5, 4, 2, 24, 0, 0, 0},       {3, 40, 6, 2, 20, 37, 0, 0},
      {17, 17, 4, 1, 24, 0, 0, 7},     {9, 15, 4, 2, 24, 20, 14, 7},    {1, 7, 12, 2, 128, 99, 93, 7},
      {64, 70, 8, 8, 33, 6, 0, 0},     {10, 12, 4, 4, 16, 2, 0, 1},     {65, 65, 12, 2, 128, 0, 0, 0},
      {200, 200, 12, 2, 128, 0, 0, 0}, {200, 260, 6, 6, 20, 60, 0, 50}, {64, 64, 2, 1, 96, 0, 0, 33},
      {7, 300, 12, 2, 128, 293, 0, 0}, {1, 5000, 12, 2, 128, 4999, 0, 0}, {1, 3000, 12, 2, 128, 5000, 2001, 1152},
      {1, 2048, 16, 2, 256, 2047, 0, 0}, {130, 130, 3, 1, 200, 0, 0, 0}, {1, 9000, 2, 2, 64, 9000, 1, 0},
  };
  for (const Case& c : cases) {
    std::vector<float> q = random_vector(rng, size_t(c.T * c.Hq * c.hd), -2, 2);
    std::vector<float> k = random_vector(rng, size_t(c.S * c.Hkv * c.hd), -2, 2);
    std::vector<float> v = random_vector(rng, size_t(c.S * c.Hkv * c.hd));
    std::vector<float> b(q.size());
    auto qd = dev(q), kd = dev(k), vd = dev(v);
    auto od = poisoned(q.size());
    cuda::attention(qd.data(), kd.data(), vd.data(), c.T, c.S, c.Hq, c.Hkv, c.hd, c.qpos0, c.kpos0, c.window, od.data());
    ref::attention(q.data(), k.data(), v.data(), c.T, c.S, c.Hq, c.Hkv, c.hd, c.qpos0, c.kpos0, c.window, b.data());
    EXPECT_LT(record(c.T == 1 ? "attention decode" : "attention", normalized_error(host(od), b), kTolAcc), kTolAcc)
        << "T=" << c.T << " S=" << c.S << " Hq=" << c.Hq << " Hkv=" << c.Hkv << " hd=" << c.hd << " qpos0=" << c.qpos0
        << " kpos0=" << c.kpos0 << " window=" << c.window;
  }
}

TEST_F(CudaOps, DynamicConv) {
  std::mt19937 rng(6);
  for (int64_t K : {1, 2, 4})
    for (int64_t C : {1, 13, 108, 3072})
      for (int64_t T : {1, 2, 3, 9, 64}) {
        std::vector<float> u = random_vector(rng, size_t(T * C)), ker = random_vector(rng, size_t(T * C * K));
        std::vector<float> s = random_vector(rng, size_t(std::max<int64_t>(K - 1, 1) * C));
        std::vector<float> b(size_t(T * C));
        auto ud = dev(u), kd = dev(ker), sd = dev(s);
        auto vd = poisoned(size_t(T * C));
        cuda::dconv(ud.data(), kd.data(), T, C, K, sd.data(), vd.data());
        ref::dconv(u.data(), ker.data(), T, C, K, s.data(), b.data());
        const std::string what = "K=" + std::to_string(K) + " C=" + std::to_string(C) + " T=" + std::to_string(T);
        EXPECT_LT(record("dconv", normalized_error(host(vd), b), kTolF32), kTolF32) << what;
        EXPECT_EQ(host(sd), s) << "state " << what;
      }
}

using test::GdnInputs;
using test::gdn_inputs;

TEST_F(CudaOps, GatedDeltaRule) {
  std::mt19937 rng(7);
  struct Case { int64_t T, H, dk, dv; bool strong; };
  const Case cases[] = {
      {1, 1, 4, 4, false},     {1, 3, 24, 36, false},    {7, 2, 24, 36, true},     {63, 2, 24, 36, false},
      {64, 2, 24, 36, true},   {65, 3, 24, 36, false},   {150, 3, 24, 36, true},   {130, 2, 32, 64, false},
      {200, 1, 13, 7, true},   {1, 12, 96, 256, false},  {64, 2, 96, 256, true},   {200, 2, 96, 256, false},
      {65, 1, 128, 256, true}, {129, 2, 256, 40, false}, {33, 1, 300, 20, false},  {200, 12, 96, 256, true},
  };
  for (const Case& c : cases) {
    GdnInputs in = gdn_inputs(rng, c.T, c.H, c.dk, c.dv, c.strong);
    std::vector<float> S_ref = in.S, o_ref(size_t(c.T * c.H * c.dv));
    ref::gdn_recurrent(in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), c.T, c.H, c.dk, c.dv,
                       S_ref.data(), o_ref.data());
    auto qd = dev(in.q), kd = dev(in.k), vd = dev(in.v), gd = dev(in.g), bd = dev(in.beta);
    const std::string what = "T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) + " dk=" + std::to_string(c.dk) +
                             " dv=" + std::to_string(c.dv) + (c.strong ? " strong" : "");
    for (bool chunked : {false, true}) {
      auto Sd = dev(in.S);
      auto od = poisoned(o_ref.size());
      if (chunked)
        cuda::gdn_chunked(qd.data(), kd.data(), vd.data(), gd.data(), bd.data(), c.T, c.H, c.dk, c.dv, Sd.data(), od.data());
      else
        cuda::gdn_recurrent(qd.data(), kd.data(), vd.data(), gd.data(), bd.data(), c.T, c.H, c.dk, c.dv, Sd.data(), od.data());
      const char* form = chunked ? "chunked" : "recurrent";
      EXPECT_LT(record(std::string("gdn_") + form + " o", normalized_error(host(od), o_ref), kTolAcc), kTolAcc) << form << " o " << what;
      EXPECT_LT(record(std::string("gdn_") + form + " S", normalized_error(host(Sd), S_ref), kTolAcc), kTolAcc) << form << " S " << what;
    }
  }
}

// Prefill in chunks then decode token by token equals one pass (the engine's usage).
TEST_F(CudaOps, GatedDeltaRulePrefillThenDecode) {
  std::mt19937 rng(8);
  const int64_t T = 150, H = 3, dk = 96, dv = 256, T1 = 100;
  GdnInputs in = gdn_inputs(rng, T, H, dk, dv, true);
  std::vector<float> S_ref = in.S, o_ref(size_t(T * H * dv));
  ref::gdn_recurrent(in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), T, H, dk, dv, S_ref.data(),
                     o_ref.data());
  auto qd = dev(in.q), kd = dev(in.k), vd = dev(in.v), gd = dev(in.g), bd = dev(in.beta), Sd = dev(in.S);
  auto od = poisoned(o_ref.size());
  cuda::gdn_chunked(qd.data(), kd.data(), vd.data(), gd.data(), bd.data(), T1, H, dk, dv, Sd.data(), od.data());
  for (int64_t t = T1; t < T; ++t)
    cuda::gdn_recurrent(qd.data() + t * H * dk, kd.data() + t * H * dk, vd.data() + t * H * dv, gd.data() + t * H,
                        bd.data() + t * H, 1, H, dk, dv, Sd.data(), od.data() + t * H * dv);
  EXPECT_LT(record("gdn prefill+decode o", normalized_error(host(od), o_ref), kTolAcc), kTolAcc);
  EXPECT_LT(record("gdn prefill+decode S", normalized_error(host(Sd), S_ref), kTolAcc), kTolAcc);
}

TEST(CudaDevice, MissingDeviceIsAClearError) {
  std::string why;
  if (cuda::available(&why)) {
    EXPECT_NO_THROW(cuda::require_device());
    std::printf("device: %s\n", cuda::device_description().c_str());
  } else {
    EXPECT_NE(why.find("no CUDA device"), std::string::npos) << why;
    EXPECT_THROW(cuda::require_device(), Error);
  }
}

}  // namespace
}  // namespace jetlm
