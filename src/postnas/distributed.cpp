#include "postnas/distributed.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "core/env.h"
#include "core/error.h"

#ifdef JETLM_POSTNAS_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace jetlm::postnas {

namespace {

// Rank 0 must outlive every other rank's use of the store it hosts.
void finish_with_store(c10d::Store& store, int rank, int world) {
  if (rank != 0) {
    store.add("finished", 1);
    return;
  }
  while (store.add("finished", 0) < world - 1) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// All-reduce through the TCP store: rank r posts its bytes under "ar/<round>/<r>", every rank reads
// all of them and sums them in rank order (identical results everywhere), the last reader deletes
// the round's keys.
class StoreCollective final : public Collective {
 public:
  StoreCollective(c10::intrusive_ptr<c10d::Store> store, int rank, int world)
      : store_(std::move(store)), rank_(rank), world_(world) {}

  void all_reduce_sum(torch::Tensor& t) override {
    const torch::Tensor local = t.detach().to(torch::kCPU).contiguous();
    const size_t bytes = size_t(local.numel()) * local.element_size();
    const std::string prefix = "ar/" + std::to_string(round_++) + "/";
    const auto* p = static_cast<const uint8_t*>(local.data_ptr());
    store_->set(prefix + std::to_string(rank_), std::vector<uint8_t>(p, p + bytes));
    torch::Tensor sum = torch::zeros_like(local);
    for (int r = 0; r < world_; ++r) {
      std::vector<uint8_t> data = store_->get(prefix + std::to_string(r));
      if (data.size() != bytes)
        throw_error("distributed", "rank " + std::to_string(r) + " sent " + std::to_string(data.size()) +
                                       " bytes for an all-reduce of " + std::to_string(bytes) + " (ranks out of step?)");
      sum += torch::from_blob(data.data(), local.sizes(), local.options());
    }
    if (store_->add(prefix + "done", 1) == world_) {
      for (int r = 0; r < world_; ++r) store_->deleteKey(prefix + std::to_string(r));
      store_->deleteKey(prefix + "done");
    }
    t.copy_(sum);
  }
  std::string backend() const override { return "store (CPU)"; }
  void finish() override { finish_with_store(*store_, rank_, world_); }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  int rank_, world_;
  int64_t round_ = 0;
};

#ifdef JETLM_POSTNAS_NCCL
class NcclCollective final : public Collective {
 public:
  NcclCollective(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world, int timeout_s)
      : store_(store), rank_(rank), world_(world) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::seconds(timeout_s);
    group_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
  }
  void all_reduce_sum(torch::Tensor& t) override {
    std::vector<at::Tensor> tensors{t};
    group_->allreduce(tensors)->wait();
  }
  std::string backend() const override { return "NCCL"; }
  void finish() override { finish_with_store(*store_, rank_, world_); }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  int rank_, world_;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> group_;
};
#endif

// A free TCP port on the loopback interface (the OS picks it; a race with another program taking it
// before rank 0 binds is possible but rare).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw_error("distributed", std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw_error("distributed", std::string("cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv env;
  env.world = int(env_int("JETLM_WORLD_SIZE", 1, 1, 4096));
  env.rank = int(env_int("JETLM_RANK", 0, 0, env.world - 1));
  env.local_rank = int(env_int("JETLM_LOCAL_RANK", env.rank, 0, 4095));
  env.master_port = int(env_int("JETLM_MASTER_PORT", 0, 0, 65535));
  if (const char* a = std::getenv("JETLM_MASTER_ADDR"); a && *a) env.master_addr = a;
  if (env.world > 1 && env.master_port == 0)
    throw_error("JETLM_MASTER_PORT", "must be set when JETLM_WORLD_SIZE > 1 (rank 0 hosts the store there)");
  return env;
}

std::unique_ptr<Collective> make_collective(const DistEnv& env, const torch::Device& device, int timeout_s) {
  c10d::TCPStoreOptions options;
  options.port = uint16_t(env.master_port);
  options.isServer = env.rank == 0;
  options.numWorkers = size_t(env.world);
  options.waitWorkers = true;
  options.timeout = std::chrono::seconds(timeout_s);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  } catch (const std::exception& e) {
    throw_error("distributed", "rank " + std::to_string(env.rank) + " cannot join the store at " + env.master_addr +
                                   ":" + std::to_string(env.master_port) + ": " + e.what());
  }
  if (device.is_cuda()) {
#ifdef JETLM_POSTNAS_NCCL
    c10::cuda::set_device(device.index());
    return std::make_unique<NcclCollective>(store, env.rank, env.world, timeout_s);
#else
    throw_error("distributed", "multi-GPU training needs NCCL, and this jetlm's libtorch was linked without CUDA");
#endif
  }
  return std::make_unique<StoreCollective>(store, env.rank, env.world);
}

int launch_workers(int world) {
  if (world < 2) throw_error("--nproc", "expected >= 2 workers");
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t end = raw.find('\0', pos);
    args.push_back(raw.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  if (args.empty()) throw_error("--nproc", "cannot read this program's arguments from /proc/self/cmdline");
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw_error("--nproc", std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      ::setenv("JETLM_RANK", std::to_string(r).c_str(), 1);
      ::setenv("JETLM_LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("JETLM_WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("JETLM_MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("JETLM_MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "--nproc: exec failed: %s\n", std::strerror(errno));
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  int first_failure = 0;
  for (size_t left = pids.size(); left > 0; --left) {
    int status = 0;
    const pid_t done = ::wait(&status);
    if (done < 0) break;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && first_failure == 0) {
      first_failure = code;
      std::fprintf(stderr, "--nproc: a worker (pid %d) failed with status %d; stopping the others\n", int(done), code);
      for (pid_t p : pids)
        if (p != done) ::kill(p, SIGTERM);
    }
  }
  return first_failure;
}

}  // namespace jetlm::postnas
