// The CPU backend's compiled programs (backends/cpu/compiled_programs.h): each entry is what the
// nn layers it names fuse into, a program that matches runs the compiled loop, and the loop gives
// the interpreter's bits.
#include <cstring>
#include <set>
#include <string>

#include "fovea/backends/cpu/compiled_programs.h"
#include "passes/optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;
namespace compiled = fovea::cpu_backend::portable::compiled;

// Each fused_elementwise node's program, with the entry it matches ("" for none).
std::vector<std::pair<fused::Program, std::string>> fused_programs(const Graph& g) {
  std::vector<std::pair<fused::Program, std::string>> programs;
  for (std::uint32_t id = 0; id < g.size(); ++id)
    if (g.node(id).op == &ops::fused_elementwise) {
      fused::Program p = fused::Program::from_attributes(g.node(id).attrs);
      const std::string name(compiled::match_compiled_program(p).name);
      programs.emplace_back(std::move(p), name);
    }
  return programs;
}

std::set<std::string> matched(const Graph& g) {
  std::set<std::string> names;
  for (const auto& [program, name] : fused_programs(g)) {
    INFO("interpreted: ", program.to_string());
    if (!name.empty()) names.insert(name);
  }
  return names;
}

// The same bits, element for element.
void check_identical(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.dtype() == expected.dtype());
  REQUIRE(actual.shape() == expected.shape());
  CHECK(std::memcmp(actual.raw(), expected.raw(), actual.nbytes()) == 0);
}

// A GPT training step (forward, backward, AdamW), optimized. run() takes `steps` steps on
// `backend` from the initial parameters and optimizer state, which it puts back afterwards, and
// returns the losses and the persistent values after the last step.
struct StepResult {
  std::vector<Tensor> losses, parameters;
};

struct Gpt {
  Graph g{"gpt"};
  Value ids, next, step;
  passes::TrainingGraph optimized;
  std::vector<Tensor> start;

  explicit Gpt(double dropout) {
    g.set_seed(3);
    const nn::GPT model(
        g, {.vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 1, .max_len = 6, .dropout = dropout});
    ids = g.placeholder("ids", i32, {3, 6});
    next = g.placeholder("next", i32, {3, 6});
    step = g.placeholder("step", i64, {});
    const Value loss = nn::cross_entropy(model(ids, {.training = dropout > 0, .step = step}), next);
    optimized = passes::optimize_training(g, {loss}, [](Graph& graph, const std::vector<Value>& outputs) {
      const nn::TrainStep s = nn::adamw(outputs[0], graph.parameters(), {.lr = nn::constant_lr(1e-2)});
      return passes::StepParts{{outputs[0]}, s.updates};
    });
    Graph& s = *optimized.step.graph;  // the parameters and the optimizer's state
    for (Value p : s.persistent_values()) start.push_back(s.parameter_value(p).clone());
  }

  StepResult run(const std::shared_ptr<Backend>& backend, int steps) {
    const passes::OptimizedGraph& s = optimized.step;
    Executable exe = compile(*s.graph, s.outputs, backend, {.updates = s.updates});
    StepResult result;
    for (int i = 0; i < steps; ++i) {
      Tensor x = Tensor::empty(i32, {3, 6}), y = Tensor::empty(i32, {3, 6});
      for (std::int64_t k = 0; k < x.numel(); ++k) {
        x.data<std::int32_t>()[k] = static_cast<std::int32_t>((k * 7 + i) % 11);
        y.data<std::int32_t>()[k] = static_cast<std::int32_t>((k * 5 + 3 * i) % 11);
      }
      Feeds feeds{{s.value(ids), x}, {s.value(next), y}};
      if (s.has(step)) feeds.emplace_back(s.value(step), Tensor::scalar(std::int64_t{i}));
      result.losses.push_back(exe.run(feeds)[0].clone());
    }
    const std::vector<Value> persistent = s.graph->persistent_values();
    for (std::size_t i = 0; i < persistent.size(); ++i) {
      Tensor& value = s.graph->parameter_value(persistent[i]);
      result.parameters.push_back(value.clone());
      std::memcpy(value.raw(), start[i].raw(), start[i].nbytes());
    }
    return result;
  }
};

void check_compiled_matches_interpreted(Gpt& gpt) {
  const StepResult interpreted = gpt.run(cpu({.compiled_programs = false}), 3);
  const StepResult compiled_run = gpt.run(cpu({.compiled_programs = true}), 3);
  for (std::size_t i = 0; i < interpreted.losses.size(); ++i)
    check_identical(compiled_run.losses[i], interpreted.losses[i]);
  for (std::size_t i = 0; i < interpreted.parameters.size(); ++i)
    check_identical(compiled_run.parameters[i], interpreted.parameters[i]);
}

TEST_CASE(
    "a GPT step with dropout fuses into the compiled GELU and dropout programs, and takes the interpreter's step bit "
    "for bit") {
  Gpt gpt(0.1);
  const std::set<std::string> names = matched(*gpt.optimized.step.graph);
  CHECK(names ==
        std::set<std::string>{"gelu_dropout", "gelu_dropout_backward", "bias_dropout", "bias_dropout_residual"});
  check_compiled_matches_interpreted(gpt);
}

TEST_CASE("without dropout, the GPT step's GELU and its backward are compiled programs too") {
  Gpt gpt(0.0);
  const std::set<std::string> names = matched(*gpt.optimized.step.graph);
  CHECK(names.contains("gelu"));
  CHECK(names.contains("gelu_backward"));
  check_compiled_matches_interpreted(gpt);
}

// GELU of x + bias with dropout, and its gradient, fused by the optimizer: the shapes of a
// feed-forward, any size.
struct GeluDropout {
  Graph g;
  Value x, bias, step, dy, y, dx;
  passes::OptimizedGraph opt;

  GeluDropout(DType t, const Shape& shape, double rate) {
    x = g.placeholder("x", t, shape);
    bias = g.placeholder("bias", t, {shape[shape.rank() - 1]});
    step = g.placeholder("step", i64, {});
    dy = g.placeholder("dy", t, shape);
    y = nn::dropout(nn::gelu(x + bias), rate, {.training = true, .step = step});
    dx = vjp({y}, {dy}, {x})[0];
    opt = passes::optimize(g, {y, dx});
  }

  std::vector<Tensor> run(const std::shared_ptr<Backend>& backend) {
    const Shape& shape = x.shape();
    const DType t = x.dtype();
    Executable exe = compile(*opt.graph, opt.outputs, backend);
    return exe.run(testing::mapped_feeds(opt, {{x, random_tensor(t, shape, 1, -4, 4)},
                                               {bias, random_tensor(t, bias.shape(), 2)},
                                               {step, Tensor::scalar(std::int64_t{5})},
                                               {dy, random_tensor(t, shape, 3)}}));
  }
};

TEST_CASE(
    "compiled loops give the interpreter's bits in f32 and f64, at every size: one vector, tails, many tiles, empty") {
  for (DType t : {f32, f64})
    for (const Shape& shape : {Shape{2, 3, 7}, Shape{5, 411, 9}, Shape{2, 1024}, Shape{4097}, Shape{0, 7}}) {
      CAPTURE(t);
      CAPTURE(shape.to_string());
      GeluDropout chain(t, shape, 0.1);
      CHECK(matched(*chain.opt.graph) == std::set<std::string>{"gelu_dropout", "gelu_dropout_backward"});
      const std::vector<Tensor> interpreted = chain.run(cpu({.compiled_programs = false}));
      const std::vector<Tensor> compiled_run = chain.run(cpu({.compiled_programs = true}));
      REQUIRE(compiled_run.size() == interpreted.size());
      for (std::size_t i = 0; i < interpreted.size(); ++i) check_identical(compiled_run[i], interpreted[i]);
    }
}

TEST_CASE("an entry matches any value of its immediates, in whichever registers the program keeps them") {
  // A rate of 0.6 sorts the program's immediates differently from 0.1 (between GELU's 0.5 and
  // √(2/π)), so every immediate register moves.
  GeluDropout low(f32, {4, 33}, 0.1), high(f32, {4, 33}, 0.6);
  const auto a = fused_programs(*low.opt.graph), b = fused_programs(*high.opt.graph);
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 2);
  CHECK(a[0].first.immediates != b[0].first.immediates);
  CHECK(matched(*high.opt.graph) == std::set<std::string>{"gelu_dropout", "gelu_dropout_backward"});
  const std::vector<Tensor> interpreted = high.run(cpu({.compiled_programs = false}));
  const std::vector<Tensor> compiled_run = high.run(cpu({.compiled_programs = true}));
  for (std::size_t i = 0; i < interpreted.size(); ++i) check_identical(compiled_run[i], interpreted[i]);
}

TEST_CASE("a program that differs from an entry in an opcode, an operand, an immediate or an output runs interpreted") {
  GeluDropout chain(f32, {3, 8}, 0.1);
  fused::Program forward;
  for (const auto& [program, name] : fused_programs(*chain.opt.graph))
    if (name == "gelu_dropout") forward = program;
  REQUIRE(!forward.code.empty());
  auto entry_of = [](const fused::Program& p) { return compiled::match_compiled_program(p).entry; };
  REQUIRE(entry_of(forward) >= 0);

  fused::Program opcode = forward;
  opcode.code[1].op = fused::Opcode::add;  // r1 = add(r0, r0) instead of mul
  CHECK(entry_of(opcode) < 0);

  fused::Program operand = forward;
  operand.code[2].b = operand.code[2].a;  // r2 = mul(r1, r1) instead of mul(r1, r0)
  CHECK(entry_of(operand) < 0);

  // where's 0 (k4) becomes another immediate than uniform's low bound, which the entry says is
  // the same k4.
  fused::Program immediate = forward;
  const std::int32_t k4 = immediate.code[13].c;
  immediate.code[13].c = k4 == immediate.first_immediate() ? k4 + 1 : immediate.first_immediate();
  CHECK(entry_of(immediate) < 0);

  fused::Program output = forward;
  output.output_is_bool[0] = false;  // the mask stored as T
  CHECK(entry_of(output) < 0);

  fused::Program shorter = forward;
  shorter.code.pop_back();
  shorter.outputs[1] -= 1;
  CHECK(entry_of(shorter) < 0);
}

TEST_CASE("the entries parse at compile time: counts, operands and outputs") {
  constexpr auto spec = FOVEA_COMPILED_PROGRAM(
      "t", "r0 = add(in0, k0); r1 = uniform(s0, k0, k1); r2 = where(in2, r0, r1); out0 = r2; out1 = r1 as bool");
  static_assert(spec.code.size() == 3 && spec.out.size() == 2);
  static_assert(spec.inputs == 3 && spec.immediates == 2);
  static_assert(spec.code[1].op == fused::Opcode::uniform &&
                spec.code[1].a.kind == compiled::Operand::Kind::random_slot);
  static_assert(spec.code[2].a.kind == compiled::Operand::Kind::input && spec.code[2].a.index == 2);
  static_assert(spec.code[2].c.kind == compiled::Operand::Kind::temporary && spec.code[2].c.index == 1);
  static_assert(!spec.out[0].is_bool && spec.out[1].is_bool && spec.out[1].temporary == 1);
  CHECK(spec.name == "t");
}

}  // namespace
