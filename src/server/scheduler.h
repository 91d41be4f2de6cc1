// The serving scheduler: continuous batching over a BatchBackend.
//
// One engine thread owns the backend. HTTP threads submit() requests into a bounded queue and read
// their output through the Request object. Each engine iteration:
//   1. drops cancelled requests (queued or running) and frees their slots;
//   2. admits queued requests into free slots (each request owns one slot until it ends);
//   3. runs ONE prefill chunk (at most `prefill_chunk` tokens) of the oldest request still being
//      prefilled, so a long prompt never stalls the running decodes for more than a chunk;
//   4. runs one batched decode step for every request that has a sampled token to feed.
// Sampling is per request (its own SamplingParams and RNG); a request ends at an end-of-sequence id,
// a stop string, max_tokens or the context limit, and its slot is reset at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "jetlm/batch_backend.h"
#include "jetlm/sampling.h"
#include "jetlm/text_generation.h"
#include "jetlm/tokenizer.h"

namespace jetlm::server {

using Clock = std::chrono::steady_clock;

struct RequestOptions {
  std::vector<int32_t> prompt;             // at least one token, all in [0, vocab)
  SamplingParams sampling;
  int64_t max_tokens = 16;                 // >= 1
  std::vector<int32_t> stop_ids;           // end-of-sequence ids: end the request, not emitted
  std::vector<std::string> stop_strings;   // generation ends before any of these
  std::string label;                       // for the log line, e.g. "chat"
};

// What the engine has produced for a request so far.
struct RequestOutput {
  std::string text;                 // text not yet taken (see Request::take)
  bool finished = false;
  std::string finish_reason;        // "stop", "length", "cancelled", "error"
  std::string error;                // for finish_reason "error"
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// One request, shared by the HTTP thread that made it and the engine thread.
class Request {
 public:
  Request(uint64_t id, RequestOptions options);

  uint64_t id() const { return id_; }
  const RequestOptions& options() const { return options_; }

  // Asks the engine to end the request (client gone, server shutting down). Safe from any thread;
  // a finished request ignores it.
  void cancel() { cancelled_.store(true); }
  bool cancel_requested() const { return cancelled_.load(); }

  // Waits up to `timeout` for new text or the end, then moves the new text out. The returned
  // snapshot's `finished` says whether the request is over (then its text is the last piece).
  RequestOutput take(std::chrono::milliseconds timeout);
  // Waits for the end; returns all the text not yet taken.
  RequestOutput wait();
  // The generated ids so far (for tests and tools).
  std::vector<int32_t> tokens() const;

 private:
  friend class Scheduler;
  // Engine side.
  void publish(const std::string& text, int32_t token);
  void finish(const std::string& reason, const std::string& error = {});

  const uint64_t id_;
  const RequestOptions options_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  RequestOutput out_;
  std::vector<int32_t> tokens_;
 public:
  // Timing, written by the engine (read after finished).
  Clock::time_point submitted, first_token, ended;
};

struct SchedulerOptions {
  int64_t prefill_chunk = 256;  // tokens per prefill step
  int max_queue = 64;           // requests waiting for a slot; beyond: QueueFull
  bool log_requests = false;    // one stderr line per finished request
};

// Counters for /metrics (a consistent copy).
struct SchedulerStats {
  int max_slots = 0, active_slots = 0, queued = 0;
  int64_t slot_tokens = 0;          // tokens held by all slots' caches now
  int64_t context_limit = 0;
  int last_batch_size = 0;
  uint64_t submitted = 0, rejected_queue_full = 0;
  uint64_t finished_stop = 0, finished_length = 0, finished_cancelled = 0, finished_error = 0;
  uint64_t prompt_tokens = 0, completion_tokens = 0;
  uint64_t decode_steps = 0, decode_rows = 0, prefill_chunks = 0, prefill_tokens = 0;
  double decode_seconds = 0, prefill_seconds = 0;
  // Latency histograms (seconds): time to first token and whole request, cumulative buckets.
  static constexpr double kBuckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  static constexpr int kBucketCount = int(sizeof(kBuckets) / sizeof(kBuckets[0]));
  uint64_t ttft_buckets[kBucketCount] = {}, latency_buckets[kBucketCount] = {};
  uint64_t ttft_count = 0, latency_count = 0;
  double ttft_sum = 0, latency_sum = 0;
  // Batch-size histogram: decode steps with a batch of exactly 1, 2, ... max_slots rows.
  std::vector<uint64_t> batch_size_steps;
};

class Scheduler {
 public:
  // `tokenizer` may be null: then no text is produced (ids only) and stop strings are not allowed.
  Scheduler(BatchBackend& backend, const Tokenizer* tokenizer, SchedulerOptions options);
  ~Scheduler();  // cancels everything and joins the engine thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  enum class Submit { Accepted, QueueFull, ShuttingDown };
  // Queues a request. Sampling parameters are validated by the HTTP layer; an empty prompt, one
  // that leaves no room in the context, or max_tokens < 1 throws jetlm::Error. Thread-safe.
  Submit submit(const std::shared_ptr<Request>& request);

  // Graceful end: new submissions get ShuttingDown; queued and running requests may finish for up
  // to `grace`, then whatever is left is cancelled. Returns once every request has ended.
  void shutdown(std::chrono::milliseconds grace);

  SchedulerStats stats() const;
  const BatchBackend& backend() const { return backend_; }

 private:
  struct Active;  // a request holding a slot
  void run();
  void step(std::vector<Active>& active);
  void admit(std::vector<Active>& active);
  void on_token(Active& a, int32_t token);
  void end(Active& a, const std::string& reason, const std::string& error = {});

  BatchBackend& backend_;
  const Tokenizer* tokenizer_;
  const SchedulerOptions options_;
  const int64_t vocab_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Request>> queue_;
  std::vector<std::shared_ptr<Request>> running_;  // admitted, not ended (shutdown cancels them)
  std::vector<int> free_slots_;
  std::vector<int64_t> slot_tokens_;  // tokens each slot holds, mirrored for stats()
  bool accepting_ = true, stop_ = false;
  int active_count_ = 0;
  SchedulerStats stats_;
  std::condition_variable idle_;  // signalled when a request ends
  std::thread engine_;
};

}  // namespace jetlm::server
