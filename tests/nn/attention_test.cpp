// Attention (nn/attention.h) against plain loop references: scaled dot-product attention, the
// masks, multi-head attention with H = 2; gradient checks; and the errors a user sees.
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gradcheck.h"

using namespace fovea;

namespace {

using MaskFn = std::function<double(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j)>;

struct Reference {
  std::vector<double> out;    // [B,H,Tq,Dv]
  std::vector<double> probs;  // [B,H,Tq,Tk]
};

// softmax_j(Σ_d q[b,h,i,d]·k[b,h,j,d] / √Dh + mask(b,h,i,j)) · v[b,h,j,:], one loop per index.
Reference attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const MaskFn& mask = {}) {
  const std::int64_t B = q.shape()[0], H = q.shape()[1], Tq = q.shape()[2], Dh = q.shape()[3];
  const std::int64_t Tk = k.shape()[2], Dv = v.shape()[3];
  Reference r{std::vector<double>(static_cast<std::size_t>(B * H * Tq * Dv)),
              std::vector<double>(static_cast<std::size_t>(B * H * Tq * Tk))};
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(static_cast<std::size_t>(Tk));
        double largest = -INFINITY;
        for (std::int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (std::int64_t d = 0; d < Dh; ++d)
            dot += q.at(((b * H + h) * Tq + i) * Dh + d) * k.at(((b * H + h) * Tk + j) * Dh + d);
          s[static_cast<std::size_t>(j)] = dot / std::sqrt(double(Dh)) + (mask ? mask(b, h, i, j) : 0.0);
          largest = std::max(largest, s[static_cast<std::size_t>(j)]);
        }
        double total = 0;
        for (double& x : s) total += (x = std::exp(x - largest));
        for (std::int64_t j = 0; j < Tk; ++j)
          r.probs[static_cast<std::size_t>(((b * H + h) * Tq + i) * Tk + j)] = s[static_cast<std::size_t>(j)] / total;
        for (std::int64_t d = 0; d < Dv; ++d) {
          double sum = 0;
          for (std::int64_t j = 0; j < Tk; ++j)
            sum += s[static_cast<std::size_t>(j)] / total * v.at(((b * H + h) * Tk + j) * Dv + d);
          r.out[static_cast<std::size_t>(((b * H + h) * Tq + i) * Dv + d)] = sum;
        }
      }
  return r;
}

Tensor tensor_of(const std::vector<double>& v, const Shape& shape, DType dtype) {
  return Tensor::from<double>(v, shape).to(dtype);
}

// y[b,t,:] = x[b,t,:]·W + bias for a [rows, in] row-major buffer.
std::vector<double> linear_reference(const std::vector<double>& x, std::int64_t rows, const Tensor& w,
                                     const Tensor& bias) {
  const std::int64_t in = w.shape()[0], out = w.shape()[1];
  std::vector<double> y(static_cast<std::size_t>(rows * out));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < out; ++c) {
      double sum = bias.at(c);
      for (std::int64_t i = 0; i < in; ++i) sum += x[static_cast<std::size_t>(r * in + i)] * w.at(i * out + c);
      y[static_cast<std::size_t>(r * out + c)] = sum;
    }
  return y;
}

std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (std::int64_t i = 0; i < t.numel(); ++i) v[static_cast<std::size_t>(i)] = t.at(i);
  return v;
}

// Multi-head attention by hand: project, attend head by head over column blocks, project back.
std::vector<double> mha_reference(Graph& g, const nn::MultiHeadAttention& mha, const Tensor& query,
                                  const Tensor& key_value, const MaskFn& mask = {}) {
  const std::int64_t B = query.shape()[0], Tq = query.shape()[1], Tk = key_value.shape()[1], D = mha.d_model;
  const std::int64_t H = mha.heads, Dh = D / H;
  auto project = [&](const nn::Linear& l, const Tensor& x, std::int64_t rows) {
    return linear_reference(values_of(x), rows, g.parameter_value(l.weight), g.parameter_value(l.bias));
  };
  const auto Q = project(mha.q_proj, query, B * Tq), K = project(mha.k_proj, key_value, B * Tk),
             V = project(mha.v_proj, key_value, B * Tk);
  std::vector<double> merged(static_cast<std::size_t>(B * Tq * D));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < Tq; ++i) {
        std::vector<double> p(static_cast<std::size_t>(Tk));
        double largest = -INFINITY, total = 0;
        for (std::int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (std::int64_t d = 0; d < Dh; ++d)
            dot += Q[static_cast<std::size_t>((b * Tq + i) * D + h * Dh + d)] *
                   K[static_cast<std::size_t>((b * Tk + j) * D + h * Dh + d)];
          p[static_cast<std::size_t>(j)] = dot / std::sqrt(double(Dh)) + (mask ? mask(b, h, i, j) : 0.0);
          largest = std::max(largest, p[static_cast<std::size_t>(j)]);
        }
        for (double& x : p) total += (x = std::exp(x - largest));
        for (std::int64_t d = 0; d < Dh; ++d) {
          double sum = 0;
          for (std::int64_t j = 0; j < Tk; ++j)
            sum += p[static_cast<std::size_t>(j)] / total * V[static_cast<std::size_t>((b * Tk + j) * D + h * Dh + d)];
          merged[static_cast<std::size_t>((b * Tq + i) * D + h * Dh + d)] = sum;
        }
      }
  return linear_reference(merged, B * Tq, g.parameter_value(mha.out_proj.weight), g.parameter_value(mha.out_proj.bias));
}

void randomize_biases(Graph& g, const nn::MultiHeadAttention& mha, std::uint64_t seed) {
  for (const nn::Linear* l : {&mha.q_proj, &mha.k_proj, &mha.v_proj, &mha.out_proj})
    g.parameter_value(l->bias) = testing::random_tensor(l->bias.dtype(), l->bias.shape(), seed++);
}

using testing::error_of;

std::string here(int line) { return "attention_test.cpp:" + std::to_string(line); }

}  // namespace

// --- Scaled dot-product attention ------------------------------------------------------------

TEST_CASE("scaled_dot_product_attention matches the loop reference with Tq != Tk, in f32 and f64") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value q = g.placeholder("q", dtype, {2, 2, 3, 4});
    Value k = g.placeholder("k", dtype, {2, 2, 5, 4});
    Value v = g.placeholder("v", dtype, {2, 2, 5, 3});
    Value probs;
    Value out = nn::scaled_dot_product_attention(q, k, v, {}, 0.0, {}, &probs);
    CHECK(out.shape() == Shape{2, 2, 3, 3});
    CHECK(probs.shape() == Shape{2, 2, 3, 5});
    const Tensor tq = testing::random_tensor(dtype, {2, 2, 3, 4}, 1, -2, 2);
    const Tensor tk = testing::random_tensor(dtype, {2, 2, 5, 4}, 2, -2, 2);
    const Tensor tv = testing::random_tensor(dtype, {2, 2, 5, 3}, 3);
    const auto got = testing::run(g, {out, probs}, {{q, tq}, {k, tk}, {v, tv}});
    const Reference want = attention_reference(tq, tk, tv);
    const double rtol = dtype == f64 ? 1e-12 : 1e-5;
    testing::check_close(got[0], tensor_of(want.out, {2, 2, 3, 3}, dtype), rtol, 1e-6);
    testing::check_close(got[1], tensor_of(want.probs, {2, 2, 3, 5}, dtype), rtol, 1e-6);
  }
}

TEST_CASE("scaled_dot_product_attention adds an arbitrary additive mask before the softmax") {
  Graph g;
  Value q = g.placeholder("q", f64, {1, 2, 3, 4});
  Value k = g.placeholder("k", f64, {1, 2, 4, 4});
  Value v = g.placeholder("v", f64, {1, 2, 4, 4});
  Value m = g.placeholder("m", f64, {3, 4});
  Value out = nn::scaled_dot_product_attention(q, k, v, {m});
  const Tensor tq = testing::random_tensor(f64, {1, 2, 3, 4}, 4), tk = testing::random_tensor(f64, {1, 2, 4, 4}, 5),
               tv = testing::random_tensor(f64, {1, 2, 4, 4}, 6), tm = testing::random_tensor(f64, {3, 4}, 7, -3, 3);
  const Tensor got = testing::run1(g, out, {{q, tq}, {k, tk}, {v, tv}, {m, tm}});
  const Reference want = attention_reference(tq, tk, tv, [&](auto, auto, auto i, auto j) { return tm.at(i * 4 + j); });
  testing::check_close(got, tensor_of(want.out, {1, 2, 3, 4}, f64), 1e-12, 1e-12);
}

TEST_CASE("scaled_dot_product_attention is the plain chain matmul, mul, add, softmax, matmul") {
  // The attention fusion pass matches exactly this composition.
  Graph g;
  Value q = g.placeholder("q", f32, {1, 1, 2, 4});
  Value k = g.placeholder("k", f32, {1, 1, 2, 4});
  Value v = g.placeholder("v", f32, {1, 1, 2, 4});
  Value out = nn::scaled_dot_product_attention(q, k, v, nn::causal_mask(g, 2, 2));
  // Walk the chain back from the output: matmul(probs, v) ← div (softmax's e / Σe) ← exp ← sub
  // (the max shift) ← add (the mask) ← mul (the scale) ← matmul(q, k, transpose_b).
  CHECK(out.name().starts_with("attention/"));
  const Node* node = &out.node();
  for (const char* op : {"matmul", "div", "exp", "sub", "add", "mul", "matmul"}) {
    CAPTURE(op);
    CHECK(node->op_name() == op);
    node = &g.node(node->inputs[0].node);
  }
  CHECK(node->name == "q");
  CHECK(g.find("attention/matmul")->attrs.get_bool("transpose_b"));
}

// --- Masks ----------------------------------------------------------------------------------

TEST_CASE("causal_mask is 0 on and below the bottom-right-aligned diagonal and masked_score above it") {
  for (auto [tq, tk] : {std::pair<std::int64_t, std::int64_t>{4, 4}, {3, 5}, {4, 2}}) {
    CAPTURE(tq);
    CAPTURE(tk);
    Graph g;
    const nn::AttentionMask mask = nn::causal_mask(g, tq, tk, f64);
    CHECK(mask.additive.shape() == Shape{tq, tk});
    const Tensor got = testing::run1(g, mask.additive);
    for (std::int64_t i = 0; i < tq; ++i)
      for (std::int64_t j = 0; j < tk; ++j) CHECK(got.at(i * tk + j) == (j > i + tk - tq ? nn::masked_score : 0.0));
  }
}

TEST_CASE("with a causal mask each row's weights sum to 1 over its prefix and are exactly 0 beyond it") {
  for (DType dtype : {f32, f64}) {
    Graph g;
    Value q = g.placeholder("q", dtype, {2, 2, 5, 4});
    Value k = g.placeholder("k", dtype, {2, 2, 5, 4});
    Value v = g.placeholder("v", dtype, {2, 2, 5, 4});
    Value probs;
    Value out = nn::scaled_dot_product_attention(q, k, v, nn::causal_mask(g, 5, 5, dtype), 0.0, {}, &probs);
    const Tensor tq = testing::random_tensor(dtype, {2, 2, 5, 4}, 8, -3, 3);
    const Tensor tk = testing::random_tensor(dtype, {2, 2, 5, 4}, 9, -3, 3);
    const Tensor tv = testing::random_tensor(dtype, {2, 2, 5, 4}, 10);
    const auto got = testing::run(g, {out, probs}, {{q, tq}, {k, tk}, {v, tv}});
    for (std::int64_t row = 0; row < 20; ++row) {
      const std::int64_t i = row % 5;
      double allowed = 0;
      for (std::int64_t j = 0; j < 5; ++j) {
        const double p = got[1].at(row * 5 + j);
        if (j > i)
          CHECK(p == 0.0);
        else
          allowed += p;
      }
      CHECK(allowed == doctest::Approx(1.0).epsilon(1e-6));
    }
    const Reference want =
        attention_reference(tq, tk, tv, [](auto, auto, auto i, auto j) { return j > i ? nn::masked_score : 0.0; });
    testing::check_close(got[0], tensor_of(want.out, {2, 2, 5, 4}, dtype), dtype == f64 ? 1e-12 : 1e-5, 1e-6);
  }
}

TEST_CASE("a padding mask gives padded keys exactly 0 weight, from bool flags, integer flags or lengths") {
  const Tensor flags = Tensor::from<std::uint8_t>({0, 0, 0, 1, 1, 0, 0, 0, 0, 0}, {2, 5});
  Graph g;
  Value q = g.placeholder("q", f32, {2, 2, 3, 4});
  Value k = g.placeholder("k", f32, {2, 2, 5, 4});
  Value v = g.placeholder("v", f32, {2, 2, 5, 4});
  Value bool_flags = g.placeholder("pad", boolean, {2, 5});
  Value int_flags = g.placeholder("pad_i32", i32, {2, 5});
  Value lengths = g.placeholder("lengths", i64, {2});
  const nn::AttentionMask from_bool = nn::padding_mask(bool_flags);
  CHECK(from_bool.additive.shape() == Shape{2, 1, 1, 5});
  std::vector<Value> probs(3);
  const nn::AttentionMask masks[] = {from_bool, nn::padding_mask(int_flags), nn::padding_mask_from_lengths(lengths, 5)};
  std::vector<Value> outputs;
  for (int m = 0; m < 3; ++m) {
    outputs.push_back(
        nn::scaled_dot_product_attention(q, k, v, masks[m], 0.0, {}, &probs[static_cast<std::size_t>(m)]));
    outputs.push_back(probs[static_cast<std::size_t>(m)]);
  }
  const Tensor tq = testing::random_tensor(f32, {2, 2, 3, 4}, 11), tk = testing::random_tensor(f32, {2, 2, 5, 4}, 12),
               tv = testing::random_tensor(f32, {2, 2, 5, 4}, 13);
  const auto got = testing::run(g, outputs,
                                {{q, tq},
                                 {k, tk},
                                 {v, tv},
                                 {bool_flags, flags},
                                 {int_flags, flags.to(i32)},
                                 {lengths, Tensor::from<std::int64_t>({3, 5}, {2})}});
  const Reference want =
      attention_reference(tq, tk, tv, [&](auto b, auto, auto, auto j) { return flags.at(b * 5 + j) ? -1e9 : 0.0; });
  for (int m = 0; m < 3; ++m) {
    CAPTURE(m);
    const Tensor& p = got[static_cast<std::size_t>(2 * m + 1)];
    for (std::int64_t row = 0; row < 12; ++row) {
      const std::int64_t b = row / 6;
      double total = 0;
      for (std::int64_t j = 0; j < 5; ++j) {
        if (flags.at(b * 5 + j)) CHECK(p.at(row * 5 + j) == 0.0);
        total += p.at(row * 5 + j);
      }
      CHECK(total == doctest::Approx(1.0).epsilon(1e-6));
    }
    testing::check_close(got[static_cast<std::size_t>(2 * m)], tensor_of(want.out, {2, 2, 3, 4}, f32), 1e-5, 1e-6);
  }
}

TEST_CASE("combined causal and padding masks block both the future and the padding") {
  Graph g;
  Value q = g.placeholder("q", f64, {2, 1, 4, 2});
  Value pad = g.placeholder("pad", boolean, {2, 4});
  const nn::AttentionMask mask = nn::combine(nn::causal_mask(g, 4, 4, f64), nn::padding_mask(pad, f64));
  CHECK(mask.additive.shape() == Shape{2, 1, 4, 4});
  CHECK(nn::combine({}, mask).additive == mask.additive);
  Value probs;
  nn::scaled_dot_product_attention(q, q, q, mask, 0.0, {}, &probs);
  const Tensor flags = Tensor::from<std::uint8_t>({0, 1, 0, 0, 0, 0, 0, 1}, {2, 4});
  const Tensor p = testing::run1(g, probs, {{q, testing::random_tensor(f64, {2, 1, 4, 2}, 14)}, {pad, flags}});
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 4; ++i) {
      double total = 0;
      for (std::int64_t j = 0; j < 4; ++j) {
        const double w = p.at((b * 4 + i) * 4 + j);
        if (j > i || flags.at(b * 4 + j)) CHECK(w == 0.0);
        total += w;
      }
      CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
    }
}

TEST_CASE("a mask of the wrong shape is an error naming the expected shapes and the user's line") {
  Graph g;
  Value q = g.placeholder("q", f32, {2, 2, 4, 8});
  const nn::AttentionMask wrong = nn::causal_mask(g, 5, 5);
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { nn::scaled_dot_product_attention(q, q, q, wrong); });
  CHECK(message.find("does not fit the attention scores") != std::string::npos);
  CHECK(message.find("[Tq,Tk] = [4,4]") != std::string::npos);
  CHECK(message.find("[B,1,1,Tk] = [2,1,1,4]") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  // A mask of another dtype, and one that would enlarge the scores, are refused likewise.
  CHECK_THROWS_AS(nn::scaled_dot_product_attention(q, q, q, nn::causal_mask(g, 4, 4, f64)), Error);
  Value big = g.placeholder("big", f32, {3, 2, 4, 4});
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, q, q, {big}), doctest::Contains("[2,2,4,4]"), Error);
}

TEST_CASE("a head-dim mistake in a user's attention call names the user's scope and line") {
  Graph g;
  auto scope = g.scope("my_layer");
  Value q = g.placeholder("q", f32, {2, 2, 4, 8});
  Value k = g.placeholder("k", f32, {2, 2, 4, 6});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { nn::scaled_dot_product_attention(q, k, k); });
  CHECK(message.find("same head dim") != std::string::npos);
  CHECK(message.find("my_layer/attention") != std::string::npos);
  CHECK(message.find("f32[2,2,4,6]") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  Value v = g.placeholder("v", f32, {2, 2, 3, 8});
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, q, v), doctest::Contains("same length Tk"), Error);
}

// --- Multi-head attention --------------------------------------------------------------------

TEST_CASE("MultiHeadAttention with two heads matches a hand loop, for self- and cross-attention") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    nn::MultiHeadAttention mha(g, "attn", 6, 2, 0.0, dtype);
    randomize_biases(g, mha, 20);
    Value x = g.placeholder("x", dtype, {2, 3, 6});
    Value memory = g.placeholder("memory", dtype, {2, 5, 6});
    Value self = mha(x, x, nn::causal_mask(g, 3, 3, dtype));
    Value cross = mha(x, memory);
    CHECK(self.shape() == Shape{2, 3, 6});
    CHECK(cross.shape() == Shape{2, 3, 6});
    const Tensor tx = testing::random_tensor(dtype, {2, 3, 6}, 21), tm = testing::random_tensor(dtype, {2, 5, 6}, 22);
    const auto got = testing::run(g, {self, cross}, {{x, tx}, {memory, tm}});
    const double rtol = dtype == f64 ? 1e-12 : 1e-4;
    const auto causal = [](auto, auto, auto i, auto j) { return j > i ? nn::masked_score : 0.0; };
    testing::check_close(got[0], tensor_of(mha_reference(g, mha, tx, tx, causal), {2, 3, 6}, dtype), rtol, 1e-5);
    testing::check_close(got[1], tensor_of(mha_reference(g, mha, tx, tm), {2, 3, 6}, dtype), rtol, 1e-5);
  }
}

TEST_CASE("MultiHeadAttention scopes its projections and returns its weights per head") {
  Graph g;
  auto outer = g.scope("encoder");
  auto layer = g.scope("layer0");
  nn::MultiHeadAttention mha(g, "self_attn", 8, 2);
  CHECK(mha.q_proj.weight.name() == "encoder/layer0/self_attn/q_proj/weight");
  CHECK(mha.out_proj.bias.name() == "encoder/layer0/self_attn/out_proj/bias");
  Value x = g.placeholder("x", f32, {3, 4, 8});
  Value probs;
  Value y = mha(x, x, {}, {}, &probs);
  CHECK(y.name().starts_with("encoder/layer0/self_attn/out_proj/"));
  CHECK(probs.shape() == Shape{3, 2, 4, 4});
  CHECK(probs.name().starts_with("encoder/layer0/self_attn/attention/"));
  CHECK(g.find("encoder/layer0/self_attn/q_proj/matmul") != nullptr);
  const Tensor p = testing::run1(g, probs, {{x, testing::random_tensor(f32, {3, 4, 8}, 23)}});
  for (std::int64_t row = 0; row < 24; ++row) {
    double total = 0;
    for (std::int64_t j = 0; j < 4; ++j) total += p.at(row * 4 + j);
    CHECK(total == doctest::Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("MultiHeadAttention reports bad inputs and bad sizes at the user's line") {
  Graph g;
  auto scope = g.scope("decoder");
  nn::MultiHeadAttention mha(g, "cross_attn", 8, 2);
  Value x = g.placeholder("x", f32, {2, 4, 8});
  Value memory = g.placeholder("memory", f32, {2, 5, 6});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { mha(x, memory); });
  CHECK(message.find("decoder/cross_attn") != std::string::npos);
  CHECK(message.find("f32[2,5,6]") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  const int line2 = __LINE__ + 1;
  const std::string sizes = error_of([&] { nn::MultiHeadAttention(g, "odd", 10, 3); });
  CHECK(sizes.find("multiple of heads") != std::string::npos);
  CHECK(sizes.find(here(line2)) != std::string::npos);
}

TEST_CASE("attention dropout changes the output only in training, and the weights not at all") {
  Graph g;
  nn::MultiHeadAttention mha(g, "attn", 4, 2, 0.5);
  Value x = g.placeholder("x", f32, {1, 6, 4});
  Value train_probs, eval_probs;
  Value train = mha(x, x, {}, {.training = true}, &train_probs);
  Value eval = mha(x, x, {}, {}, &eval_probs);
  const auto got =
      testing::run(g, {train, eval, train_probs, eval_probs}, {{x, testing::random_tensor(f32, {1, 6, 4}, 24)}});
  testing::check_close(got[2], got[3], 1e-6, 1e-7);
  double difference = 0;
  for (std::int64_t i = 0; i < got[0].numel(); ++i) difference += std::abs(got[0].at(i) - got[1].at(i));
  CHECK(difference > 1e-3);
}

// --- Gradients ------------------------------------------------------------------------------

TEST_CASE("scaled_dot_product_attention passes the gradient check with no mask, causal and padding masks") {
  testing::gradcheck(
      "attention",
      [](Graph&, const std::vector<Value>& x) { return nn::scaled_dot_product_attention(x[0], x[1], x[2]); },
      {{Shape{2, 2, 3, 4}}, {Shape{2, 2, 5, 4}}, {Shape{2, 2, 5, 3}}});
  testing::gradcheck("causal attention",
                     [](Graph& g, const std::vector<Value>& x) {
                       return nn::scaled_dot_product_attention(x[0], x[1], x[2], nn::causal_mask(g, 4, 4, f64));
                     },
                     {{Shape{1, 2, 4, 3}}, {Shape{1, 2, 4, 3}}, {Shape{1, 2, 4, 3}}});
  const Tensor flags = Tensor::from<std::uint8_t>({0, 0, 1, 0, 1, 1}, {2, 3});
  testing::gradcheck("padded attention",
                     [](Graph&, const std::vector<Value>& x) {
                       return nn::scaled_dot_product_attention(x[0], x[1], x[2], nn::padding_mask(x[3], f64));
                     },
                     {{Shape{2, 1, 2, 3}},
                      {Shape{2, 1, 3, 3}},
                      {Shape{2, 1, 3, 3}},
                      {.shape = Shape{2, 3}, .dtype = boolean, .value = flags}});
  testing::gradcheck("attention with dropout at a fixed step",
                     [](Graph& g, const std::vector<Value>& x) {
                       const Value step = g.constant(Tensor::scalar<std::int64_t>(2), "step");
                       return nn::scaled_dot_product_attention(x[0], x[1], x[2], {}, 0.3,
                                                               {.training = true, .step = step});
                     },
                     {{Shape{1, 2, 3, 2}}, {Shape{1, 2, 3, 2}}, {Shape{1, 2, 3, 2}}});
}

TEST_CASE("MultiHeadAttention passes the gradient check for self- and cross-attention") {
  testing::gradcheck("mha self",
                     [](Graph& g, const std::vector<Value>& x) {
                       nn::MultiHeadAttention mha(g, "attn", 4, 2, 0.0, f64);
                       randomize_biases(g, mha, 30);
                       return mha(x[0], x[0], nn::causal_mask(g, 3, 3, f64));
                     },
                     {{Shape{2, 3, 4}}});
  testing::gradcheck("mha cross",
                     [](Graph& g, const std::vector<Value>& x) {
                       nn::MultiHeadAttention mha(g, "attn", 4, 2, 0.0, f64);
                       randomize_biases(g, mha, 31);
                       return mha(x[0], x[1]);
                     },
                     {{Shape{2, 3, 4}}, {Shape{2, 2, 4}}});
}

TEST_CASE("MultiHeadAttention's projection gradients match finite differences on the weights") {
  Graph g;
  nn::MultiHeadAttention mha(g, "attn", 4, 2, 0.0, f64);
  randomize_biases(g, mha, 40);
  Value x = g.placeholder("x", f64, {2, 3, 4});
  Value y = mha(x, x, nn::causal_mask(g, 3, 3, f64));
  const Value loss = reduce_sum(y * g.constant(testing::random_tensor(f64, {2, 3, 4}, 41, 0.5, 1.5), "r"));
  const std::vector<Value> parameters{mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.bias, mha.out_proj.weight};
  const std::vector<Value> grads = grad(loss, parameters);
  const Feeds feeds{{x, testing::random_tensor(f64, {2, 3, 4}, 42)}};
  const std::vector<Tensor> analytic = testing::run(g, grads, feeds);
  Executable forward = compile(g, {loss});
  constexpr double eps = 1e-6;
  for (std::size_t p = 0; p < parameters.size(); ++p) {
    CAPTURE(parameters[p].name());
    auto buffer = g.parameter_value(parameters[p]).data<double>();
    for (std::size_t j = 0; j < buffer.size(); ++j) {
      const double saved = buffer[j];
      buffer[j] = saved + eps;
      const double plus = forward.run(feeds)[0].item();
      buffer[j] = saved - eps;
      const double minus = forward.run(feeds)[0].item();
      buffer[j] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      CHECK(analytic[p].at(static_cast<std::int64_t>(j)) == doctest::Approx(numeric).epsilon(1e-6).scale(1.0));
    }
  }
}

TEST_CASE("a mistake inside MultiHeadAttention's attention names the user's line, and the override is restored") {
  Graph g;
  nn::MultiHeadAttention attention(g, "attn", 8, 2);
  Value x = g.placeholder("x", f32, {2, 4, 8});
  Value memory = g.placeholder("memory", f32, {2, 6, 8});
  // A causal mask for self-attention, given to cross-attention with more keys than queries.
  int line = __LINE__ + 1;
  std::string message = error_of([&] { attention(x, memory, nn::causal_mask(g, 4, 4)); });
  CHECK(message.find("does not fit the attention scores") != std::string::npos);
  CHECK(message.find("attn/attention") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  CHECK_FALSE(g.location_override().known());
  // The nodes of a good call, from the projections to the merge, record the user's line.
  const std::size_t before = g.size();
  line = __LINE__ + 1;
  const Value y = attention(x, memory);
  for (std::uint32_t id = static_cast<std::uint32_t>(before); id < g.size(); ++id)
    CHECK(g.node(id).where.line == static_cast<unsigned>(line));
  CHECK(y.shape() == Shape{2, 4, 8});
}
