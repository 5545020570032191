// Broadcast iteration for elementwise kernels with N inputs.
//
// The output is walked as rows of its innermost (collapsed) dimension. Each input has a
// stride per output dimension: its row-major stride, or 0 where it is broadcast. Adjacent
// dimensions that every operand walks contiguously are merged first, so that a same-shape
// add is one long row and a [B,N] + [N] add is B rows of N, where input 0 starts row r at r·N
// and input 1 starts every row at 0.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "fovea/backends/cpu/isa_namespace.h"
#include "fovea/core/shape.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

template <int N>
struct BroadcastLayout {
  std::vector<std::int64_t> dims;                    // collapsed output dims
  std::array<std::vector<std::int64_t>, N> strides;  // per input, per collapsed dim

  BroadcastLayout(const Shape& out, const std::array<const Shape*, N>& inputs) {
    const int rank = out.rank();
    std::vector<std::int64_t> d(out.begin(), out.end());
    std::array<std::vector<std::int64_t>, N> s;
    for (int k = 0; k < N; ++k) {
      const Shape& in = *inputs[k];
      s[k].assign(static_cast<std::size_t>(rank), 0);
      std::int64_t stride = 1;
      for (int i = in.rank() - 1; i >= 0; --i) {
        const int o = rank - in.rank() + i;
        s[k][o] = in[i] == 1 ? 0 : stride;
        stride *= in[i];
      }
    }
    // Drop size-1 output dims, then merge dim i into i+1 when every operand allows it.
    for (int i = 0; i < rank; ++i) {
      if (d[i] == 1) continue;
      if (!dims.empty()) {
        bool mergeable = true;
        for (int k = 0; k < N; ++k) mergeable &= strides[k].back() == s[k][i] * d[i];
        if (mergeable) {
          dims.back() *= d[i];
          for (int k = 0; k < N; ++k) strides[k].back() = s[k][i];
          continue;
        }
      }
      dims.push_back(d[i]);
      for (int k = 0; k < N; ++k) strides[k].push_back(s[k][i]);
    }
    if (dims.empty()) {  // a scalar (or all-ones) output: one row of one element
      dims.push_back(1);
      for (int k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  std::int64_t inner() const { return dims.back(); }
  std::int64_t rows() const {
    std::int64_t r = 1;
    for (std::size_t i = 0; i + 1 < dims.size(); ++i) r *= dims[i];
    return r;
  }
  std::int64_t inner_stride(int k) const { return strides[k].back(); }
  // Offsets of input k at the start of row `row`.
  std::array<std::int64_t, N> row_offsets(std::int64_t row) const {
    std::array<std::int64_t, N> off{};
    for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) {
      const std::int64_t idx = row % dims[i];
      row /= dims[i];
      for (int k = 0; k < N; ++k) off[k] += idx * strides[k][i];
    }
    return off;
  }
};

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
