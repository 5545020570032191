// One table of op cases, run three ways (in the spirit of ggml's test-backend-ops).
//
// Each case names the op it covers, the inputs it builds the op from (shape, dtype, value
// range: broadcasting, size-1 and zero-size dims included), how to build the node, and what
// the result should be: a plain reference on Tensors (loops in double) or, for the fused ops,
// the unfused composition built in the same graph. tests/ops/op_cases_test.cpp runs every case
//
//   (a) against its reference, in every dtype the case lists;
//   (b) through the f64 central-difference gradient check (tests/gradcheck.h), if differentiable;
//   (c) on the GPU against the CPU, when a GPU is present (reported as skipped otherwise);
//
// and fails when an op with a CPU kernel has neither a case nor an entry, with its reason, in
// the exemption list below. Adding an op is adding a row here; the three checks come with it.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gradcheck.h"

namespace fovea::testing {

// One input of a case. Without a dtype it takes the dtype the case is being run in.
struct InputSpec {
  Shape shape;
  std::optional<DType> dtype = std::nullopt;
  double low = -1.0, high = 1.0;  // uniform range of the random values (integers: rounded down)
  Tensor value = {};              // a fixed value (indices, masks) instead of random numbers
  bool integral = false;          // random integers in any dtype (ties for comparisons, exact halves)
};

// Builds the op (or, for a composition, the ops) from the case's inputs; returns the output checked.
using CaseBuilder = std::function<Value(Graph&, const std::vector<Value>&)>;
// The expected output from the input tensors, computed with plain loops in double. `output`
// is the built node's output, for its attributes (a random op's seed and stream).
using Reference = std::function<Tensor(const std::vector<Tensor>& inputs, const Value& output)>;

struct Tolerance {
  double rtol = 0, atol = 0;
};

struct OpCase {
  std::string op;    // the registered op this case covers: the built graph must contain a node of it
  std::string name;  // what the case shows, for failure messages
  std::vector<DType> dtypes;
  std::vector<InputSpec> inputs;
  CaseBuilder build;
  Reference reference = nullptr;      // either a plain reference ...
  CaseBuilder composition = nullptr;  // ... or the same value built from other ops
  bool differentiable = false;        // run the f64 gradient check on `build`
  Tolerance f32 = {1e-5, 1e-6};       // reference check in f32
  Tolerance f64 = {1e-12, 1e-12};     // reference check in f64 (integers and bool: exact)
  Tolerance half = {0, 0};            // reference check of bf16 and f16 outputs (exact: copies)
  double gradient_tolerance = 1e-6;   // gradcheck's tolerance
  // The built value is an assign (ops/state.h): it runs as an update (CompileOptions::updates),
  // and what is checked is its target's buffer after the run.
  bool update = false;
};

// Every case, in table order.
const std::vector<OpCase>& op_cases();
// The rows of one op family kept in a file of their own (tests/ops/convolution_cases.cpp).
void add_convolution_cases(std::vector<OpCase>& cases);

// Ops with a CPU kernel that no case covers, each with why and where it is tested instead.
struct Exemption {
  std::string_view op;
  std::string_view reason;
};
const std::vector<Exemption>& op_case_exemptions();

// The inputs of `c` in `dtype`, reproducible from `seed`.
std::vector<Tensor> case_inputs(const OpCase& c, DType dtype, std::uint64_t seed);

}  // namespace fovea::testing
