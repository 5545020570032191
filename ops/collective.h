// Collective ops: nodes that exchange values between the ranks of a communicator
// (core/communicator.h), for training on many processes (nn/data_parallel.h, docs/distributed.md).
//
// Every rank builds the same graph and runs the same schedule, so every rank reaches each
// collective node in the same order, as MPI and NCCL require. A node names its communicator by
// the number register_communicator gave it (the attribute "communicator"); the text IR prints it
// with the reduction, root or axis:
//
//   %7 = all_reduce(%6) {communicator=0, reduction="mean"}    // f32[512,512]
//
// Gradients. A graph differentiated on every rank computes, on rank r, ∂L/∂x_r of the loss of all
// ranks together, L = Σ_s L_s (as torch.distributed.nn does), so each collective's rule is its
// adjoint collective:
//
//   all_reduce sum    ↔ all_reduce sum          broadcast_from root ↔ reduce_to root
//   all_reduce mean   ↔ all_reduce mean         all_gather axis     ↔ reduce_scatter axis (sum)
//
// The asynchronous pair all_reduce_start / all_reduce_wait computes what all_reduce computes,
// split in two: the start hands the buffer to the communicator and returns at once; the wait
// returns the reduced values. The start is scheduled as early as its inputs allow
// (OpDef::schedule_early), so the kernels between the two run while the data travels.
#pragma once

#include <memory>

#include "fovea/core/communicator.h"
#include "fovea/core/graph.h"
#include "fovea/core/op.h"
#include "fovea/ops/elementwise.h"

namespace fovea {

// Sum or mean over the ranks, on every rank. f32, f64, i32 or i64.
Value all_reduce(Value x, const std::shared_ptr<Communicator>& communicator, Reduction reduction = Reduction::sum,
                 Loc where = Loc::current());
// Every rank gets root's x.
Value broadcast_from(Value x, const std::shared_ptr<Communicator>& communicator, int root = 0,
                     Loc where = Loc::current());
// Root gets the sum of every rank's x; every other rank gets zeros (so that it is the gradient
// of broadcast_from).
Value reduce_to(Value x, const std::shared_ptr<Communicator>& communicator, int root = 0, Loc where = Loc::current());
// The ranks' x side by side along `axis`, rank 0's first: dim `axis` grows size() times.
Value all_gather(Value x, const std::shared_ptr<Communicator>& communicator, int axis = 0,
                 Loc where = Loc::current());
// Dim `axis` of x is cut into size() equal parts; rank r gets part r reduced over the ranks.
Value reduce_scatter(Value x, const std::shared_ptr<Communicator>& communicator, int axis = 0,
                     Reduction reduction = Reduction::sum, Loc where = Loc::current());

// all_reduce in two nodes; all_reduce_wait(all_reduce_start(x, c, r)) is all_reduce(x, c, r).
// The start's output must be read only by its wait.
Value all_reduce_start(Value x, const std::shared_ptr<Communicator>& communicator,
                       Reduction reduction = Reduction::sum, Loc where = Loc::current());
Value all_reduce_wait(Value started, Loc where = Loc::current());

// What the kernels read: the communicator itself, looked up once per compiled step.
struct CollectiveParams {
  Communicator* communicator = nullptr;
  Reduction reduction = Reduction::sum;
  int root = 0;
  int axis = 0;  // all_gather and reduce_scatter
  static CollectiveParams decode(const DecodeContext& context);
};

// The communicator a collective node names.
Communicator& communicator_of(const Node& node);

namespace ops {
extern const OpDef all_reduce, broadcast_from, reduce_to, all_gather, reduce_scatter, all_reduce_start,
    all_reduce_wait;
}  // namespace ops

}  // namespace fovea
