#include "server/scheduler.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace jetlm::server {

namespace {
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

// ---------------------------------------------------------------------------------------------
// Request

Request::Request(uint64_t id, RequestOptions options) : id_(id), options_(std::move(options)) {
  out_.prompt_tokens = int64_t(options_.prompt.size());
  submitted = Clock::now();
}

RequestOutput Request::take(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return out_.finished || !out_.text.empty(); });
  RequestOutput snapshot = out_;
  out_.text.clear();
  return snapshot;
}

RequestOutput Request::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return out_.finished; });
  RequestOutput snapshot = out_;
  out_.text.clear();
  return snapshot;
}

std::vector<int32_t> Request::tokens() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tokens_;
}

void Request::publish(const std::string& text, int32_t token) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out_.text += text;
    if (token >= 0) {
      tokens_.push_back(token);
      out_.completion_tokens = int64_t(tokens_.size());
    }
  }
  if (!text.empty()) changed_.notify_all();
}

void Request::finish(const std::string& reason, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (out_.finished) return;
    out_.finished = true;
    out_.finish_reason = reason;
    out_.error = error;
  }
  changed_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Scheduler

struct Scheduler::Active {
  std::shared_ptr<Request> request;
  int slot = -1;
  int64_t prefilled = 0;      // prompt tokens the slot has consumed
  bool decoding = false;      // `pending` is a sampled token the slot has not consumed yet
  int32_t pending = -1;
  bool done = false;
  bool got_first_token = false;
  std::vector<int32_t> history;  // prompt + generated (the penalties look at it)
  int64_t generated = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamingDetokenizer> detokenizer;
  std::unique_ptr<StopStringFilter> stops;
};

Scheduler::Scheduler(BatchBackend& backend, const Tokenizer* tokenizer, SchedulerOptions options)
    : backend_(backend), tokenizer_(tokenizer), options_(options), vocab_(backend.config().vocab) {
  if (options_.prefill_chunk < 1) throw_error("prefill chunk", "expected at least 1 token");
  if (options_.max_queue < 0) throw_error("max queue", "expected >= 0");
  for (int slot = backend_.max_slots() - 1; slot >= 0; --slot) free_slots_.push_back(slot);
  slot_tokens_.assign(size_t(backend_.max_slots()), 0);
  stats_.max_slots = backend_.max_slots();
  stats_.context_limit = backend_.context_limit();
  stats_.batch_size_steps.assign(size_t(backend_.max_slots()), 0);
  engine_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    accepting_ = false;
    stop_ = true;
  }
  wake_.notify_all();
  if (engine_.joinable()) engine_.join();
}

Scheduler::Submit Scheduler::submit(const std::shared_ptr<Request>& request) {
  const RequestOptions& o = request->options();
  if (o.prompt.empty() || int64_t(o.prompt.size()) >= backend_.context_limit())
    throw_error("request", "the prompt has " + std::to_string(o.prompt.size()) + " tokens, expected 1.." +
                               std::to_string(backend_.context_limit() - 1) + " (the context limit leaves room to generate)");
  if (o.max_tokens < 1) throw_error("request", "max_tokens must be at least 1");
  if (tokenizer_ == nullptr && !o.stop_strings.empty())
    throw_error("request", "stop strings need a tokenizer (the scheduler has none)");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!accepting_) return Submit::ShuttingDown;
    // Bounded: the queue holds requests waiting for a slot, so a full batch plus a full queue
    // turns the next request away instead of letting latency grow without bound.
    if (queue_.size() >= size_t(options_.max_queue) + free_slots_.size()) {
      ++stats_.rejected_queue_full;
      return Submit::QueueFull;
    }
    request->submitted = Clock::now();
    queue_.push_back(request);
    ++stats_.submitted;
    stats_.queued = int(queue_.size());
  }
  wake_.notify_all();
  return Submit::Accepted;
}

void Scheduler::shutdown(std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> lock(mutex_);
  accepting_ = false;
  const auto all_ended = [&] { return queue_.empty() && active_count_ == 0; };
  if (!idle_.wait_for(lock, grace, all_ended)) {
    for (const auto& request : queue_) request->cancel();
    for (const auto& request : running_) request->cancel();
    wake_.notify_all();
    idle_.wait(lock, all_ended);
  }
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  SchedulerStats s = stats_;
  s.slot_tokens = 0;
  for (int64_t n : slot_tokens_) s.slot_tokens += n;
  return s;
}

void Scheduler::admit(std::vector<Active>& active) {
  // Called with mutex_ held.
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->cancel_requested()) {  // gone before it got a slot
      (*it)->ended = Clock::now();
      (*it)->finish("cancelled");
      ++stats_.finished_cancelled;
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  while (!free_slots_.empty() && !queue_.empty()) {
    Active a;
    a.request = queue_.front();
    queue_.pop_front();
    a.slot = free_slots_.back();
    free_slots_.pop_back();
    const RequestOptions& o = a.request->options();
    a.history = o.prompt;
    // max_tokens may exceed the context (generation also ends when the context is full), so the
    // context bounds the reservation: a huge max_tokens must not throw on the engine thread.
    a.history.reserve(o.prompt.size() + size_t(std::clamp<int64_t>(o.max_tokens, 0, backend_.context_limit())));
    if (tokenizer_ != nullptr) {
      a.detokenizer = std::make_unique<StreamingDetokenizer>(*tokenizer_, /*skip_special=*/true);
      a.stops = std::make_unique<StopStringFilter>(o.stop_strings);
    }
    ++active_count_;
    running_.push_back(a.request);
    active.push_back(std::move(a));
  }
  stats_.queued = int(queue_.size());
  stats_.active_slots = active_count_;
}

void Scheduler::run() {
  std::vector<Active> active;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || !active.empty() || !queue_.empty(); });
      if (stop_) break;
      admit(active);
    }
    if (!active.empty()) step(active);
    active.erase(std::remove_if(active.begin(), active.end(), [](const Active& a) { return a.done; }), active.end());
  }
  // Destruction: whatever is left ends as cancelled.
  for (Active& a : active)
    if (!a.done) end(a, "cancelled");
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& request : queue_) request->finish("cancelled");
  queue_.clear();
}

void Scheduler::step(std::vector<Active>& active) {
  for (Active& a : active) {
    if (!a.done && a.request->cancel_requested()) end(a, "cancelled");
    if (a.done || a.sampler) continue;
    try {
      a.sampler = std::make_unique<Sampler>(a.request->options().sampling);
    } catch (const std::exception& e) {  // the HTTP layer validates first; this is a backstop
      end(a, "error", e.what());
    }
  }

  // One prefill chunk, for the oldest request still prefilling (active keeps admission order).
  auto prefilling = std::find_if(active.begin(), active.end(), [](const Active& a) { return !a.done && !a.decoding; });
  if (prefilling != active.end()) {
    Active& a = *prefilling;
    const std::vector<int32_t>& prompt = a.request->options().prompt;
    const int64_t n = std::min<int64_t>(options_.prefill_chunk, int64_t(prompt.size()) - a.prefilled);
    const bool last = a.prefilled + n == int64_t(prompt.size());
    std::vector<float> logits(last ? size_t(vocab_) : 0);
    const auto t0 = Clock::now();
    try {
      if (n < 1) throw_error("prompt", "empty prompt");
      backend_.prefill(a.slot, prompt.data() + a.prefilled, n, last ? logits.data() : nullptr);
    } catch (const std::exception& e) {
      end(a, "error", e.what());
    }
    if (!a.done) {
      a.prefilled += n;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        slot_tokens_[size_t(a.slot)] = backend_.slot_tokens(a.slot);
        ++stats_.prefill_chunks;
        stats_.prefill_tokens += uint64_t(n);
        stats_.prefill_seconds += seconds(Clock::now() - t0);
      }
      if (last) on_token(a, a.sampler->sample(logits.data(), vocab_, a.history));
    }
  }

  // One decode step for every request with a token to feed.
  std::vector<Active*> rows;
  for (Active& a : active)
    if (!a.done && a.decoding) rows.push_back(&a);
  if (rows.empty()) return;
  const int64_t B = int64_t(rows.size());
  std::vector<int> slots(rows.size());
  std::vector<int32_t> ids(rows.size());
  for (size_t b = 0; b < rows.size(); ++b) {
    slots[b] = rows[b]->slot;
    ids[b] = rows[b]->pending;
  }
  std::vector<float> logits(size_t(B * vocab_));
  const auto t0 = Clock::now();
  try {
    backend_.decode(slots.data(), ids.data(), B, logits.data());
  } catch (const std::exception& e) {
    for (Active* a : rows) end(*a, "error", e.what());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Active* a : rows) slot_tokens_[size_t(a->slot)] = backend_.slot_tokens(a->slot);
    ++stats_.decode_steps;
    stats_.decode_rows += uint64_t(B);
    stats_.decode_seconds += seconds(Clock::now() - t0);
    stats_.last_batch_size = int(B);
    ++stats_.batch_size_steps[size_t(B - 1)];
  }
  for (size_t b = 0; b < rows.size(); ++b) {
    Active& a = *rows[b];
    a.decoding = false;
    on_token(a, a.sampler->sample(logits.data() + int64_t(b) * vocab_, vocab_, a.history));
  }
}

void Scheduler::on_token(Active& a, int32_t token) {
  const RequestOptions& o = a.request->options();
  if (!a.got_first_token) {
    a.got_first_token = true;
    a.request->first_token = Clock::now();
  }
  if (std::find(o.stop_ids.begin(), o.stop_ids.end(), token) != o.stop_ids.end()) {
    end(a, "stop");
    return;
  }
  a.history.push_back(token);
  ++a.generated;
  std::string text;
  if (tokenizer_ != nullptr) text = a.stops->push(a.detokenizer->push(token));
  a.request->publish(text, token);
  if (a.stops && a.stops->stopped()) {
    end(a, "stop");
  } else if (a.generated >= o.max_tokens) {
    end(a, "length");
  } else if (backend_.slot_tokens(a.slot) + 1 >= backend_.context_limit()) {
    end(a, "length");  // prompt + completion fill the context (as Session stops, and OpenAI counts)
  } else {
    a.pending = token;
    a.decoding = true;
  }
}

void Scheduler::end(Active& a, const std::string& reason, const std::string& error) {
  if (a.done) return;
  a.done = true;
  a.decoding = false;
  if (tokenizer_ != nullptr && a.stops && !a.stops->stopped()) {
    std::string tail = a.stops->push(a.detokenizer->flush());
    tail += a.stops->flush();
    a.request->publish(tail, -1);
  }
  backend_.reset_slot(a.slot);  // the slot is free for the next request at once
  const auto now = Clock::now();
  a.request->ended = now;
  const bool had_first = a.got_first_token;
  const double latency = seconds(now - a.request->submitted);
  const double ttft = had_first ? seconds(a.request->first_token - a.request->submitted) : 0.0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    free_slots_.push_back(a.slot);
    slot_tokens_[size_t(a.slot)] = 0;
    --active_count_;
    running_.erase(std::find(running_.begin(), running_.end(), a.request));
    stats_.active_slots = active_count_;
    if (reason == "stop") ++stats_.finished_stop;
    else if (reason == "length") ++stats_.finished_length;
    else if (reason == "cancelled") ++stats_.finished_cancelled;
    else ++stats_.finished_error;
    stats_.prompt_tokens += uint64_t(a.prefilled);
    stats_.completion_tokens += uint64_t(a.generated);
    auto observe = [](double value, uint64_t* buckets, uint64_t& count, double& sum) {
      for (int i = 0; i < SchedulerStats::kBucketCount; ++i)
        if (value <= SchedulerStats::kBuckets[i]) ++buckets[i];
      ++count;
      sum += value;
    };
    observe(latency, stats_.latency_buckets, stats_.latency_count, stats_.latency_sum);
    if (had_first) observe(ttft, stats_.ttft_buckets, stats_.ttft_count, stats_.ttft_sum);
  }
  // Publish the end only after the slot is back, so a client that saw its request finish also
  // sees the slot free in /metrics.
  a.request->finish(reason, error);
  idle_.notify_all();
  wake_.notify_all();
  if (options_.log_requests) {
    const RequestOptions& o = a.request->options();
    std::fprintf(stderr, "jetlm serve: request %llu%s%s: %zu prompt + %lld completion tokens, %.3f s (first token %.3f s), %s%s%s\n",
                 (unsigned long long)a.request->id(), o.label.empty() ? "" : " ", o.label.c_str(), o.prompt.size(),
                 (long long)a.generated, latency, ttft, reason.c_str(), error.empty() ? "" : ": ", error.c_str());
  }
}

}  // namespace jetlm::server
