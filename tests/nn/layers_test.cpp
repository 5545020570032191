// The Transformer's building blocks (nn/layers.h) against plain loop references, through the
// gradient check (inputs by testing::gradcheck, parameters by finite differences on their
// buffers), and their errors.
#include <cmath>
#include <numbers>
#include <string>

#include "gradcheck.h"

using namespace fovea;

namespace {

// A random tensor of `dtype` written into a parameter's buffer.
void randomize(Graph& g, Value parameter, std::uint64_t seed, double low = -1.0, double high = 1.0) {
  g.parameter_value(parameter) = testing::random_tensor(parameter.dtype(), parameter.shape(), seed, low, high);
}

// y[r, :] = x[r, :]·W + b over the rows of a row-major [rows, in] buffer.
std::vector<double> linear_reference(const std::vector<double>& x, std::int64_t rows, const Tensor& w,
                                     const Tensor& b) {
  const std::int64_t in = w.shape()[0], out = w.shape()[1];
  std::vector<double> y(static_cast<std::size_t>(rows * out));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < out; ++c) {
      double sum = b.defined() ? b.at(c) : 0.0;
      for (std::int64_t k = 0; k < in; ++k) sum += x[static_cast<std::size_t>(r * in + k)] * w.at(k * out + c);
      y[static_cast<std::size_t>(r * out + c)] = sum;
    }
  return y;
}

std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (std::int64_t i = 0; i < t.numel(); ++i) v[static_cast<std::size_t>(i)] = t.at(i);
  return v;
}

Tensor tensor_of(const std::vector<double>& v, const Shape& shape, DType dtype) {
  return Tensor::from<double>(v, shape).to(dtype);
}

double gelu_reference(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
}

using testing::check_parameter_gradients;

using testing::error_of;

std::string here(int line) { return "layers_test.cpp:" + std::to_string(line); }

}  // namespace

// --- Embedding ------------------------------------------------------------------------------

TEST_CASE("Embedding picks the table rows its ids name, for i32 and i64 ids") {
  for (DType id_type : {i32, i64}) {
    Graph g;
    nn::Embedding embed(g, "embed", 5, 3, f64);
    CHECK(embed.table.name() == "embed/table");
    CHECK(embed.table.shape() == Shape{5, 3});
    Value ids = g.placeholder("ids", id_type, {2, 3});
    Value y = embed(ids);
    CHECK(y.shape() == Shape{2, 3, 3});
    CHECK(y.name().starts_with("embed/"));
    const Tensor tids = Tensor::from<std::int64_t>({4, 0, 2, 2, 1, 4}, {2, 3}).to(id_type);
    const Tensor got = testing::run1(g, y, {{ids, tids}});
    const Tensor& table = g.parameter_value(embed.table);
    for (std::int64_t p = 0; p < 6; ++p)
      for (std::int64_t d = 0; d < 3; ++d)
        CHECK(got.at(p * 3 + d) == table.at(static_cast<std::int64_t>(tids.at(p)) * 3 + d));
  }
}

TEST_CASE("Embedding's table starts as N(0, 0.02)") {
  Graph g;
  nn::Embedding embed(g, "embed", 100, 50);
  const Tensor& t = g.parameter_value(embed.table);
  double sum = 0, squares = 0;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    sum += t.at(i);
    squares += t.at(i) * t.at(i);
  }
  const double n = static_cast<double>(t.numel());
  CHECK(std::abs(sum / n) < 0.002);
  CHECK(std::sqrt(squares / n) == doctest::Approx(0.02).epsilon(0.05));
}

TEST_CASE("Embedding rejects floating-point ids at the user's line") {
  Graph g;
  nn::Embedding embed(g, "embed", 5, 3);
  Value ids = g.placeholder("ids", f32, {2});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { embed(ids); });
  CHECK(message.find("ids must be integer") != std::string::npos);
  CHECK(message.find("'embed'") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
}

// --- LayerNorm ------------------------------------------------------------------------------

TEST_CASE("LayerNorm normalises the last axis like the loop reference, in f32 and f64") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    nn::LayerNorm norm(g, "norm", 5, 1e-5, dtype);
    randomize(g, norm.gamma, 1, 0.5, 1.5);
    randomize(g, norm.beta, 2);
    Value x = g.placeholder("x", dtype, {3, 4, 5});
    Value y = norm(x);
    CHECK(y.shape() == Shape{3, 4, 5});
    const Tensor tx = testing::random_tensor(dtype, {3, 4, 5}, 3, -3, 5);
    const Tensor got = testing::run1(g, y, {{x, tx}});

    const Tensor &gamma = g.parameter_value(norm.gamma), &beta = g.parameter_value(norm.beta);
    std::vector<double> want(60);
    for (std::int64_t row = 0; row < 12; ++row) {
      double mean = 0, variance = 0;
      for (std::int64_t j = 0; j < 5; ++j) mean += tx.at(row * 5 + j) / 5;
      for (std::int64_t j = 0; j < 5; ++j) variance += (tx.at(row * 5 + j) - mean) * (tx.at(row * 5 + j) - mean) / 5;
      for (std::int64_t j = 0; j < 5; ++j)
        want[static_cast<std::size_t>(row * 5 + j)] =
            (tx.at(row * 5 + j) - mean) / std::sqrt(variance + 1e-5) * gamma.at(j) + beta.at(j);
    }
    testing::check_close(got, tensor_of(want, {3, 4, 5}, dtype), dtype == f64 ? 1e-12 : 1e-5, 1e-5);
  }
}

TEST_CASE("LayerNorm stays exact for rows with a huge common offset") {
  // E[x²] - μ² would lose every digit here; the centred variance does not.
  Graph g;
  nn::LayerNorm norm(g, "norm", 4, 1e-5, f32);
  Value x = g.placeholder("x", f32, {1, 4});
  const Tensor got =
      testing::run1(g, norm(x), {{x, Tensor::from<float>({10000.f, 10001.f, 10002.f, 10003.f}, {1, 4})}});
  const double s = std::sqrt(1.25 + 1e-5);
  testing::check_close(
      got, Tensor::from<float>({float(-1.5 / s), float(-0.5 / s), float(0.5 / s), float(1.5 / s)}, {1, 4}), 1e-4, 1e-4);
}

TEST_CASE("LayerNorm names its nodes under its scope and rejects a wrong feature count at the user's line") {
  Graph g;
  auto scope = g.scope("block");
  nn::LayerNorm norm(g, "norm", 6);
  CHECK(norm.gamma.name() == "block/norm/gamma");
  CHECK(norm.beta.name() == "block/norm/beta");
  Value good = g.placeholder("good", f32, {2, 6});
  CHECK(norm(good).name().starts_with("block/norm/"));
  Value x = g.placeholder("x", f32, {2, 5});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { norm(x); });
  CHECK(message.find("6 features") != std::string::npos);
  CHECK(message.find("block/norm") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
}

// --- Dropout --------------------------------------------------------------------------------

TEST_CASE("dropout zeroes about p of the elements and scales the others by 1/(1-p)") {
  for (DType dtype : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", dtype, {4000});
    nn::Dropout drop(0.25);
    Value y = drop(x, {.training = true});
    const Tensor tx = testing::random_tensor(dtype, {4000}, 4, 1, 2);
    const Tensor got = testing::run1(g, y, {{x, tx}});
    std::int64_t dropped = 0;
    for (std::int64_t i = 0; i < 4000; ++i) {
      if (got.at(i) == 0.0) {
        ++dropped;
        continue;
      }
      CHECK(got.at(i) == doctest::Approx(tx.at(i) / 0.75).epsilon(1e-6));
    }
    CHECK(static_cast<double>(dropped) / 4000 == doctest::Approx(0.25).epsilon(0.15));
  }
}

TEST_CASE("dropout is the identity when p is 0 or when not training, and rejects p outside 0 <= p < 1") {
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  CHECK(nn::Dropout(0.5)(x, {.training = false}) == x);
  CHECK(nn::Dropout(0.0)(x, {.training = true}) == x);
  CHECK(nn::dropout(x, 0.3, {}) == x);
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { nn::Dropout(1.0, "drop"); });
  CHECK(message.find("[0, 1)") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  CHECK_THROWS_AS(nn::dropout(x, -0.1, {.training = true}), Error);
}

TEST_CASE("dropout masks repeat for one step and change from step to step") {
  // Two graphs built alike draw alike: the stream is keyed by the seed and the node's name.
  auto mask_at = [](std::int64_t step_value) {
    Graph g;
    Value x = g.placeholder("x", f64, {200});
    Value step = g.placeholder("step", i64, {});
    Value y = nn::Dropout(0.5)(x, {.training = true, .step = step});
    const Tensor ones = Tensor::full(f64, {200}, 1.0);
    Executable exe = compile(g, {y});
    const Tensor first = exe.run({{x, ones}, {step, Tensor::scalar<std::int64_t>(step_value)}})[0];
    const Tensor again = exe.run({{x, ones}, {step, Tensor::scalar<std::int64_t>(step_value)}})[0];
    testing::check_close(again, first, 0, 0);
    return first;
  };
  const Tensor a = mask_at(3), b = mask_at(3), c = mask_at(4);
  testing::check_close(b, a, 0, 0);
  std::int64_t differences = 0;
  for (std::int64_t i = 0; i < 200; ++i) differences += a.at(i) != c.at(i);
  CHECK(differences > 50);
}

// --- Activations and FeedForward ------------------------------------------------------------

TEST_CASE("gelu matches the tanh approximation, in f32 and f64") {
  for (DType dtype : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", dtype, {2, 7});
    const Tensor tx = testing::random_tensor(dtype, {2, 7}, 5, -4, 4);
    const Tensor got = testing::run1(g, nn::gelu(x), {{x, tx}});
    std::vector<double> want;
    for (std::int64_t i = 0; i < 14; ++i) want.push_back(gelu_reference(tx.at(i)));
    testing::check_close(got, tensor_of(want, {2, 7}, dtype), dtype == f64 ? 1e-12 : 1e-5, 1e-6);
  }
}

TEST_CASE("FeedForward computes act(x·W1 + b1)·W2 + b2 with relu and gelu") {
  for (nn::Activation activation : {nn::Activation::relu, nn::Activation::gelu})
    for (DType dtype : {f32, f64}) {
      Graph g;
      nn::FeedForward ff(g, "ff", 4, 6, activation, 0.0, dtype);
      CHECK(ff.up.weight.name() == "ff/up/weight");
      CHECK(ff.down.weight.name() == "ff/down/weight");
      randomize(g, ff.up.bias, 6);
      randomize(g, ff.down.bias, 7);
      Value x = g.placeholder("x", dtype, {2, 3, 4});
      Value y = ff(x);
      CHECK(y.shape() == Shape{2, 3, 4});
      const Tensor tx = testing::random_tensor(dtype, {2, 3, 4}, 8);
      const Tensor got = testing::run1(g, y, {{x, tx}});
      std::vector<double> h =
          linear_reference(values_of(tx), 6, g.parameter_value(ff.up.weight), g.parameter_value(ff.up.bias));
      for (double& v : h) v = activation == nn::Activation::relu ? std::max(v, 0.0) : gelu_reference(v);
      const std::vector<double> want =
          linear_reference(h, 6, g.parameter_value(ff.down.weight), g.parameter_value(ff.down.bias));
      testing::check_close(got, tensor_of(want, {2, 3, 4}, dtype), dtype == f64 ? 1e-12 : 1e-5, 1e-5);
    }
}

TEST_CASE("FeedForward reports a wrong input width at the user's line, inside its scope") {
  Graph g;
  nn::FeedForward ff(g, "ff", 4, 8);
  Value x = g.placeholder("x", f32, {2, 5});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { ff(x); });
  CHECK(message.find("ff/up/") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
}

// --- Positional encodings -------------------------------------------------------------------

TEST_CASE("sinusoidal positions are sin and cos of t / 10000^(2i/d), for even and odd d") {
  for (std::int64_t dim : {6, 5}) {
    Graph g;
    Value pe = nn::sinusoidal_positions(g, 7, dim, f64);
    CHECK(pe.shape() == Shape{7, dim});
    const Tensor got = testing::run1(g, pe);
    for (std::int64_t t = 0; t < 7; ++t)
      for (std::int64_t i = 0; 2 * i < dim; ++i) {
        const double angle = static_cast<double>(t) / std::pow(10000.0, 2.0 * static_cast<double>(i) / double(dim));
        CHECK(got.at(t * dim + 2 * i) == doctest::Approx(std::sin(angle)).epsilon(1e-12));
        if (2 * i + 1 < dim) CHECK(got.at(t * dim + 2 * i + 1) == doctest::Approx(std::cos(angle)).epsilon(1e-12));
      }
  }
}

TEST_CASE("learned positions are the first rows of their table, up to max_length") {
  Graph g;
  nn::LearnedPositions positions(g, "positions", 6, 3, f64);
  CHECK(positions.embedding.table.name() == "positions/table");
  Value p = positions(4);
  CHECK(p.shape() == Shape{4, 3});
  const Tensor got = testing::run1(g, p);
  const Tensor& table = g.parameter_value(positions.embedding.table);
  for (std::int64_t i = 0; i < 12; ++i) CHECK(got.at(i) == table.at(i));
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { positions(7); });
  CHECK(message.find("max_length") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
}

// --- Gradients ------------------------------------------------------------------------------

TEST_CASE("LayerNorm, gelu, FeedForward and dropout pass the gradient check with respect to their input") {
  testing::gradcheck("layer_norm",
                     [](Graph& g, const std::vector<Value>& x) {
                       nn::LayerNorm norm(g, "norm", 5, 1e-5, f64);
                       randomize(g, norm.gamma, 11, 0.5, 1.5);
                       randomize(g, norm.beta, 12);
                       return norm(x[0]);
                     },
                     {{Shape{3, 5}, -2, 2}});
  testing::gradcheck("gelu", [](Graph&, const std::vector<Value>& x) { return nn::gelu(x[0]); },
                     {{Shape{2, 6}, -3, 3}});
  testing::gradcheck("feed_forward gelu",
                     [](Graph& g, const std::vector<Value>& x) {
                       nn::FeedForward ff(g, "ff", 4, 6, nn::Activation::gelu, 0.0, f64);
                       randomize(g, ff.up.bias, 13);
                       return ff(x[0]);
                     },
                     {{Shape{2, 3, 4}}});
  testing::gradcheck("dropout, fixed step",
                     [](Graph& g, const std::vector<Value>& x) {
                       const Value step = g.constant(Tensor::scalar<std::int64_t>(5), "step");
                       return nn::Dropout(0.3)(x[0], {.training = true, .step = step});
                     },
                     {{Shape{4, 5}}});
}

TEST_CASE("Embedding passes the gradient check with fixed integer ids") {
  // The ids are fed but not differentiated; the lookup's result scales a float input, and the
  // table's own gradient is checked by the parameter test below.
  const Tensor ids = Tensor::from<std::int64_t>({1, 3, 3, 0, 4, 1}, {2, 3});
  testing::gradcheck("embedding",
                     [](Graph& g, const std::vector<Value>& x) {
                       nn::Embedding embed(g, "embed", 5, 4, f64, init::normal(0.0, 1.0));
                       return embed(x[0]) * x[1];
                     },
                     {{.shape = Shape{2, 3}, .dtype = i64, .value = ids}, {Shape{2, 3, 4}}});
}

TEST_CASE("the parameter gradients of LayerNorm, Embedding and FeedForward match finite differences") {
  Graph g;
  nn::Embedding embed(g, "embed", 5, 4, f64, init::normal(0.0, 1.0));
  nn::LayerNorm norm(g, "norm", 4, 1e-5, f64);
  randomize(g, norm.gamma, 21, 0.5, 1.5);
  nn::FeedForward ff(g, "ff", 4, 6, nn::Activation::gelu, 0.0, f64);
  randomize(g, ff.up.bias, 22);
  Value ids = g.placeholder("ids", i64, {2, 3});
  Value y = ff(norm(embed(ids)));
  // Repeated ids: the table's rows 3 and 1 collect two gradients each; row 2 none.
  const Tensor tids = Tensor::from<std::int64_t>({1, 3, 3, 0, 4, 1}, {2, 3});
  check_parameter_gradients(g, y, {embed.table, norm.gamma, norm.beta, ff.up.weight, ff.up.bias, ff.down.weight},
                            {{ids, tids}});
}

// A number a layer mixes in (GELU's 0.5, a mean's 1/n) meets the input's dtype before any node
// is built: that check, too, names the line that called the layer.
TEST_CASE("a layer given an integer tensor names the user's line, not the layer's") {
  Graph g;
  Value ids = g.placeholder("ids", i32, {2, 3});
  int line = __LINE__ + 1;
  std::string message = error_of([&] { nn::gelu(ids); });
  CHECK(message.find("the number") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  line = __LINE__ + 1;
  message = error_of([&] { nn::mse_loss(ids, ids); });
  CHECK(message.find("expects an f32 or f64 input") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  CHECK_FALSE(g.location_override().known());
}
