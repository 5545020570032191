#include "fovea/backends/collectives.h"

#include <fmt/format.h>

#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "fovea/ops/collective.h"

namespace fovea {

namespace {

// Tickets of started all-reduces, by the address of the buffer being reduced, until their wait.
class Tickets {
 public:
  void remember(const void* buffer, Communicator* communicator, std::uint64_t ticket) {
    std::lock_guard lock(mutex_);
    pending_[buffer] = {communicator, ticket};
  }
  // The communicator is null for a start that has finished already.
  std::optional<std::pair<Communicator*, std::uint64_t>> take(const void* buffer) {
    std::lock_guard lock(mutex_);
    const auto found = pending_.find(buffer);
    if (found == pending_.end()) return std::nullopt;
    const auto entry = found->second;
    pending_.erase(found);
    return entry;
  }

 private:
  std::mutex mutex_;
  std::map<const void*, std::pair<Communicator*, std::uint64_t>> pending_;
};

Tickets& tickets() {
  static Tickets instance;
  return instance;
}

// The dims of x around `axis`: outer · [axis] · inner elements.
struct AroundAxis {
  std::size_t outer = 1, inner_bytes = 0;
};
AroundAxis around(const TensorArg& x, int axis) {
  AroundAxis a;
  const Shape& shape = x.shape();
  for (int d = 0; d < axis; ++d) a.outer *= static_cast<std::size_t>(shape[d]);
  a.inner_bytes = dtype_size(x.type.dtype);
  for (int d = axis; d < shape.rank(); ++d) a.inner_bytes *= static_cast<std::size_t>(shape[d]);
  return a;
}

// out (dim `axis` = p · x's) ← the ranks' x side by side along the axis. The communicator
// gathers rank after rank into scratch, [p][outer][block]; each rank's rows then go to their
// place, [outer][p][block].
void gather(const KernelContext& ctx, const CollectiveParams& p, const CollectiveMemory& memory) {
  const TensorArg &x = ctx.in(0), &out = ctx.out();
  const std::int64_t count = x.numel();
  const AroundAxis a = around(x, p.axis);
  const int ranks = p.communicator->size();
  if (a.outer == 1) {
    p.communicator->all_gather(x.data, out.data, count, x.type.dtype, memory.stream);
    return;
  }
  auto* staged = static_cast<std::byte*>(memory.scratch(out.type.nbytes()));
  p.communicator->all_gather(x.data, staged, count, x.type.dtype, memory.stream);
  for (int r = 0; r < ranks; ++r)
    memory.copy_rows(out.data + r * a.inner_bytes, ranks * a.inner_bytes, staged + r * a.outer * a.inner_bytes,
                     a.inner_bytes, a.inner_bytes, a.outer, memory.stream);
}

// The mirror image of gather: x's parts along the axis are laid out rank after rank in scratch,
// [p][outer][block], and the communicator reduces part r of every rank into rank r's out.
void scatter(const KernelContext& ctx, const CollectiveParams& p, const CollectiveMemory& memory) {
  const TensorArg &x = ctx.in(0), &out = ctx.out();
  const std::int64_t count = out.numel();
  const AroundAxis a = around(out, p.axis);
  const int ranks = p.communicator->size();
  if (a.outer == 1) {
    p.communicator->reduce_scatter(x.data, out.data, count, x.type.dtype, p.reduction, memory.stream);
    return;
  }
  auto* staged = static_cast<std::byte*>(memory.scratch(x.type.nbytes()));
  for (int r = 0; r < ranks; ++r)
    memory.copy_rows(staged + r * a.outer * a.inner_bytes, a.inner_bytes, x.data + r * a.inner_bytes,
                     ranks * a.inner_bytes, a.inner_bytes, a.outer, memory.stream);
  p.communicator->reduce_scatter(staged, out.data, count, x.type.dtype, p.reduction, memory.stream);
}

void copy_input(const KernelContext& ctx, const CollectiveMemory& memory) {
  const std::size_t bytes = ctx.out().type.nbytes();
  if (ctx.out().data != ctx.in(0).data && bytes) memory.copy_rows(ctx.out().data, bytes, ctx.in(0).data, bytes, bytes, 1, memory.stream);
}

void wait_for(const KernelContext& ctx, const CollectiveMemory& memory) {
  const auto pending = tickets().take(ctx.in(0).data);
  if (!pending)
    ctx.fail("found no all_reduce_start in flight on its input's buffer (the start did not run, or was waited for)");
  if (const auto [communicator, ticket] = *pending; communicator != nullptr) communicator->wait(ticket, memory.stream);
  copy_input(ctx, memory);
}

void host_copy_rows(void* target, std::size_t target_pitch, const void* source, std::size_t source_pitch,
                    std::size_t row_bytes, std::size_t rows, void*) {
  for (std::size_t i = 0; i < rows; ++i)
    std::memmove(static_cast<std::byte*>(target) + i * target_pitch,
                 static_cast<const std::byte*>(source) + i * source_pitch, row_bytes);
}

void host_zero(void* data, std::size_t bytes, void*) {
  if (bytes) std::memset(data, 0, bytes);
}

void* host_scratch(std::size_t bytes) {
  thread_local std::vector<std::byte> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

}  // namespace

void run_collective(const KernelContext& ctx, const CollectiveMemory& memory) {
  const OpDef* op = ctx.node->op;
  if (op == &ops::all_reduce_wait) return wait_for(ctx, memory);
  const CollectiveParams& p = ctx.params<CollectiveParams>();
  const TensorArg& out = ctx.out();
  if (op == &ops::all_gather) return gather(ctx, p, memory);
  if (op == &ops::reduce_scatter) return scatter(ctx, p, memory);
  copy_input(ctx, memory);
  const DType dtype = out.type.dtype;
  if (op == &ops::all_reduce) {
    p.communicator->all_reduce(out.data, out.numel(), dtype, p.reduction, memory.stream);
  } else if (op == &ops::broadcast_from) {
    p.communicator->broadcast(out.data, out.numel(), dtype, p.root, memory.stream);
  } else if (op == &ops::reduce_to) {
    p.communicator->reduce(out.data, out.numel(), dtype, p.root, memory.stream);
    if (p.communicator->rank() != p.root) memory.zero(out.data, out.type.nbytes(), memory.stream);
  } else if (op == &ops::all_reduce_start) {
    const std::uint64_t ticket =
        p.communicator->start_all_reduce(out.data, out.numel(), dtype, p.reduction, memory.stream);
    tickets().remember(out.data, p.communicator, ticket);
  } else {
    ctx.fail(fmt::format("{} is not a collective", op->name));
  }
}

void register_collective_kernels(KernelRegistry& registry, Kernel kernel) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64})
    for (const OpDef* op : {&ops::all_reduce, &ops::broadcast_from, &ops::reduce_to, &ops::all_gather,
                            &ops::reduce_scatter, &ops::all_reduce_start, &ops::all_reduce_wait})
      registry.add(*op, t, kernel);
}

const CollectiveMemory& host_collective_memory() {
  static const CollectiveMemory memory{&host_copy_rows, &host_zero, &host_scratch, nullptr};
  return memory;
}

void remember_finished_all_reduce(const void* buffer) { tickets().remember(buffer, nullptr, 0); }

}  // namespace fovea
