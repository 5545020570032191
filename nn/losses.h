// Losses, as compositions of primitive ops (docs/architecture.md, decision 1). All are numerically
// stable: softmax-based losses subtract the row maximum before exponentiating.
#pragma once

#include <cstdint>
#include <source_location>

#include "fovea/core/graph.h"

namespace fovea::nn {

struct CrossEntropyOptions {
  std::int64_t ignore_index = -100;  // targets equal to this contribute nothing (padding)
  double label_smoothing = 0.0;      // ε: the target distribution is (1-ε)·onehot + ε/C
};

// log softmax(x) along `axis`: x - max - log Σ exp(x - max).
Value log_softmax(Value logits, std::int64_t axis = -1, std::source_location where = std::source_location::current());
// softmax(x) along `axis`: exp(x - max) / Σ exp(x - max). A row of only -∞ (fully masked) gives 0.
Value softmax(Value logits, std::int64_t axis = -1, std::source_location where = std::source_location::current());

// Mean cross-entropy between logits [..., C] and integer class targets [...] (i32 or i64),
// averaged over the targets that are not ignore_index (0 when all are ignored). A target outside
// [0, C) that is not ignore_index raises fovea::Error when the graph runs (ops/indexing.h,
// check_indices), naming the value and its position.
Value cross_entropy(Value logits, Value targets, const CrossEntropyOptions& options = {},
                    std::source_location where = std::source_location::current());

// Mean squared error: mean((prediction - target)²).
Value mse_loss(Value prediction, Value target, std::source_location where = std::source_location::current());

// A one-hot encoding of integer `indices` [...] into `classes` columns: [..., classes], `dtype`.
Value one_hot(Value indices, std::int64_t classes, DType dtype,
              std::source_location where = std::source_location::current());

}  // namespace fovea::nn
