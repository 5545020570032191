#include "fovea/ops/cost.h"

#include <algorithm>
#include <initializer_list>
#include <unordered_map>

#include "fovea/ops/attention.h"
#include "fovea/ops/batch_norm.h"
#include "fovea/ops/convolution.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/fused_elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/normalization.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/state.h"
#include "fovea/ops/transfer.h"

namespace fovea {

namespace {

// The rule a node's FLOPs follow (see ops/cost.h). Ops not in the table below count one
// operation per output element: the elementwise ops, and any op added later until it is given
// a family of its own.
enum class Family {
  per_output_element,
  free,  // sources and views: no work and no traffic
  data_movement,
  matmul,
  convolution,
  attention,
  attention_backward,
  fused_elementwise,
  reduction,
  pool,
  pool_backward,
  normalization,
};

// Every op whose rule is not the per-element default, by family.
const std::unordered_map<const OpDef*, Family>& families() {
  static const std::unordered_map<const OpDef*, Family> table = [] {
    std::unordered_map<const OpDef*, Family> t;
    auto add = [&](Family family, std::initializer_list<const OpDef*> members) {
      for (const OpDef* op : members) t[op] = family;
    };
    add(Family::data_movement,
        {&ops::permute, &ops::broadcast_to, &ops::slice, &ops::concat, &ops::gather, &ops::pad, &ops::pad_backward,
         &ops::cast, &ops::fill, &ops::iota, &ops::to_device, &ops::to_host, &ops::assign});
    add(Family::matmul, {&ops::matmul});
    add(Family::convolution,
        {&ops::conv2d, &ops::fused_conv2d, &ops::conv2d_backward_data, &ops::conv2d_backward_filter});
    add(Family::attention, {&ops::fused_attention});
    add(Family::attention_backward, {&ops::fused_attention_backward});
    add(Family::fused_elementwise, {&ops::fused_elementwise});
    add(Family::reduction, {&ops::reduce_sum, &ops::reduce_max, &ops::reduce_min, &ops::reduce_prod, &ops::argmax,
                            &ops::argmin, &ops::cumsum});
    add(Family::pool, {&ops::max_pool2d, &ops::avg_pool2d});
    add(Family::pool_backward, {&ops::max_pool2d_backward, &ops::avg_pool2d_backward});
    add(Family::normalization,
        {&ops::fused_softmax, &ops::fused_softmax_backward, &ops::fused_log_softmax, &ops::fused_log_softmax_backward,
         &ops::fused_layer_norm, &ops::fused_layer_norm_backward, &ops::fused_softmax_cross_entropy,
         &ops::fused_softmax_cross_entropy_backward, &ops::batch_norm, &ops::batch_norm_backward});
    return t;
  }();
  return table;
}

Family family_of(const OpDef& op) {
  if (op.source || op.view) return Family::free;
  const auto it = families().find(&op);
  return it == families().end() ? Family::per_output_element : it->second;
}

double numel(const TensorType& type) { return static_cast<double>(type.shape.numel()); }

double dim(const TensorType& type, int from_end) {
  return static_cast<double>(type.shape[type.shape.rank() - from_end]);
}

// Elements of every output together.
double output_elements(const Node& node) {
  double total = 0;
  for (const TensorType& out : node.outputs) total += numel(out);
  return total;
}

// 2·K per output element, K the contracted dim of operand a (its last, or its second last
// when transposed). Broadcast batch dims are counted once per output matrix, as they run.
double matmul_flops(const Graph& graph, const Node& node) {
  const TensorType& a = graph.type(node.inputs[0]);
  const double k = node.attrs.get_bool("transpose_a") ? dim(a, 2) : dim(a, 1);
  return 2 * numel(node.outputs[0]) * k;
}

// Each of the three convolutions does the forward's multiply-adds: one per element of the
// forward's output y [N,K,OH,OW] and element of one filter w [Cin/groups,R,S].
double convolution_flops(const Graph& graph, const Node& node) {
  const bool backward_filter = node.op == &ops::conv2d_backward_filter;
  const TensorType& y = node.op == &ops::conv2d_backward_data || backward_filter
                            ? graph.type(node.inputs[backward_filter])
                            : node.outputs[0];
  const TensorType& w = backward_filter ? node.outputs[0] : graph.type(node.inputs[1]);
  return 2 * numel(y) * (numel(w) / std::max(1.0, static_cast<double>(w.shape[0])));
}

// The two products s = q·kᵀ and o = P·v over every (batch, head); causality skips about half.
double attention_flops(const Graph& graph, const Node& node) {
  const TensorType& q = graph.type(node.inputs[0]);
  const TensorType& k = graph.type(node.inputs[1]);
  const TensorType& v = graph.type(node.inputs[2]);
  const double query_rows = numel(q) / std::max(1.0, dim(q, 1));  // batch·heads·Tq
  const double flops = 2 * query_rows * dim(k, 2) * (dim(q, 1) + dim(v, 1));
  return node.attrs.get_bool("causal") ? flops / 2 : flops;
}

double fused_elementwise_flops(const Node& node) {
  return numel(node.outputs[0]) * static_cast<double>(fused::Program::from_attributes(node.attrs).code.size());
}

// The pooled (smaller) tensor's elements, each a window's worth of reads and operations.
double pool_flops(const Node& node, const TensorType& pooled) {
  const std::vector<std::int64_t>& kernel = node.attrs.get_ints("kernel");
  double window = 1;
  for (std::int64_t extent : kernel) window *= static_cast<double>(extent);
  return numel(pooled) * window;
}

double largest_tensor(const Graph& graph, const Node& node) {
  double largest = 0;
  for (ValueRef in : node.inputs) largest = std::max(largest, numel(graph.type(in)));
  for (const TensorType& out : node.outputs) largest = std::max(largest, numel(out));
  return largest;
}

double flops_of(const Graph& graph, const Node& node, Family family) {
  switch (family) {
    case Family::free:
    case Family::data_movement:
      return 0;
    case Family::matmul:
      return matmul_flops(graph, node);
    case Family::convolution:
      return convolution_flops(graph, node);
    case Family::attention:
      return attention_flops(graph, node);
    case Family::attention_backward:
      return 2.5 * attention_flops(graph, node);
    case Family::fused_elementwise:
      return fused_elementwise_flops(node);
    case Family::reduction:
      return numel(graph.type(node.inputs[0]));
    case Family::pool:
      return pool_flops(node, node.outputs[0]);
    case Family::pool_backward:
      return pool_flops(node, graph.type(node.inputs.back()));
    case Family::normalization:
      return 8 * largest_tensor(graph, node);
    case Family::per_output_element:
      return output_elements(node);
  }
  return 0;
}

double bytes_of(const Graph& graph, const Node& node, Family family) {
  if (family == Family::free) return 0;
  double bytes = 0;
  for (const TensorType& out : node.outputs) bytes += static_cast<double>(out.nbytes());
  // assign overwrites its target (input 0) without reading it.
  const std::size_t first_read = node.op->assigns ? 1 : 0;
  for (std::size_t i = first_read; i < node.inputs.size(); ++i)
    bytes += static_cast<double>(graph.type(node.inputs[i]).nbytes());
  return bytes;
}

}  // namespace

Cost node_cost(const Graph& graph, std::uint32_t node) {
  const Node& n = graph.node(node);
  const Family family = family_of(*n.op);
  return {flops_of(graph, n, family), bytes_of(graph, n, family)};
}

}  // namespace fovea
