// The optimizer's invariant: whatever it rewrites, the training step it builds computes the same
// forward values and the same gradient for EVERY parameter as the graph as written.
//
// Each graph below is compiled twice through passes::compile_training_step, whose build_step
// returns the loss and ∂loss/∂p for every parameter p: once with `.optimize = false` (autodiff on
// the user's graph) and once with `.optimize = true` (the forward pipeline, autodiff on its
// output, then the step pipeline). A pass that changes a gradient, by fusing a pattern whose
// fused op differentiates differently or by rewriting the backward graph, fails here whatever
// pass it is, without a test of its own having to foresee it.
//
// The graphs are generated: attention with every kind of mask (none, causal with Tq <= Tk and
// Tq > Tk, padding from lengths including an empty sequence, additive masks with -∞ that fully
// mask rows, learned biases that need a gradient, alone or with a causal mask), with and without
// dropout, followed by a random head (layer norm, elementwise chains, softmax, log-softmax over
// another axis) and a random loss (cross-entropy with ignored targets and label smoothing, mean
// squared error, a weighted log-softmax); then a small GPT and a small translator. Tolerances
// are relative to each gradient's largest element (floored at a fraction of the graph's largest
// gradient, so that a gradient that is zero in exact arithmetic compares as rounding noise).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>

#include <fmt/format.h>

#include "nn/translator_testing.h"
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

constexpr double inf = std::numeric_limits<double>::infinity();

// The worst difference found per family of graphs: the test prints them (the figures quoted
// when a change claims the optimizer still agrees).
struct Worst {
  std::map<std::string, double> value, gradient;
  std::map<std::string, int> graphs, nonzero;
  void print() const {
    for (const auto& [kind, count] : graphs)
      std::printf("optimizer invariant: %-38s %2d graphs, worst loss difference %.1e, worst gradient %.1e\n",
                  kind.c_str(), count, value.at(kind), gradient.at(kind));
  }
};

// What one compiled step returns: the loss and every parameter's gradient, by parameter name.
struct StepValues {
  double loss = 0;
  std::map<std::string, Tensor> gradients;
};

StepValues run_step(Graph& g, Value loss, const Feeds& feeds, bool optimize) {
  std::vector<std::string> names;
  auto build_step = [&](Graph& graph, const std::vector<Value>& outputs) {
    const std::vector<Value> parameters = graph.parameters();
    std::vector<Value> returned{outputs[0]};
    for (const Value& gradient : grad(outputs[0], parameters, {.unconnected = Unconnected::zero}))
      returned.push_back(gradient);
    names.clear();
    for (const Value& p : parameters) names.push_back(p.name());
    return passes::StepParts{returned, {}};
  };
  passes::CompiledTrainingStep step = passes::compile_training_step(
      g, {loss}, build_step, cpu(), {.optimize = optimize, .compile = {.check_finite_feeds = false}});
  const std::vector<Tensor> got = step.run(feeds);
  StepValues values;
  values.loss = got[0].item();
  for (std::size_t i = 0; i < names.size(); ++i) values.gradients[names[i]] = got[i + 1];
  return values;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (std::int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.at(i)));
  return m;
}

// Runs g's step optimized (first: it copies g) and as written (which adds autodiff's nodes to
// g), and checks that the loss and every gradient agree.
void check_invariant(Graph& g, Value loss, const Feeds& feeds, const std::string& kind, Worst& worst) {
  const double tolerance = loss.dtype() == DType::f64 ? 1e-9 : 2e-4;
  // Gradients smaller than this fraction of the largest compare with an absolute tolerance: some
  // are zero in exact arithmetic (a key bias under softmax), and what each graph computes for
  // them is rounding noise.
  const double floor = loss.dtype() == DType::f64 ? 1e-6 : 1e-2;
  const StepValues optimized = run_step(g, loss, feeds, true);
  const StepValues plain = run_step(g, loss, feeds, false);
  REQUIRE(std::isfinite(plain.loss));
  const double loss_difference = std::abs(optimized.loss - plain.loss) / std::max(std::abs(plain.loss), 1e-300);
  CHECK(loss_difference <= tolerance);
  REQUIRE(optimized.gradients.size() == plain.gradients.size());
  double largest = 0;
  for (const auto& [name, gradient] : plain.gradients) largest = std::max(largest, max_abs(gradient));
  double worst_gradient = 0;
  for (const auto& [name, expected] : plain.gradients) {
    CAPTURE(name);
    const Tensor& got = optimized.gradients.at(name);
    REQUIRE(got.numel() == expected.numel());
    const double scale = std::max(max_abs(expected), floor * largest);
    double difference = 0;
    for (std::int64_t i = 0; i < got.numel(); ++i) {
      REQUIRE(std::isfinite(expected.at(i)));
      difference = std::max(difference, std::abs(got.at(i) - expected.at(i)));
    }
    const double relative = scale > 0 ? difference / scale : difference;
    if (std::getenv("FOVEA_INVARIANT_DEBUG") && relative > tolerance)
      std::printf("%s:\n  optimized %s\n  plain     %s\n", name.c_str(), got.to_string(12).c_str(),
                  expected.to_string(12).c_str());
    CHECK(relative <= tolerance);
    worst_gradient = std::max(worst_gradient, relative);
  }
  // (All zero happens: dropout may drop a sequence's only key. Such a graph still compares.)
  if (largest > 0) ++worst.nonzero[kind];
  worst.value[kind] = std::max(worst.value[kind], loss_difference);
  worst.gradient[kind] = std::max(worst.gradient[kind], worst_gradient);
  ++worst.graphs[kind];
}

using fovea::testing::set_element;

enum class MaskKind { none, causal, padding, additive_padding, additive_rows, learned_bias, learned_head_bias, count };

const char* mask_name(MaskKind kind) {
  static const char* names[] = {"no mask",   "causal mask",  "padding from lengths", "-inf padding",
                                "-inf rows", "learned bias", "learned bias + causal"};
  return names[static_cast<int>(kind)];
}

// One generated attention graph: projections of two inputs, attention with the mask kind, a
// random head and a random loss.
class AttentionCase {
 public:
  AttentionCase(std::uint64_t seed, MaskKind mask_kind, bool with_dropout, DType dtype)
      : rng_(seed), dtype_(dtype), seed_(seed) {
    g.set_seed(seed + 1);
    const std::int64_t batch = pick({1, 2}), heads = pick({1, 2}), head_dim = pick({2, 4});
    const std::int64_t tq = pick({1, 3, 5}), tk = pick({1, 4, 5}), width = heads * head_dim;
    Value xq = input("xq", {batch, tq, 3}), xkv = input("xkv", {batch, tk, 3});
    auto project = [&](Value x, const char* name) {
      return nn::split_heads(matmul(x, g.parameter(name, dtype, {3, width}, init::normal(0.0, 0.7))), heads);
    };
    const Value q = project(xq, "wq"), k = project(xkv, "wk"), v = project(xkv, "wv");
    const nn::AttentionMask mask = make_mask(mask_kind, batch, heads, tq, tk);
    Value step = g.placeholder("step", i64, {});
    feeds.emplace_back(step, Tensor::scalar<std::int64_t>(static_cast<std::int64_t>(seed)));
    const Value o = nn::scaled_dot_product_attention(q, k, v, mask, with_dropout ? 0.25 : 0.0,
                                                     {.training = with_dropout, .step = step});
    description = fmt::format("B {} H {} Dh {} Tq {} Tk {}", batch, heads, head_dim, tq, tk);
    loss = add_loss(add_head(nn::merge_heads(o)));
  }

  Graph g;
  Feeds feeds;
  Value loss;
  std::string description;  // the shapes, head and loss drawn

 private:
  std::int64_t pick(std::initializer_list<std::int64_t> choices) {
    return *(choices.begin() + static_cast<std::ptrdiff_t>(rng_() % choices.size()));
  }
  Value input(const char* name, const Shape& shape) {
    Value x = g.placeholder(name, dtype_, shape);
    feeds.emplace_back(x, random_tensor(dtype_, shape, seed_ * 31 + feeds.size()));
    return x;
  }
  Value parameter(const char* name, const Shape& shape) {
    return g.parameter(name, dtype_, shape, init::normal(0.0, 0.5));
  }

  nn::AttentionMask make_mask(MaskKind kind, std::int64_t batch, std::int64_t heads, std::int64_t tq, std::int64_t tk) {
    switch (kind) {
      case MaskKind::none:
        return {};
      case MaskKind::causal:
        return nn::causal_mask(g, tq, tk, dtype_);
      case MaskKind::padding: {
        // The first sequence is empty: its rows are "fully masked" with the finite -1e9, which
        // gives uniform weights both ways.
        Value lengths = g.placeholder("lengths", i64, {batch});
        std::vector<std::int64_t> values;
        for (std::int64_t b = 0; b < batch; ++b) values.push_back(b == 0 ? 0 : tk);
        feeds.emplace_back(lengths, Tensor::from<std::int64_t>(values, {batch}));
        return nn::padding_mask_from_lengths(lengths, tk, dtype_);
      }
      case MaskKind::additive_padding: {
        // [B,1,1,Tk] with -∞: the first of several sequences attends to nothing (o = 0), the others
        // lose key 0 (when there is another).
        Value mask = g.placeholder("mask", dtype_, {batch, 1, 1, tk});
        Tensor m = Tensor::zeros(dtype_, {batch, 1, 1, tk});
        for (std::int64_t b = 0; b < batch; ++b)
          for (std::int64_t j = 0; j < tk; ++j)
            if ((b == 0 && batch > 1) || (j == 0 && tk > 1)) set_element(m, b * tk + j, -inf);
        feeds.emplace_back(mask, m);
        return {mask};
      }
      case MaskKind::additive_rows: {
        // [Tq,Tk] with query 0 fully masked and random finite entries elsewhere.
        Value mask = g.placeholder("mask", dtype_, {tq, tk});
        Tensor m = random_tensor(dtype_, {tq, tk}, seed_ + 5);
        for (std::int64_t j = 0; j < tk; ++j) set_element(m, j, -inf);
        feeds.emplace_back(mask, m);
        return {mask};
      }
      case MaskKind::learned_bias:
        return {parameter("bias", {tq, tk})};
      case MaskKind::learned_head_bias: {
        const Value bias = parameter("head_bias", {heads, tq, tk});
        return nn::combine({bias}, nn::causal_mask(g, tq, tk, dtype_));
      }
      case MaskKind::count:
        break;
    }
    return {};
  }

  // [B,Tq,W] → [B,Tq,W] through one of a few heads the fusion passes look for.
  Value add_head(Value x) {
    const std::int64_t width = x.shape()[2];
    const auto head = rng_() % 4;
    description += fmt::format(", head {}", head);
    switch (head) {
      case 0:
        return nn::layer_norm(x, parameter("gamma", {width}), parameter("beta", {width}));
      case 1:
        return nn::gelu(x * parameter("scale", {width}) + 0.5) - tanh(x) * sigmoid(x);
      case 2:
        return nn::softmax(x * 3.0) + relu(x - 0.1);
      default:
        return nn::log_softmax(x, x.shape()[1] > 1 ? 1 : 2) * parameter("weights", {width});
    }
  }

  // A scalar loss of [B,Tq,W].
  Value add_loss(Value x) {
    const std::int64_t batch = x.shape()[0], tq = x.shape()[1], width = x.shape()[2];
    const auto kind = rng_() % 3;
    description += fmt::format(", loss {}", kind);
    switch (kind) {
      case 0: {
        const std::int64_t classes = 3;
        Value logits = matmul(x, parameter("classifier", {width, classes}));
        Value targets = g.placeholder("targets", i64, {batch, tq});
        Tensor t = random_tensor(i64, {batch, tq}, seed_ + 9, 0, classes);
        if (t.numel() > 1) t.data<std::int64_t>()[0] = -100;  // one ignored target
        feeds.emplace_back(targets, t);
        return nn::cross_entropy(logits, targets, {.label_smoothing = rng_() % 2 ? 0.1 : 0.0});
      }
      case 1:
        return nn::mse_loss(x, g.constant(random_tensor(dtype_, x.shape(), seed_ + 11)));
      default:
        return reduce_mean(nn::log_softmax(x) * g.constant(random_tensor(dtype_, x.shape(), seed_ + 13)));
    }
  }

  std::mt19937_64 rng_;
  DType dtype_;
  std::uint64_t seed_;
};

}  // namespace

TEST_CASE("the optimized step's loss and every gradient equal the plain graph's, for generated attention graphs") {
  Worst worst;
  std::uint64_t seed = 100;
  for (int kind = 0; kind < static_cast<int>(MaskKind::count); ++kind)
    for (bool dropout : {false, true})
      for (int repeat = 0; repeat < 5; ++repeat) {
        const auto mask_kind = static_cast<MaskKind>(kind);
        const DType dtype = repeat < 3 ? f64 : f32;
        CAPTURE(mask_name(mask_kind));
        CAPTURE(dropout);
        CAPTURE(seed);
        AttentionCase c(seed++, mask_kind, dropout, dtype);
        CAPTURE(c.description);
        check_invariant(c.g, c.loss, c.feeds,
                        fmt::format("{}{}, {}", mask_name(mask_kind), dropout ? " + dropout" : "", dtype_name(dtype)),
                        worst);
      }
  worst.print();
  // Every family had graphs whose gradients are not all zero: the comparison meant something.
  for (const auto& [kind, count] : worst.graphs) {
    CAPTURE(kind);
    CHECK(worst.nonzero[kind] >= 1);
  }
}

TEST_CASE("the optimized step's loss and every gradient equal the plain graph's for a GPT and a translator") {
  Worst worst;
  for (DType t : {f64, f32}) {
    CAPTURE(dtype_name(t));
    {
      Graph g;
      g.set_seed(3);
      nn::GPT gpt(g, testing::tiny_gpt_config(t));
      Value ids = g.placeholder("ids", i64, {2, 8});
      Value targets = g.placeholder("targets", i64, {2, 8});
      Value step = g.placeholder("step", i64, {});
      Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets, {.label_smoothing = 0.1});
      check_invariant(g, loss,
                      {{ids, random_tensor(i64, {2, 8}, 6, 0, 11)},
                       {targets, random_tensor(i64, {2, 8}, 7, 0, 11)},
                       {step, Tensor::scalar<std::int64_t>(3)}},
                      std::string("GPT ") + std::string(dtype_name(t)), worst);
    }
    {
      Graph g;
      g.set_seed(4);
      const testing::TrainingTranslator tr(g, testing::tiny_translator_config(t), 2, 7, 6);
      check_invariant(g, tr.loss, tr.feeds(2), std::string("translator ") + std::string(dtype_name(t)), worst);
    }
  }
  worst.print();
}
