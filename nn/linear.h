// Linear: y = x·W + b, the layer every model starts with.
#pragma once

#include <cstdint>
#include <source_location>
#include <string>

#include "fovea/core/graph.h"

namespace fovea::nn {

struct Linear {
  Value weight;  // [in, out]
  Value bias;    // [out], undefined when built without one

  // Declares `<scope>/<name>/weight` (Kaiming-uniform with gain 1, as PyTorch's default) and
  // `<scope>/<name>/bias` (zeros) in the current scope.
  Linear(Graph& g, const std::string& name, std::int64_t in, std::int64_t out, bool with_bias = true,
         DType dtype = DType::f32, std::source_location where = std::source_location::current());

  // x [..., in] → [..., out], built under the layer's own scope.
  Value operator()(Value x, std::source_location where = std::source_location::current()) const;

  std::string name;
};

}  // namespace fovea::nn
