// The scheduler's logic against a fake backend whose next token is known (last id + 1), and the
// real CpuBatchBackend against Session (one sequence, no batching) on a golden checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>

#include "golden/golden_data.h"
#include "jetlm/cpu_batch_backend.h"
#include "jetlm/session.h"
#include "server/scheduler.h"
#include "test_util.h"

namespace jetlm::server {
namespace {

using namespace std::chrono_literals;

// Logits put all mass on (last fed id + 1) % vocab, so greedy output of a prompt ending in x is
// x+1, x+2, ... Records what the scheduler asked for; `gate` can hold decode steps.
class FakeBackend : public BatchBackend {
 public:
  FakeBackend(int slots, int64_t context, int64_t vocab = 1000) : tokens_(size_t(slots), 0), last_(size_t(slots), -1) {
    config_.vocab = vocab;
    context_ = context;
  }
  const ModelConfig& config() const override { return config_; }
  int max_slots() const override { return int(tokens_.size()); }
  int64_t context_limit() const override { return context_; }
  int64_t slot_tokens(int slot) const override { return tokens_[size_t(slot)]; }
  void reset_slot(int slot) override {
    tokens_[size_t(slot)] = 0;
    last_[size_t(slot)] = -1;
  }
  void prefill(int slot, const int32_t* ids, int64_t T, float* logits) override {
    EXPECT_LE(tokens_[size_t(slot)] + T, context_);
    for (int64_t t = 0; t < T; ++t)
      if (ids[t] == throw_on_id) throw_error("fake", "bad id");
    std::lock_guard<std::mutex> lock(mutex);
    events.push_back("prefill " + std::to_string(slot) + " " + std::to_string(T));
    tokens_[size_t(slot)] += T;
    last_[size_t(slot)] = ids[T - 1];
    if (logits) one_hot(last_[size_t(slot)], logits);
  }
  void decode(const int* slots, const int32_t* ids, int64_t B, float* logits) override {
    {
      std::unique_lock<std::mutex> lock(mutex);
      open.wait(lock, [&] { return !gate_closed; });
      events.push_back("decode " + std::to_string(B));
      max_batch = std::max<int64_t>(max_batch, B);
    }
    for (int64_t b = 0; b < B; ++b) {
      EXPECT_LT(tokens_[size_t(slots[b])], context_);
      tokens_[size_t(slots[b])] += 1;
      last_[size_t(slots[b])] = ids[b];
      one_hot(ids[b], logits + b * config_.vocab);
    }
  }
  void set_gate(bool closed) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      gate_closed = closed;
    }
    open.notify_all();
  }

  std::mutex mutex;
  std::condition_variable open;
  bool gate_closed = false;
  int32_t throw_on_id = -1;
  std::vector<std::string> events;
  int64_t max_batch = 0;

 private:
  void one_hot(int32_t last, float* logits) const {
    std::fill(logits, logits + config_.vocab, 0.0f);
    logits[(last + 1) % config_.vocab] = 10.0f;
  }
  ModelConfig config_;
  int64_t context_ = 0;
  std::vector<int64_t> tokens_;
  std::vector<int32_t> last_;
};

RequestOptions greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  RequestOptions o;
  o.prompt = std::move(prompt);
  o.sampling.temperature = 0;
  o.max_tokens = max_tokens;
  return o;
}

std::shared_ptr<Request> submit(Scheduler& s, RequestOptions o, uint64_t id = 1) {
  auto r = std::make_shared<Request>(id, std::move(o));
  EXPECT_EQ(s.submit(r), Scheduler::Submit::Accepted);
  return r;
}

TEST(Scheduler, GreedyTokensLengthAndUsage) {
  FakeBackend backend(2, 100);
  Scheduler s(backend, nullptr, {});
  auto r = submit(s, greedy({5, 6, 7}, 4));
  const RequestOutput out = r->wait();
  EXPECT_EQ(out.finish_reason, "length");
  EXPECT_EQ(out.prompt_tokens, 3);
  EXPECT_EQ(out.completion_tokens, 4);
  EXPECT_EQ(r->tokens(), (std::vector<int32_t>{8, 9, 10, 11}));
}

TEST(Scheduler, StopIdEndsWithoutBeingEmitted) {
  FakeBackend backend(1, 100);
  Scheduler s(backend, nullptr, {});
  RequestOptions o = greedy({5}, 10);
  o.stop_ids = {8};
  auto r = submit(s, o);
  const RequestOutput out = r->wait();
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(r->tokens(), (std::vector<int32_t>{6, 7}));
  EXPECT_EQ(out.completion_tokens, 2);
}

TEST(Scheduler, ContextLimitEndsWithLength) {
  FakeBackend backend(1, 10);  // 6 prompt tokens leave room for 4 generated: prompt + completion <= 10
  Scheduler s(backend, nullptr, {});
  auto r = submit(s, greedy({1, 2, 3, 4, 5, 6}, 100));
  const RequestOutput out = r->wait();
  EXPECT_EQ(out.finish_reason, "length");
  EXPECT_EQ(r->tokens(), (std::vector<int32_t>{7, 8, 9, 10}));
  EXPECT_EQ(s.stats().active_slots, 0);
}

TEST(Scheduler, HugeMaxTokensEndsAtTheContext) {
  // max_tokens far past the context (INT64_MAX) once made the engine thread throw sizing its buffers.
  FakeBackend backend(1, 10);
  Scheduler s(backend, nullptr, {});
  auto r = submit(s, greedy({1, 2, 3, 4, 5, 6}, std::numeric_limits<int64_t>::max()));
  const RequestOutput out = r->wait();
  EXPECT_EQ(out.finish_reason, "length");
  EXPECT_EQ(r->tokens(), (std::vector<int32_t>{7, 8, 9, 10}));
  EXPECT_EQ(s.stats().active_slots, 0);
}

TEST(Scheduler, ContinuousBatchingSharesDecodeStepsAndFreesSlots) {
  FakeBackend backend(3, 1000);
  backend.set_gate(true);  // hold the engine until every request is queued
  Scheduler s(backend, nullptr, {});
  std::vector<std::shared_ptr<Request>> requests;
  for (int i = 0; i < 7; ++i) requests.push_back(submit(s, greedy({int32_t(100 * i)}, 5 + i), uint64_t(i)));
  backend.set_gate(false);
  for (int i = 0; i < 7; ++i) {
    const RequestOutput out = requests[size_t(i)]->wait();
    EXPECT_EQ(out.finish_reason, "length");
    std::vector<int32_t> expected;
    for (int k = 1; k <= 5 + i; ++k) expected.push_back(100 * i + k);
    EXPECT_EQ(requests[size_t(i)]->tokens(), expected) << "request " << i;
  }
  EXPECT_EQ(backend.max_batch, 3);  // never more rows than slots, and the slots were shared
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.active_slots, 0);
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.finished_length, 7u);
  EXPECT_EQ(st.slot_tokens, 0);
  for (int slot = 0; slot < 3; ++slot) EXPECT_EQ(backend.slot_tokens(slot), 0);
}

TEST(Scheduler, LongPromptIsChunkedBetweenDecodeSteps) {
  FakeBackend backend(2, 100000000);
  SchedulerOptions options;
  options.prefill_chunk = 4;
  Scheduler s(backend, nullptr, options);
  auto first = submit(s, greedy({1}, 50000000), 1);  // still running when cancelled below
  // Wait until the first request is decoding, then add a 10-token prompt.
  while (first->tokens().size() < 2) std::this_thread::sleep_for(1ms);
  auto second = submit(s, greedy({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 3), 2);
  EXPECT_EQ(second->wait().finish_reason, "length");
  first->cancel();
  EXPECT_EQ(first->wait().finish_reason, "cancelled");
  std::lock_guard<std::mutex> lock(backend.mutex);
  // The second prompt went in as 4 + 4 + 2, each chunk followed by a decode step of the first.
  std::vector<std::string> chunks;
  for (size_t i = 0; i < backend.events.size(); ++i)
    if (backend.events[i].rfind("prefill", 0) == 0 && backend.events[i] != "prefill 0 1") {
      chunks.push_back(backend.events[i]);
      ASSERT_LT(i + 1, backend.events.size());
      EXPECT_EQ(backend.events[i + 1].rfind("decode", 0), 0u) << "a decode step follows each chunk";
    }
  EXPECT_EQ(chunks, (std::vector<std::string>{"prefill 1 4", "prefill 1 4", "prefill 1 2"}));
}

TEST(Scheduler, QueueBoundCancelAndShutdown) {
  FakeBackend backend(1, 100000);
  SchedulerOptions options;
  options.max_queue = 1;
  Scheduler s(backend, nullptr, options);
  auto running = submit(s, greedy({1}, 90000), 1);
  while (running->tokens().empty()) std::this_thread::sleep_for(1ms);
  auto queued = submit(s, greedy({2}, 5), 2);
  auto refused = std::make_shared<Request>(3, greedy({3}, 5));
  EXPECT_EQ(s.submit(refused), Scheduler::Submit::QueueFull);
  EXPECT_EQ(s.stats().rejected_queue_full, 1u);
  // Cancelling a queued request ends it without it ever taking a slot.
  queued->cancel();
  EXPECT_EQ(queued->wait().finish_reason, "cancelled");
  EXPECT_EQ(queued->tokens().size(), 0u);
  // Shutdown with no grace cancels the running one and refuses new work.
  s.shutdown(0ms);
  EXPECT_EQ(running->wait().finish_reason, "cancelled");
  EXPECT_EQ(s.submit(std::make_shared<Request>(4, greedy({4}, 5))), Scheduler::Submit::ShuttingDown);
  EXPECT_EQ(s.stats().active_slots, 0);
  EXPECT_EQ(backend.slot_tokens(0), 0);
}

TEST(Scheduler, ShutdownLetsShortRequestsFinish) {
  FakeBackend backend(2, 1000);
  Scheduler s(backend, nullptr, {});
  auto r = submit(s, greedy({1}, 50));
  s.shutdown(10s);
  const RequestOutput out = r->take(0ms);
  EXPECT_TRUE(out.finished);
  EXPECT_EQ(out.finish_reason, "length");
  EXPECT_EQ(out.completion_tokens, 50);
}

TEST(Scheduler, InvalidRequestsAreRefusedAtSubmit) {
  FakeBackend backend(1, 10);
  Scheduler s(backend, nullptr, {});
  EXPECT_THROW(s.submit(std::make_shared<Request>(1, greedy({}, 3))), Error);
  EXPECT_THROW(s.submit(std::make_shared<Request>(2, greedy(std::vector<int32_t>(10, 1), 3))), Error);
  EXPECT_THROW(s.submit(std::make_shared<Request>(3, greedy({1}, 0))), Error);
  RequestOptions stops = greedy({1}, 3);
  stops.stop_strings = {"x"};
  EXPECT_THROW(s.submit(std::make_shared<Request>(4, stops)), Error);  // no tokenizer here
  EXPECT_EQ(s.stats().submitted, 0u);
}

TEST(Scheduler, BackendErrorEndsOnlyThatRequest) {
  FakeBackend backend(2, 1000);
  backend.throw_on_id = 999;
  Scheduler s(backend, nullptr, {});
  auto bad = submit(s, greedy({1, 999}, 3), 1);
  auto good = submit(s, greedy({1}, 3), 2);
  const RequestOutput out = bad->wait();
  EXPECT_EQ(out.finish_reason, "error");
  EXPECT_NE(out.error.find("bad id"), std::string::npos);
  EXPECT_EQ(good->wait().finish_reason, "length");
  EXPECT_EQ(s.stats().finished_error, 1u);
  EXPECT_EQ(s.stats().active_slots, 0);
}

// The server samples over the full vocabulary (150k) with OpenAI's filters, where the sampler
// avoids a full sort: its distribution must still equal the textbook one, computed here by
// sorting everything.
TEST(Sampler, LargeVocabularyFiltersMatchFullSort) {
  const int64_t vocab = 5000;
  std::mt19937 rng(5);
  const std::vector<float> logits = test::random_vector(rng, size_t(vocab), -4, 4);
  struct Case { float top_p, min_p; int top_k; };
  for (const Case c : {Case{1, 0, 0}, Case{0.9f, 0, 0}, Case{0.3f, 0, 0}, Case{0.999f, 0, 0}, Case{1, 0.2f, 0},
                       Case{0.8f, 0.05f, 0}, Case{0.9f, 0, 700}}) {
    SamplingParams p;
    p.temperature = 0.7f;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.top_k = c.top_k;
    std::vector<float> work = logits;
    const std::vector<double> got = Sampler(p).distribution(work.data(), vocab, {});
    // Reference: sort all ids, apply top_k, top_p (fraction of the kept mass), min_p.
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    size_t keep = c.top_k > 0 ? size_t(c.top_k) : size_t(vocab);
    std::vector<double> w(keep);
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += w[i] = std::exp((double(logits[order[i]]) - logits[order[0]]) / 0.7);
    double cumulative = 0;
    for (size_t i = 0; i < keep; ++i)
      if ((cumulative += w[i] / total) >= c.top_p) {
        keep = i + 1;
        break;
      }
    size_t cut = 1;
    while (cut < keep && w[cut] >= c.min_p * w[0]) ++cut;
    keep = cut;
    std::vector<double> expected(static_cast<size_t>(vocab), 0.0);
    double kept = 0;
    for (size_t i = 0; i < keep; ++i) kept += w[i];
    for (size_t i = 0; i < keep; ++i) expected[size_t(order[i])] = w[i] / kept;
    double max_diff = 0;
    for (int64_t i = 0; i < vocab; ++i) max_diff = std::max(max_diff, std::fabs(got[size_t(i)] - expected[size_t(i)]));
    EXPECT_LT(max_diff, 1e-9) << "top_p " << c.top_p << " min_p " << c.min_p << " top_k " << c.top_k;
  }
}

// ---------------------------------------------------------------------------------------------
// The real CPU backend.

std::unique_ptr<Model> golden_model(const std::string& name) {
  const std::string dir = golden::golden_root() + "/" + name;
  if (!std::filesystem::exists(dir + "/config.json")) return nullptr;
  return Model::load(dir);
}

TEST(CpuBatchBackend, ContractErrorsChangeNothing) {
  auto model = golden_model("jet_mix_f32");
  if (!model) GTEST_SKIP() << "no golden checkpoint";
  CpuBatchBackend backend(*model, 2, 8);
  EXPECT_EQ(backend.context_limit(), 8);
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_THROW(backend.prefill(0, ids.data(), 9, nullptr), Error);  // past the limit
  EXPECT_EQ(backend.slot_tokens(0), 0);
  backend.prefill(0, ids.data(), 8, nullptr);
  const int slots[2] = {0, 1};
  const int32_t next[2] = {1, 1};
  EXPECT_THROW(backend.decode(slots, next, 2, nullptr), Error);  // slot 0 is full
  EXPECT_EQ(backend.slot_tokens(1), 0);
  const int twice[2] = {1, 1};
  EXPECT_THROW(backend.decode(twice, next, 2, nullptr), Error);
  const int32_t bad_id[1] = {int32_t(model->config().vocab)};
  EXPECT_THROW(backend.decode(&slots[1], bad_id, 1, nullptr), Error);
  EXPECT_EQ(backend.slot_tokens(1), 0);
  EXPECT_THROW(backend.reset_slot(2), Error);
  backend.reset_slot(0);
  EXPECT_EQ(backend.slot_tokens(0), 0);
  EXPECT_THROW(CpuBatchBackend(*model, 0), Error);
  EXPECT_THROW(CpuBatchBackend(*model, 1, model->config().max_position + 1), Error);
}

// Several requests of different prompt lengths through the scheduler (batched decode, chunked
// prefill) give the same greedy tokens as a Session generating each alone.
TEST(CpuBatchBackend, SchedulerGreedyEqualsSession) {
  for (const char* name : {"jet_mix_f32", "jet_mix_bf16_sharded", "qwen3_f32"}) {
    auto model = golden_model(name);
    if (!model) GTEST_SKIP() << "no golden checkpoint";
    const int64_t vocab = model->config().vocab;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 6; ++i) {
      std::vector<int32_t> p;
      for (int j = 0; j < 3 + 9 * i; ++j) p.push_back(int32_t((31 * i + 7 * j + 1) % vocab));
      prompts.push_back(p);
    }
    const int64_t chunk = 16, n = 12;
    std::vector<std::vector<int32_t>> expected;
    for (const auto& p : prompts) {
      Session session(*model);
      session.feed(p, chunk);
      GenerateOptions options;
      options.sampling.temperature = 0;
      options.max_new_tokens = n;
      expected.push_back(session.generate(options).tokens);
    }
    CpuBatchBackend backend(*model, 4);
    SchedulerOptions options;
    options.prefill_chunk = chunk;
    Scheduler s(backend, nullptr, options);
    std::vector<std::shared_ptr<Request>> requests;
    for (size_t i = 0; i < prompts.size(); ++i) requests.push_back(submit(s, greedy(prompts[i], n), i));
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(requests[i]->wait().finish_reason, "length");
      EXPECT_EQ(requests[i]->tokens(), expected[i]) << name << " request " << i;
    }
    const SchedulerStats st = s.stats();
    EXPECT_GT(st.decode_rows, st.decode_steps) << "some decode steps were batched";
    for (int slot = 0; slot < backend.max_slots(); ++slot) EXPECT_EQ(backend.slot_tokens(slot), 0);
  }
}

}  // namespace
}  // namespace jetlm::server
