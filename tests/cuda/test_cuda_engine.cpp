// The GPU engine (CudaModel) against the float64 reference goldens and the CPU engine:
//  - the batched engine ops against their ref:: oracles (paged/ring decode attention, dconv step,
//    gated-delta-rule step, rope at per-row positions) on random inputs;
//  - whole-model logits (prefill in chunks, then decode) within 1e-3 (fp32) / 3e-2 (bf16/f16) of
//    the reference, for every golden case;
//  - a batch of different sequences in scattered slots decodes like each sequence alone on the CPU;
//  - greedy generations of a batch equal one-at-a-time generations and the reference's;
//  - CUDA-graph replay equals direct launches bit for bit; pages are returned on reset;
//  - device sampling: greedy, top-k/top-p/min-p support, and frequencies of the softmax.
// Every test is skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>

#include "backend/cuda/cuda_model.h"
#include "backend/cuda/ops_cuda.h"
#include "backend/ops.h"
#include "core/dtype.h"
#include "gdn_inputs.h"
#include "golden/golden_data.h"
#include "jetlm/model.h"
#include "model/config.h"
#include "model_files.h"
#include "test_util.h"

namespace jetlm {
namespace {

using test::normalized_error;
using test::random_vector;

// A macro, not a function: GTEST_SKIP() returns from the function it is written in.
#define SKIP_WITHOUT_GPU()                               \
  do {                                                   \
    std::string why_;                                    \
    if (!cuda::available(&why_)) GTEST_SKIP() << why_;   \
  } while (0)

template <typename T>
cuda::Buffer<T> dev(const std::vector<T>& v) { return cuda::Buffer<T>(v.data(), v.size()); }
template <typename T>
std::vector<T> host(const cuda::Buffer<T>& b) {
  std::vector<T> v(b.size());
  b.download(v.data(), v.size());
  return v;
}

// A KV pool on the device in `dtype` (F32 or BF16) from float values (already bf16-exact for BF16).
cuda::Buffer<uint8_t> kv_pool(const std::vector<float>& values, DType dtype) {
  if (dtype == DType::F32) {
    cuda::Buffer<uint8_t> b(values.size() * 4);
    cuda::copy_to_device(b.data(), values.data(), values.size() * 4);
    return b;
  }
  std::vector<uint16_t> half(values.size());
  for (size_t i = 0; i < values.size(); ++i) half[i] = f32_to_bf16(values[i]);
  cuda::Buffer<uint8_t> b(half.size() * 2);
  cuda::copy_to_device(b.data(), half.data(), half.size() * 2);
  return b;
}

void round_to_bf16(std::vector<float>& v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
}

// ---- ops --------------------------------------------------------------------------------------------

// Both cache types: float32 (CUDA cores, 1e-5) and bf16, against the reference on the bf16-rounded
// K/V: head dims 64 and 128 run on tensor cores (bf16 q and probabilities, 1e-2), others on CUDA
// cores in float32 (1e-5).
TEST(CudaEngineOps, DecodeAttentionPagedAndRing) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  struct Case { int64_t B, Hq, Hkv, hd, window, page, ring; };
  for (const DType kv_dtype : {DType::F32, DType::BF16})
  for (const Case cs : {Case{3, 4, 2, 16, 0, 4, 0}, Case{5, 12, 2, 128, 0, 16, 0}, Case{2, 6, 6, 64, 0, 1, 0},
                        Case{4, 8, 1, 40, 5, 0, 5}, Case{3, 16, 8, 128, 33, 0, 40}, Case{1, 2, 1, 256, 0, 7, 0},
                        Case{6, 16, 2, 128, 0, 16, 0}, Case{2, 4, 1, 64, 100, 0, 100}}) {
    const bool tc = kv_dtype == DType::BF16 && (cs.hd == 64 || cs.hd == 128);
    const int64_t row = cs.Hkv * cs.hd, context = 300, slots = cs.B + 2;
    std::vector<int32_t> lengths, slot_of;
    for (int64_t b = 0; b < cs.B; ++b) {
      lengths.push_back(int32_t(1 + (b * 97 + 13) % context));
      slot_of.push_back(int32_t(slots - 1 - b));  // scattered, distinct, not in batch order
    }
    // Cache: contiguous per-sequence keys k_seq[b] [len, row]; placed in pages (shuffled) or rings.
    const int64_t pages_per_seq = cs.ring ? 0 : (context + cs.page - 1) / cs.page;
    const int64_t n_rows = cs.ring ? slots * cs.ring : slots * pages_per_seq * cs.page;
    std::vector<float> kpool(size_t(n_rows * row), NAN), vpool(size_t(n_rows * row), NAN);
    std::vector<int32_t> table(size_t(std::max<int64_t>(1, slots * pages_per_seq)));
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
    std::vector<float> q = random_vector(rng, size_t(cs.B * cs.Hq * cs.hd));
    std::vector<float> expected(q.size());
    for (int64_t b = 0; b < cs.B; ++b) {
      const int64_t len = lengths[size_t(b)], slot = slot_of[size_t(b)];
      std::vector<float> ks = random_vector(rng, size_t(len * row), -2, 2), vs = random_vector(rng, size_t(len * row));
      if (kv_dtype == DType::BF16) {
        round_to_bf16(ks);
        round_to_bf16(vs);
      }
      for (int64_t p = 0; p < len; ++p) {
        if (cs.ring && p < len - cs.ring) continue;
        const int64_t r = cs.ring ? slot * cs.ring + p % cs.ring
                                  : int64_t(table[size_t(slot * pages_per_seq + p / cs.page)]) * cs.page + p % cs.page;
        std::copy_n(ks.data() + p * row, row, kpool.data() + r * row);
        std::copy_n(vs.data() + p * row, row, vpool.data() + r * row);
      }
      ref::attention(q.data() + b * cs.Hq * cs.hd, ks.data(), vs.data(), 1, len, cs.Hq, cs.Hkv, cs.hd, len - 1, 0,
                     cs.window, expected.data() + b * cs.Hq * cs.hd);
    }
    auto d_k = kv_pool(kpool, kv_dtype), d_v = kv_pool(vpool, kv_dtype);
    auto d_q = dev(q);
    auto d_table = dev(table), d_len = dev(lengths), d_slots = dev(slot_of);
    cuda::Buffer<float> d_o(q.size());
    cuda::KvLayout L;
    L.k = d_k.data();
    L.v = d_v.data();
    L.dtype = kv_dtype;
    L.row = row;
    L.page_table = d_table.data();
    L.page_size = cs.page;
    L.pages_per_seq = pages_per_seq;
    L.ring = cs.ring;
    for (int splits : {1, 3, cuda::decode_splits(cs.B, cs.Hkv, context, tc)}) {
      cuda::attention_decode(d_q.data(), L, d_slots.data(), d_len.data(), cs.B, cs.Hq, cs.Hkv, cs.hd, cs.window,
                             context, splits, d_o.data());
      const double err = normalized_error(host(d_o), expected);
      EXPECT_LE(err, tc ? 1e-2 : 1e-5) << dtype_name(kv_dtype) << " B " << cs.B << " Hq " << cs.Hq << " Hkv " << cs.Hkv
                                       << " hd " << cs.hd << " splits " << splits;
      if (tc) {
        EXPECT_GE(err, 1e-6) << "bf16 q/probabilities should leave a visible rounding error";
      }
    }
  }
}

// The pool in float32 and in bf16 gives the same output (the kernels round K/V to bf16 themselves),
// within 2e-2 of the reference on the unrounded K/V (bf16 q and probabilities). Head dims 64 and
// 128 run twice: the register kernel (JETLM_ATTN_PREFILL=registers) and the shared-memory-
// accumulator kernel (JETLM_ATTN_PREFILL=wmma), which takes every other head dim. The larger
// cases span several double-buffered key tiles, a window that starts inside a tile, and GQA
// groups that do not divide the 64-row blocks.
TEST(CudaEngineOps, TensorCorePrefillAttentionPagedAndContiguous) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(21);
  // T, pos0 (keys before the chunk), Hq, Hkv, hd, window, page (0: contiguous source)
  struct Case { int64_t T, pos0, Hq, Hkv, hd, window, page; };
  for (const Case cs : {Case{64, 0, 4, 2, 64, 0, 16}, Case{100, 37, 12, 2, 128, 0, 16}, Case{17, 300, 6, 6, 24, 0, 7},
                        Case{130, 0, 16, 8, 128, 0, 0}, Case{70, 50, 8, 1, 40, 33, 0}, Case{200, 0, 3, 3, 96, 0, 64},
                        Case{33, 1000, 4, 2, 128, 129, 0}, Case{300, 700, 12, 2, 128, 0, 16},
                        Case{257, 400, 12, 2, 128, 300, 0}, Case{190, 66, 10, 5, 64, 0, 32}, Case{5, 3, 6, 2, 128, 0, 4}}) {
    const int64_t S = cs.pos0 + cs.T, row = cs.Hkv * cs.hd;
    std::vector<float> q = random_vector(rng, size_t(cs.T * cs.Hq * cs.hd), -2, 2);
    std::vector<float> k = random_vector(rng, size_t(S * row), -2, 2), v = random_vector(rng, size_t(S * row));
    std::vector<float> expected(q.size());
    ref::attention(q.data(), k.data(), v.data(), cs.T, S, cs.Hq, cs.Hkv, cs.hd, cs.pos0, 0, cs.window,
                   expected.data());
    cuda::KvLayout L;
    std::vector<float> kp = k, vp = v;
    std::vector<int32_t> table(1, 0);
    int64_t slot = 0;
    if (cs.page > 0) {  // scatter the keys over shuffled pages of slot 1 of 2
      const int64_t pages = (S + cs.page - 1) / cs.page;
      table.resize(size_t(2 * pages));
      std::iota(table.begin(), table.end(), 0);
      std::shuffle(table.begin(), table.end(), rng);
      kp.assign(size_t(2 * pages * cs.page * row), NAN);
      vp = kp;
      for (int64_t s = 0; s < S; ++s) {
        const int64_t r = int64_t(table[size_t(pages + s / cs.page)]) * cs.page + s % cs.page;
        std::copy_n(k.data() + s * row, row, kp.data() + r * row);
        std::copy_n(v.data() + s * row, row, vp.data() + r * row);
      }
      slot = 1;
      L.page_size = cs.page;
      L.pages_per_seq = pages;
    } else {
      L.ring = S;
    }
    auto dq = dev(q);
    auto dtable = dev(table);
    L.row = row;
    L.page_table = cs.page > 0 ? dtable.data() : nullptr;
    for (const std::string kernel : {"registers", "wmma"}) {
      if (kernel == "wmma" && cs.hd != 64 && cs.hd != 128) continue;  // the only kernel for these
      const bool both = cs.hd == 64 || cs.hd == 128;
      const test::ScopedEnv pick("JETLM_ATTN_PREFILL", both ? kernel.c_str() : nullptr);
      std::vector<float> outputs[2];
      for (const DType kv_dtype : {DType::F32, DType::BF16}) {
        auto dk = kv_pool(kp, kv_dtype), dv = kv_pool(vp, kv_dtype);
        L.k = dk.data();
        L.v = dv.data();
        L.dtype = kv_dtype;
        cuda::Buffer<float> d_o(q.size());
        cuda::attention_prefill_tc(dq.data(), L, slot, cs.T, S, cs.Hq, cs.Hkv, cs.hd, cs.pos0, 0, cs.window,
                                   d_o.data());
        outputs[kv_dtype == DType::BF16] = host(d_o);
      }
      EXPECT_EQ(outputs[0], outputs[1]) << "T " << cs.T << " hd " << cs.hd << " " << kernel;
      const double err = normalized_error(outputs[1], expected);
      EXPECT_LE(err, 2e-2) << "T " << cs.T << " pos0 " << cs.pos0 << " hd " << cs.hd << " window " << cs.window
                           << " " << kernel;
      EXPECT_GE(err, 1e-6) << "bf16 operands should leave a visible rounding error";  // the TC path really ran
      std::printf("  tc attention (%s) T %ld S %ld Hq %ld Hkv %ld hd %ld window %ld: error %.2e\n", kernel.c_str(),
                  long(cs.T), long(S), long(cs.Hq), long(cs.Hkv), long(cs.hd), long(cs.window), err);
    }
  }
}

TEST(CudaEngineOps, TensorCoreChunkedDeltaRuleMatchesReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(31);
  // T, H, dk, dv, strong decay; dk/dv not multiples of 16 take the float32 kernels.
  struct Case { int64_t T, H, dk, dv; bool strong; bool tc; };
  for (const Case cs : {Case{64, 2, 32, 48, false, true}, Case{200, 3, 96, 256, false, true},
                        Case{130, 2, 64, 64, true, true}, Case{1000, 1, 128, 128, false, true},
                        Case{300, 2, 48, 96, true, true}, Case{77, 2, 24, 40, false, false}}) {
    test::GdnInputs in = test::gdn_inputs(rng, cs.T, cs.H, cs.dk, cs.dv, cs.strong);
    std::vector<float> S_exp = in.S, o_exp(static_cast<size_t>(cs.T * cs.H * cs.dv));
    ref::gdn_recurrent(in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), cs.T, cs.H, cs.dk, cs.dv,
                       S_exp.data(), o_exp.data());
    auto dq = dev(in.q), dkk = dev(in.k), dvv = dev(in.v), dg = dev(in.g), db = dev(in.beta);
    // Runs (switch values, defaults otherwise):
    //  0 defaults: output split from the state pass, prep dots on tensor cores, W/U from the
    //    inverse of I + M;
    //  1 JETLM_GDN_SPLIT=0: the output inside the 16-column state pass (same TF32 products in the
    //    same order, so the same bits as 0);
    //  2 JETLM_GDN_PREP_TC=0: the prep kernel's dot products on CUDA cores;
    //  3 JETLM_GDN_PREP_INV=0: W/U by forward substitution per column;
    //  4 JETLM_GDN_STATE_MMA=1: the state pass on raw mma.sync (runs 0-3 take the WMMA pass);
    //  5 as 4, with JETLM_GDN_OUTPUT_MMA=1: the output kernel on raw mma.sync (its state is run 4's);
    //    runs 4 and 5 together are the defaults in use.
    constexpr int kRuns = 6;
    std::vector<float> o_runs[kRuns], S_runs[kRuns];
    for (int run = 0; run < kRuns; ++run) {
      const test::ScopedEnv split("JETLM_GDN_SPLIT", run == 1 ? "0" : "1");
      const test::ScopedEnv prep("JETLM_GDN_PREP_TC", run == 2 ? "0" : "1");
      const test::ScopedEnv inverse("JETLM_GDN_PREP_INV", run == 3 ? "0" : "1");
      const test::ScopedEnv mma("JETLM_GDN_STATE_MMA", run >= 4 ? "1" : "0");
      const test::ScopedEnv output_mma("JETLM_GDN_OUTPUT_MMA", run == 5 ? "1" : "0");
      auto dS = dev(in.S);
      cuda::Buffer<float> d_o(o_exp.size());
      cuda::gdn_chunked_tc(dq.data(), dkk.data(), dvv.data(), dg.data(), db.data(), cs.T, cs.H, cs.dk, cs.dv,
                           dS.data(), d_o.data());
      o_runs[run] = host(d_o);
      S_runs[run] = host(dS);
    }
    EXPECT_EQ(o_runs[0], o_runs[1]) << "T " << cs.T << " dk " << cs.dk << " dv " << cs.dv;
    EXPECT_EQ(S_runs[0], S_runs[1]) << "T " << cs.T << " dk " << cs.dk << " dv " << cs.dv;
    EXPECT_EQ(S_runs[4], S_runs[5]) << "T " << cs.T << " dk " << cs.dk << " dv " << cs.dv;
    const char* names[kRuns] = {"default", "fused output", "CUDA-core prep dots", "substitution prep",
                                "mma.sync state pass", "mma.sync state and output"};
    if (cs.tc) {
      std::printf("  mma.sync state pass: %s bits as the WMMA pass\n",
                  o_runs[4] == o_runs[0] && S_runs[4] == S_runs[0] ? "the same" : "other");
      std::printf("  mma.sync output: %s bits as the WMMA output\n", o_runs[5] == o_runs[4] ? "the same" : "other");
    }
    // TF32 operands: 2.5e-4 .. 4.5e-4 on the H100 for every variant (2026-12-07); float32 kernels ~3e-7.
    const double tolerance = cs.tc ? 2e-3 : 1e-5;
    for (int run : {0, 2, 3, 4, 5}) {
      const double eo = normalized_error(o_runs[run], o_exp), es = normalized_error(S_runs[run], S_exp);
      EXPECT_LE(eo, tolerance) << names[run] << ", T " << cs.T << " dk " << cs.dk << " dv " << cs.dv;
      EXPECT_LE(es, tolerance) << names[run] << ", T " << cs.T << " dk " << cs.dk << " dv " << cs.dv;
      if (cs.tc && run == 0) {
        EXPECT_GE(eo, 1e-7) << "TF32 operands should leave a visible rounding error";
      }
      std::printf("  gdn_chunked_tc T %ld H %ld dk %ld dv %ld%s, %s: o error %.2e, S error %.2e\n", long(cs.T),
                  long(cs.H), long(cs.dk), long(cs.dv), cs.strong ? " strong decay" : "", names[run], eo, es);
    }
  }
}

TEST(CudaEngineOps, KvAppendThenGatherRoundTrips) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  const int64_t row = 24, page = 4, pages_per_seq = 10, slots = 3;
  std::vector<int32_t> table(size_t(slots * pages_per_seq));
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  cuda::Buffer<float> k(size_t(slots * pages_per_seq * page * row)), v(k.size());
  auto d_table = dev(table);
  cuda::KvLayout L{k.data(), v.data(), row, d_table.data(), page, pages_per_seq, 0};
  std::vector<float> ks = random_vector(rng, size_t(37 * row)), vs = random_vector(rng, size_t(37 * row));
  auto dk = dev(ks), dv = dev(vs);
  cuda::kv_append(L, dk.data(), dv.data(), 20, nullptr, 2, nullptr, 0);
  cuda::kv_append(L, dk.data() + 20 * row, dv.data() + 20 * row, 17, nullptr, 2, nullptr, 20);
  cuda::Buffer<float> ko(ks.size()), vo(vs.size());
  cuda::kv_gather(L, 2, 0, 37, ko.data(), vo.data());
  EXPECT_EQ(host(ko), ks);
  EXPECT_EQ(host(vo), vs);
  // A ring keeps the last W rows: slot 1 of a W = 5 ring after 37 tokens holds positions 32..36.
  cuda::Buffer<float> rk(size_t(slots * 5 * row)), rv(rk.size());
  cuda::KvLayout R{rk.data(), rv.data(), row, nullptr, 0, 0, 5};
  cuda::kv_append(R, dk.data(), dv.data(), 37, nullptr, 1, nullptr, 0);
  cuda::Buffer<float> ro(size_t(5 * row)), rvo(ro.size());
  cuda::kv_gather(R, 1, 32, 5, ro.data(), rvo.data());
  EXPECT_EQ(host(ro), std::vector<float>(ks.begin() + 32 * row, ks.end()));
  // A bf16 pool stores each value rounded to nearest even and reads it back widened.
  cuda::Buffer<uint8_t> hk(size_t(slots * pages_per_seq * page * row) * 2), hv(hk.size());
  cuda::KvLayout H{hk.data(), hv.data(), row, d_table.data(), page, pages_per_seq, 0, DType::BF16};
  cuda::kv_append(H, dk.data(), dv.data(), 37, nullptr, 0, nullptr, 0);
  cuda::kv_gather(H, 0, 0, 37, ko.data(), vo.data());
  std::vector<float> ks_rounded = ks, vs_rounded = vs;
  round_to_bf16(ks_rounded);
  round_to_bf16(vs_rounded);
  EXPECT_EQ(host(ko), ks_rounded);
  EXPECT_EQ(host(vo), vs_rounded);
  EXPECT_NE(ks_rounded, ks);  // the rounding really happened
}

// The fused JetBlock decode prologue equals the separate ops it replaces, bit for bit.
TEST(CudaEngineOps, JetDecodePrepEqualsTheSeparateOps) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const int64_t B = 3, H = 3, dk = 40, dv = 72, gh = 27;
  const int64_t kd = H * dk, vd = H * dv, N = 2 * kd + 2 * vd + 2 * H + gh;
  std::vector<float> fused = random_vector(rng, size_t(B * N), -3, 3);
  std::vector<float> A_log = random_vector(rng, size_t(H), -1, 1), dt_bias = random_vector(rng, size_t(H), -1, 1);
  fused[size_t(2 * kd + 2 * vd + H)] = 30.0f;  // a_raw + dt_bias > 20: the linear branch of softplus
  auto d_fused = dev(fused), d_A = dev(A_log), d_dt = dev(dt_bias);
  const float q_scale = 1.0f / std::sqrt(float(dk));
  auto outputs = [&](bool use_fused) {
    cuda::Buffer<float> q(size_t(B * kd)), k(q.size()), u(size_t(B * vd)), gate(u.size()), hidden(size_t(B * gh)),
        b_raw(size_t(B * H)), a_raw(b_raw.size()), beta(b_raw.size()), g(b_raw.size());
    if (use_fused) {
      cuda::jet_decode_prep(d_fused.data(), B, H, dk, dv, gh, q_scale, d_A.data(), d_dt.data(), q.data(), k.data(),
                            u.data(), gate.data(), hidden.data(), beta.data(), g.data());
    } else {
      cuda::split_columns(d_fused.data(), B, N,
                          {{q.data(), kd}, {k.data(), kd}, {u.data(), vd}, {gate.data(), vd}, {b_raw.data(), H},
                           {a_raw.data(), H}, {hidden.data(), gh}});
      cuda::silu(q.data(), B * kd);
      cuda::silu(k.data(), B * kd);
      cuda::silu(hidden.data(), B * gh);
      cuda::jet_gates(b_raw.data(), a_raw.data(), d_A.data(), d_dt.data(), B, H, beta.data(), g.data());
      cuda::l2norm_rows(q.data(), B * H, dk, q_scale);
      cuda::l2norm_rows(k.data(), B * H, dk, 1.0f);
    }
    return std::vector<std::vector<float>>{host(q), host(k), host(u), host(gate), host(hidden), host(beta), host(g)};
  };
  const auto fused_out = outputs(true), separate = outputs(false);
  const char* names[] = {"q", "k", "u", "gate", "hidden", "beta", "g"};
  for (size_t i = 0; i < separate.size(); ++i) EXPECT_EQ(fused_out[i], separate[i]) << names[i];

  // Fused rows in bf16 / f16 (prefill's stacked GEMM with half output): the bits of the float32
  // kernel on the same values. 150 rows, more than one row block of the grid's y.
  const int64_t R = 150;
  for (DType type : {DType::BF16, DType::F16}) {
    std::vector<float> values = random_vector(rng, size_t(R * N), -3, 3);
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      bits[i] = type == DType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
      values[i] = type == DType::F16 ? f16_to_f32(bits[i]) : bf16_to_f32(bits[i]);
    }
    auto d_values = dev(values);
    auto d_bits = dev(bits);
    auto run = [&](bool half) {
      cuda::Buffer<float> q(size_t(R * kd)), k(q.size()), u(size_t(R * vd)), gate(u.size()), hidden(size_t(R * gh)),
          beta(size_t(R * H)), g(beta.size());
      if (half)
        cuda::jet_decode_prep(d_bits.data(), type, R, H, dk, dv, gh, q_scale, d_A.data(), d_dt.data(), q.data(),
                              k.data(), u.data(), gate.data(), hidden.data(), beta.data(), g.data());
      else
        cuda::jet_decode_prep(d_values.data(), R, H, dk, dv, gh, q_scale, d_A.data(), d_dt.data(), q.data(), k.data(),
                              u.data(), gate.data(), hidden.data(), beta.data(), g.data());
      return std::vector<std::vector<float>>{host(q), host(k), host(u), host(gate), host(hidden), host(beta), host(g)};
    };
    std::vector<std::vector<float>> from_half, from_float;
    {  // the decode layout (one block per head group)
      const test::ScopedEnv decode_layout("JETLM_PREP_ROWS", "0");
      from_half = run(true), from_float = run(false);
    }
    for (size_t i = 0; i < from_float.size(); ++i)
      EXPECT_EQ(from_half[i], from_float[i]) << dtype_name(type) << " " << names[i];
    // The one-block-per-row layout for many rows (JETLM_PREP_ROWS=1, the default): the same bits.
    const test::ScopedEnv rows_layout("JETLM_PREP_ROWS", "1");
    const auto rows_half = run(true), rows_float = run(false);
    for (size_t i = 0; i < from_float.size(); ++i) {
      EXPECT_EQ(rows_half[i], from_half[i]) << "rows layout, " << dtype_name(type) << " " << names[i];
      EXPECT_EQ(rows_float[i], from_float[i]) << "rows layout, float32 " << names[i];
    }
  }
}

TEST(CudaEngineOps, DconvStepAndGdnStepMatchReferenceInScatteredSlots) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  const int64_t B = 3, slots = 5, C = 37, K = 4, H = 3, dk = 40, dv = 72;
  const std::vector<int32_t> slot_of = {4, 0, 2};
  std::vector<float> u = random_vector(rng, size_t(B * C)), ker = random_vector(rng, size_t(B * C * K));
  std::vector<float> conv = random_vector(rng, size_t(slots * (K - 1) * C));
  std::vector<float> v_exp(size_t(B * C)), conv_exp = conv;
  for (int64_t b = 0; b < B; ++b)
    ref::dconv(u.data() + b * C, ker.data() + b * C * K, 1, C, K, conv_exp.data() + slot_of[size_t(b)] * (K - 1) * C,
               v_exp.data() + b * C);
  auto d_u = dev(u), d_ker = dev(ker), d_conv = dev(conv);
  auto d_slots = dev(slot_of);
  cuda::Buffer<float> d_v(v_exp.size());
  cuda::dconv_step(d_u.data(), d_ker.data(), B, C, K, d_conv.data(), d_slots.data(), d_v.data());
  EXPECT_LE(normalized_error(host(d_v), v_exp), 1e-5);
  EXPECT_LE(normalized_error(host(d_conv), conv_exp), 1e-6);

  test::GdnInputs in = test::gdn_inputs(rng, B, H, dk, dv, /*strong=*/true);  // B tokens used as B sequences
  std::vector<float> S = random_vector(rng, size_t(slots * H * dk * dv), -0.1f, 0.1f), S_exp = S;
  std::vector<float> o_exp(size_t(B * H * dv));
  for (int64_t b = 0; b < B; ++b)
    ref::gdn_recurrent(in.q.data() + b * H * dk, in.k.data() + b * H * dk, in.v.data() + b * H * dv,
                       in.g.data() + b * H, in.beta.data() + b * H, 1, H, dk, dv,
                       S_exp.data() + slot_of[size_t(b)] * H * dk * dv, o_exp.data() + b * H * dv);
  auto dq = dev(in.q), dkk = dev(in.k), dvv = dev(in.v), dg = dev(in.g), db = dev(in.beta), dS = dev(S);
  cuda::Buffer<float> d_o(o_exp.size());
  cuda::gdn_step(dq.data(), dkk.data(), dvv.data(), dg.data(), db.data(), B, H, dk, dv, dS.data(), d_slots.data(),
                 d_o.data());
  EXPECT_LE(normalized_error(host(d_o), o_exp), 1e-5);
  EXPECT_LE(normalized_error(host(dS), S_exp), 1e-5);

  // The fused conv + delta-rule step equals dconv_step then gdn_step, bit for bit (output, state, conv).
  const int64_t Cv = H * dv;
  std::vector<float> u2 = random_vector(rng, size_t(B * Cv)), ker2 = random_vector(rng, size_t(B * Cv * K));
  std::vector<float> conv2 = random_vector(rng, size_t(slots * (K - 1) * Cv));
  auto d_u2 = dev(u2), d_ker2 = dev(ker2);
  auto conv_a = dev(conv2), conv_b = dev(conv2), S_a = dev(S), S_b = dev(S);
  cuda::Buffer<float> v2(size_t(B * Cv)), o_a(o_exp.size()), o_b(o_exp.size());
  cuda::dconv_step(d_u2.data(), d_ker2.data(), B, Cv, K, conv_a.data(), d_slots.data(), v2.data());
  cuda::gdn_step(dq.data(), dkk.data(), v2.data(), dg.data(), db.data(), B, H, dk, dv, S_a.data(), d_slots.data(),
                 o_a.data());
  cuda::gdn_step_dconv(dq.data(), dkk.data(), d_u2.data(), d_ker2.data(), K, conv_b.data(), dg.data(), db.data(), B, H,
                       dk, dv, S_b.data(), d_slots.data(), o_b.data());
  EXPECT_EQ(host(o_a), host(o_b));
  EXPECT_EQ(host(S_a), host(S_b));
  EXPECT_EQ(host(conv_a), host(conv_b));
}

// The batch-decode step with the gated output norm fused in equals gdn_step_dconv then
// gated_rmsnorm bit for bit (output, state, conv state), in scattered slots; shapes of
// Jet-Nemotron-2B (dk 96, dv 256: 24 warps), 4B (128 x 256: 32 warps) and a small odd one (partial
// row and column warps).
TEST(CudaEngineOps, GdnStepWithGatedNormEqualsTheTwoOps) {
  SKIP_WITHOUT_GPU();
  struct Shape { int64_t H, dk, dv; };
  for (const Shape sh : {Shape{12, 96, 256}, Shape{4, 128, 256}, Shape{3, 40, 72}}) {
    std::mt19937 rng{uint32_t(sh.dk * 7 + sh.dv)};
    const int64_t B = 3, slots = 5, K = 4, H = sh.H, dk = sh.dk, dv = sh.dv, C = H * dv;
    ASSERT_TRUE(cuda::gdn_step_norm_fits(dk, dv));
    const std::vector<int32_t> slot_of = {4, 0, 2};
    test::GdnInputs in = test::gdn_inputs(rng, B, H, dk, dv, /*strong=*/true);
    std::vector<float> S = random_vector(rng, size_t(slots * H * dk * dv), -0.1f, 0.1f);
    std::vector<float> u = random_vector(rng, size_t(B * C)), ker = random_vector(rng, size_t(B * C * K));
    std::vector<float> conv = random_vector(rng, size_t(slots * (K - 1) * C));
    std::vector<float> gate = random_vector(rng, size_t(B * C), -3.0f, 3.0f);
    std::vector<float> w = random_vector(rng, size_t(dv), 0.5f, 1.5f);
    auto d_slots = dev(slot_of);
    auto dq = dev(in.q), dkk = dev(in.k), dg = dev(in.g), db = dev(in.beta), d_u = dev(u), d_ker = dev(ker);
    auto d_gate = dev(gate), d_w = dev(w);
    auto S_a = dev(S), S_b = dev(S), conv_a = dev(conv), conv_b = dev(conv);
    cuda::Buffer<float> o_a(size_t(B * C)), o_b(size_t(B * C));
    cuda::gdn_step_dconv(dq.data(), dkk.data(), d_u.data(), d_ker.data(), K, conv_a.data(), dg.data(), db.data(), B, H,
                         dk, dv, S_a.data(), d_slots.data(), o_a.data());
    cuda::gated_rmsnorm(o_a.data(), d_gate.data(), B, H, dv, d_w.data(), 1e-5f);
    cuda::gdn_step_dconv_norm(dq.data(), dkk.data(), d_u.data(), d_ker.data(), K, conv_b.data(), dg.data(), db.data(),
                              B, H, dk, dv, S_b.data(), d_slots.data(), d_gate.data(), d_w.data(), 1e-5f, o_b.data());
    const std::vector<float> oa = host(o_a);
    EXPECT_EQ(oa, host(o_b)) << "dk " << dk << " dv " << dv;
    EXPECT_EQ(host(S_a), host(S_b)) << "dk " << dk;
    EXPECT_EQ(host(conv_a), host(conv_b)) << "dk " << dk;
    EXPECT_GT(*std::max_element(oa.begin(), oa.end()), 0.1f);  // not all zeros
  }
  EXPECT_FALSE(cuda::gdn_step_norm_fits(96, 1024));  // 3 x 32 warps: too many for one block
}

// The JetBlock's decode step from the stacked projection's row (one cluster of blocks per head)
// equals the ops it replaces bit for bit: jet_decode_prep, gdn_step_dconv, gated_rmsnorm. Its
// input has silu applied to q and k (the projection GEMV's epilogue; here the silu op).
TEST(CudaEngineOps, JetDecodeStepEqualsPrepStepAndNorm) {
  SKIP_WITHOUT_GPU();
  struct Shape { int64_t H, dk, dv; };
  for (const Shape sh : {Shape{12, 96, 256}, Shape{4, 128, 256}, Shape{3, 40, 72}, Shape{2, 300, 32}}) {
    if (!cuda::jet_decode_step_fits(sh.dk, sh.dv)) GTEST_SKIP() << "needs an sm_90 device (thread block clusters)";
    std::mt19937 rng{uint32_t(sh.dk * 11 + sh.dv)};
    const int64_t B = 3, slots = 5, K = 4, gh = 40, H = sh.H, dk = sh.dk, dv = sh.dv, C = H * dv;
    const int64_t kd = H * dk, N = 2 * kd + 2 * C + 2 * H + gh;
    const std::vector<int32_t> slot_of = {4, 0, 2};
    std::vector<float> fused = random_vector(rng, size_t(B * N), -3.0f, 3.0f);
    fused[size_t(2 * kd + 2 * C + H)] = 30.0f;  // a_raw + dt_bias > 20: softplus's linear branch
    std::vector<float> A_log = random_vector(rng, size_t(H), -1, 1), dt_bias = random_vector(rng, size_t(H), -1, 1);
    std::vector<float> S = random_vector(rng, size_t(slots * H * dk * dv), -0.1f, 0.1f);
    std::vector<float> ker = random_vector(rng, size_t(B * C * K)), conv = random_vector(rng, size_t(slots * (K - 1) * C));
    std::vector<float> w = random_vector(rng, size_t(dv), 0.5f, 1.5f);
    auto d_slots = dev(slot_of);
    auto d_fused = dev(fused), d_act = dev(fused), d_A = dev(A_log), d_dt = dev(dt_bias);
    auto d_ker = dev(ker), d_w = dev(w);
    auto S_a = dev(S), S_b = dev(S), conv_a = dev(conv), conv_b = dev(conv);
    const float q_scale = 1.0f / std::sqrt(float(dk));
    // Separate ops.
    cuda::Buffer<float> q(size_t(B * kd)), k(q.size()), u(size_t(B * C)), gate(u.size()), hidden(size_t(B * gh)),
        beta(size_t(B * H)), g(beta.size()), o_a(size_t(B * C)), o_b(size_t(B * C));
    cuda::jet_decode_prep(d_fused.data(), B, H, dk, dv, gh, q_scale, d_A.data(), d_dt.data(), q.data(), k.data(),
                          u.data(), gate.data(), hidden.data(), beta.data(), g.data());
    cuda::gdn_step_dconv(q.data(), k.data(), u.data(), d_ker.data(), K, conv_a.data(), g.data(), beta.data(), B, H, dk,
                         dv, S_a.data(), d_slots.data(), o_a.data());
    cuda::gated_rmsnorm(o_a.data(), gate.data(), B, H, dv, d_w.data(), 1e-5f);
    // One launch on the row with silu already on q and k.
    for (int64_t b = 0; b < B; ++b) cuda::silu(d_act.data() + b * N, 2 * kd);
    cuda::jet_decode_step(d_act.data(), B, H, dk, dv, N, q_scale, d_A.data(), d_dt.data(), d_ker.data(), K,
                          conv_b.data(), S_b.data(), d_slots.data(), d_w.data(), 1e-5f, o_b.data());
    const std::vector<float> oa = host(o_a);
    EXPECT_EQ(oa, host(o_b)) << "H " << H << " dk " << dk << " dv " << dv;
    EXPECT_EQ(host(S_a), host(S_b)) << "dk " << dk << " dv " << dv;
    EXPECT_EQ(host(conv_a), host(conv_b)) << "dk " << dk << " dv " << dv;
    EXPECT_GT(*std::max_element(oa.begin(), oa.end()), 0.1f);  // not all zeros
  }
  EXPECT_FALSE(cuda::jet_decode_step_fits(96, 288));  // 9 column blocks: past the portable cluster size
}

// The attention layer's decode inputs in one launch equal split_columns, rope_at on q and k and
// kv_append, bit for bit, in paged and ring caches of both element types.
TEST(CudaEngineOps, QkvRopeAppendEqualsTheSeparateOps) {
  SKIP_WITHOUT_GPU();
  for (const int64_t hd : {int64_t(128), int64_t(64), int64_t(6)})
    for (DType dtype : {DType::BF16, DType::F32})
      for (bool ring : {false, true}) {
        std::mt19937 rng{uint32_t(hd + (ring ? 1 : 0))};
        const int64_t B = 3, Hq = 6, Hkv = 2, row = Hkv * hd, N = (Hq + 2 * Hkv) * hd, page = 4, pps = 8, slots = 4;
        const int64_t ring_len = 16, rows = ring ? slots * ring_len : slots * pps * page;
        std::vector<int32_t> table(size_t(slots * pps));
        std::iota(table.begin(), table.end(), 0);
        std::shuffle(table.begin(), table.end(), rng);
        const std::vector<int32_t> slot_of = {3, 0, 1}, pos = {0, 31, 17};
        std::vector<float> fused = random_vector(rng, size_t(B * N), -2.0f, 2.0f);
        auto d_table = dev(table), d_slots = dev(slot_of), d_pos = dev(pos);
        auto d_fused = dev(fused);
        const std::vector<float> zeros(size_t(rows * row), 0.0f);
        auto ka = kv_pool(zeros, dtype), va = kv_pool(zeros, dtype), kb = kv_pool(zeros, dtype), vb = kv_pool(zeros, dtype);
        const auto layout = [&](cuda::Buffer<uint8_t>& k, cuda::Buffer<uint8_t>& v) {
          return ring ? cuda::KvLayout{k.data(), v.data(), row, nullptr, 0, 0, ring_len, dtype}
                      : cuda::KvLayout{k.data(), v.data(), row, d_table.data(), page, pps, 0, dtype};
        };
        cuda::Buffer<float> q(size_t(B * Hq * hd)), k(size_t(B * row)), v(k.size()), q_b(q.size());
        cuda::split_columns(d_fused.data(), B, N, {{q.data(), Hq * hd}, {k.data(), row}, {v.data(), row}});
        cuda::rope_at(q.data(), B, Hq, hd, d_pos.data(), 1e6);
        cuda::rope_at(k.data(), B, Hkv, hd, d_pos.data(), 1e6);
        cuda::kv_append(layout(ka, va), k.data(), v.data(), B, d_slots.data(), 0, d_pos.data(), 0);
        cuda::qkv_rope_append(d_fused.data(), B, Hq, Hkv, hd, d_pos.data(), 1e6, layout(kb, vb), d_slots.data(),
                              q_b.data());
        const std::string what = "hd " + std::to_string(hd) + " " + dtype_name(dtype) + (ring ? " ring" : " paged");
        EXPECT_EQ(host(q), host(q_b)) << what;
        EXPECT_EQ(host(ka), host(kb)) << what;
        EXPECT_EQ(host(va), host(vb)) << what;
        const std::vector<uint8_t> written = host(kb);  // something was written
        EXPECT_LT(size_t(std::count(written.begin(), written.end(), uint8_t(0))), written.size()) << what;
      }
}

TEST(CudaEngineOps, AddRmsnormEqualsAddThenRmsnorm) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  for (const auto& [R, N] : {std::pair<int64_t, int64_t>{1, 1536}, {7, 64}, {33, 2048}, {5, 31}}) {
    std::vector<float> x = random_vector(rng, size_t(R * N)), br = random_vector(rng, size_t(R * N));
    std::vector<float> w = random_vector(rng, size_t(N)), x_exp = x, out_exp(x.size());
    ref::add(x_exp.data(), br.data(), R * N);
    ref::rmsnorm(x_exp.data(), R, N, w.data(), 1e-6f, out_exp.data());
    auto dx = dev(x), db = dev(br), dw = dev(w);
    cuda::Buffer<float> d_out(x.size());
    cuda::add_rmsnorm(dx.data(), db.data(), R, N, dw.data(), 1e-6f, d_out.data());
    EXPECT_LE(normalized_error(host(dx), x_exp), 1e-6) << R << "x" << N;
    EXPECT_LE(normalized_error(host(d_out), out_exp), 1e-5) << R << "x" << N;
    // With the rounded output (prefill): the same float32 bits, and out rounded as round_input does.
    for (DType type : {DType::BF16, DType::F16}) {
      auto dx2 = dev(x);
      cuda::Buffer<float> d_out2(x.size());
      cuda::Buffer<uint16_t> d_rounded(x.size()), d_expected(x.size());
      cuda::add_rmsnorm(dx2.data(), db.data(), R, N, dw.data(), 1e-6f, d_out2.data(), d_rounded.data(), type);
      EXPECT_EQ(host(dx2), host(dx)) << R << "x" << N;
      EXPECT_EQ(host(d_out2), host(d_out)) << R << "x" << N;
      const std::vector<uint16_t> shape(size_t(N), 0);
      const Matrix like{shape.data(), type, 1, N};
      cuda::MatrixBuffer Wlike = cuda::upload(like);
      cuda::round_input(d_out.data(), R * N, Wlike.view, d_expected.data());
      EXPECT_EQ(host(d_rounded), host(d_expected)) << dtype_name(type) << " " << R << "x" << N;
    }
  }
}

// gated_rmsnorm's rounded output (prefill: the output projection's input) is its float32 result
// rounded as round_input rounds it; the float32 result is unchanged.
TEST(CudaEngineOps, GatedRmsnormRoundedOutput) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(10);
  const int64_t T = 37, H = 3, dv = 96;
  const std::vector<float> o = random_vector(rng, size_t(T * H * dv)), gate = random_vector(rng, o.size());
  const std::vector<float> w = random_vector(rng, size_t(dv));
  auto dg = dev(gate), dw = dev(w);
  auto plain = dev(o);
  cuda::gated_rmsnorm(plain.data(), dg.data(), T, H, dv, dw.data(), 1e-5f);
  for (DType type : {DType::BF16, DType::F16}) {
    auto with = dev(o);
    cuda::Buffer<uint16_t> d_rounded(o.size()), d_expected(o.size());
    cuda::gated_rmsnorm(with.data(), dg.data(), T, H, dv, dw.data(), 1e-5f, d_rounded.data(), type);
    EXPECT_EQ(host(with), host(plain)) << dtype_name(type);
    const std::vector<uint16_t> shape(size_t(dv), 0);
    const Matrix like{shape.data(), type, 1, dv};
    cuda::MatrixBuffer Wlike = cuda::upload(like);
    cuda::round_input(plain.data(), T * H * dv, Wlike.view, d_expected.data());
    EXPECT_EQ(host(d_rounded), host(d_expected)) << dtype_name(type);
  }
}

TEST(CudaEngineOps, RopeAtPositions) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const int64_t T = 4, H = 3, hd = 64;
  const std::vector<int32_t> pos = {0, 17, 4095, 262143};
  std::vector<float> x = random_vector(rng, size_t(T * H * hd)), expected = x;
  for (int64_t t = 0; t < T; ++t) ref::rope(expected.data() + t * H * hd, 1, H, hd, pos[size_t(t)], 1e6);
  auto dx = dev(x);
  auto dpos = dev(pos);
  cuda::rope_at(dx.data(), T, H, hd, dpos.data(), 1e6);
  EXPECT_LE(normalized_error(host(dx), expected), 1e-5);
}

// The multi-block greedy argmax over a vocabulary-sized row: maxima in different chunks and in one
// chunk (the lowest index wins ties), NaN never wins, a row shorter than one chunk, the last element.
TEST(CudaEngineOps, GreedyArgmaxOverLongRows) {
  SKIP_WITHOUT_GPU();
  for (const int64_t V : {int64_t(151936), int64_t(4097), int64_t(5)}) {
    std::mt19937 rng{uint32_t(V)};
    const int64_t B = 5;
    std::vector<float> logits = random_vector(rng, size_t(B * V));
    std::vector<int32_t> expected(static_cast<size_t>(B));
    auto put = [&](int64_t b, int64_t i, float v) { logits[size_t(b * V + i)] = v; };
    put(0, V - 1, 9.0f);  // the last element
    expected[0] = int32_t(V - 1);
    put(1, V / 2, 9.0f), put(1, V - 2, 9.0f), put(1, 1, 8.0f);  // tie across chunks
    expected[1] = int32_t(V / 2);
    put(2, 3, 9.0f), put(2, 2, 9.0f);  // tie inside a warp
    expected[2] = 2;
    put(3, 0, std::nanf("")), put(3, 1, 9.0f);  // NaN never wins
    expected[3] = 1;
    put(4, 0, 9.0f);
    expected[4] = 0;
    auto d_logits = dev(logits);
    std::vector<cuda::DeviceSampling> params(static_cast<size_t>(B));
    auto d_params = dev(params);
    cuda::Buffer<int32_t> d_out(static_cast<size_t>(B));
    cuda::sample(d_logits.data(), B, V, d_params.data(), d_out.data(), /*all_greedy=*/true);
    EXPECT_EQ(host(d_out), expected) << "V " << V;
    cuda::sample(d_logits.data(), B, V, d_params.data(), d_out.data(), /*all_greedy=*/false);
    EXPECT_EQ(host(d_out), expected) << "V " << V << " (one block per row)";
  }
}

TEST(CudaEngineOps, SamplingGreedyFiltersAndFrequencies) {
  SKIP_WITHOUT_GPU();
  const int64_t V = 6;
  const std::vector<float> row = {1.0f, 3.0f, 2.5f, -1.0f, 3.0f, 0.0f};  // two maxima: index 1 wins ties
  const int64_t B = 20000;
  std::vector<float> logits;
  for (int64_t b = 0; b < B; ++b) logits.insert(logits.end(), row.begin(), row.end());
  auto d_logits = dev(logits);
  cuda::Buffer<int32_t> d_out(static_cast<size_t>(B));
  auto draw = [&](cuda::DeviceSampling sp) {
    std::vector<cuda::DeviceSampling> params(size_t(B), sp);
    for (int64_t b = 0; b < B; ++b) params[size_t(b)].step = uint64_t(b);
    auto d_params = dev(params);
    cuda::sample(d_logits.data(), B, V, d_params.data(), d_out.data());
    std::vector<double> freq(size_t(V), 0.0);
    for (int32_t t : host(d_out)) freq[size_t(t)] += 1.0;
    for (double& f : freq) f /= double(B);
    return freq;
  };
  cuda::DeviceSampling greedy;
  EXPECT_EQ(draw(greedy)[1], 1.0);
  {  // the all-greedy argmax path: the same first maximum
    std::vector<cuda::DeviceSampling> params(size_t(B), greedy);
    auto d_params = dev(params);
    cuda::sample(d_logits.data(), B, V, d_params.data(), d_out.data(), /*all_greedy=*/true);
    for (int32_t t : host(d_out)) ASSERT_EQ(t, 1);
  }
  cuda::DeviceSampling sp;
  sp.temperature = 0.7f;
  sp.seed = 42;
  std::vector<double> p(static_cast<size_t>(V));
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += p[size_t(i)] = std::exp(row[size_t(i)] / 0.7);
  std::vector<double> f = draw(sp);
  for (int64_t i = 0; i < V; ++i) EXPECT_NEAR(f[size_t(i)], p[size_t(i)] / z, 0.012) << "token " << i;
  sp.top_k = 3;  // {1, 4, 2}
  f = draw(sp);
  EXPECT_EQ(f[0] + f[3] + f[5], 0.0);
  const double z3 = p[1] + p[4] + p[2];
  EXPECT_NEAR(f[2], p[2] / z3, 0.012);
  sp.top_k = 0;
  sp.top_p = 0.5f;  // the two maxima hold ~0.72 of the mass, each alone 0.36 < 0.5
  f = draw(sp);
  EXPECT_NEAR(f[1] + f[4], 1.0, 1e-12);
  EXPECT_NEAR(f[1], 0.5, 0.015);
  sp.top_p = 1.0f;
  sp.min_p = 0.4f;  // p_i >= 0.4 p_max keeps 1, 4 and 2 (e^{-0.5/0.7} = 0.49)
  f = draw(sp);
  EXPECT_EQ(f[0] + f[3] + f[5], 0.0);
  EXPECT_GT(f[2], 0.1);
  // The same (seed, step) draws the same token.
  sp.min_p = 0.0f;
  EXPECT_EQ(draw(sp), draw(sp));
}

// ---- whole model ---------------------------------------------------------------------------------------

// A random bf16 model with head dim 64 (the golden models' head dims are 12..24, so only this
// case takes the tensor-core decode attention end to end): paged attn and a SWA ring, bf16 KV
// cache, a batch of scattered slots decoding against the CPU engine (float32 KV).
TEST(CudaEngine, TensorCoreDecodeOfABf16ModelMatchesTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  const nlohmann::json json = nlohmann::json::parse(R"({
    "model_type": "jet_nemotron", "hidden_size": 256, "intermediate_size": 384, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 500, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "tie_word_embeddings": true, "layer_types": ["attn", "jet", "swa", "attn"],
    "efficient_attention_config": {"jet": {"num_heads": 2, "head_dim": 32, "expand_v": 2, "conv_size": 4,
      "dconv_generator_reduction": 8, "norm_eps": "1e-5"}, "swa": {"window_size": 40}}})");
  const ModelConfig config = parse_model_config(json, "test config");
  ASSERT_EQ(config.head_dim, 64);
  const auto model = Model::random(config, DType::BF16, 17);
  cuda::CudaModelOptions opt;
  opt.max_slots = 6;
  opt.context_limit = 300;
  opt.page_size = 16;
  cuda::CudaModel gpu(*model, opt);
  ASSERT_EQ(gpu.kv_dtype(), DType::BF16);
  const std::vector<int> slots = {4, 1, 5};
  const int64_t B = int64_t(slots.size()), vocab = config.vocab;
  std::mt19937 rng(3);
  std::vector<HybridCache> caches;
  std::vector<std::vector<int32_t>> seqs;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> s(size_t(90 + 70 * b + 20));
    for (int32_t& id : s) id = int32_t(rng() % uint32_t(vocab));
    seqs.push_back(s);
    caches.push_back(model->new_cache());
    const int64_t prompt = 90 + 70 * b;  // past the SWA window and across pages
    model->forward(s.data(), prompt, caches.back(), nullptr);
    gpu.prefill(slots[size_t(b)], s.data(), prompt, nullptr);
  }
  double worst = 0;
  for (int64_t step = 0; step < 20; ++step) {
    std::vector<int32_t> ids(static_cast<size_t>(B));
    std::vector<float> expected(size_t(B * vocab)), got(size_t(B * vocab));
    for (int64_t b = 0; b < B; ++b) {
      ids[size_t(b)] = seqs[size_t(b)][size_t(90 + 70 * b + step)];
      model->forward(&ids[size_t(b)], 1, caches[size_t(b)], expected.data() + b * vocab);
    }
    gpu.decode(slots.data(), ids.data(), B, got.data());
    worst = std::max(worst, normalized_error(got, expected));
  }
  EXPECT_LE(worst, 3e-2);
  std::printf("  hd 64 bf16 model, bf16 KV (tensor-core decode): worst logits error vs CPU %.2e\n", worst);
}


// A random q8 JetBlock model (the gate projections stay bf16, so the stacked input projection is
// not used and the JetBlock decode takes its separate-projection path) against the CPU engine at
// the portable level, whose q8 matmul is the exact product of the dequantized weights, as the GPU
// GEMVs compute it. Batch 1 (fused decode) and a batch of 2.
TEST(CudaEngine, Q8ModelMatchesTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  const ModelConfig config = test::small_q8_jet_config(500);
  const auto model = Model::random(config, DType::I8, 17);
  cuda::CudaModelOptions opt;
  opt.max_slots = 3;
  opt.context_limit = 128;
  opt.page_size = 16;
  cuda::CudaModel gpu(*model, opt);
  cpu::set_max_isa(cpu::Isa::Portable);
  const int64_t vocab = config.vocab;
  std::mt19937 rng(5);
  for (const std::vector<int>& slots : {std::vector<int>{1}, std::vector<int>{0, 2}}) {
    const int64_t B = int64_t(slots.size());
    std::vector<HybridCache> caches;
    std::vector<std::vector<int32_t>> seqs;
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int32_t> s(40);
      for (int32_t& id : s) id = int32_t(rng() % uint32_t(vocab));
      seqs.push_back(s);
      caches.push_back(model->new_cache());
      model->forward(s.data(), 30, caches.back(), nullptr);
      gpu.prefill(slots[size_t(b)], s.data(), 30, nullptr);
    }
    double worst = 0;
    for (int64_t step = 0; step < 10; ++step) {
      std::vector<int32_t> ids(static_cast<size_t>(B));
      std::vector<float> expected(size_t(B * vocab)), got(size_t(B * vocab));
      for (int64_t b = 0; b < B; ++b) {
        ids[size_t(b)] = seqs[size_t(b)][size_t(30 + step)];
        model->forward(&ids[size_t(b)], 1, caches[size_t(b)], expected.data() + b * vocab);
      }
      gpu.decode(slots.data(), ids.data(), B, got.data());
      for (float v : got) ASSERT_TRUE(std::isfinite(v)) << "batch " << B << ", step " << step;
      worst = std::max(worst, normalized_error(got, expected));
    }
    // The GPU prefill rounds activations and dequantized weights to bf16 (its GEMM path).
    EXPECT_LE(worst, 3e-2) << "batch " << B;
    std::printf("  q8 model, batch %lld: worst logits error vs the CPU engine %.2e\n", (long long)B, worst);
  }
  cpu::set_max_isa(std::min(cpu::detected_isa(), cpu::Isa::Avx512));
}

class CudaGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    if (IsSkipped()) return;
    dir_ = golden::golden_root() + "/" + GetParam();
    golden_ = golden::read_golden(dir_);
    model_ = Model::load(dir_);
    tolerance_ = GetParam().find("f32") != std::string::npos ? 1e-3 : 3e-2;
  }
  std::string dir_;
  golden::Golden golden_;
  std::unique_ptr<Model> model_;
  double tolerance_ = 0;
};

TEST_P(CudaGolden, ChunkedPrefillThenDecodeMatchesReference) {
  if (IsSkipped()) return;
  const int64_t n = int64_t(golden_.ids.size()), vocab = model_->config().vocab;
  // Half-precision models default to a bf16 KV cache; they also run with a float32 one.
  const bool f32_model = GetParam().find("f32") != std::string::npos;
  for (cuda::KvCacheType kv : {cuda::KvCacheType::Auto, cuda::KvCacheType::F32})
  for (int64_t chunk : {int64_t(7), int64_t(64), int64_t(1024)})
  for (bool half_out : {false, true}) {  // half-precision GEMM outputs (opt-in): one configuration
    if (half_out && (chunk != 64 || kv != cuda::KvCacheType::Auto)) continue;
    for (int64_t prefill : {int64_t(1), int64_t(70)}) {
      if (kv == cuda::KvCacheType::F32 && f32_model) continue;  // the same as Auto
      cuda::CudaModelOptions opt;
      opt.half_gemm_outputs = half_out;
      opt.kv_cache = kv;
      opt.max_slots = 3;
      opt.context_limit = 256;
      opt.prefill_chunk = chunk;
      opt.page_size = 16;
      cuda::CudaModel gpu(*model_, opt);
      EXPECT_EQ(gpu.kv_dtype(), f32_model || kv == cuda::KvCacheType::F32 ? DType::F32 : DType::BF16);
      const int slot = 2;
      std::vector<float> logits(size_t(n * vocab)), expected;
      gpu.prefill(slot, golden_.ids.data(), prefill, logits.data() + (prefill - 1) * vocab);
      for (int64_t t = prefill; t < n; ++t) gpu.decode(&slot, golden_.ids.data() + t, 1, logits.data() + t * vocab);
      // Compare the rows the engine produced: prefill's last one and every decoded one.
      std::vector<float> got(logits.begin() + (prefill - 1) * vocab, logits.end());
      expected.assign(golden_.logits.begin() + (prefill - 1) * vocab, golden_.logits.end());
      const double err = normalized_error(got, expected);
      EXPECT_LE(err, tolerance_) << "chunk " << chunk << " prefill " << prefill;
      std::printf("  %s %s KV, chunk %ld prefill %ld%s: logits error %.2e (tolerance %.0e)\n", GetParam().c_str(),
                  dtype_name(gpu.kv_dtype()), long(chunk), long(prefill), half_out ? ", half GEMM outputs" : "",
                  err, tolerance_);
      EXPECT_EQ(gpu.slot_tokens(slot), n);
    }
  }
}

TEST_P(CudaGolden, BatchOfScatteredSlotsDecodesLikeTheCpuEngine) {
  if (IsSkipped()) return;
  const int64_t vocab = model_->config().vocab;
  const std::vector<int> slots = {5, 0, 3, 6};
  const int64_t B = int64_t(slots.size());
  cuda::CudaModelOptions opt;
  opt.max_slots = 7;
  opt.context_limit = 200;
  opt.page_size = 8;
  cuda::CudaModel gpu(*model_, opt);
  std::vector<HybridCache> caches;
  std::vector<std::vector<int32_t>> seqs;
  for (int64_t b = 0; b < B; ++b) {
    // Different sequences of different lengths: rotated golden ids.
    std::vector<int32_t> s(golden_.ids.begin() + b * 9, golden_.ids.end());
    s.resize(size_t(20 + 23 * b + 30));
    for (size_t i = 0; i < s.size(); ++i) s[i] = golden_.ids[(i * (b + 1) + size_t(b) * 7) % golden_.ids.size()];
    seqs.push_back(s);
    caches.push_back(model_->new_cache());
    const int64_t prompt = 20 + 23 * b;
    model_->forward(s.data(), prompt, caches.back(), nullptr);
    gpu.prefill(slots[size_t(b)], s.data(), prompt, nullptr);
  }
  double worst = 0;
  for (int64_t step = 0; step < 30; ++step) {
    std::vector<int32_t> ids(static_cast<size_t>(B));
    std::vector<float> expected(size_t(B * vocab)), got(size_t(B * vocab));
    for (int64_t b = 0; b < B; ++b) {
      ids[size_t(b)] = seqs[size_t(b)][size_t(20 + 23 * b + step)];
      model_->forward(&ids[size_t(b)], 1, caches[size_t(b)], expected.data() + b * vocab);
    }
    gpu.decode(slots.data(), ids.data(), B, got.data());
    worst = std::max(worst, normalized_error(got, expected));
  }
  EXPECT_LE(worst, tolerance_);
  std::printf("  %s: batch of %ld, 30 steps, worst logits error vs CPU %.2e\n", GetParam().c_str(), long(B), worst);
}

TEST_P(CudaGolden, GreedyBatchEqualsOneAtATimeAndReference) {
  if (IsSkipped()) return;
  const int64_t steps = 24;
  auto prompt = [&](int64_t b) {
    if (b == 0 && !golden_.greedy_prompt.empty()) return golden_.greedy_prompt;
    std::vector<int32_t> p(size_t(5 + 11 * b));
    for (size_t i = 0; i < p.size(); ++i) p[i] = golden_.ids[(i * 3 + size_t(b) * 17) % golden_.ids.size()];
    return p;
  };
  const int64_t B = 5;
  cuda::CudaModelOptions opt;
  opt.max_slots = 8;
  opt.context_limit = 128;
  // Batched: all B prompts, then greedy steps together (device argmax).
  cuda::CudaModel gpu(*model_, opt);
  const std::vector<int> slots = {7, 1, 4, 0, 2};
  std::vector<int32_t> cur(static_cast<size_t>(B));
  std::vector<std::vector<int32_t>> batched(static_cast<size_t>(B));
  std::vector<float> logits(size_t(model_->config().vocab));
  auto argmax = [&](const std::vector<float>& l) {
    return int32_t(std::max_element(l.begin(), l.end()) - l.begin());
  };
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t> p = prompt(b);
    gpu.prefill(slots[size_t(b)], p.data(), int64_t(p.size()), logits.data());
    cur[size_t(b)] = argmax(logits);
  }
  std::vector<cuda::DeviceSampling> greedy(static_cast<size_t>(B));
  for (int64_t s = 0; s < steps; ++s) {
    for (int64_t b = 0; b < B; ++b) batched[size_t(b)].push_back(cur[size_t(b)]);
    if (s + 1 < steps) gpu.decode_sample(slots.data(), cur.data(), B, greedy.data(), cur.data());
  }
  // One at a time, in a fresh engine, slot 0 each time after reset.
  cuda::CudaModel single(*model_, opt);
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t> p = prompt(b);
    single.reset_slot(0);
    single.prefill(0, p.data(), int64_t(p.size()), logits.data());
    std::vector<int32_t> tokens = {argmax(logits)};
    while (int64_t(tokens.size()) < steps) {
      single.decode(std::vector<int>{0}.data(), &tokens.back(), 1, logits.data());
      tokens.push_back(argmax(logits));
    }
    EXPECT_EQ(tokens, batched[size_t(b)]) << "prompt " << b;
  }
  // The reference's greedy continuation (fp32 cases carry one).
  if (!golden_.greedy_tokens.empty() && GetParam().find("f32") != std::string::npos) {
    std::vector<int32_t> ref(golden_.greedy_tokens.begin(),
                             golden_.greedy_tokens.begin() + std::min<size_t>(steps, golden_.greedy_tokens.size()));
    std::vector<int32_t> got(batched[0].begin(), batched[0].begin() + int64_t(ref.size()));
    EXPECT_EQ(got, ref) << "greedy continuation differs from the float64 reference";
  }
}

TEST_P(CudaGolden, GraphReplayEqualsDirectLaunchesAndPagesComeBack) {
  if (IsSkipped()) return;
  const int64_t vocab = model_->config().vocab;
  cuda::CudaModelOptions opt;
  opt.max_slots = 4;
  opt.context_limit = 160;
  opt.page_size = 8;
  cuda::CudaModelOptions direct_opt = opt;
  direct_opt.cuda_graphs = false;
  cuda::CudaModel graphed(*model_, opt), direct(*model_, direct_opt);
  const std::vector<int> slots = {3, 1};
  for (cuda::CudaModel* m : {&graphed, &direct}) {
    m->prefill(3, golden_.ids.data(), 40, nullptr);
    m->prefill(1, golden_.ids.data() + 50, 17, nullptr);
  }
  for (int64_t step = 0; step < 12; ++step) {
    const std::vector<int32_t> ids = {golden_.ids[size_t(40 + step)], golden_.ids[size_t(67 + step)]};
    std::vector<float> a(size_t(2 * vocab)), b(size_t(2 * vocab));
    graphed.decode(slots.data(), ids.data(), 2, a.data());
    direct.decode(slots.data(), ids.data(), 2, b.data());
    ASSERT_EQ(a, b) << "step " << step;
  }
  const int64_t all = graphed.kv_pages();
  if (model_->config().has_kind(LayerKind::Attn)) {
    EXPECT_LT(graphed.free_pages(), all);
  }
  graphed.reset_slot(3);
  graphed.reset_slot(1);
  EXPECT_EQ(graphed.free_pages(), all);
  EXPECT_EQ(graphed.slot_tokens(3), 0);
}

// Batch-1 decode fuses the norms into the GEMVs and the residual adds into their epilogues; it
// must give the logits of the separate norm / add kernels (the same float32 math, only the norms'
// reduction order differs), step after step, with graphs and without.
TEST_P(CudaGolden, FusedBatchOneDecodeEqualsTheSeparateOps) {
  if (IsSkipped()) return;
  const int64_t vocab = model_->config().vocab, n = int64_t(golden_.ids.size());
  ASSERT_GT(n, 20);
  for (bool graphs : {true, false}) {
    cuda::CudaModelOptions opt;
    opt.max_slots = 2;
    opt.context_limit = 256;
    opt.cuda_graphs = graphs;
    cuda::CudaModelOptions separate_opt = opt;
    separate_opt.fuse_decode = false;
    cuda::CudaModel fused(*model_, opt), separate(*model_, separate_opt);
    const int slot = 1;
    fused.prefill(slot, golden_.ids.data(), 10, nullptr);
    separate.prefill(slot, golden_.ids.data(), 10, nullptr);
    double worst = 0;
    for (int64_t t = 10; t < n; ++t) {
      std::vector<float> a(static_cast<size_t>(vocab)), b(static_cast<size_t>(vocab));
      fused.decode(&slot, golden_.ids.data() + t, 1, a.data());
      separate.decode(&slot, golden_.ids.data() + t, 1, b.data());
      worst = std::max(worst, normalized_error(a, b));
    }
    EXPECT_LE(worst, 1e-4) << (graphs ? "graphs" : "direct launches");
    std::printf("  %s fused vs separate batch-1 decode (%s): worst logits difference %.2e\n", GetParam().c_str(),
                graphs ? "graphs" : "direct", worst);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaGolden, ::testing::ValuesIn(golden::case_names()));

TEST(CudaModelErrors, BadSlotsIdsAndOverflowAreErrors) {
  SKIP_WITHOUT_GPU();
  const std::string dir = golden::golden_root() + "/jet_mix_f32";
  auto model = Model::load(dir);
  cuda::CudaModelOptions opt;
  opt.max_slots = 2;
  opt.context_limit = 40;
  opt.page_size = 8;
  opt.kv_pages = 6;  // 48 tokens over both slots
  cuda::CudaModel gpu(*model, opt);
  std::vector<int32_t> ids(40, 1);
  EXPECT_THROW(gpu.prefill(2, ids.data(), 3, nullptr), Error);
  ids[1] = model->config().vocab;
  EXPECT_THROW(gpu.prefill(0, ids.data(), 3, nullptr), Error);
  EXPECT_EQ(gpu.slot_tokens(0), 0);
  ids[1] = 1;
  EXPECT_THROW(gpu.prefill(0, ids.data(), 41, nullptr), Error);
  gpu.prefill(0, ids.data(), 40, nullptr);  // 5 pages
  EXPECT_THROW(gpu.prefill(1, ids.data(), 16, nullptr), Error);  // needs 2, 1 free
  const int both[] = {0, 0};
  EXPECT_THROW(gpu.decode(both, ids.data(), 2, nullptr), Error);
  const int full[] = {0};
  EXPECT_THROW(gpu.decode(full, ids.data(), 1, nullptr), Error);  // slot 0 is at its limit
  gpu.reset_slot(0);
  gpu.prefill(1, ids.data(), 16, nullptr);
  EXPECT_EQ(gpu.slot_tokens(1), 16);
}

}  // namespace
}  // namespace jetlm
