#include "server/http_server.h"

#include <httplib.h>

#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace jetlm::server {

namespace {

using json = nlohmann::json;

// Text from the model is valid UTF-8 (the detokenizer repairs bytes), but a replacement beats an
// exception should anything slip through.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

json usage_json(const RequestOutput& out) {
  return {{"prompt_tokens", out.prompt_tokens},
          {"completion_tokens", out.completion_tokens},
          {"total_tokens", out.prompt_tokens + out.completion_tokens}};
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
}

// Fixed labels only, so a client probing random paths cannot grow the metrics without bound.
std::string route_label(const std::string& path) {
  for (const char* known : {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"})
    if (path == known) return known;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

// The methods a known route answers ("" for an unknown path): a wrong method there is 405, not 404.
std::string allowed_methods(const std::string& path) {
  const std::string route = route_label(path);
  if (route == "other") return "";
  return route == "/v1/completions" || route == "/v1/chat/completions" ? "POST" : "GET, HEAD";
}

struct StreamState {
  bool started = false;
};

}  // namespace

struct HttpServer::Impl {
  Impl(Scheduler& s, ApiContext c, ServerOptions o) : scheduler(s), ctx(std::move(c)), opt(std::move(o)) {}

  Scheduler& scheduler;
  const ApiContext ctx;
  const ServerOptions opt;
  httplib::Server svr;
  const std::time_t started = std::time(nullptr);
  std::atomic<uint64_t> next_id{1};
  std::atomic<int> open_streams{0};
  std::atomic<bool> shutting_down{false};
  std::mutex counts_mutex;
  std::map<std::pair<std::string, int>, uint64_t> http_counts;  // (route, status) -> responses

  void setup();
  bool authorized(const httplib::Request& req, httplib::Response& res);
  void generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  std::string metrics();
};

bool HttpServer::Impl::authorized(const httplib::Request& req, httplib::Response& res) {
  if (opt.api_key.empty()) return true;
  const std::string header = req.get_header_value("Authorization");
  if (header == "Bearer " + opt.api_key) return true;
  send_error(res, ApiError(401, header.empty() ? "You didn't provide an API key. Provide it in an Authorization header "
                                                 "using Bearer auth (Authorization: Bearer YOUR_KEY)."
                                               : "Incorrect API key provided.",
                           "", "invalid_api_key"));
  return false;
}

void HttpServer::Impl::generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  if (!authorized(req, res)) return;
  ApiRequest api;
  try {
    api = parse_request(parse_body(req.body), endpoint, ctx);
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  }
  const uint64_t id = next_id++;
  const bool chat = endpoint == Endpoint::Chat;
  const bool include_usage = api.include_usage;
  auto request = std::make_shared<Request>(id, std::move(api.options));
  Scheduler::Submit submitted;
  try {
    submitted = scheduler.submit(request);
  } catch (const Error& e) {  // parse_request checks the same limits; this is a backstop
    send_error(res, ApiError(400, e.what()));
    return;
  }
  switch (submitted) {
    case Scheduler::Submit::Accepted:
      break;
    case Scheduler::Submit::QueueFull:
      send_error(res, ApiError(429, "The server is at capacity: every slot is busy and the queue is full. Retry later.",
                               "", "rate_limit_exceeded", "rate_limit_error"));
      return;
    case Scheduler::Submit::ShuttingDown:
      send_error(res, ApiError(503, "The server is shutting down.", "", "shutting_down", "server_error"));
      return;
  }
  const std::string oid = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(id);
  const std::time_t created = std::time(nullptr);
  const std::string model = ctx.model_name;
  auto chunk = [=](const json& choice) {
    return json{{"id", oid}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                {"model", model}, {"choices", json::array({choice})}};
  };

  if (!api.stream) {
    const RequestOutput out = request->wait();
    if (out.finish_reason == "error") {
      send_error(res, ApiError(500, "The request failed inside the engine: " + out.error, "", "internal_error", "server_error"));
      return;
    }
    if (out.finish_reason == "cancelled") {
      send_error(res, ApiError(503, "The request was cancelled: the server is shutting down.", "", "cancelled", "server_error"));
      return;
    }
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", out.finish_reason}};
    if (chat) choice["message"] = {{"role", "assistant"}, {"content", out.text}};
    else choice["text"] = out.text;
    json body = {{"id", oid}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", created},
                 {"model", model}, {"choices", json::array({choice})}, {"usage", usage_json(out)}};
    res.set_content(dump(body), "application/json");
    return;
  }

  ++open_streams;
  auto state = std::make_shared<StreamState>();
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=](size_t, httplib::DataSink& sink) {
        const RequestOutput out = request->take(std::chrono::milliseconds(250));
        std::string payload;
        if (!state->started) {
          state->started = true;
          if (chat)
            payload += sse(chunk({{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                                  {"logprobs", nullptr}, {"finish_reason", nullptr}}));
        }
        if (!out.text.empty()) {
          json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
          if (chat) choice["delta"] = {{"content", out.text}};
          else choice["text"] = out.text;
          payload += sse(chunk(choice));
        }
        if (out.finished) {
          if (out.finish_reason == "error") {
            payload += sse(error_body(ApiError(500, "The request failed inside the engine: " + out.error, "",
                                               "internal_error", "server_error")));
          } else {
            json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", out.finish_reason}};
            if (chat) choice["delta"] = json::object();
            else choice["text"] = "";
            payload += sse(chunk(choice));
          }
          if (include_usage) {
            json last = chunk(json::object());
            last["choices"] = json::array();
            last["usage"] = usage_json(out);
            payload += sse(last);
          }
          payload += "data: [DONE]\n\n";
        }
        // A failed write means the client is gone: cancel, which frees the slot.
        if (!payload.empty() && !sink.write(payload.data(), payload.size())) {
          request->cancel();
          return false;
        }
        if (out.finished) sink.done();
        return true;
      },
      [this, request](bool) {
        request->cancel();  // a no-op once the request has finished
        --open_streams;
      });
}

std::string HttpServer::Impl::metrics() {
  const SchedulerStats s = scheduler.stats();
  std::ostringstream m;
  auto metric = [&](const char* name, const char* type, const char* help) {
    m << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  metric("jetlm_http_responses_total", "counter", "HTTP responses by route and status.");
  {
    std::lock_guard<std::mutex> lock(counts_mutex);
    for (const auto& [key, count] : http_counts)
      m << "jetlm_http_responses_total{route=\"" << key.first << "\",status=\"" << key.second << "\"} " << count << '\n';
  }
  metric("jetlm_requests_submitted_total", "counter", "Generation requests accepted into the queue.");
  m << "jetlm_requests_submitted_total " << s.submitted << '\n';
  metric("jetlm_requests_rejected_total", "counter", "Generation requests turned away because the queue was full.");
  m << "jetlm_requests_rejected_total{reason=\"queue_full\"} " << s.rejected_queue_full << '\n';
  metric("jetlm_requests_finished_total", "counter", "Generation requests ended, by finish reason.");
  m << "jetlm_requests_finished_total{reason=\"stop\"} " << s.finished_stop << '\n'
    << "jetlm_requests_finished_total{reason=\"length\"} " << s.finished_length << '\n'
    << "jetlm_requests_finished_total{reason=\"cancelled\"} " << s.finished_cancelled << '\n'
    << "jetlm_requests_finished_total{reason=\"error\"} " << s.finished_error << '\n';
  metric("jetlm_prompt_tokens_total", "counter", "Prompt tokens prefilled.");
  m << "jetlm_prompt_tokens_total " << s.prompt_tokens << '\n';
  metric("jetlm_completion_tokens_total", "counter", "Tokens generated.");
  m << "jetlm_completion_tokens_total " << s.completion_tokens << '\n';
  metric("jetlm_queue_depth", "gauge", "Requests waiting for a slot.");
  m << "jetlm_queue_depth " << s.queued << '\n';
  metric("jetlm_slots_active", "gauge", "Slots held by running requests.");
  m << "jetlm_slots_active " << s.active_slots << '\n';
  metric("jetlm_slots_total", "gauge", "Slots (the most requests decoded together).");
  m << "jetlm_slots_total " << s.max_slots << '\n';
  metric("jetlm_cache_tokens", "gauge", "Tokens held by all slots' hybrid caches.");
  m << "jetlm_cache_tokens " << s.slot_tokens << '\n';
  metric("jetlm_cache_capacity_tokens", "gauge", "Tokens all slots could hold (slots x context).");
  m << "jetlm_cache_capacity_tokens " << int64_t(s.max_slots) * s.context_limit << '\n';
  metric("jetlm_batch_size", "gauge", "Rows of the latest decode step.");
  m << "jetlm_batch_size " << s.last_batch_size << '\n';
  metric("jetlm_decode_batch_size", "histogram", "Rows per decode step.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < s.batch_size_steps.size(); ++i) {
    cumulative += s.batch_size_steps[i];
    m << "jetlm_decode_batch_size_bucket{le=\"" << i + 1 << "\"} " << cumulative << '\n';
  }
  m << "jetlm_decode_batch_size_bucket{le=\"+Inf\"} " << s.decode_steps << '\n'
    << "jetlm_decode_batch_size_sum " << s.decode_rows << '\n'
    << "jetlm_decode_batch_size_count " << s.decode_steps << '\n';
  metric("jetlm_decode_seconds_total", "counter", "Time spent in decode steps.");
  m << "jetlm_decode_seconds_total " << s.decode_seconds << '\n';
  metric("jetlm_prefill_tokens_total", "counter", "Tokens run through prefill chunks.");
  m << "jetlm_prefill_tokens_total " << s.prefill_tokens << '\n';
  metric("jetlm_prefill_seconds_total", "counter", "Time spent in prefill chunks.");
  m << "jetlm_prefill_seconds_total " << s.prefill_seconds << '\n';
  auto histogram = [&](const char* name, const char* help, const uint64_t* buckets, uint64_t count, double sum) {
    metric(name, "histogram", help);
    for (int i = 0; i < SchedulerStats::kBucketCount; ++i)
      m << name << "_bucket{le=\"" << SchedulerStats::kBuckets[i] << "\"} " << buckets[i] << '\n';
    m << name << "_bucket{le=\"+Inf\"} " << count << '\n' << name << "_sum " << sum << '\n' << name << "_count " << count << '\n';
  };
  histogram("jetlm_time_to_first_token_seconds", "From submission to the first sampled token.", s.ttft_buckets,
            s.ttft_count, s.ttft_sum);
  histogram("jetlm_request_latency_seconds", "From submission to the end of the request.", s.latency_buckets,
            s.latency_count, s.latency_sum);
  return m.str();
}

void HttpServer::Impl::setup() {
  const int threads = std::max(8, opt.http_threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  svr.set_payload_max_length(opt.max_body_bytes);
  svr.set_tcp_nodelay(true);  // SSE chunks are small; do not wait to coalesce them
  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    std::lock_guard<std::mutex> lock(counts_mutex);
    ++http_counts[{route_label(req.path), res.status}];
  });
  // Statuses httplib sets itself (404 no route, 413 body too large, 400 bad HTTP) get a JSON body.
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "HTTP " + std::to_string(res.status);
    if (res.status == 404) message = "Unknown route: " + req.method + " " + req.path;
    // httplib answers 404 when no handler matched; on a known path that means the wrong method.
    if (const std::string allow = allowed_methods(req.path); res.status == 404 && !allow.empty()) {
      res.status = 405;
      res.set_header("Allow", allow);
      message = "Method " + req.method + " is not allowed on " + req.path + "; use " + allow + ".";
    }
    if (res.status == 413) message = "The request body is too large.";
    send_error(res, ApiError(res.status, message, "", res.status == 413 ? "request_too_large" : ""));
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "Internal server error: " + what, "", "internal_error", "server_error"));
  });

  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (shutting_down.load()) {
      res.status = 503;
      res.set_content(R"({"status":"shutting_down"})", "application/json");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics(), "text/plain; version=0.0.4");
  });
  auto model_json = [this] {
    return json{{"id", ctx.model_name}, {"object", "model"}, {"created", started}, {"owned_by", "jetlm"},
                {"max_model_len", ctx.context_limit}};
  };
  svr.Get("/v1/models", [this, model_json](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    res.set_content(dump(json{{"object", "list"}, {"data", json::array({model_json()})}}), "application/json");
  });
  svr.Get(R"(/v1/models/(.+))", [this, model_json](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    if (req.matches[1] != ctx.model_name) {
      send_error(res, ApiError(404, "The model '" + std::string(req.matches[1]) + "' does not exist.", "model", "model_not_found"));
      return;
    }
    res.set_content(dump(model_json()), "application/json");
  });
  svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(req, res, Endpoint::Completions);
  });
  svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generate(req, res, Endpoint::Chat);
  });
}

HttpServer::HttpServer(Scheduler& scheduler, ApiContext context, ServerOptions options)
    : impl_(std::make_unique<Impl>(scheduler, std::move(context), std::move(options))) {
  impl_->setup();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  const ServerOptions& o = impl_->opt;
  if (o.port < 0 || o.port > 65535) throw_error("--port", "expected 0..65535, got " + std::to_string(o.port));
  int port = o.port;
  if (port == 0) {
    port = impl_->svr.bind_to_any_port(o.host);
    if (port < 0) throw_error("--host " + o.host, "cannot bind a port on this address");
  } else if (!impl_->svr.bind_to_port(o.host, port)) {
    throw_error("--port " + std::to_string(port), "cannot listen on " + o.host + ":" + std::to_string(port) +
                                                      " (in use, or the address is not local)");
  }
  return port;
}

bool HttpServer::serve(const std::atomic<bool>& stop) {
  Impl& s = *impl_;
  std::atomic<bool> listener_done{false};
  bool listen_ok = true;
  std::thread listener([&] {
    listen_ok = s.svr.listen_after_bind();
    listener_done.store(true);
  });
  while (!stop.load() && !listener_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!listener_done.load()) {
    std::fprintf(stderr, "jetlm serve: shutting down (finishing in-flight requests, at most %.1f s)\n",
                 double(s.opt.shutdown_grace.count()) / 1000.0);
    s.shutting_down.store(true);
    // New requests get 503 while the running ones finish (or are cancelled after the grace).
    s.scheduler.shutdown(s.opt.shutdown_grace);
    // Let open streams write their last chunk and [DONE]: stopping the listener cuts them off.
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (s.open_streams.load() > 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    s.svr.stop();
  }
  listener.join();
  return listen_ok || stop.load();
}

}  // namespace jetlm::server
