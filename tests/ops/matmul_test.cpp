// matmul against a plain reference: for every output batch index, every row m and column n,
// y = Σ_k a[m, k]·b[k, n], reading operands through their transposes and broadcast batch.
#include <string>
#include <vector>

#include "gradcheck.h"
#include "testing.h"

namespace {

using namespace fovea;
using fovea::testing::check_close;
using fovea::testing::random_tensor;
using fovea::testing::run1;

// The flat offset of the matrix an operand with batch dims `batch` uses for the output batch
// multi-index `index` (its dims aligned on the right; a dim of 1 always reads index 0).
std::int64_t batch_offset(const Shape& operand, const std::vector<std::int64_t>& index) {
  const int batch_rank = operand.rank() - 2;
  const int shift = static_cast<int>(index.size()) - batch_rank;
  std::int64_t flat = 0;
  for (int d = 0; d < batch_rank; ++d) flat = flat * operand[d] + (operand[d] == 1 ? 0 : index[d + shift]);
  return flat * operand[batch_rank] * operand[batch_rank + 1];
}

Tensor reference_matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  const Shape &sa = a.shape(), &sb = b.shape();
  const std::int64_t a_rows = sa[sa.rank() - 2], a_cols = sa[sa.rank() - 1];
  const std::int64_t b_rows = sb[sb.rank() - 2], b_cols = sb[sb.rank() - 1];
  const std::int64_t m = transpose_a ? a_cols : a_rows, k = transpose_a ? a_rows : a_cols;
  const std::int64_t n = transpose_b ? b_rows : b_cols;
  Shape batch;
  REQUIRE(broadcast_shapes(Shape(std::vector<std::int64_t>(sa.begin(), sa.end() - 2)),
                           Shape(std::vector<std::int64_t>(sb.begin(), sb.end() - 2)), batch));
  std::vector<std::int64_t> dims = batch.dims();
  dims.push_back(m);
  dims.push_back(n);
  Tensor y = Tensor::empty(a.dtype(), Shape(dims));
  std::vector<std::int64_t> index(static_cast<std::size_t>(batch.rank()), 0);
  for (std::int64_t item = 0; item < batch.numel(); ++item) {
    for (std::int64_t d = batch.rank() - 1, rest = item; d >= 0; --d) {
      index[d] = rest % batch[static_cast<int>(d)];
      rest /= batch[static_cast<int>(d)];
    }
    const std::int64_t oa = batch_offset(sa, index), ob = batch_offset(sb, index);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (std::int64_t p = 0; p < k; ++p) {
          const double av = a.at(oa + (transpose_a ? p * a_cols + i : i * a_cols + p));
          const double bv = b.at(ob + (transpose_b ? j * b_cols + p : p * b_cols + j));
          sum += av * bv;
        }
        const std::int64_t flat = (item * m + i) * n + j;
        if (a.dtype() == f32)
          y.data<float>()[flat] = static_cast<float>(sum);
        else
          y.data<double>()[flat] = sum;
      }
  }
  return y;
}

// The stored shape of an operand whose (transposed) matrix is rows x cols.
Shape stored(std::vector<std::int64_t> batch, std::int64_t rows, std::int64_t cols, bool transpose) {
  batch.push_back(transpose ? cols : rows);
  batch.push_back(transpose ? rows : cols);
  return Shape(batch);
}

// Runs matmul on random operands for every dtype and pair of transposes, against the reference.
void check_matmul(const std::vector<std::int64_t>& batch_a, const std::vector<std::int64_t>& batch_b, std::int64_t m,
                  std::int64_t k, std::int64_t n, std::uint64_t seed) {
  for (DType dtype : {f32, f64})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const Shape sa = stored(batch_a, m, k, ta), sb = stored(batch_b, k, n, tb);
        CAPTURE(dtype_name(dtype));
        CAPTURE(sa.to_string());
        CAPTURE(sb.to_string());
        CAPTURE(ta);
        CAPTURE(tb);
        const Tensor a = random_tensor(dtype, sa, seed++), b = random_tensor(dtype, sb, seed++);
        Graph g;
        Value pa = g.placeholder("a", dtype, sa), pb = g.placeholder("b", dtype, sb);
        const Tensor got = run1(g, matmul(pa, pb, ta, tb), {{pa, a}, {pb, b}});
        const double tol = dtype == f32 ? 1e-4 : 1e-12;
        check_close(got, reference_matmul(a, b, ta, tb), tol, tol);
      }
}

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

}  // namespace

TEST_CASE("matmul of two matrices matches the reference for every combination of transposes") {
  check_matmul({}, {}, 5, 7, 3, 1);
  check_matmul({}, {}, 64, 130, 70, 2);
}

TEST_CASE("matmul broadcasts one matrix over a batch, on either side") {
  check_matmul({4}, {}, 5, 6, 3, 10);         // [B,M,K] x [K,N]: one gemm over B·M rows
  check_matmul({}, {4}, 5, 6, 3, 20);         // [M,K] x [B,K,N]
  check_matmul({2, 3}, {1, 1}, 4, 5, 6, 30);  // b's batch dims all 1
}

TEST_CASE("matmul broadcasts batch dims NumPy-style") {
  check_matmul({2, 1}, {3}, 4, 5, 6, 40);     // [B,1,M,K] x [H,K,N] -> [B,H,M,N]
  check_matmul({3}, {2, 3}, 4, 5, 2, 50);     // batch ranks differ
  check_matmul({2, 3}, {2, 3}, 3, 4, 5, 60);  // equal batches
  check_matmul({1, 3}, {2, 1}, 2, 3, 4, 70);  // both broadcast
}

TEST_CASE("matmul handles size-1 dims") {
  check_matmul({}, {}, 1, 5, 4, 80);
  check_matmul({}, {}, 4, 5, 1, 90);
  check_matmul({}, {}, 4, 1, 3, 100);
  check_matmul({2}, {2}, 1, 1, 1, 110);
}

TEST_CASE("matmul handles zero-size dims, and K == 0 gives zeros") {
  check_matmul({}, {}, 0, 3, 4, 120);
  check_matmul({}, {}, 3, 4, 0, 130);
  check_matmul({}, {}, 3, 0, 4, 140);
  check_matmul({2}, {}, 3, 0, 4, 150);
  check_matmul({0}, {}, 3, 2, 4, 160);
  check_matmul({2, 1}, {0}, 3, 2, 4, 170);
}

TEST_CASE("matmul infers the broadcast output type and records the transposes") {
  Graph g;
  Value a = g.placeholder("a", f32, {8, 1, 16, 32});
  Value b = g.placeholder("b", f32, {4, 64, 32});
  Value y = matmul(a, b, false, true);
  CHECK(y.type().to_string() == "f32[8,4,16,64]");
  CHECK(y.node().op_name() == "matmul");
  CHECK(y.node().attrs.get_bool("transpose_a") == false);
  CHECK(y.node().attrs.get_bool("transpose_b") == true);
}

TEST_CASE("matmul's inner-dim error prints both types and suggests the transpose that fits") {
  Graph g;
  Value x = g.placeholder("x", f32, {32, 784});
  Value w = g.placeholder("w", f32, {10, 784});
  CHECK_THROWS_AS(matmul(x, w), Error);
  const std::string message = error_message([&] { matmul(x, w); });
  CHECK(mentions(message,
                 "matmul: inner dims differ: f32[32,784] x f32[10,784] (K 784 vs 10); "
                 "did you mean transpose_b=true?"));
  CHECK(mentions(message, "matmul_test.cpp"));

  Value v = g.placeholder("v", f32, {784, 32});
  Value u = g.placeholder("u", f32, {784, 10});
  const std::string hint_a = error_message([&] { matmul(v, u); });
  CHECK(mentions(hint_a, "K 32 vs 784"));
  CHECK(mentions(hint_a, "did you mean transpose_a=true?"));
  const std::string with_flag = error_message([&] { matmul(x, v, false, true); });
  CHECK(mentions(with_flag, "f32[32,784] x f32[784,32] (transpose_b=true) (K 784 vs 32)"));
  CHECK(mentions(with_flag, "did you mean transpose_b=false?"));
}

TEST_CASE("matmul rejects operands of rank below 2, saying rank >= 2") {
  Graph g;
  Value v = g.placeholder("v", f32, {5});
  Value m = g.placeholder("m", f32, {5, 3});
  CHECK_THROWS_AS(matmul(v, m), Error);
  const std::string message = error_message([&] { matmul(m, v, true); });
  CHECK(mentions(message, "matmul"));
  CHECK(mentions(message, "rank >= 2"));
  CHECK(mentions(message, "f32[5]"));
  CHECK(mentions(message, "matmul_test.cpp"));
}

TEST_CASE("matmul rejects batch dims that do not broadcast") {
  Graph g;
  Value a = g.placeholder("a", f32, {4, 3, 2, 2});
  Value b = g.placeholder("b", f32, {5, 2, 2});
  CHECK_THROWS_AS(matmul(a, b), Error);
  const std::string message = error_message([&] { matmul(a, b); });
  CHECK(mentions(message, "batch dims [4,3] and [5] do not broadcast"));
  CHECK(mentions(message, "matmul_test.cpp"));
}

TEST_CASE("matmul rejects mixed and integer dtypes") {
  Graph g;
  Value a = g.placeholder("a", f32, {2, 2});
  Value b = g.placeholder("b", f64, {2, 2});
  Value n = g.placeholder("n", i32, {2, 2});
  CHECK_THROWS_AS(matmul(a, b), Error);
  CHECK_THROWS_AS(matmul(n, n), Error);
  const std::string message = error_message([&] { matmul(n, n); });
  CHECK(mentions(message, "matmul"));
  CHECK(mentions(message, "i32[2,2]"));
  CHECK(mentions(message, "matmul_test.cpp"));
}

TEST_CASE("matmul passes the gradient check for every transpose combination and broadcast batch") {
  using fovea::testing::gradcheck;
  struct Case {
    std::vector<std::int64_t> batch_a, batch_b;
  };
  const std::vector<Case> cases{{{}, {}}, {{2}, {}}, {{}, {2}}, {{2, 1}, {3}}, {{2, 3}, {2, 3}}};
  for (const Case& c : cases)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const Shape sa = stored(c.batch_a, 3, 4, ta), sb = stored(c.batch_b, 4, 2, tb);
        CAPTURE(sa.to_string());
        CAPTURE(sb.to_string());
        gradcheck("matmul", [&](Graph&, const std::vector<Value>& x) { return matmul(x[0], x[1], ta, tb); },
                  {{sa}, {sb}});
      }
}
