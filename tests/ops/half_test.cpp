// The ops that take bf16 and f16 (mixed precision): cast, the shape ops, and the fused
// attention, which computes in f32 from half inputs. Every other op refuses half tensors when
// the node is built.
#include "testing.h"

using namespace fovea;
using testing::random_tensor;

namespace {

std::string error_message(const std::function<void()>& f) { return testing::error_of(f); }
bool mentions(const std::string& message, const std::string& what) { return message.find(what) != std::string::npos; }

// What the half type makes of an f32 value.
float rounded(DType half, float x) { return half == bf16 ? round_to_bfloat16(x) : round_to_float16(x); }

}  // namespace

TEST_CASE("cast to bf16 and f16 rounds to nearest-even from every dtype, and back is exact") {
  Graph g;
  Tensor x32 = random_tensor(f32, {3, 7}, 1, -300, 300), x64 = random_tensor(f64, {3, 7}, 2, -300, 300);
  Tensor xi = random_tensor(i32, {3, 7}, 3, -3000, 3000), xb = random_tensor(boolean, {3, 7}, 4);
  Value p32 = g.placeholder("x32", f32, {3, 7}), p64 = g.placeholder("x64", f64, {3, 7});
  Value pi = g.placeholder("xi", i32, {3, 7}), pb = g.placeholder("xb", boolean, {3, 7});
  const Feeds feeds{{p32, x32}, {p64, x64}, {pi, xi}, {pb, xb}};
  for (DType h : {bf16, f16}) {
    CAPTURE(dtype_name(h));
    const std::vector<Tensor> out = testing::run(
        g, {cast(p32, h), cast(p64, h), cast(pi, h), cast(pb, h), cast(cast(p32, h), f32), cast(cast(p32, h), f64)},
        feeds);
    for (std::int64_t i = 0; i < x32.numel(); ++i) {
      CHECK(out[0].at(i) == rounded(h, static_cast<float>(x32.at(i))));
      CHECK(out[1].at(i) == rounded(h, static_cast<float>(x64.at(i))));  // through f32, as documented
      CHECK(out[2].at(i) == rounded(h, static_cast<float>(xi.at(i))));
      CHECK(out[3].at(i) == xb.at(i));
      CHECK(out[4].at(i) == out[0].at(i));
      CHECK(out[5].at(i) == out[0].at(i));
    }
  }
}

TEST_CASE("cast from bf16 and f16 to integers truncates and saturates, and to bool tests for zero") {
  Graph g;
  Value x = g.constant(Tensor::from<float>({2.75f, -2.75f, 1e30f, -1e30f, 0.0f, 0.5f}, Shape{6}).to(bf16));
  const std::vector<Tensor> out = testing::run(g, {cast(x, i32), cast(x, i64), cast(x, boolean)});
  CHECK(out[0].at(0) == 2);
  CHECK(out[0].at(1) == -2);
  CHECK(out[0].at(2) == 2147483647.0);
  CHECK(out[0].at(3) == -2147483648.0);
  CHECK(out[1].at(2) == 9223372036854775807.0);
  CHECK(out[2].at(4) == 0);
  CHECK(out[2].at(5) == 1);
  Value f = g.constant(Tensor::from<float>({70000.0f, -1.0f}, Shape{2}));
  CHECK(std::isinf(testing::run1(g, cast(f, f16)).at(0)));  // beyond f16's range
}

TEST_CASE("the shape ops move bf16 and f16 elements like any others") {
  Graph g;
  Tensor x = random_tensor(f32, {2, 3, 4}, 5);
  Value p = g.placeholder("x", f32, {2, 3, 4});
  for (DType h : {bf16, f16}) {
    CAPTURE(dtype_name(h));
    Value ph = cast(p, h);
    auto same = [&](Value of_half, Value of_f32) { return std::pair{cast(of_half, f32), cast(cast(of_f32, h), f32)}; };
    const std::pair<Value, Value> pairs[] = {
        same(permute(ph, {2, 0, 1}), permute(p, {2, 0, 1})),
        same(reshape(ph, {6, 4}), reshape(p, {6, 4})),
        same(slice(ph, 2, 1, 4, 2), slice(p, 2, 1, 4, 2)),
        same(concat({ph, ph}, 1), concat({p, p}, 1)),
        same(broadcast_to(reshape(ph, {1, 2, 3, 4}), {5, 2, 3, 4}),
             broadcast_to(reshape(p, {1, 2, 3, 4}), {5, 2, 3, 4})),
    };
    for (const auto& [a, b] : pairs) {
      const std::vector<Tensor> out = testing::run(g, {a, b}, {{p, x}});
      testing::check_close(out[0], out[1], 0, 0);
    }
  }
}

TEST_CASE("ops that compute refuse bf16 and f16 when the node is built, and say to cast") {
  Graph g;
  Value h = g.placeholder("h", bf16, {4});
  const std::string exp_error = error_message([&] { exp(h); });
  CHECK(mentions(exp_error, "does not take bf16 tensors"));
  CHECK(mentions(exp_error, "cast to f32 first"));
  CHECK(mentions(exp_error, "half_test.cpp"));
  CHECK(mentions(error_message([&] { add(h, h); }), "storage types"));
  CHECK(mentions(error_message([&] { matmul(reshape(h, {2, 2}), reshape(h, {2, 2})); }), "bf16"));
  CHECK(mentions(error_message([&] { g.parameter("w", f16, {3}, init::zeros()); }), "parameters must be f32 or f64"));
  // Feeds are checked for NaN in half types too.
  Graph g2;
  Value p = g2.placeholder("p", f16, {3});
  Executable exe = compile(g2, {cast(p, f32)});
  Tensor bad = Tensor::from<float>({1.0f, NAN, 2.0f}, Shape{3}).to(f16);
  const std::string nan_error = error_message([&] { exe.run({{p, bad}}); });
  CHECK(mentions(nan_error, "NaN"));
  CHECK(mentions(nan_error, "'p'"));
}

TEST_CASE(
    "fused_attention on bf16 and f16 inputs computes in f32: o is the f32 result on the rounded inputs, rounded") {
  struct Config {
    bool causal;
    bool mask;
    double dropout;
  };
  for (DType h : {bf16, f16}) {
    for (const Config c :
         {Config{false, false, 0.0}, Config{true, false, 0.0}, Config{false, true, 0.0}, Config{true, true, 0.2}}) {
      CAPTURE(dtype_name(h));
      CAPTURE(c.causal);
      CAPTURE(c.mask);
      CAPTURE(c.dropout);
      Graph g;
      const Shape sq{2, 3, 37, 16}, sk{2, 3, 45, 16}, sv{2, 3, 45, 8};
      Tensor q = random_tensor(h, sq, 1), k = random_tensor(h, sk, 2), v = random_tensor(h, sv, 3);
      Tensor do_ = random_tensor(h, {2, 3, 37, 8}, 4);
      Tensor mask = random_tensor(f32, {37, 45}, 5, -2, 0);
      Value pq = g.placeholder("q", h, sq), pk = g.placeholder("k", h, sk), pv = g.placeholder("v", h, sv);
      Value pdo = g.placeholder("d_o", h, {2, 3, 37, 8});
      Value pm = c.mask ? g.constant(mask) : Value{};
      const AttentionDropout drop{
          .p = c.dropout, .scale = c.dropout > 0 ? 1 / (1 - c.dropout) : 1, .seed = 3, .stream = 9};
      // The same computation in f32, from the same (already rounded) inputs.
      Value wq = cast(pq, f32), wk = cast(pk, f32), wv = cast(pv, f32), wdo = cast(pdo, f32);
      const FusedAttentionOutputs half = fused_attention(pq, pk, pv, pm, 0.3, c.causal, drop);
      const FusedAttentionOutputs wide = fused_attention(wq, wk, wv, pm, 0.3, c.causal, drop);
      CHECK(half.output.dtype() == h);
      CHECK(half.lse.dtype() == f32);
      const FusedAttentionGradients gh =
          fused_attention_backward(pq, pk, pv, pm, half.output, half.lse, pdo, 0.3, c.causal, drop);
      const FusedAttentionGradients gw =
          fused_attention_backward(wq, wk, wv, pm, cast(half.output, f32), half.lse, wdo, 0.3, c.causal, drop);
      const std::vector<Tensor> out =
          testing::run(g,
                       {cast(half.output, f32), cast(cast(wide.output, h), f32), half.lse, wide.lse, cast(gh.dq, f32),
                        cast(cast(gw.dq, h), f32), cast(gh.dk, f32), cast(cast(gw.dk, h), f32), cast(gh.dv, f32),
                        cast(cast(gw.dv, h), f32)},
                       {{pq, q}, {pk, k}, {pv, v}, {pdo, do_}});
      for (std::size_t i = 0; i < out.size(); i += 2) {
        CAPTURE(i);
        testing::check_close(out[i], out[i + 1], 0, 0);  // the same f32 numbers, rounded the same way
      }
    }
  }
}

TEST_CASE("fused_attention with half inputs wants an f32 mask and gives f32 lse") {
  Graph g;
  Value q = g.placeholder("q", bf16, {4, 8}), k = g.placeholder("k", bf16, {5, 8}),
        v = g.placeholder("v", bf16, {5, 8});
  CHECK(mentions(error_message([&] {
                   fused_attention(q, k, v, g.placeholder("m", bf16, {4, 5}), 1, false);
                 }),
                 "the mask must be f32"));
  CHECK(mentions(error_message([&] {
                   fused_attention(q, k, g.placeholder("v16", f16, {5, 8}), {}, 1, false);
                 }),
                 "same dtype"));
  const FusedAttentionOutputs out = fused_attention(q, k, v, g.placeholder("m32", f32, {4, 5}), 1, false);
  CHECK(out.output.type().to_string() == "bf16[4,8]");
  CHECK(out.lse.type().to_string() == "f32[4]");
}
