// The op-case table (tests/ops/op_cases.h) run three ways: against the plain reference, through
// the f64 gradient check, and on the GPU against the CPU; and the check that every op with a CPU
// kernel has a case.
#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "ops/op_cases.h"

using namespace fovea;
using namespace fovea::testing;

namespace {

constexpr std::uint64_t kSeed = 2024;

// Whether the graph holds a node of `op`: a case that builds no node of its op covers nothing
// (cast to the input's own dtype returns the input, say).
bool has_node_of(const Graph& g, std::string_view op) {
  for (std::uint32_t i = 0; i < g.size(); ++i)
    if (g.node(i).op_name() == op) return true;
  return false;
}

std::string label(const OpCase& c, DType dtype) { return c.name + " in " + std::string(dtype_name(dtype)); }

// By the output's dtype: a cast from f64 to f32 is checked at f32's precision.
Tolerance tolerance_for(const OpCase& c, DType output_dtype) {
  if (output_dtype == DType::f64) return c.f64;
  if (output_dtype == DType::f32) return c.f32;
  if (is_half(output_dtype)) return c.half;
  return {};  // integers and bool: exact
}

// Compares values (as doubles) and shapes; reports the first difference and returns false.
bool same_values(const std::string& what, const Tensor& actual, const Tensor& expected, Tolerance tol) {
  if (actual.shape() != expected.shape()) {
    FAIL_CHECK(what << ": shape " << actual.shape().to_string() << ", expected " << expected.shape().to_string());
    return false;
  }
  for (std::int64_t i = 0; i < actual.numel(); ++i) {
    const double a = actual.at(i), e = expected.at(i);
    if (std::isnan(a) && std::isnan(e)) continue;
    if (a == e) continue;  // infinities
    if (!(std::abs(a - e) <= tol.atol + tol.rtol * std::abs(e))) {
      FAIL_CHECK(what << ": element " << i << " is " << a << ", expected " << e);
      return false;
    }
  }
  return true;
}

// The case built in a fresh graph in `dtype`, its inputs fed.
struct BuiltCase {
  Graph graph;
  std::vector<Value> inputs;
  std::vector<Tensor> values;
  Value output;
  Feeds feeds() const {
    Feeds f;
    for (std::size_t i = 0; i < inputs.size(); ++i) f.emplace_back(inputs[i], values[i]);
    return f;
  }
};

void build_case(BuiltCase& b, const OpCase& c, DType dtype) {
  b.values = case_inputs(c, dtype, kSeed);
  for (std::size_t i = 0; i < c.inputs.size(); ++i)
    b.inputs.push_back(b.graph.placeholder("x" + std::to_string(i), b.values[i].dtype(), b.values[i].shape()));
  b.output = c.build(b.graph, b.inputs);
}

// Runs `outputs` of the built case on `backend`. An update case runs its assign as an update
// and gives its target's value after the run; the target is zeroed first, so that a run that
// writes nothing cannot pass on what an earlier run (on another backend) left there.
std::vector<Tensor> run_case(BuiltCase& b, const OpCase& c, const std::vector<Value>& outputs,
                             const std::shared_ptr<Backend>& backend) {
  if (!c.update) return compile(b.graph, outputs, backend, {.check_finite_feeds = false}).run(b.feeds());
  Tensor& target = b.graph.parameter_value(b.graph.value(b.output.node().inputs[0]));
  std::fill(target.raw(), target.raw() + target.nbytes(), std::byte{0});
  Executable exe = compile(b.graph, {}, backend, {.updates = {b.output}, .check_finite_feeds = false});
  exe.run(b.feeds());
  exe.pull_state();
  return {target.clone()};
}

// (a) The case against its plain reference (or its composition), in one dtype.
void check_against_reference(const OpCase& c, DType dtype) {
  const std::string what = label(c, dtype);
  BuiltCase b;
  build_case(b, c, dtype);
  if (!has_node_of(b.graph, c.op)) {
    FAIL_CHECK(what << ": the built graph has no " << c.op << " node");
    return;
  }
  std::vector<Value> outputs = {b.output};
  if (c.composition) outputs.push_back(c.composition(b.graph, b.inputs));
  const std::vector<Tensor> got = run_case(b, c, outputs, cpu());
  const Tensor expected = c.composition ? got[1] : c.reference(b.values, b.output);
  same_values(what, got[0], expected, tolerance_for(c, got[0].dtype()));
}

// Runs `check` on every case in every dtype, turning an exception into a failure of that case.
template <typename Check>
void for_every_case(Check check) {
  for (const OpCase& c : op_cases())
    for (DType dtype : c.dtypes) {
      try {
        check(c, dtype);
      } catch (const std::exception& e) {
        FAIL_CHECK(label(c, dtype) << " threw: " << e.what());
      }
    }
}

}  // namespace

TEST_CASE("every op case matches its plain reference in every dtype it lists") {
  std::size_t runs = 0;
  for_every_case([&](const OpCase& c, DType dtype) {
    check_against_reference(c, dtype);
    ++runs;
  });
  MESSAGE(op_cases().size() << " cases, " << runs << " runs");
}

TEST_CASE("every differentiable op case passes the f64 central-difference gradient check") {
  std::size_t checked = 0;
  for (const OpCase& c : op_cases()) {
    if (!c.differentiable) continue;
    ++checked;
    try {
      const std::vector<Tensor> values = case_inputs(c, DType::f64, kSeed);
      std::vector<GradcheckInput> inputs;
      for (std::size_t i = 0; i < values.size(); ++i)
        inputs.push_back({values[i].shape(), c.inputs[i].low, c.inputs[i].high, values[i].dtype(), values[i]});
      gradcheck(c.name, c.build, inputs, c.gradient_tolerance, kSeed);
    } catch (const std::exception& e) {
      FAIL_CHECK(c.name << " threw: " << e.what());
    }
  }
  MESSAGE(checked << " differentiable cases checked");
}

TEST_CASE("every op case gives the CPU's numbers on the GPU" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for_every_case([](const OpCase& c, DType dtype) {
    const std::string what = label(c, dtype);
    BuiltCase b;
    build_case(b, c, dtype);
    const Tensor on_cpu = run_case(b, c, {b.output}, cpu())[0];
    const Tensor on_gpu = run_case(b, c, {b.output}, cuda())[0];
    Tolerance tol = tolerance_for(c, on_cpu.dtype());
    tol.rtol *= 10;  // other summation orders, fused multiply-adds, fast math
    tol.atol *= 10;
    same_values(what + " (GPU vs CPU)", on_gpu, on_cpu, tol);
  });
}

TEST_CASE("every op with a CPU kernel has a case or a documented exemption") {
  std::set<std::string> covered;
  for (const OpCase& c : op_cases()) covered.insert(c.op);
  std::set<std::string> exempt;
  for (const Exemption& e : op_case_exemptions()) {
    CHECK_MESSAGE(!e.reason.empty(), e.op << " is exempt without a reason");
    CHECK_MESSAGE(!covered.contains(std::string(e.op)), e.op << " has a case now: remove its exemption");
    exempt.insert(std::string(e.op));
  }
  std::set<std::string> registered;
  for (const auto& [op, dtype] : cpu()->kernels().keys()) registered.insert(std::string(op->name));
  std::ostringstream missing;
  for (const std::string& op : registered)
    if (!covered.contains(op) && !exempt.contains(op)) missing << " " << op;
  CHECK_MESSAGE(missing.str().empty(), "ops with a CPU kernel but no case in tests/ops/op_cases.cpp:" << missing.str());
  for (const std::string& op : exempt) CHECK_MESSAGE(registered.contains(op), op << " is exempt but has no CPU kernel");
  for (const std::string& op : covered)
    CHECK_MESSAGE(registered.contains(op), "a case covers " << op << ", which has no CPU kernel");
}

TEST_CASE("every CPU kernel, op and dtype, is run by some op case") {
  // The kernel each node of a case's op is looked up with, over every case and dtype.
  std::set<std::pair<std::string, DType>> reached;
  for_every_case([&](const OpCase& c, DType dtype) {
    BuiltCase b;
    build_case(b, c, dtype);
    for (std::uint32_t i = 0; i < b.graph.size(); ++i)
      if (b.graph.node(i).op_name() == c.op) reached.insert({c.op, kernel_dtype(b.graph, b.graph.node(i))});
  });
  std::set<std::string> exempt;
  for (const Exemption& e : op_case_exemptions()) exempt.insert(std::string(e.op));
  std::ostringstream missing;
  for (const auto& [op, dtype] : cpu()->kernels().keys()) {
    const std::string name(op->name);
    if (!exempt.contains(name) && !reached.contains({name, dtype})) missing << " " << name << "/" << dtype_name(dtype);
  }
  CHECK_MESSAGE(missing.str().empty(), "CPU kernels no op case runs (add the dtype to a case):" << missing.str());
}

namespace {

// The largest difference between two runs of one case, relative to the portable value's size
// (1 at least, so that values near zero count absolutely).
double largest_difference(const Tensor& actual, const Tensor& expected) {
  double largest = 0;
  for (std::int64_t i = 0; i < actual.numel(); ++i) {
    const double a = actual.at(i), e = expected.at(i);
    if ((std::isnan(a) && std::isnan(e)) || a == e) continue;
    largest = std::max(largest, std::abs(a - e) / std::max(1.0, std::abs(e)));
  }
  return largest;
}

}  // namespace

// The kernels compiled for AVX2 and AVX-512 (core/cpu_features.h) run the same loops as the
// portable ones: integers, booleans and data movement must agree exactly. Floating-point
// results may differ in the last bits where the compiler contracts a*b+c into one fused
// multiply-add (portable x86-64 has no FMA) or sums in another order across vector lanes;
// measured on the op cases, the largest difference is below 1e-6 relative in f32 and 1e-14 in
// f64, so 1e-5 and 1e-12 are the limits (bf16 and f16 outputs: one unit in the last place).
TEST_CASE("every op case gives the portable kernels' numbers with every instruction set this CPU runs") {
  for (Isa isa : kAllIsas) {
    if (isa == Isa::portable || !isa_supported(isa)) continue;
    double largest_f32 = 0, largest_f64 = 0;
    for_every_case([&](const OpCase& c, DType dtype) {
      BuiltCase b;
      build_case(b, c, dtype);
      const Tensor portable = run_case(b, c, {b.output}, cpu({.isa = Isa::portable}))[0];
      const Tensor vector = run_case(b, c, {b.output}, cpu({.isa = isa}))[0];
      const std::string what = label(c, dtype) + " (" + std::string(isa_name(isa)) + " vs portable)";
      const DType out = portable.dtype();
      if (out == DType::f32) largest_f32 = std::max(largest_f32, largest_difference(vector, portable));
      if (out == DType::f64) largest_f64 = std::max(largest_f64, largest_difference(vector, portable));
      const Tolerance tol = out == DType::f32   ? Tolerance{1e-5, 1e-5}
                            : out == DType::f64 ? Tolerance{1e-12, 1e-12}
                            : is_half(out)      ? Tolerance{1.0 / 128, 1.0 / 128}
                                                : Tolerance{};
      same_values(what, vector, portable, tol);
    });
    MESSAGE(isa_name(isa) << ": largest difference from portable " << largest_f32 << " in f32, " << largest_f64
                          << " in f64");
  }
}
