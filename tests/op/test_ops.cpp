// Op harness: every cpu:: op against its ref:: oracle on random inputs of many shapes
// (odd sizes, non-multiples of the vector width, GQA ratios, windows, chunk boundaries).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "backend/cpu/gemm_kernels.h"
#include "backend/ops.h"
#include "backend/quantize.h"
#include "core/dtype.h"
#include "gdn_inputs.h"
#include "test_util.h"

namespace jetlm {
namespace {

using test::normalized_error;
using test::random_vector;

constexpr double kTol = 2e-5;  // float32 kernels against float64 references

struct StoredMatrix {
  std::vector<uint16_t> half;
  std::vector<float> full;
  Matrix view;
};

StoredMatrix make_matrix(std::mt19937& rng, int64_t rows, int64_t cols, DType dtype) {
  StoredMatrix m;
  std::vector<float> values = random_vector(rng, size_t(rows * cols));
  if (dtype == DType::F32) {
    m.full = values;
    m.view = Matrix{m.full.data(), dtype, rows, cols};
  } else {
    for (float x : values) m.half.push_back(dtype == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x));
    m.view = Matrix{m.half.data(), dtype, rows, cols};
  }
  return m;
}

// Runs `body` once per instruction-set level this CPU has (portable, AVX2, AVX-512, AVX512-BF16),
// with the kernels limited to it, and restores the full level after.
template <class Body>
void for_each_isa(Body body) {
  const cpu::Isa top = cpu::detected_isa();
  for (int level = 0; level <= int(top); ++level) {
    cpu::set_max_isa(cpu::Isa(level));
    ASSERT_EQ(cpu::active_isa(), cpu::Isa(level));
    SCOPED_TRACE(cpu::isa_name(cpu::Isa(level)));
    body(cpu::Isa(level));
  }
  cpu::set_max_isa(std::min(top, cpu::Isa::Avx512));  // the default: bf16 activations only when asked
}

TEST(Ops, Matmul) {
  std::printf("  CPU instruction sets: detected %s\n", cpu::isa_name(cpu::detected_isa()));
  EXPECT_LE(cpu::active_isa(), cpu::Isa::Avx512);  // AVX512-BF16 is opt-in
  for_each_isa([](cpu::Isa isa) {
    std::mt19937 rng(1);
    for (DType dtype : {DType::F32, DType::BF16, DType::F16})
      for (int64_t T : {1, 2, 3, 4, 5, 8, 9, 13, 17, 30, 64})
        for (auto [rows, cols] :
             {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {33, 95}, {108, 96}, {257, 130}, {70, 301}, {48, 600},
              {9, 8963}}) {
          StoredMatrix W = make_matrix(rng, rows, cols, dtype);
          std::vector<float> x = random_vector(rng, size_t(T * cols)), bias = random_vector(rng, size_t(rows));
          // With AVX512-BF16, bf16-weight prefill rounds the activations to bf16 (vdpbf16ps): it must
          // equal the exact product of the rounded activations, and stay near the unrounded one.
          const bool bf16_activations = isa == cpu::Isa::Avx512Bf16 && dtype == DType::BF16 && T > 8;
          std::vector<float> x_used = x;
          if (bf16_activations)
            for (float& v : x_used) v = bf16_to_f32(f32_to_bf16(v));
          std::vector<float> a(size_t(T * rows)), b(size_t(T * rows));
          for (const float* bias_ptr : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
            cpu::matmul(x.data(), T, W.view, bias_ptr, a.data());
            ref::matmul(x_used.data(), T, W.view, bias_ptr, b.data());
            EXPECT_LT(normalized_error(a, b), kTol) << dtype_name(dtype) << " T=" << T << " " << rows << "x" << cols;
            if (bf16_activations) {
              ref::matmul(x.data(), T, W.view, bias_ptr, b.data());
              EXPECT_LT(normalized_error(a, b), 1e-2) << "vs f32 activations, T=" << T << " " << rows << "x" << cols;
            }
          }
        }
  });
}

// Single-token bf16 decode: the hand-written AVX2 dot product gives the bits of the compiler's
// build of the portable loop for this CPU (x86-64-v3 or -v4: the same lanes, order and fused
// multiply-adds), which the portable level runs.
TEST(Ops, Bf16DecodeDotIsBitEqualAcrossIsaLevels) {
  if (cpu::detected_isa() < cpu::Isa::Avx2) GTEST_SKIP() << "needs AVX2";
  std::mt19937 rng(9);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {7, 31}, {33, 32}, {65, 95}, {40, 1536}, {9, 8963},
                            {8, 4097}, {17, 8960}, {3, 5000}}) {
    StoredMatrix W = make_matrix(rng, rows, cols, DType::BF16);
    std::vector<float> x = random_vector(rng, size_t(cols)), bias = random_vector(rng, size_t(rows));
    std::vector<float> portable(static_cast<size_t>(rows)), avx2(portable.size()), expected(portable.size());
    cpu::set_max_isa(cpu::Isa::Portable);
    cpu::matmul(x.data(), 1, W.view, bias.data(), portable.data());
    cpu::set_max_isa(cpu::Isa::Avx2);
    cpu::matmul(x.data(), 1, W.view, bias.data(), avx2.data());
    ref::matmul(x.data(), 1, W.view, bias.data(), expected.data());
    // Rows longer than 4096 take the eight-row AVX2 kernel, which sums in another order.
    if (cols <= 4096) {
      EXPECT_EQ(0, std::memcmp(portable.data(), avx2.data(), portable.size() * sizeof(float))) << rows << "x" << cols;
    }
    EXPECT_LT(normalized_error(avx2, expected), kTol) << rows << "x" << cols;
    EXPECT_LT(normalized_error(portable, expected), kTol) << rows << "x" << cols;
  }
  cpu::set_max_isa(std::min(cpu::detected_isa(), cpu::Isa::Avx512));  // the default level
}

// Single-token GEMVs split their rows over the threads in shares that idle threads take chunks
// from: every row is computed exactly once (outputs poisoned with NaN first), for 2 and 3 threads,
// short rows, long rows (eight-row blocks) and q8, with rows left over at the end.
TEST(Ops, SingleTokenGemvWritesEveryRowOnceAcrossThreads) {
  std::mt19937 rng(21);
  const int saved = cpu::num_threads();
  for (int threads : {2, 3}) {
    cpu::set_num_threads(threads);
    for (DType dtype : {DType::BF16, DType::F32, DType::I8})
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2501, 1536}, {1003, 8960}, {4099, 96}}) {
        StoredMatrix W = make_matrix(rng, rows, cols, dtype == DType::I8 ? DType::BF16 : dtype);
        WeightStorage storage;
        const Matrix view = dtype == DType::I8 ? quantize_matrix_q8(W.view, storage) : W.view;
        std::vector<float> x = random_vector(rng, size_t(cols)), bias = random_vector(rng, size_t(rows));
        std::vector<float> y(static_cast<size_t>(rows), std::nanf("")), expected(y.size());
        cpu::matmul(x.data(), 1, view, bias.data(), y.data());
        ref::matmul(x.data(), 1, view, bias.data(), expected.data());
        EXPECT_LT(normalized_error(y, expected), dtype == DType::I8 ? 2e-2 : kTol)
            << threads << " threads, " << dtype_name(dtype) << " " << rows << "x" << cols;
      }
  }
  cpu::set_num_threads(saved);
}

// The FMA peak probe runs at the widest active ISA; the bf16 peak only with AVX512-BF16.
TEST(Ops, PeakProbes) {
  for_each_isa([](cpu::Isa isa) {
    const double fma = cpu::fma_peak_gflops(), bf16 = cpu::bf16_dot_peak_gflops();
    std::printf("  %s: fp32 FMA peak %.1f GFLOP/s, bf16 dot peak %.1f GFLOP/s (%d threads)\n", cpu::isa_name(isa), fma,
                bf16, cpu::num_threads());
    if (isa == cpu::Isa::Portable) EXPECT_EQ(fma, 0.0);
    else EXPECT_GT(fma, 0.0);
    if (isa == cpu::Isa::Avx512Bf16) EXPECT_GT(bf16, 0.0);
    else EXPECT_EQ(bf16, 0.0);
  });
}

// The bandwidth probe's read: the same sum with and without software prefetch (the same lanes in
// the same order), and the sum of the input, for lengths around its 64K-float blocks and lanes.
TEST(Ops, ReadAllSumsTheSameWithPrefetch) {
  std::mt19937 rng(11);
  for (int64_t n : {int64_t(1), int64_t(31), int64_t(33), int64_t(65536), int64_t(65536 * 3 + 17)}) {
    SCOPED_TRACE(n);
    const std::vector<float> x = random_vector(rng, size_t(n));
    double expected = 0, magnitude = 0;
    for (float v : x) expected += v, magnitude += std::fabs(v);
    const double plain = cpu::read_all(x.data(), n);
    for (int64_t ahead : {int64_t(64), int64_t(1024), int64_t(2560)}) EXPECT_EQ(cpu::read_all(x.data(), n, ahead), plain);
    EXPECT_NEAR(plain, expected, 1e-5 * magnitude);
  }
}

// q8: each weight's rounding error is at most half its block's scale, and the round trip keeps
// the scale as stored.
TEST(Quantize, RoundTripErrorIsBoundedByHalfAStep) {
  std::mt19937 rng(7);
  for (int64_t n : {1, 31, 32, 33, 96, 200}) {
    std::vector<float> x = random_vector(rng, size_t(n), -3.0f, 3.0f);
    if (n > 40) x[5] = 0.0f, x[17] = 1e-9f;  // zeros and tiny values inside a block
    std::vector<int8_t> q(static_cast<size_t>(n));
    std::vector<uint16_t> scales(size_t(q8_blocks(n)));
    quantize_row_q8(x.data(), n, q.data(), scales.data());
    std::vector<float> back(static_cast<size_t>(n));
    dequantize_row_q8(q.data(), scales.data(), n, back.data());
    for (int64_t i = 0; i < n; ++i) {
      const float scale = f16_to_f32(scales[size_t(i / kQ8Block)]);
      EXPECT_LE(std::fabs(back[size_t(i)] - x[size_t(i)]), 0.5f * scale * 1.001f + 1e-12f) << "n=" << n << " i=" << i;
      EXPECT_LE(std::abs(int(q[size_t(i)])), 127);
    }
  }
  std::vector<float> zeros(64, 0.0f);  // an all-zero block quantizes to zeros, not NaN
  std::vector<int8_t> q(64);
  std::vector<uint16_t> scales(2);
  quantize_row_q8(zeros.data(), 64, q.data(), scales.data());
  for (int8_t v : q) EXPECT_EQ(v, 0);
}

// cpu::matmul on q8 weights against the float64 product of the dequantized weights. Prefill uses
// the exact dequantized weights; decode (T = 1) also quantizes the activation to int8 per block,
// which adds at most ~1/254 relative error per block.
TEST(Ops, MatmulQ8) {
 for_each_isa([](cpu::Isa isa) {
  std::mt19937 rng(8);
  WeightStorage storage;
  for (int64_t T : {1, 2, 5, 8, 9, 64})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {33, 95}, {108, 96}, {257, 130}, {64, 1536}}) {
      StoredMatrix W = make_matrix(rng, rows, cols, DType::BF16);
      const Matrix Wq = quantize_matrix_q8(W.view, storage);
      std::vector<float> x = random_vector(rng, size_t(T * cols)), bias = random_vector(rng, size_t(rows));
      std::vector<float> a(size_t(T * rows)), b(size_t(T * rows));
      cpu::matmul(x.data(), T, Wq, bias.data(), a.data());
      ref::matmul(x.data(), T, Wq, bias.data(), b.data());
      // Up to 8 rows take the integer GEMV (activations quantized per block too), each row exactly
      // as a one-row call; more rows the exact dequantized product.
      const bool integer_gemv = T <= 8 && isa >= cpu::Isa::Avx2;
      EXPECT_LT(normalized_error(a, b), integer_gemv ? 2e-2 : kTol) << "T=" << T << " " << rows << "x" << cols;
      if (integer_gemv && T > 1)
        for (int64_t t = 0; t < T; ++t) {
          std::vector<float> one(static_cast<size_t>(rows));
          cpu::matmul(x.data() + t * cols, 1, Wq, bias.data(), one.data());
          EXPECT_TRUE(std::equal(one.begin(), one.end(), a.begin() + t * rows)) << "row " << t << " of T=" << T;
        }
      // And close to the unquantized product (8-bit weights: about 1% of the output scale).
      ref::matmul(x.data(), T, W.view, bias.data(), b.data());
      EXPECT_LT(normalized_error(a, b), 3e-2) << "vs bf16, T=" << T << " " << rows << "x" << cols;
    }
 });
}

// The AVX2 activation quantizer (vector form for whole blocks) against the plain statement of
// its contract, bit for bit: per block of 32, scale = amax / 127 and q = lrint(x * (127 / amax)),
// ties to even. Ties are forced (blocks whose amax is 127, so x * inv = x exactly, holding k + 0.5
// values), as are an all-zero block, blocks of one sign, and partial last blocks.
TEST(Ops, Q8ActivationQuantizerMatchesItsContract) {
  if (cpu::detected_isa() < cpu::Isa::Avx2) GTEST_SKIP() << "needs AVX2";
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> uni(-3.0f, 3.0f);
  for (int64_t K : {1, 31, 32, 33, 64, 100, 1536, 8963}) {
    const int64_t blocks = q8_blocks(K);
    std::vector<float> x(static_cast<size_t>(K));
    for (float& v : x) v = uni(rng);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * 32, end = std::min(K, begin + 32);
      if (b % 4 == 1) {  // ties: amax 127 makes inv exactly 1
        for (int64_t i = begin; i < end; ++i) x[size_t(i)] = float(int(rng() % 200) - 100) + 0.5f;
        x[size_t(begin)] = 127.0f;
      } else if (b % 4 == 2) {
        for (int64_t i = begin; i < end; ++i) x[size_t(i)] = 0.0f;
      } else if (b % 4 == 3) {
        for (int64_t i = begin; i < end; ++i) x[size_t(i)] = std::fabs(x[size_t(i)]) * 1e-3f;
      }
    }
    std::vector<int8_t> xq(static_cast<size_t>(K)), expected_q(xq.size());
    std::vector<float> scales(static_cast<size_t>(blocks)), expected_scales(scales.size());
    cpu::kernels::quantize_activation_q8_avx2(x.data(), K, xq.data(), scales.data());
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * 32, end = std::min(K, begin + 32);
      float amax = 0.0f;
      for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[size_t(i)]));
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      expected_scales[size_t(b)] = amax / 127.0f;
      for (int64_t i = begin; i < end; ++i) expected_q[size_t(i)] = int8_t(std::lrint(x[size_t(i)] * inv));
    }
    EXPECT_EQ(xq, expected_q) << "K=" << K;
    EXPECT_EQ(0, std::memcmp(scales.data(), expected_scales.data(), scales.size() * sizeof(float))) << "K=" << K;
  }
}

// The VNNI q8 GEMVs (vpdpbusd) against the AVX2 one (vpmaddubsw + vpmaddwd), bit for bit, on
// raw int8 rows over the whole range (-128 included) and quantized activations with zero blocks:
// lengths below one block, odd and even block counts, partial last blocks, and more than the
// sixteen blocks whose scales the AVX-512 kernel loads at once. Skipped on CPUs without VNNI.
TEST(Ops, Q8GemvIsBitEqualAcrossVnniKernels) {
  if (cpu::detected_isa() < cpu::Isa::Avx2) GTEST_SKIP() << "needs AVX2";
  using Kernel = void (*)(const int8_t*, const uint16_t*, int64_t, int64_t, const int8_t*, const float*,
                          const float*, float*);
  std::vector<std::pair<const char*, Kernel>> vnni;
  if (__builtin_cpu_supports("avxvnni")) vnni.emplace_back("avxvnni", cpu::kernels::gemv_q8_avxvnni);
  if (cpu::detected_isa() >= cpu::Isa::Avx512 && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    vnni.emplace_back("avx512vnni", cpu::kernels::gemv_q8_avx512vnni);
  if (vnni.empty()) GTEST_SKIP() << "no VNNI on this CPU (q8 GEMV kernel: " << cpu::q8_gemv_kernel_name() << ")";
  std::mt19937 rng(31);
  std::uniform_int_distribution<int> byte(-128, 127);
  for (auto [rows, K] : {std::pair<int64_t, int64_t>{3, 7}, {5, 32}, {4, 64}, {7, 96}, {9, 100}, {6, 544},
                         {5, 1056}, {3, 1536}, {2, 8960}, {2, 8963}}) {
    const int64_t blocks = q8_blocks(K);
    std::vector<int8_t> W(static_cast<size_t>(rows * K));
    for (int8_t& w : W) w = int8_t(byte(rng));
    std::vector<uint16_t> w_scales(static_cast<size_t>(rows * blocks));
    for (uint16_t& scale : w_scales) scale = f32_to_f16(0.001f + 0.01f * float(std::abs(byte(rng))) / 128.0f);
    std::vector<float> x = random_vector(rng, size_t(K)), bias = random_vector(rng, size_t(rows));
    std::fill(x.begin(), x.begin() + std::min<int64_t>(K, 32), 0.0f);  // a block with scale 0
    std::vector<int8_t> xq(static_cast<size_t>(K));
    std::vector<float> x_scales(static_cast<size_t>(blocks));
    cpu::kernels::quantize_activation_q8_avx2(x.data(), K, xq.data(), x_scales.data());
    std::vector<float> expected(static_cast<size_t>(rows)), y(static_cast<size_t>(rows));
    cpu::kernels::gemv_q8_avx2(W.data(), w_scales.data(), rows, K, xq.data(), x_scales.data(), bias.data(),
                               expected.data());
    for (auto [name, kernel] : vnni) {
      std::fill(y.begin(), y.end(), std::nanf(""));
      kernel(W.data(), w_scales.data(), rows, K, xq.data(), x_scales.data(), bias.data(), y.data());
      EXPECT_EQ(0, std::memcmp(y.data(), expected.data(), y.size() * sizeof(float))) << name << " " << rows << "x" << K;
    }
  }
  // Through cpu::matmul the AVX-512 level takes the AVX512-VNNI kernel where there is one.
  cpu::set_max_isa(cpu::Isa::Avx512);
  EXPECT_STREQ(cpu::q8_gemv_kernel_name(), vnni.back().first);
  cpu::set_max_isa(std::min(cpu::detected_isa(), cpu::Isa::Avx512));
}

TEST(Ops, EmbeddingNormsAndElementwise) {
  std::mt19937 rng(2);
  for (int64_t N : {1, 7, 24, 96, 131}) {
    const int64_t R = 5;
    std::vector<float> x = random_vector(rng, size_t(R * N)), w = random_vector(rng, size_t(N), 0.5f, 1.5f);
    std::vector<float> a(x.size()), b(x.size());
    cpu::rmsnorm(x.data(), R, N, w.data(), 1e-6f, a.data());
    ref::rmsnorm(x.data(), R, N, w.data(), 1e-6f, b.data());
    EXPECT_LT(normalized_error(a, b), kTol) << "rmsnorm N=" << N;
    a = x;
    b = x;
    cpu::l2norm_rows(a.data(), R, N, 0.3f);
    ref::l2norm_rows(b.data(), R, N, 0.3f);
    EXPECT_LT(normalized_error(a, b), kTol) << "l2norm N=" << N;
    std::vector<float> gate = random_vector(rng, x.size(), -6, 6);
    cpu::silu_mul(gate.data(), x.data(), int64_t(x.size()), a.data());
    ref::silu_mul(gate.data(), x.data(), int64_t(x.size()), b.data());
    EXPECT_LT(normalized_error(a, b), kTol) << "silu_mul";
    std::vector<float> o1 = random_vector(rng, size_t(R * N)), o2 = o1;
    cpu::gated_rmsnorm(o1.data(), gate.data(), R, 1, N, w.data(), 1e-5f);
    ref::gated_rmsnorm(o2.data(), gate.data(), R, 1, N, w.data(), 1e-5f);
    EXPECT_LT(normalized_error(o1, o2), kTol) << "gated_rmsnorm";
  }
  StoredMatrix E = make_matrix(rng, 50, 33, DType::BF16);
  const int32_t ids[] = {0, 49, 7, 7};
  std::vector<float> a(4 * 33), b(4 * 33);
  cpu::embedding(ids, 4, E.view, a.data());
  ref::embedding(ids, 4, E.view, b.data());
  EXPECT_EQ(a, b);
  std::vector<float> b_raw = random_vector(rng, 30, -30, 30), a_raw = random_vector(rng, 30, -30, 30);
  std::vector<float> A_log = random_vector(rng, 3, -4, 4), dt_bias = random_vector(rng, 3, -5, 5);
  std::vector<float> beta1(30), beta2(30), g1(30), g2(30);
  cpu::jet_gates(b_raw.data(), a_raw.data(), A_log.data(), dt_bias.data(), 10, 3, beta1.data(), g1.data());
  ref::jet_gates(b_raw.data(), a_raw.data(), A_log.data(), dt_bias.data(), 10, 3, beta2.data(), g2.data());
  EXPECT_LT(normalized_error(beta1, beta2), kTol);
  EXPECT_LT(normalized_error(g1, g2), kTol);
}

TEST(Ops, Rope) {
  std::mt19937 rng(3);
  for (int64_t hd : {2, 20, 24, 128})
    for (int64_t pos0 : {0, 5, 100000, 262000}) {
      std::vector<float> a = random_vector(rng, size_t(7 * 3 * hd)), b = a;
      cpu::rope(a.data(), 7, 3, hd, pos0, 1e6);
      ref::rope(b.data(), 7, 3, hd, pos0, 1e6);
      EXPECT_LT(normalized_error(a, b), kTol) << "hd=" << hd << " pos0=" << pos0;
    }
}

TEST(Ops, Attention) {
  std::mt19937 rng(4);
  struct Case { int64_t T, S, Hq, Hkv, hd, qpos0, kpos0, window; };
  const Case cases[] = {
      {1, 1, 1, 1, 8, 0, 0, 0},      {5, 5, 4, 2, 24, 0, 0, 0},     {3, 40, 6, 2, 20, 37, 0, 0},
      {17, 17, 4, 1, 24, 0, 0, 7},   {9, 15, 4, 2, 24, 20, 14, 7},  {1, 7, 12, 2, 128, 99, 93, 7},
      {64, 70, 8, 8, 33, 6, 0, 0},   {10, 12, 4, 4, 16, 2, 0, 1},
      // decode path (T <= 4): key ranges split into chunks of 256 and merged
      {1, 1000, 12, 2, 128, 999, 0, 0}, {2, 700, 6, 1, 20, 698, 0, 300}, {4, 600, 8, 2, 24, 596, 0, 0},
      {3, 513, 4, 4, 36, 1000, 490, 0},
      // prefill in several query blocks (the partial results of a block are capped near 8 MB)
      {200, 520, 32, 32, 128, 320, 0, 0}, {200, 520, 32, 32, 128, 320, 0, 150},
  };
  for_each_isa([&](cpu::Isa) {
  for (const Case& c : cases) {
    std::vector<float> q = random_vector(rng, size_t(c.T * c.Hq * c.hd), -2, 2);
    std::vector<float> k = random_vector(rng, size_t(c.S * c.Hkv * c.hd), -2, 2);
    std::vector<float> v = random_vector(rng, size_t(c.S * c.Hkv * c.hd));
    std::vector<float> a(q.size()), b(q.size());
    cpu::attention(q.data(), k.data(), v.data(), c.T, c.S, c.Hq, c.Hkv, c.hd, c.qpos0, c.kpos0, c.window, a.data());
    ref::attention(q.data(), k.data(), v.data(), c.T, c.S, c.Hq, c.Hkv, c.hd, c.qpos0, c.kpos0, c.window, b.data());
    EXPECT_LT(normalized_error(a, b), kTol) << "T=" << c.T << " S=" << c.S << " window=" << c.window;
  }
  });
}

TEST(Ops, BadIsaVariableIsNamed) {
  ::setenv("JETLM_CPU_ISA", "avx9000", 1);
  const test::CliResult r = test::run_cli("info jet-nemotron-2b");
  ::unsetenv("JETLM_CPU_ISA");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("JETLM_CPU_ISA"), std::string::npos) << r.err;
  ::setenv("JETLM_CPU_ISA", "portable", 1);
  const test::CliResult ok = test::run_cli("info jet-nemotron-2b");
  ::unsetenv("JETLM_CPU_ISA");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST(Ops, DynamicConv) {
  std::mt19937 rng(5);
  for (int64_t K : {2, 4})
    for (int64_t C : {1, 13, 108})
      for (int64_t T : {1, 2, 9}) {
        std::vector<float> u = random_vector(rng, size_t(T * C)), ker = random_vector(rng, size_t(T * C * K));
        std::vector<float> s1 = random_vector(rng, size_t((K - 1) * C)), s2 = s1;
        std::vector<float> a(size_t(T * C)), b(size_t(T * C));
        cpu::dconv(u.data(), ker.data(), T, C, K, s1.data(), a.data());
        ref::dconv(u.data(), ker.data(), T, C, K, s2.data(), b.data());
        EXPECT_LT(normalized_error(a, b), kTol) << "K=" << K << " C=" << C << " T=" << T;
        EXPECT_EQ(s1, s2);
      }
}

using test::GdnInputs;
using test::gdn_inputs;

TEST(Ops, GatedDeltaRule) {
  std::mt19937 rng(6);
  struct Case { int64_t T, H, dk, dv; bool strong; };
  const Case cases[] = {{1, 1, 4, 4, false},    {1, 3, 24, 36, false},   {63, 2, 24, 36, false},
                        {64, 2, 24, 36, true},  {65, 3, 24, 36, false},  {150, 3, 24, 36, true},
                        {130, 2, 32, 64, false}, {200, 1, 13, 7, true}};
  for (const Case& c : cases) {
    GdnInputs in = gdn_inputs(rng, c.T, c.H, c.dk, c.dv, c.strong);
    std::vector<float> S_ref = in.S, S_rec = in.S, S_chunk = in.S;
    std::vector<float> o_ref(size_t(c.T * c.H * c.dv)), o_rec = o_ref, o_chunk = o_ref;
    ref::gdn_recurrent(in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), c.T, c.H, c.dk, c.dv, S_ref.data(), o_ref.data());
    cpu::gdn_recurrent(in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), c.T, c.H, c.dk, c.dv, S_rec.data(), o_rec.data());
    cpu::gdn_chunked(in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), c.T, c.H, c.dk, c.dv, S_chunk.data(), o_chunk.data());
    const std::string what = "T=" + std::to_string(c.T) + " dk=" + std::to_string(c.dk) + (c.strong ? " strong" : "");
    EXPECT_LT(normalized_error(o_rec, o_ref), 1e-4) << "recurrent o " << what;
    EXPECT_LT(normalized_error(S_rec, S_ref), 1e-4) << "recurrent S " << what;
    EXPECT_LT(normalized_error(o_chunk, o_ref), 1e-4) << "chunked o " << what;
    EXPECT_LT(normalized_error(S_chunk, S_ref), 1e-4) << "chunked S " << what;
  }
}

}  // namespace
}  // namespace jetlm
