#include "fovea/nn/layers.h"

#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/reduce.h"

namespace fovea::nn {

namespace {

// A layer's name for errors that no node can carry: "<scope>/<name>".
std::string scoped(const Graph& g, const std::string& name) {
  return g.current_scope().empty() ? name : g.current_scope() + "/" + name;
}

}  // namespace

// --- Embedding ------------------------------------------------------------------------------

Embedding::Embedding(Graph& g, const std::string& layer_name, std::int64_t vocab, std::int64_t dim, DType dtype,
                     const Initializer& initializer, std::source_location where)
    : name(layer_name) {
  auto at = g.at(where);
  auto scope = g.scope(layer_name);
  table = g.parameter("table", dtype, {vocab, dim}, initializer);
}

Value Embedding::operator()(Value ids, std::source_location where) const {
  if (!ids.defined()) throw Error("the ids are an undefined Value", "embedding", name, where);
  auto at = ids.graph().at(where);
  auto scope = ids.graph().scope(name);
  if (!is_integer(ids.dtype()))
    throw Error(fmt::format("ids must be integer token indices (i32 or i64), got {}", ids.type().to_string()),
                "embedding", ids.graph().current_scope(), at.where());
  return gather(table, ids, 0);
}

// --- LayerNorm ------------------------------------------------------------------------------

Value layer_norm(Value x, Value gamma, Value beta, double eps, std::source_location where) {
  if (!x.defined()) throw Error("the input is an undefined Value", "layer_norm", "", where);
  auto at = x.graph().at(where);
  const Value mean = reduce_mean(x, {-1}, true);
  const Value centred = x - mean;
  const Value variance = reduce_mean(centred * centred, {-1}, true);
  return centred * rsqrt(variance + eps) * gamma + beta;
}

LayerNorm::LayerNorm(Graph& g, const std::string& layer_name, std::int64_t dim, double epsilon, DType dtype,
                     std::source_location where)
    : eps(epsilon), name(layer_name) {
  auto at = g.at(where);
  auto scope = g.scope(layer_name);
  gamma = g.parameter("gamma", dtype, {dim}, init::ones());
  beta = g.parameter("beta", dtype, {dim}, init::zeros());
}

Value LayerNorm::operator()(Value x, std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "layer_norm", name, where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  const std::int64_t dim = gamma.shape()[0];
  if (x.rank() < 1 || x.shape()[x.rank() - 1] != dim)
    throw Error(fmt::format("normalises a last axis of {} features, got {}", dim, x.type().to_string()), "layer_norm",
                x.graph().current_scope(), at.where());
  return layer_norm(x, gamma, beta, eps);
}

// --- Dropout --------------------------------------------------------------------------------

static void check_probability(double p, const std::string& name, SourceLoc where) {
  if (!(p >= 0.0 && p < 1.0))
    throw Error(fmt::format("the drop probability must lie in [0, 1), got {}", p), "dropout", name, where);
}

// The mask and the scaling, built in the current scope at the location in force.
static Value drop(Value x, double p, const Mode& mode) {
  const Value u = random_uniform(x.graph(), x.shape(), x.dtype(), 0.0, 1.0, mode.step);
  const Value keep = greater_equal(u, scalar_like(u, p));
  return fovea::where(keep, x * (1.0 / (1.0 - p)), scalar_like(x, 0.0));
}

Value dropout(Value x, double p, const Mode& mode, std::source_location where) {
  if (!x.defined()) throw Error("the input is an undefined Value", "dropout", "", where);
  auto at = x.graph().at(where);
  check_probability(p, scoped(x.graph(), "dropout"), at.where());
  if (!mode.training || p == 0.0) return x;
  auto scope = x.graph().scope("dropout");
  return drop(x, p, mode);
}

Dropout::Dropout(double probability, std::string layer_name, std::source_location where)
    : p(probability), name(std::move(layer_name)) {
  check_probability(p, name, where);
}

Value Dropout::operator()(Value x, const Mode& mode, std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "dropout", name, where);
  if (!mode.training || p == 0.0) return x;
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  return drop(x, p, mode);
}

// --- Activations ----------------------------------------------------------------------------

Value gelu(Value x, std::source_location where) {
  if (!x.defined()) throw Error("the input is an undefined Value", "gelu", "", where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope("gelu");
  const double c = std::sqrt(2.0 / std::numbers::pi);
  const Value cube = x * x * x;
  const Value inner = (x + cube * 0.044715) * c;
  const Value half_x = x * 0.5;
  return half_x * (tanh(inner) + 1.0);
}

// --- FeedForward ----------------------------------------------------------------------------

FeedForward::FeedForward(Graph& g, const std::string& layer_name, std::int64_t d_model, std::int64_t d_ff,
                         Activation act, double dropout_p, DType dtype, std::source_location where)
    : up(in_scope(g, layer_name, where, [&] { return Linear(g, "up", d_model, d_ff, true, dtype); })),
      down(in_scope(g, layer_name, where, [&] { return Linear(g, "down", d_ff, d_model, true, dtype); })),
      activation(act),
      dropout(dropout_p),
      name(layer_name) {
  auto at = g.at(where);
  check_probability(dropout_p, scoped(g, layer_name), at.where());
}

Value FeedForward::operator()(Value x, const Mode& mode, std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "feed_forward", name, where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  Value h = up(x);
  h = activation == Activation::gelu ? gelu(h) : relu(h);
  return down(nn::dropout(h, dropout, mode));
}

// --- Positional encodings -------------------------------------------------------------------

Value sinusoidal_positions(Graph& g, std::int64_t length, std::int64_t dim, DType dtype, std::source_location where) {
  auto at = g.at(where);
  if (length < 0 || dim < 0 || !is_floating(dtype))
    throw Error(fmt::format("needs a length and dim >= 0 and a floating dtype, got length {}, dim {}, {}", length, dim,
                            dtype_name(dtype)),
                "sinusoidal_positions", scoped(g, "sinusoidal_positions"), at.where());
  Tensor table = Tensor::empty(DType::f64, {length, dim});
  auto pe = table.data<double>();
  for (std::int64_t t = 0; t < length; ++t)
    for (std::int64_t j = 0; j < dim; ++j) {
      // Dims 2i and 2i+1 share the frequency 1 / 10000^(2i/dim).
      const double frequency = std::pow(10000.0, -static_cast<double>(j - j % 2) / static_cast<double>(dim));
      const double angle = static_cast<double>(t) * frequency;
      pe[t * dim + j] = j % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return g.constant(table.to(dtype), "sinusoidal_positions");
}

LearnedPositions::LearnedPositions(Graph& g, const std::string& layer_name, std::int64_t max_len, std::int64_t dim,
                                   DType dtype, std::source_location where)
    : embedding(g, layer_name, max_len, dim, dtype, init::normal(0.0, 0.02), where), max_length(max_len) {}

Value LearnedPositions::operator()(std::int64_t length, std::source_location where) const {
  Graph& g = embedding.table.graph();
  auto at = g.at(where);
  if (length < 0 || length > max_length)
    throw Error(fmt::format("asked for {} positions, but only {} are learned (max_length)", length, max_length),
                "learned_positions", scoped(g, embedding.name), at.where());
  return embedding(iota(g, {length}, 0, DType::i64));
}

}  // namespace fovea::nn
