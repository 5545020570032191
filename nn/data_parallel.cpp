#include "fovea/nn/data_parallel.h"

#include <fmt/format.h>

#include <map>

#include "fovea/ops/collective.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::nn {

namespace {

// Nodes built while it lives are part of computing the gradients: drawn and profiled with the
// backward. The caller's role comes back when it goes, exception or not.
class BackwardRole {
 public:
  explicit BackwardRole(Graph& graph) : graph_(graph), role_(graph.role()) { graph.set_role(NodeRole::backward); }
  ~BackwardRole() { graph_.set_role(role_); }
  BackwardRole(const BackwardRole&) = delete;
  BackwardRole& operator=(const BackwardRole&) = delete;

 private:
  Graph& graph_;
  NodeRole role_;
};

// One bucket: the indices of its gradients, in the order they are packed.
using Bucket = std::vector<std::size_t>;

// Reverse parameter order, cut at bucket_bytes, one run of buckets per dtype.
std::vector<Bucket> make_buckets(const std::vector<Value>& grads, std::int64_t bucket_bytes) {
  std::vector<Bucket> buckets;
  std::map<DType, std::size_t> open;  // the bucket each dtype is filling
  std::map<DType, std::int64_t> filled;
  for (std::size_t i = grads.size(); i-- > 0;) {
    const DType dtype = grads[i].dtype();
    const std::int64_t bytes = grads[i].shape().numel() * static_cast<std::int64_t>(dtype_size(dtype));
    auto found = open.find(dtype);
    if (found == open.end() || filled[dtype] + bytes > bucket_bytes) {
      open[dtype] = buckets.size();
      filled[dtype] = 0;
      buckets.emplace_back();
    }
    buckets[open[dtype]].push_back(i);
    filled[dtype] += bytes;
  }
  return buckets;
}

// The bucket's gradients, flattened and side by side, averaged over the ranks, and cut back.
void reduce_bucket(const std::vector<Value>& grads, const Bucket& bucket, const DataParallelOptions& options,
                   std::vector<Value>& reduced) {
  std::vector<Value> flat;
  for (std::size_t i : bucket) flat.push_back(reshape(grads[i], Shape{grads[i].shape().numel()}));
  const Value packed = flat.size() == 1 ? flat[0] : concat(flat, 0);
  const Value averaged = options.overlap
                             ? all_reduce_wait(all_reduce_start(packed, options.communicator, Reduction::mean))
                             : all_reduce(packed, options.communicator, Reduction::mean);
  std::int64_t offset = 0;
  for (std::size_t i : bucket) {
    const std::int64_t count = grads[i].shape().numel();
    const Value part = flat.size() == 1 ? averaged : slice(averaged, 0, offset, offset + count);
    reduced[i] = reshape(part, grads[i].shape());
    offset += count;
  }
}

}  // namespace

std::vector<Value> average_gradients(const std::vector<Value>& grads, const DataParallelOptions& options) {
  if (!options.communicator) throw Error("data parallel: no communicator was given");
  if (options.bucket_bytes <= 0)
    throw Error(fmt::format("data parallel: bucket_bytes is {}; it must be positive", options.bucket_bytes));
  if (grads.empty()) return {};
  Graph& graph = grads.front().graph();
  auto scope = graph.scope("data_parallel");
  const BackwardRole role(graph);
  std::vector<Value> reduced(grads.size());
  for (const Bucket& bucket : make_buckets(grads, options.bucket_bytes)) reduce_bucket(grads, bucket, options, reduced);
  return reduced;
}

void broadcast_parameters(Graph& graph, Communicator& communicator, int root) {
  for (const Value& v : graph.persistent_values()) {
    Tensor& value = graph.parameter_value(v);
    if (value.numel() == 0) continue;
    if (v.dtype() != DType::f32 && v.dtype() != DType::f64 && v.dtype() != DType::i32 && v.dtype() != DType::i64)
      throw Error(fmt::format("broadcast_parameters: '{}' is {}, which collectives do not carry", v.name(),
                              v.type().to_string()));
    communicator.broadcast(value.raw(), value.numel(), v.dtype(), root);
  }
}

}  // namespace fovea::nn
