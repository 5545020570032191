// --data-parallel for the examples (docs/distributed.md): joining mpirun's ranks, keeping all
// but rank 0 quiet, and cutting the global batch.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <fovea/distributed/mpi_communicator.h>
#include <fovea/nn/data_parallel.h>
#include <fovea/ops/collective.h>
#include <CLI/CLI.hpp>

namespace fovea::tools {

// Where this process stands among the ranks of a data-parallel run; one rank without one.
class Ranks {
 public:
  void add_to(CLI::App& app) {
    app.add_flag("--data-parallel", enabled_,
                 "train on every rank of mpirun (mpirun -np N ...), each on its share of the batch");
  }

  // Joins the ranks when --data-parallel was given. Rank 0 alone prints and writes `json`; the
  // others keep quiet and write their files under out_dir/rank<r>. A global batch must split
  // evenly.
  void join(std::int64_t batch, std::string& out_dir, std::string& json) {
    if (!enabled_) return;
    world_ = MpiCommunicator::world();
    rank_ = world_->rank();
    size_ = world_->size();
    if (batch % size_ != 0) throw Error(fmt::format("--batch {} does not split evenly over {} ranks", batch, size_));
    if (rank_ != 0) {
      out_dir += fmt::format("/rank{}", rank_);
      json.clear();
      if (std::freopen("/dev/null", "w", stdout) == nullptr) std::perror("quieting stdout");
    }
    std::printf("data parallel: %d ranks, %lld examples each per step\n", size_, static_cast<long long>(batch / size_));
  }

  bool enabled() const { return world_ != nullptr; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::shared_ptr<MpiCommunicator>& world() const { return world_; }
  // Checkpoints are written by rank 0 and read by every rank.
  bool writes_checkpoints() const { return rank_ == 0; }
  // The optimizer's data_parallel option: the gradients averaged over the ranks, or nothing.
  std::optional<nn::DataParallelOptions> averaging() const {
    if (!world_) return std::nullopt;
    return nn::DataParallelOptions{.communicator = world_};
  }
  // The mean of a value (a loss) over the ranks: over the global batch. The value itself alone.
  Value global_mean(Value local) const { return world_ ? all_reduce(local, world_, Reduction::mean) : local; }

 private:
  bool enabled_ = false;
  std::shared_ptr<MpiCommunicator> world_;
  int rank_ = 0, size_ = 1;
};

}  // namespace fovea::tools
