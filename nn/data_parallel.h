// Data-parallel training: every rank runs the same step on its share of the batch, and the
// gradients are averaged over the ranks before the optimizer uses them (docs/distributed.md).
//
//   auto world = MpiCommunicator::world();                        // distributed/mpi_communicator.h
//   nn::broadcast_parameters(g, *world);                          // rank 0's weights everywhere
//   auto step = nn::adamw(loss, g.parameters(), {.lr = ..., .data_parallel = {{.communicator = world}}});
//   ... each rank feeds rows [r·B/p, (r+1)·B/p) of every global batch of B (io/dataset.h, Batcher)
//
// Each rank's loss is the mean over its B/p rows, so the mean of the ranks' gradients is the
// gradient of the mean over all B rows: the step equals the one-process step at batch B, up to
// the order in which float sums are taken.
//
// Buckets. One all-reduce per gradient would pay the communicator's latency once per parameter;
// one for all of them could only start when the whole backward is done. So, as PyTorch's
// DistributedDataParallel does, the gradients are packed into buckets of about bucket_bytes, in
// reverse order of the parameters (the backward produces the last layers' gradients first),
// each bucket flattened and concatenated, all-reduced, and cut back into gradients. With
// `overlap`, each bucket's all-reduce is an all_reduce_start / all_reduce_wait pair
// (ops/collective.h): the start runs as soon as the bucket's last gradient exists, the wait just
// before the optimizer reads it, and the communicator's thread or stream moves the bucket while
// the backward of earlier layers runs. The memory plan keeps each bucket alive from its start
// to the last read of its wait.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fovea/core/communicator.h"
#include "fovea/core/graph.h"

namespace fovea::nn {

struct DataParallelOptions {
  std::shared_ptr<Communicator> communicator;
  // About this many bytes of gradients per all-reduce (PyTorch's default, 25 MB); a gradient
  // larger than this gets a bucket of its own.
  std::int64_t bucket_bytes = std::int64_t{25} << 20;
  // Asynchronous all-reduces that overlap the backward; off: each bucket's all-reduce blocks
  // where it stands in the schedule.
  bool overlap = true;
};

// The gradients averaged over the ranks, in the order given. Gradients of different dtypes go
// to different buckets.
std::vector<Value> average_gradients(const std::vector<Value>& grads, const DataParallelOptions& options);

// Makes every rank's parameters and state equal to rank 0's (call before the first step, and
// after rank 0 alone loaded a checkpoint). Host tensors: call it before a device backend makes
// its copies, or push them again afterwards.
void broadcast_parameters(Graph& graph, Communicator& communicator, int root = 0);

}  // namespace fovea::nn
