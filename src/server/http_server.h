// The HTTP front of `jetlm serve` (cpp-httplib): OpenAI-compatible routes over a Scheduler.
//   POST /v1/completions, POST /v1/chat/completions  (stream false: one JSON; true: SSE chunks)
//   GET /v1/models, GET /health, GET /metrics (Prometheus text)
// Every error is an OpenAI-style JSON body with a 4xx/5xx status; a client that disconnects
// mid-stream cancels its request.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "server/api.h"
#include "server/scheduler.h"

namespace jetlm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0: any free port (bind() returns it)
  std::string api_key;                   // non-empty: /v1/* needs "Authorization: Bearer KEY"
  std::chrono::milliseconds shutdown_grace{5000};  // in-flight requests may finish this long
  size_t max_body_bytes = 8u << 20;      // larger bodies get 413
  int http_threads = 64;                 // connections served at once (streams hold one each)
};

class HttpServer {
 public:
  HttpServer(Scheduler& scheduler, ApiContext context, ServerOptions options);
  ~HttpServer();

  // Binds the listening socket; returns the port. Throws jetlm::Error when it cannot.
  int bind();
  // Serves until `stop` becomes true (a signal handler sets it), then shuts down gracefully:
  // new requests get 503, in-flight ones finish within the grace period or are cancelled, open
  // streams are closed properly, and the listener stops. Returns false if serving failed.
  bool serve(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jetlm::server
