// A probe that makes fused attention spell out its dropout mask, shared by the CPU test
// (tests/ops/attention_test.cpp) and the GPU test (tests/backends/cuda_attention_dropout_test.cpp).
//
// With q = 0 every probability is 1/Tk, and with v = the identity o[i, j] = Z[i, j]/Tk: the
// output spells out the mask, which must be random_uniform(...) >= p of the same node, bit
// for bit, on whichever backend runs it.
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "testing.h"

namespace fovea::testing {

inline void check_dropout_keeps_random_uniform_bits(const std::shared_ptr<Backend>& backend) {
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dtype));
    const std::int64_t batch = 3, tq = 37, tk = 45;
    Graph g;
    Value step = g.placeholder("step", DType::i64, {});
    Value u = random_uniform(g, {batch, tq, tk}, dtype, 0.0, 1.0, step);
    Value keep = cast(greater_equal(u, scalar_like(u, 0.3)), dtype);
    const AttentionDropout dropout{.p = 0.3,
                                   .scale = 2.0,
                                   .seed = u.node().attrs.get_int("seed"),
                                   .stream = u.node().attrs.get_int("stream"),
                                   .step = step};
    Value q = zeros(g, {batch, tq, 4}, dtype), k = g.placeholder("k", dtype, {batch, tk, 4});
    Value v = broadcast_to(cast(equal(iota(g, {tk, tk}, 0), iota(g, {tk, tk}, 1)), dtype), {batch, tk, tk});
    Value kept = fused_attention(q, k, v, {}, 1.0, false, dropout).output * scalar_like(u, double(tk) / 2.0);
    Executable exe = compile(g, {keep, kept}, backend, {.check_finite_feeds = false});
    const std::vector<Tensor> got =
        exe.run({{step, Tensor::scalar<std::int64_t>(7)}, {k, random_tensor(dtype, {batch, tk, 4}, 1)}});
    std::int64_t dropped = 0;
    for (std::int64_t i = 0; i < got[0].numel(); ++i) {
      REQUIRE(std::round(got[1].at(i)) == got[0].at(i));
      dropped += got[0].at(i) == 0.0;
    }
    CHECK(dropped > got[0].numel() / 5);  // about 30% of them
    CHECK(dropped < got[0].numel() * 2 / 5);
  }
}

}  // namespace fovea::testing
