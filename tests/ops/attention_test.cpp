// fused_attention and fused_attention_backward against plain references: the forward against
// scores materialised here in f64 (nested loops), the backward against autodiff through the
// unfused chain matmul → scale → (+ mask) → softmax → (dropout) → matmul, and against finite
// differences. With dropout, the reference draws each keep bit from core/philox.h itself.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <fovea/core/philox.h>

#include "gradcheck.h"
#include "ops/dropout_mask_probe.h"
#include "testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

constexpr double inf = std::numeric_limits<double>::infinity();

struct Case {
  std::vector<std::int64_t> batch;
  std::int64_t tq, tk, d, dv;
};

Shape shape_of(std::vector<std::int64_t> batch, std::initializer_list<std::int64_t> tail) {
  batch.insert(batch.end(), tail);
  return Shape(batch);
}

std::int64_t batch_size(const std::vector<std::int64_t>& batch) {
  std::int64_t n = 1;
  for (auto d : batch) n *= d;
  return n;
}

// The flat index into `from` (broadcast NumPy-style to `to`) of element `flat` of `to`.
std::int64_t broadcast_index(const Shape& from, const Shape& to, std::int64_t flat) {
  std::int64_t index = 0, stride = 1;
  for (int i = to.rank() - 1; i >= 0; --i) {
    const std::int64_t coordinate = flat % to[i];
    flat /= to[i];
    const int f = i - (to.rank() - from.rank());
    if (f < 0) continue;
    if (from[f] != 1) index += coordinate * stride;
    stride *= from[f];
  }
  return index;
}

struct Reference {
  Tensor o, lse;
};

// Dropout on the probabilities as nn::dropout draws it: element e of the probabilities is kept
// when T(philox::uniform(seed, stream + step, e)) >= T(p), and then multiplied by T(c).
struct ReferenceDropout {
  double p = 0, c = 1;
  std::int64_t seed = 0, stream = 0, step = 0;
  bool has_step = false;

  // Z for element e of the probabilities, in the dtype `dtype` rounds to.
  double factor(DType dtype, std::int64_t e) const {
    if (p == 0) return 1;
    const std::uint64_t key = static_cast<std::uint64_t>(stream) + static_cast<std::uint64_t>(has_step ? step : 0);
    const double u = philox::uniform(static_cast<std::uint64_t>(seed), key, static_cast<std::uint64_t>(e));
    const bool keep = dtype == f32 ? float(u) >= float(p) : u >= p;
    return keep ? (dtype == f32 ? double(float(c)) : c) : 0.0;
  }
};

// o = (Z ⊙ softmax(scale·q·kᵀ + mask, causal bottom-right)) v and lse, from the whole score
// matrix, in f64; a row without a finite score gives o = 0 and lse = -∞.
Reference reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale,
                              bool causal, const ReferenceDropout& dropout = {}) {
  const Shape &sq = q.shape(), &sv = v.shape();
  const int rank = sq.rank();
  const std::int64_t tq = sq[rank - 2], d = sq[rank - 1], tk = sv[rank - 2], dv = sv[rank - 1];
  std::vector<std::int64_t> batch(sq.begin(), sq.end() - 2);
  const std::int64_t items = batch_size(batch);
  const Shape scores_shape = shape_of(batch, {tq, tk});
  std::vector<double> o(static_cast<std::size_t>(items * tq * dv), 0.0), lse(static_cast<std::size_t>(items * tq));
  std::vector<double> s(static_cast<std::size_t>(tk));
  for (std::int64_t b = 0; b < items; ++b)
    for (std::int64_t i = 0; i < tq; ++i) {
      double max = -inf;
      for (std::int64_t j = 0; j < tk; ++j) {
        double dot = 0;
        for (std::int64_t p = 0; p < d; ++p) dot += q.at((b * tq + i) * d + p) * k.at((b * tk + j) * d + p);
        double score = scale * dot;
        if (mask.defined()) score += mask.at(broadcast_index(mask.shape(), scores_shape, (b * tq + i) * tk + j));
        if (causal && j > i + tk - tq) score = -inf;
        s[static_cast<std::size_t>(j)] = score;
        max = std::max(max, score);
      }
      const std::size_t row = static_cast<std::size_t>(b * tq + i);
      if (max == -inf) {
        lse[row] = -inf;
        continue;
      }
      double sum = 0;
      for (std::int64_t j = 0; j < tk; ++j) sum += std::exp(s[static_cast<std::size_t>(j)] - max);
      lse[row] = max + std::log(sum);
      for (std::int64_t j = 0; j < tk; ++j) {
        const double p = std::exp(s[static_cast<std::size_t>(j)] - lse[row]) *
                         dropout.factor(q.dtype(), static_cast<std::int64_t>(row) * tk + j);
        for (std::int64_t c = 0; c < dv; ++c) o[row * dv + c] += p * v.at((b * tk + j) * dv + c);
      }
    }
  return {Tensor::from<double>(o, shape_of(batch, {tq, dv})).to(q.dtype()),
          Tensor::from<double>(lse, shape_of(batch, {tq})).to(q.dtype())};
}

// |actual - expected| <= tol·(1 + |expected|) elementwise; equal infinities match. No NaN.
void check_close(const Tensor& actual, const Tensor& expected, double tol) {
  REQUIRE(actual.shape() == expected.shape());
  REQUIRE(actual.dtype() == expected.dtype());
  for (std::int64_t i = 0; i < actual.numel(); ++i) {
    const double a = actual.at(i), e = expected.at(i);
    if (std::isinf(e) && a == e) continue;
    if (!(std::abs(a - e) <= tol * (1 + std::abs(e)))) {
      FAIL_CHECK("element " << i << " of " << actual.shape().to_string() << ": got " << a << ", expected " << e);
      return;
    }
  }
}

double tolerance(DType dtype) { return dtype == f64 ? 1e-12 : 1e-5; }

// Runs fused_attention on random q, k, v (and `mask` when defined, and `dropout` when its p is
// not 0) and checks o and lse.
void check_forward(const Case& c, DType dtype, bool causal, const Tensor& mask = {}, std::uint64_t seed = 1,
                   const ReferenceDropout& dropout = {}) {
  CAPTURE(dtype_name(dtype));
  CAPTURE(Shape(c.batch).to_string());
  CAPTURE(c.tq);
  CAPTURE(c.tk);
  CAPTURE(c.d);
  CAPTURE(c.dv);
  CAPTURE(causal);
  const Tensor q = random_tensor(dtype, shape_of(c.batch, {c.tq, c.d}), seed);
  const Tensor k = random_tensor(dtype, shape_of(c.batch, {c.tk, c.d}), seed + 1);
  const Tensor v = random_tensor(dtype, shape_of(c.batch, {c.tk, c.dv}), seed + 2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(std::max<std::int64_t>(c.d, 1)));
  Graph g;
  Value pq = g.placeholder("q", dtype, q.shape()), pk = g.placeholder("k", dtype, k.shape());
  Value pv = g.placeholder("v", dtype, v.shape());
  Feeds feeds{{pq, q}, {pk, k}, {pv, v}};
  Value pmask;
  if (mask.defined()) {
    pmask = g.placeholder("mask", dtype, mask.shape());
    feeds.emplace_back(pmask, mask.to(dtype));
  }
  AttentionDropout drop{.p = dropout.p, .scale = dropout.c, .seed = dropout.seed, .stream = dropout.stream};
  if (dropout.has_step) {
    drop.step = g.placeholder("step", i64, {});
    feeds.emplace_back(drop.step, Tensor::scalar(dropout.step));
  }
  const FusedAttentionOutputs out = fused_attention(pq, pk, pv, pmask, scale, causal, drop);
  const std::vector<Tensor> got = testing::run(g, {out.output, out.lse}, feeds);
  const Reference want =
      reference_attention(q, k, v, mask.defined() ? mask.to(dtype) : Tensor{}, scale, causal, dropout);
  check_close(got[0], want.o, tolerance(dtype));
  check_close(got[1], want.lse, tolerance(dtype));
}

const std::vector<Case> shapes = {
    {{}, 1, 1, 1, 1},        {{}, 7, 130, 8, 8},      {{2}, 65, 7, 64, 64},   {{2, 3}, 130, 65, 80, 80},
    {{}, 300, 300, 64, 64},  {{2}, 300, 130, 80, 16}, {{2, 3}, 1, 300, 8, 8}, {{}, 65, 300, 1, 1},
    {{2}, 130, 300, 64, 80}, {{}, 7, 1, 8, 8},
};

template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool mentions(const std::string& message, const std::string& what) { return message.find(what) != std::string::npos; }

// A mask of `shape` with entries 0, except -∞ (or -1e9) where `masked(flat index)` says so.
template <typename F>
Tensor make_mask(const Shape& shape, double masked_value, F masked) {
  std::vector<double> m(static_cast<std::size_t>(shape.numel()), 0.0);
  for (std::int64_t i = 0; i < shape.numel(); ++i)
    if (masked(i)) m[static_cast<std::size_t>(i)] = masked_value;
  return Tensor::from<double>(m, shape);
}

// The gradients of Σ o ⊙ r with respect to q, k and v, through the fused op or through the
// unfused chain (with nn::softmax), for the same inputs.
std::vector<Tensor> attention_gradients(bool fused, const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& mask, double scale, bool causal, const Tensor& r) {
  Graph g;
  const DType dtype = q.dtype();
  Value pq = g.placeholder("q", dtype, q.shape()), pk = g.placeholder("k", dtype, k.shape());
  Value pv = g.placeholder("v", dtype, v.shape());
  Value pmask = mask.defined() ? g.constant(mask.to(dtype), "mask") : Value{};
  Value o;
  if (fused) {
    o = fused_attention(pq, pk, pv, pmask, scale, causal).output;
  } else {
    Value s = matmul(pq, pk, false, true) * scale;
    if (pmask.defined()) s = s + pmask;
    if (causal) {
      const std::int64_t tq = q.shape()[q.rank() - 2], tk = k.shape()[k.rank() - 2];
      s = s + g.constant(
                  make_mask(Shape{tq, tk}, -inf, [&](std::int64_t f) { return f % tk > f / tk + tk - tq; }).to(dtype),
                  "causal");
    }
    o = matmul(nn::softmax(s), pv);
  }
  const Value loss = reduce_sum(o * g.constant(r, "r"));
  const std::vector<Value> grads = grad(loss, {pq, pk, pv});
  return testing::run(g, grads, {{pq, q}, {pk, k}, {pv, v}});
}

void check_backward(const Case& c, DType dtype, bool causal, const Tensor& mask = {}, std::uint64_t seed = 7) {
  CAPTURE(dtype_name(dtype));
  CAPTURE(Shape(c.batch).to_string());
  CAPTURE(c.tq);
  CAPTURE(c.tk);
  CAPTURE(c.d);
  CAPTURE(causal);
  const Tensor q = random_tensor(dtype, shape_of(c.batch, {c.tq, c.d}), seed);
  const Tensor k = random_tensor(dtype, shape_of(c.batch, {c.tk, c.d}), seed + 1);
  const Tensor v = random_tensor(dtype, shape_of(c.batch, {c.tk, c.dv}), seed + 2);
  const Tensor r = random_tensor(dtype, shape_of(c.batch, {c.tq, c.dv}), seed + 3, 0.5, 1.5);
  const double scale = 0.3;
  const std::vector<Tensor> fused = attention_gradients(true, q, k, v, mask, scale, causal, r);
  const std::vector<Tensor> unfused = attention_gradients(false, q, k, v, mask, scale, causal, r);
  const double tol = dtype == f64 ? 1e-10 : 1e-4;
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    check_close(fused[i], unfused[i], tol);
  }
}

// Runs the kernel registered for `node` on `pool`, with inputs and outputs in host tensors.
void run_kernel(const Node& node, const Graph& g, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
                ThreadPool& pool) {
  const Kernel kernel = cpu()->kernels().find(*node.op, kernel_dtype(g, node));
  REQUIRE(static_cast<bool>(kernel));
  std::vector<TensorArg> in, out;
  for (const Tensor& t : inputs) in.push_back({const_cast<std::byte*>(t.raw()), {t.dtype(), t.shape()}});
  outputs.clear();
  for (const TensorType& t : node.outputs) {
    outputs.push_back(Tensor::zeros(t.dtype, t.shape));
    out.push_back({outputs.back().raw(), t});
  }
  const std::unique_ptr<const DecodedParams> params = decode_params(g, node);
  const KernelContext ctx{&node, in, out, &pool, nullptr, params.get()};
  kernel(ctx);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// The planned arena of forward + backward for q, k, v of [2, n, 64] in f32.
std::size_t planned_peak(bool fused, std::int64_t n) {
  Graph g;
  const Shape shape{2, n, 64};
  Value q = g.placeholder("q", f32, shape), k = g.placeholder("k", f32, shape), v = g.placeholder("v", f32, shape);
  const Value o = fused ? fused_attention(q, k, v, {}, 0.125, false).output
                        : matmul(nn::softmax(matmul(q, k, false, true) * 0.125), v);
  const std::vector<Value> grads = grad(reduce_sum(o * g.placeholder("r", f32, shape)), {q, k, v});
  std::vector<Value> outputs = grads;
  outputs.push_back(o);
  return compile(g, outputs).planned_peak_bytes();
}

}  // namespace

TEST_CASE("fused_attention matches the materialised reference over shapes that are not multiples of the blocks") {
  for (DType dtype : {f32, f64})
    for (bool causal : {false, true})
      for (std::size_t i = 0; i < shapes.size(); ++i) check_forward(shapes[i], dtype, causal, {}, 10 * i);
}

TEST_CASE("fused_attention with a [Tq,Tk] mask of -inf and -1e9 entries matches the reference") {
  const Case c{{2, 3}, 65, 130, 8, 8};
  const Tensor mask_inf = make_mask(Shape{65, 130}, -inf, [](std::int64_t f) { return f % 7 == 3; });
  const Tensor mask_big = make_mask(Shape{65, 130}, -1e9, [](std::int64_t f) { return f % 5 == 1; });
  for (DType dtype : {f32, f64})
    for (bool causal : {false, true}) {
      check_forward(c, dtype, causal, mask_inf, 3);
      check_forward(c, dtype, causal, mask_big, 4);
    }
}

TEST_CASE("fused_attention with a [B,1,1,Tk] padding mask and a full [B,H,Tq,Tk] mask matches the reference") {
  const Case c{{2, 3}, 70, 300, 16, 8};
  // Sequence 0 is padded after 200 keys, sequence 1 after 37 (-inf and -1e9 padding).
  for (double pad : {-inf, -1e9}) {
    const Tensor padding =
        make_mask(Shape{2, 1, 1, 300}, pad, [](std::int64_t f) { return f % 300 >= (f < 300 ? 200 : 37); });
    for (DType dtype : {f32, f64}) check_forward(c, dtype, false, padding, 5);
  }
  const Tensor full = random_tensor(f64, Shape{2, 3, 70, 300}, 99, -3.0, 3.0);
  for (DType dtype : {f32, f64})
    for (bool causal : {false, true}) check_forward(c, dtype, causal, full, 6);
}

TEST_CASE("a fully masked row of fused_attention gives o = 0 and lse = -inf, with no NaN") {
  // Rows 0 and 66 of a [130, 70] mask are -inf everywhere; with causal and Tq > Tk, the first
  // Tq - Tk rows see no key at all.
  const Tensor mask = make_mask(Shape{130, 70}, -inf, [](std::int64_t f) { return f / 70 == 0 || f / 70 == 66; });
  for (DType dtype : {f32, f64}) {
    check_forward({{2}, 130, 70, 8, 8}, dtype, false, mask, 11);
    check_forward({{2}, 130, 70, 8, 8}, dtype, true, {}, 12);
    Graph g;
    Value q = g.constant(random_tensor(dtype, Shape{130, 8}, 1)), k = g.constant(random_tensor(dtype, Shape{70, 8}, 2));
    Value v = g.constant(random_tensor(dtype, Shape{70, 8}, 3));
    const FusedAttentionOutputs out = fused_attention(q, k, v, g.constant(mask.to(dtype)), 0.5, false);
    const std::vector<Tensor> got = testing::run(g, {out.output, out.lse});
    for (std::int64_t c = 0; c < 8; ++c) CHECK(got[0].at(66 * 8 + c) == 0.0);
    CHECK(got[1].at(66) == -inf);
    for (std::int64_t i = 0; i < got[0].numel(); ++i) REQUIRE(!std::isnan(got[0].at(i)));
  }
}

TEST_CASE("fused_attention handles zero-size dims: no keys gives o = 0 and lse = -inf") {
  for (DType dtype : {f32, f64}) {
    check_forward({{2}, 5, 0, 4, 4}, dtype, false);
    check_forward({{2}, 0, 5, 4, 4}, dtype, true);
    check_forward({{0, 3}, 3, 3, 2, 2}, dtype, false);
    check_forward({{2}, 6, 5, 0, 3}, dtype, false);  // D = 0: all scores 0, uniform weights
    check_forward({{2}, 6, 5, 3, 0}, dtype, false);
  }
}

TEST_CASE("fused_attention's gradients match autodiff through the unfused softmax chain") {
  const std::vector<Case> cases = {
      {{}, 7, 130, 8, 8}, {{2}, 65, 65, 64, 64}, {{2, 3}, 130, 300, 80, 16}, {{2}, 1, 7, 8, 8}, {{}, 300, 130, 1, 1}};
  for (DType dtype : {f32, f64})
    for (const Case& c : cases) {
      check_backward(c, dtype, false);
      if (c.tq <= c.tk) check_backward(c, dtype, true);  // with Tq > Tk some rows see nothing: NaN unfused
    }
}

TEST_CASE("fused_attention's gradients with [Tq,Tk] and [B,1,1,Tk] masks match autodiff through the chain") {
  const Tensor scores_mask = make_mask(Shape{65, 130}, -inf, [](std::int64_t f) { return f % 7 == 3; });
  const Tensor padding =
      make_mask(Shape{2, 1, 1, 130}, -1e9, [](std::int64_t f) { return f % 130 >= (f < 130 ? 100 : 9); });
  for (DType dtype : {f32, f64}) {
    check_backward({{2, 3}, 65, 130, 16, 16}, dtype, false, scores_mask);
    check_backward({{2, 3}, 65, 130, 16, 16}, dtype, true, scores_mask);
    check_backward({{2, 3}, 65, 130, 16, 16}, dtype, false, padding);
  }
}

TEST_CASE("fused_attention's gradients are 0 for fully masked rows and never NaN") {
  for (DType dtype : {f32, f64}) {
    Graph g;
    const Shape sq{2, 130, 8}, sk{2, 70, 8};
    Value q = g.placeholder("q", dtype, sq), k = g.placeholder("k", dtype, sk), v = g.placeholder("v", dtype, sk);
    const Value o = fused_attention(q, k, v, {}, 0.4, true).output;  // rows 0..59 see no key
    const std::vector<Value> grads = grad(reduce_sum(o * o), {q, k, v});
    const std::vector<Tensor> got = testing::run(
        g, grads,
        {{q, random_tensor(dtype, sq, 1)}, {k, random_tensor(dtype, sk, 2)}, {v, random_tensor(dtype, sk, 3)}});
    for (const Tensor& t : got)
      for (std::int64_t i = 0; i < t.numel(); ++i) REQUIRE(std::isfinite(t.at(i)));
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t i = 0; i < 60 * 8; ++i) REQUIRE(got[0].at(b * 130 * 8 + i) == 0.0);
    double norm = 0;
    for (std::int64_t i = 0; i < got[0].numel(); ++i) norm += std::abs(got[0].at(i));
    CHECK(norm > 0);
  }
}

TEST_CASE("fused_attention passes gradcheck in f64, with and without causal masking and an additive mask") {
  using fovea::testing::gradcheck;
  for (bool causal : {false, true}) {
    gradcheck(
        "fused_attention",
        [&](Graph&, const std::vector<Value>& x) { return fused_attention(x[0], x[1], x[2], {}, 0.7, causal).output; },
        {{Shape{2, 3, 4}}, {Shape{2, 5, 4}}, {Shape{2, 5, 3}}});
    gradcheck("fused_attention with a mask",
              [&](Graph& g, const std::vector<Value>& x) {
                const Tensor mask = make_mask(Shape{2, 1, 5}, -inf, [](std::int64_t f) { return f == 4 || f == 7; });
                return fused_attention(x[0], x[1], x[2], g.constant(mask), 0.7, causal).output;
              },
              {{Shape{2, 3, 4}}, {Shape{2, 5, 4}}, {Shape{2, 5, 3}}});
  }
}

TEST_CASE("fused_attention's gradient is one fused_attention_backward node and no matmul") {
  Graph g;
  Value q = g.placeholder("q", f32, {2, 16, 8}), k = g.placeholder("k", f32, {2, 32, 8});
  Value v = g.placeholder("v", f32, {2, 32, 8});
  const FusedAttentionOutputs out = fused_attention(q, k, v, {}, 0.35, true);
  const std::size_t before = g.size();
  grad(reduce_sum(out.output), {q, k, v});
  int backward = 0, matmuls = 0;
  for (std::uint32_t id = static_cast<std::uint32_t>(before); id < g.size(); ++id) {
    backward += g.node(id).op == &ops::fused_attention_backward;
    matmuls += g.node(id).op == &ops::matmul;
  }
  CHECK(backward == 1);
  CHECK(matmuls == 0);
  const Node* node = nullptr;
  for (std::uint32_t id = 0; id < g.size(); ++id)
    if (g.node(id).op == &ops::fused_attention_backward) node = &g.node(id);
  REQUIRE(node != nullptr);
  CHECK(node->attrs.get_float("scale") == 0.35);
  CHECK(node->attrs.get_bool("causal"));
  g.verify();
}

TEST_CASE("fused_attention kernels give bitwise the same results on 1, 3 and 4 threads, in either backward schedule") {
  // 6 batch items: 1 and 3 threads take the one-pass backward, 4 threads the two-pass one.
  const Shape sq{2, 3, 300, 64}, sk{2, 3, 260, 64}, sv{2, 3, 260, 48};
  const Tensor q = random_tensor(f32, sq, 1), k = random_tensor(f32, sk, 2), v = random_tensor(f32, sv, 3);
  const Tensor mask = make_mask(Shape{2, 1, 1, 260}, -inf, [](std::int64_t f) { return f % 260 > 250; });
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    Graph g;
    Value pq = g.placeholder("q", f32, sq), pk = g.placeholder("k", f32, sk), pv = g.placeholder("v", f32, sv);
    Value pm = g.placeholder("mask", f32, mask.shape());
    const FusedAttentionOutputs out = fused_attention(pq, pk, pv, pm, 0.125, causal);
    Value d_o = g.placeholder("d_o", f32, out.output.shape());
    const FusedAttentionGradients grads =
        fused_attention_backward(pq, pk, pv, pm, out.output, out.lse, d_o, 0.125, causal);
    const Tensor dout = random_tensor(f32, out.output.shape(), 4);

    ThreadPool one(1);
    std::vector<Tensor> forward1, backward1;
    run_kernel(out.output.node(), g, {q, k, v, mask}, forward1, one);
    run_kernel(grads.dq.node(), g, {q, k, v, mask, forward1[0], forward1[1], dout}, backward1, one);
    for (int threads : {3, 4}) {
      CAPTURE(threads);
      ThreadPool pool(threads);
      std::vector<Tensor> forward, backward;
      run_kernel(out.output.node(), g, {q, k, v, mask}, forward, pool);
      run_kernel(grads.dq.node(), g, {q, k, v, mask, forward1[0], forward1[1], dout}, backward, pool);
      for (std::size_t i = 0; i < 2; ++i) CHECK(bitwise_equal(forward1[i], forward[i]));
      for (std::size_t i = 0; i < 3; ++i) CHECK(bitwise_equal(backward1[i], backward[i]));
    }
  }
}

TEST_CASE(
    "fused_attention's planned memory grows linearly with the sequence length, the unfused chain's quadratically") {
  const double fused = static_cast<double>(planned_peak(true, 2048)) / static_cast<double>(planned_peak(true, 1024));
  const double unfused =
      static_cast<double>(planned_peak(false, 2048)) / static_cast<double>(planned_peak(false, 1024));
  CAPTURE(fused);
  CAPTURE(unfused);
  CHECK(fused > 1.8);
  CHECK(fused < 2.2);
  CHECK(unfused > 3.5);
  CHECK(unfused < 4.5);
  CHECK(planned_peak(true, 2048) * 10 < planned_peak(false, 2048));
}

TEST_CASE("fused_attention rejects bad shapes and dtypes, naming the op and the user's line") {
  Graph g;
  const std::string file = "attention_test.cpp";
  Value q = g.placeholder("q", f32, {2, 3, 5, 8}), k = g.placeholder("k", f32, {2, 3, 7, 8});
  Value v = g.placeholder("v", f32, {2, 3, 7, 4});
  auto expect_error = [&](auto&& build, const std::string& what) {
    const std::string message = error_message(build);
    CAPTURE(message);
    CHECK(mentions(message, "fused_attention"));
    CHECK(mentions(message, file));
    CHECK(mentions(message, what));
  };
  expect_error([&] { fused_attention(g.placeholder("x", f32, {8}), k, v, {}, 1.0, false); }, "rank >= 2");
  expect_error(
      [&] {
        fused_attention(q, g.placeholder("k1", f32, {2, 1, 7, 8}), v, {}, 1.0, false);
      },
      "equal leading (batch, head) dims");
  expect_error(
      [&] {
        fused_attention(q, g.placeholder("k2", f32, {2, 3, 7, 6}), v, {}, 1.0, false);
      },
      "the same last dim");
  expect_error(
      [&] {
        fused_attention(q, k, g.placeholder("v2", f32, {2, 3, 6, 4}), {}, 1.0, false);
      },
      "the same length");
  expect_error(
      [&] {
        fused_attention(q, g.placeholder("k3", f64, {2, 3, 7, 8}), v, {}, 1.0, false);
      },
      "the same dtype");
  expect_error(
      [&] {
        fused_attention(g.placeholder("qi", DType::i32, {5, 8}), g.placeholder("ki", DType::i32, {7, 8}),
                        g.placeholder("vi", DType::i32, {7, 4}), {}, 1.0, false);
      },
      "must be f32 or f64");
  expect_error(
      [&] {
        fused_attention(q, k, v, g.placeholder("m1", f32, {3, 5, 5}), 1.0, false);
      },
      "does not broadcast to the scores f32[2,3,5,7]");
  expect_error(
      [&] {
        fused_attention(q, k, v, g.placeholder("m2", f32, {1, 2, 3, 5, 7}), 1.0, false);
      },
      "does not broadcast");
  const FusedAttentionOutputs out = fused_attention(q, k, v, {}, 1.0, false);
  const std::string message = error_message([&] {
    fused_attention_backward(q, k, v, {}, out.output, g.placeholder("lse", f32, {2, 3, 7}), out.output, 1.0, false);
  });
  CHECK(mentions(message, "fused_attention_backward"));
  CHECK(mentions(message, "lse must be f32[2,3,5]"));
  CHECK(mentions(message, file));
}

TEST_CASE("a gradient through fused_attention's lse output, or a second derivative, is a clear error") {
  Graph g;
  Value q = g.placeholder("q", f64, {4, 3}), k = g.placeholder("k", f64, {5, 3}), v = g.placeholder("v", f64, {5, 2});
  const FusedAttentionOutputs out = fused_attention(q, k, v, {}, 1.0, false);
  std::string message = error_message([&] { grad(reduce_sum(out.lse), {q}); });
  CHECK(mentions(message, "lse"));
  CHECK(mentions(message, "only o (output 0) is differentiable"));
  CHECK(mentions(message, "attention_test.cpp"));

  const std::vector<Value> first = grad(reduce_sum(out.output), {q});
  message = error_message([&] { grad(reduce_sum(first[0]), {q}); });
  CHECK(mentions(message, "no gradient rule for op 'fused_attention_backward'"));
}

// --- Dropout on the probabilities --------------------------------------------------------------

namespace {

// The seed and stream of the one random_uniform node of `g`.
ReferenceDropout random_key(const Graph& g, double p, std::int64_t step, bool has_step) {
  for (std::uint32_t id = 0; id < g.size(); ++id)
    if (g.node(id).op == &ops::random_uniform)
      return {.p = p,
              .c = 1.0 / (1.0 - p),
              .seed = g.node(id).attrs.get_int("seed"),
              .stream = g.node(id).attrs.get_int("stream"),
              .step = step,
              .has_step = has_step};
  FAIL("no random_uniform node");
  return {};
}

// o and ∂(Σ o ⊙ r)/∂q, k, v for attention with dropout p on the probabilities: through the
// unfused chain with nn::dropout (fused = false), or through fused_attention drawing the mask
// of the same random node (fused = true). `step` is fed when has_step.
std::vector<Tensor> dropout_attention(bool fused, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                      bool causal, double p, std::int64_t step, bool has_step, const Tensor& r) {
  const DType dtype = q.dtype();
  const double scale = 0.3;
  const std::int64_t tq = q.shape()[q.rank() - 2], tk = k.shape()[k.rank() - 2];
  // The unfused graph, built first in either case: the fused one takes its random node's key.
  Graph chain;
  {
    Value pq = chain.placeholder("q", dtype, q.shape()), pk = chain.placeholder("k", dtype, k.shape());
    Value pv = chain.placeholder("v", dtype, v.shape());
    Value step_value = has_step ? chain.placeholder("step", i64, {}) : Value{};
    Value s = matmul(pq, pk, false, true) * scale;
    if (mask.defined()) s = s + chain.constant(mask.to(dtype), "mask");
    if (causal)
      s = s + chain.constant(
                  make_mask(Shape{tq, tk}, -inf, [&](std::int64_t f) { return f % tk > f / tk + tk - tq; }).to(dtype),
                  "causal");
    Value o = matmul(nn::dropout(nn::softmax(s), p, {.training = true, .step = step_value}), pv);
    if (!fused) {
      const std::vector<Value> grads = grad(reduce_sum(o * chain.constant(r, "r")), {pq, pk, pv});
      Feeds feeds{{pq, q}, {pk, k}, {pv, v}};
      if (has_step) feeds.emplace_back(step_value, Tensor::scalar(step));
      return testing::run(chain, {o, grads[0], grads[1], grads[2]}, feeds);
    }
  }
  const ReferenceDropout key = random_key(chain, p, step, has_step);
  Graph g;
  Value pq = g.placeholder("q", dtype, q.shape()), pk = g.placeholder("k", dtype, k.shape());
  Value pv = g.placeholder("v", dtype, v.shape());
  const AttentionDropout dropout{.p = p,
                                 .scale = key.c,
                                 .seed = key.seed,
                                 .stream = key.stream,
                                 .step = has_step ? g.placeholder("step", i64, {}) : Value{}};
  Value pmask = mask.defined() ? g.constant(mask.to(dtype), "mask") : Value{};
  Value o = fused_attention(pq, pk, pv, pmask, scale, causal, dropout).output;
  const std::vector<Value> grads = grad(reduce_sum(o * g.constant(r, "r")), {pq, pk, pv});
  Feeds feeds{{pq, q}, {pk, k}, {pv, v}};
  if (has_step) feeds.emplace_back(dropout.step, Tensor::scalar(step));
  return testing::run(g, {o, grads[0], grads[1], grads[2]}, feeds);
}

// Fused and unfused agree on o within 1e-5 relative in f32 (1e-10 in f64), and on the
// gradients too, with an absolute tolerance scaled by each gradient's largest element (the
// fused kernel sums in another order).
void check_dropout_agrees(const Case& c, DType dtype, bool causal, double p, const Tensor& mask = {},
                          bool has_step = true, std::uint64_t seed = 21) {
  CAPTURE(dtype_name(dtype));
  CAPTURE(Shape(c.batch).to_string());
  CAPTURE(c.tq);
  CAPTURE(c.tk);
  CAPTURE(causal);
  CAPTURE(p);
  CAPTURE(has_step);
  const Tensor q = random_tensor(dtype, shape_of(c.batch, {c.tq, c.d}), seed);
  const Tensor k = random_tensor(dtype, shape_of(c.batch, {c.tk, c.d}), seed + 1);
  const Tensor v = random_tensor(dtype, shape_of(c.batch, {c.tk, c.dv}), seed + 2);
  const Tensor r = random_tensor(dtype, shape_of(c.batch, {c.tq, c.dv}), seed + 3, 0.5, 1.5);
  const std::int64_t step = 41;
  const std::vector<Tensor> fused = dropout_attention(true, q, k, v, mask, causal, p, step, has_step, r);
  const std::vector<Tensor> unfused = dropout_attention(false, q, k, v, mask, causal, p, step, has_step, r);
  const double rtol = dtype == f64 ? 1e-10 : 1e-5, atol = dtype == f64 ? 1e-12 : 1e-6;
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(i);  // o, dq, dk, dv
    double largest = 0;
    for (std::int64_t j = 0; j < unfused[i].numel(); ++j) largest = std::max(largest, std::abs(unfused[i].at(j)));
    testing::check_close(fused[i], unfused[i], rtol, std::max(atol, i == 0 ? 0.0 : rtol * largest));
  }
}

}  // namespace

TEST_CASE("fused_attention with dropout matches a reference that draws every keep bit from philox") {
  const std::vector<Case> cases = {{{}, 1, 1, 1, 1},         {{}, 7, 130, 8, 8},     {{2}, 65, 7, 64, 64},
                                   {{2, 3}, 130, 65, 16, 8}, {{2}, 70, 300, 16, 80}, {{2, 3}, 1, 300, 8, 8}};
  const std::int64_t seed = 77, stream = -1234567;
  for (DType dtype : {f32, f64})
    for (double p : {0.1, 0.5})
      for (bool causal : {false, true})
        for (std::size_t i = 0; i < cases.size(); ++i) {
          const bool has_step = i % 2 == 0;
          check_forward(cases[i], dtype, causal, {}, 30 * i,
                        {.p = p, .c = 1 / (1 - p), .seed = seed, .stream = stream, .step = 5, .has_step = has_step});
        }
}

TEST_CASE("fused_attention with dropout and a [Tq,Tk] or [B,1,1,Tk] mask matches the philox reference") {
  const Case c{{2, 3}, 65, 130, 8, 8};
  const Tensor scores_mask = make_mask(Shape{65, 130}, -inf, [](std::int64_t f) { return f % 7 == 3; });
  const Tensor padding =
      make_mask(Shape{2, 1, 1, 130}, -1e9, [](std::int64_t f) { return f % 130 >= (f < 130 ? 100 : 9); });
  const ReferenceDropout dropout{.p = 0.3, .c = 1.5, .seed = 3, .stream = 99, .step = -2, .has_step = true};
  for (DType dtype : {f32, f64})
    for (bool causal : {false, true}) {
      check_forward(c, dtype, causal, scores_mask, 3, dropout);
      check_forward(c, dtype, causal, padding, 4, dropout);
    }
}

TEST_CASE("fused_attention with dropout handles zero-size dims and a step that moves the mask") {
  const ReferenceDropout dropout{.p = 0.5, .c = 2.0, .seed = 1, .stream = 2, .step = 3, .has_step = true};
  for (DType dtype : {f32, f64}) {
    check_forward({{2}, 5, 0, 4, 4}, dtype, false, {}, 1, dropout);
    check_forward({{2}, 0, 5, 4, 4}, dtype, true, {}, 1, dropout);
    check_forward({{0, 3}, 3, 3, 2, 2}, dtype, false, {}, 1, dropout);
    check_forward({{2}, 6, 5, 3, 0}, dtype, false, {}, 1, dropout);
  }
  // Two steps draw two different masks: the outputs differ.
  Graph g;
  Value q = g.constant(random_tensor(f64, Shape{2, 40, 8}, 1)), k = g.constant(random_tensor(f64, Shape{2, 50, 8}, 2));
  Value v = g.constant(random_tensor(f64, Shape{2, 50, 8}, 3));
  Value step = g.placeholder("step", i64, {});
  const Value o =
      fused_attention(q, k, v, {}, 0.5, false, {.p = 0.5, .scale = 2.0, .seed = 1, .stream = 2, .step = step}).output;
  const Tensor first = testing::run1(g, o, {{step, Tensor::scalar<std::int64_t>(1)}});
  const Tensor second = testing::run1(g, o, {{step, Tensor::scalar<std::int64_t>(2)}});
  double difference = 0;
  for (std::int64_t i = 0; i < first.numel(); ++i) difference += std::abs(first.at(i) - second.at(i));
  CHECK(difference > 1.0);
}

TEST_CASE("fused_attention's dropout keeps exactly the probabilities random_uniform's numbers keep") {
  testing::check_dropout_keeps_random_uniform_bits(cpu());
}

TEST_CASE("fused_attention with dropout: o and the gradients of q, k, v match the unfused chain with nn::dropout") {
  const Tensor scores_mask = make_mask(Shape{65, 130}, -inf, [](std::int64_t f) { return f % 7 == 3; });
  const Tensor padding =
      make_mask(Shape{2, 1, 1, 130}, -1e9, [](std::int64_t f) { return f % 130 >= (f < 130 ? 100 : 9); });
  for (DType dtype : {f32, f64})
    for (double p : {0.1, 0.5}) {
      check_dropout_agrees({{2, 3}, 65, 130, 16, 8}, dtype, false, p);
      check_dropout_agrees({{2}, 70, 130, 8, 8}, dtype, true, p);
      check_dropout_agrees({{}, 130, 65, 8, 16}, dtype, false, p, {}, /*has_step=*/false);
      check_dropout_agrees({{2, 3}, 65, 130, 16, 16}, dtype, false, p, scores_mask);
      check_dropout_agrees({{2, 3}, 65, 130, 16, 16}, dtype, true, p, padding);
      check_dropout_agrees({{2, 3}, 1, 7, 8, 8}, dtype, false, p);
    }
}

TEST_CASE("fused_attention with dropout passes gradcheck in f64 for the mask of a fixed step") {
  using fovea::testing::gradcheck;
  for (bool causal : {false, true})
    gradcheck(
        "fused_attention with dropout",
        [&](Graph&, const std::vector<Value>& x) {
          return fused_attention(x[0], x[1], x[2], {}, 0.7, causal,
                                 {.p = 0.4, .scale = 1 / 0.6, .seed = 9, .stream = 10, .step = x[3]})
              .output;
        },
        {{Shape{2, 6, 4}}, {Shape{2, 9, 4}}, {Shape{2, 9, 3}}, {Shape{}, 0, 0, i64, Tensor::scalar<std::int64_t>(4)}});
}

TEST_CASE("fused_attention with dropout: its gradient node carries the dropout and reads the step last") {
  Graph g;
  Value q = g.placeholder("q", f32, {2, 16, 8}), k = g.placeholder("k", f32, {2, 32, 8});
  Value v = g.placeholder("v", f32, {2, 32, 8});
  Value mask = g.placeholder("mask", f32, {16, 32});
  Value step = g.placeholder("step", i64, {});
  const FusedAttentionOutputs out =
      fused_attention(q, k, v, mask, 0.35, false, {.p = 0.2, .scale = 1.25, .seed = 4, .stream = 5, .step = step});
  CHECK(out.output.node().inputs.size() == 5);
  grad(reduce_sum(out.output), {q, k, v});
  const Node* node = nullptr;
  for (std::uint32_t id = 0; id < g.size(); ++id)
    if (g.node(id).op == &ops::fused_attention_backward) node = &g.node(id);
  REQUIRE(node != nullptr);
  REQUIRE(node->inputs.size() == 8);
  CHECK(node->inputs[3] == mask.ref());
  CHECK(node->inputs[7] == step.ref());
  const AttentionDropout dropout = attention_dropout(node->attrs);
  CHECK(dropout.p == 0.2);
  CHECK(dropout.scale == 1.25);
  CHECK(dropout.seed == 4);
  CHECK(dropout.stream == 5);
  CHECK(node->attrs.get_bool("dropout_step"));
  const FusedAttentionInputs in = fused_attention_inputs(node->attrs, node->inputs.size(), true);
  CHECK(in.has_mask);
  CHECK(in.saved == 4);
  CHECK(in.step == 7);
  // Without a step and without a mask, four inputs are the three and the saved o, lse, d_o.
  const FusedAttentionInputs plain =
      fused_attention_inputs(Attributes{{"dropout", 0.2}, {"dropout_step", false}}, 6, true);
  CHECK_FALSE(plain.has_mask);
  CHECK_FALSE(plain.has_step);
  CHECK(plain.saved == 3);
  g.verify();
}

TEST_CASE("fused_attention with dropout gives bitwise the same results on 1, 3 and 4 threads") {
  // 6 batch items: 1 and 3 threads take the one-pass backward, 4 threads the two-pass one.
  const Shape sq{2, 3, 150, 32}, sk{2, 3, 140, 32}, sv{2, 3, 140, 24};
  const Tensor q = random_tensor(f32, sq, 1), k = random_tensor(f32, sk, 2), v = random_tensor(f32, sv, 3);
  const Tensor mask = make_mask(Shape{2, 1, 1, 140}, -inf, [](std::int64_t f) { return f % 140 > 130; });
  const Tensor step = Tensor::scalar<std::int64_t>(12);
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    Graph g;
    Value pq = g.placeholder("q", f32, sq), pk = g.placeholder("k", f32, sk), pv = g.placeholder("v", f32, sv);
    Value pm = g.placeholder("mask", f32, mask.shape());
    const AttentionDropout dropout{
        .p = 0.25, .scale = 4.0 / 3, .seed = 8, .stream = 6, .step = g.placeholder("step", i64, {})};
    const FusedAttentionOutputs out = fused_attention(pq, pk, pv, pm, 0.125, causal, dropout);
    Value d_o = g.placeholder("d_o", f32, out.output.shape());
    const FusedAttentionGradients grads =
        fused_attention_backward(pq, pk, pv, pm, out.output, out.lse, d_o, 0.125, causal, dropout);
    const Tensor dout = random_tensor(f32, out.output.shape(), 4);

    ThreadPool one(1);
    std::vector<Tensor> forward1, backward1;
    run_kernel(out.output.node(), g, {q, k, v, mask, step}, forward1, one);
    run_kernel(grads.dq.node(), g, {q, k, v, mask, forward1[0], forward1[1], dout, step}, backward1, one);
    for (int threads : {3, 4}) {
      CAPTURE(threads);
      ThreadPool pool(threads);
      std::vector<Tensor> forward, backward;
      run_kernel(out.output.node(), g, {q, k, v, mask, step}, forward, pool);
      run_kernel(grads.dq.node(), g, {q, k, v, mask, forward1[0], forward1[1], dout, step}, backward, pool);
      for (std::size_t i = 0; i < 2; ++i) CHECK(bitwise_equal(forward1[i], forward[i]));
      for (std::size_t i = 0; i < 3; ++i) CHECK(bitwise_equal(backward1[i], backward[i]));
    }
  }
}

TEST_CASE("fused_attention rejects a bad dropout probability or step, naming the op and the user's line") {
  Graph g;
  const std::string file = "attention_test.cpp";
  Value q = g.placeholder("q", f32, {2, 5, 8}), k = g.placeholder("k", f32, {2, 7, 8});
  Value v = g.placeholder("v", f32, {2, 7, 4});
  auto expect_error = [&](auto&& build, const std::string& op, const std::string& what) {
    const std::string message = error_message(build);
    CAPTURE(message);
    CHECK(mentions(message, op));
    CHECK(mentions(message, file));
    CHECK(mentions(message, what));
  };
  for (double p : {1.0, 1.5, -0.0001, std::nan("")})
    expect_error([&] { fused_attention(q, k, v, {}, 1.0, false, {.p = p, .scale = 2}); }, "fused_attention",
                 "the dropout probability must lie in [0, 1)");
  expect_error(
      [&] {
        fused_attention(q, k, v, {}, 1.0, false, {.p = 0.5, .scale = 2, .step = g.placeholder("fstep", f32, {})});
      },
      "fused_attention", "the dropout step (the last input) must be an i64 scalar (i64[]), got f32[]");
  expect_error(
      [&] {
        fused_attention(q, k, v, {}, 1.0, false, {.p = 0.5, .scale = 2, .step = g.placeholder("vstep", i64, {2})});
      },
      "fused_attention", "must be an i64 scalar");
  expect_error([&] { fused_attention(q, k, v, {}, 1.0, false, {.p = 0.5, .scale = inf}); }, "fused_attention",
               "the dropout scale must be finite");
  Value step = g.placeholder("step", i64, {});
  const AttentionDropout dropout{.p = 0.5, .scale = 2, .step = step};
  const FusedAttentionOutputs out = fused_attention(q, k, v, {}, 1.0, false, dropout);
  expect_error(
      [&] {
        fused_attention_backward(q, k, v, {}, out.output, g.placeholder("lse", f32, {2, 7}), out.output, 1.0, false,
                                 dropout);
      },
      "fused_attention_backward", "lse must be f32[2,5]");
}
