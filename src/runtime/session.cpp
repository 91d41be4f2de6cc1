#include "jetlm/session.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace jetlm {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

Session::Session(const Model& model) : model_(&model), config_(&model.config()), cache_(model.new_cache()) {}

namespace {
const ModelConfig& no_layers() {
  static const ModelConfig config;  // n_layers 0: an empty HybridCache for backend-slot sessions
  return config;
}
}  // namespace

Session::Session(BatchBackend& backend, int slot)
    : backend_(&backend), slot_(slot), config_(&backend.config()), cache_(no_layers()) {
  backend_->reset_slot(slot_);
}

Session::Snapshot Session::snapshot() const {
  if (backend_) throw_error("session", "snapshot() is not available on a backend slot");
  return {cache_.snapshot(), history_, last_logits_};
}

void Session::feed(std::span<const int32_t> ids, int64_t chunk,
                   const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t vocab = config_->vocab;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw_error("prompt", "token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                " is out of range, expected 0.." + std::to_string(vocab - 1));
  const int64_t total = int64_t(history_.size() + ids.size());
  if (total > context_limit())
    throw_error("prompt", std::to_string(total) + " tokens exceed the model's context of " +
                              std::to_string(context_limit()) + " (max_position_embeddings)");
  if (ids.empty()) return;
  chunk = std::max<int64_t>(chunk, 1);
  last_logits_.resize(size_t(vocab));
  ForwardOptions last_only;
  last_only.all_logits = false;
  for (size_t t0 = 0; t0 < ids.size(); t0 += size_t(chunk)) {
    const int64_t len = std::min<int64_t>(chunk, int64_t(ids.size() - t0));
    if (backend_)
      backend_->prefill(slot_, ids.data() + t0, len, last_logits_.data());
    else
      model_->forward(ids.data() + t0, len, cache_, last_logits_.data(), last_only);
    history_.insert(history_.end(), ids.begin() + int64_t(t0), ids.begin() + int64_t(t0) + len);
    if (progress) progress(int64_t(t0) + len, int64_t(ids.size()));
  }
}

GenerateResult Session::generate(const GenerateOptions& options,
                                 const std::function<bool(int32_t)>& on_token) {
  if (last_logits_.empty()) throw_error("generate", "nothing to continue: feed a prompt first");
  Sampler sampler(options.sampling);
  GenerateResult result;
  result.finish_reason = "length";
  const auto t0 = Clock::now();
  std::vector<float> logits;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    if (int64_t(history_.size()) >= context_limit()) {
      result.finish_reason = "context";
      break;
    }
    logits = last_logits_;  // the sampler's penalties modify their input
    const int32_t token = sampler.sample(logits.data(), int64_t(logits.size()), history_);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) != options.stop_ids.end()) {
      // The stop token joins the history so a following chat turn sees it.
      feed(std::span<const int32_t>(&token, 1));
      result.finish_reason = "stop";
      break;
    }
    result.tokens.push_back(token);
    const bool keep_going = !on_token || on_token(token);
    feed(std::span<const int32_t>(&token, 1));
    if (!keep_going) {
      result.finish_reason = "stop";
      break;
    }
  }
  result.decode_seconds = since(t0);
  return result;
}

void Session::reset() {
  if (backend_) backend_->reset_slot(slot_);
  else cache_.reset();
  history_.clear();
  last_logits_.clear();
}

void Session::restore(const Snapshot& s) {
  if (backend_) throw_error("session", "restore() is not available on a backend slot");
  cache_.restore(s.cache);
  history_ = s.history;
  last_logits_ = s.last_logits;
}

}  // namespace jetlm
