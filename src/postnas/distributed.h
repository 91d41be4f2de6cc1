// Data-parallel training across processes (one per GPU): the rank environment, a launcher that
// starts the worker processes, and the one collective the trainer needs (a gradient all-reduce).
//
// Collectives are libtorch's c10d process groups over a c10d::TCPStore hosted by rank 0:
//   - CUDA: c10d::ProcessGroupNCCL (when this libtorch was built with CUDA; JETLM_POSTNAS_NCCL);
//   - CPU:  an all-reduce through the store itself (each rank posts its buffer, every rank sums all
//           of them in rank order, so the results are bit-identical everywhere). It is slow and only
//           meant for tests and tiny runs on machines without GPUs: PyPI's libtorch ships no Gloo
//           headers, so c10d::ProcessGroupGloo cannot be constructed from C++ here.
//
// Environment of a worker (set by launch_workers, or by the user for a multi-node launch):
//   JETLM_RANK, JETLM_WORLD_SIZE, JETLM_LOCAL_RANK (GPU index), JETLM_MASTER_ADDR, JETLM_MASTER_PORT.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace jetlm::postnas {

struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  bool active() const { return world > 1; }
};

// Reads the JETLM_* variables above; world 1 when JETLM_WORLD_SIZE is unset. Throws jetlm::Error
// naming the variable when one is malformed or inconsistent.
DistEnv dist_env_from_environment();

class Collective {
 public:
  virtual ~Collective() = default;
  // Sums `t` over all ranks, in place (every rank ends with the same values).
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
  virtual std::string backend() const = 0;
  // Call once at the end: rank 0 hosts the store, so it waits here until every other rank has
  // called finish() (then none of them talks to the store any more); the others return at once.
  virtual void finish() = 0;
};

// The collective for `env` on `device` (NCCL for CUDA, the store all-reduce for CPU). Blocks until
// every rank has joined (timeout `timeout_s`). Throws jetlm::Error when NCCL is asked for but this
// build has none.
std::unique_ptr<Collective> make_collective(const DistEnv& env, const torch::Device& device, int timeout_s = 1800);

// Runs `world` copies of this program (same arguments, read from /proc/self/cmdline) as local
// workers with JETLM_RANK = JETLM_LOCAL_RANK = 0..world-1 and a free loopback port; waits for all.
// When one fails the others are stopped. Returns 0 when all succeeded, else the first failure's
// exit status (128 + signal when killed).
int launch_workers(int world);

}  // namespace jetlm::postnas
