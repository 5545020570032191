// The CPU backend's own gemm (backends/cpu/gemm.h) against a plain sum in f64: every transpose,
// sizes on both sides of the micro-kernel's tile and of the cache blocks, padded leading dims,
// accumulation, one thread and several. Then matmul through the engine on every instruction set
// this CPU runs, at sizes that take the parallel path.
#include <fovea/backends/cpu/gemm.h>

#include <algorithm>
#include <vector>

#include "testing.h"

using namespace fovea;
using namespace fovea::testing;
namespace gemm_impl = fovea::cpu_backend::portable;

namespace {

struct GemmCase {
  std::int64_t m, n, k;
  bool transpose_a, transpose_b;
  std::int64_t pad = 0;  // extra elements at the end of every stored row
  bool accumulate = false;
};

template <typename T>
std::vector<T> random_values(std::int64_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<T> v(static_cast<std::size_t>(count));
  for (T& x : v) x = static_cast<T>(uniform(rng));
  return v;
}

// Runs one case through gemm (on `pool`, or on this thread when null) and checks every element.
template <typename T>
void check_gemm(const GemmCase& c, ThreadPool* pool, double tolerance) {
  CAPTURE(c.m);
  CAPTURE(c.n);
  CAPTURE(c.k);
  CAPTURE(c.transpose_a);
  CAPTURE(c.transpose_b);
  CAPTURE(c.accumulate);
  const std::int64_t lda = (c.transpose_a ? c.m : c.k) + c.pad, ldb = (c.transpose_b ? c.k : c.n) + c.pad;
  const std::int64_t ldc = c.n + c.pad;
  const std::vector<T> a = random_values<T>((c.transpose_a ? c.k : c.m) * lda, 1);
  const std::vector<T> b = random_values<T>((c.transpose_b ? c.n : c.k) * ldb, 2);
  const std::vector<T> c0 = random_values<T>(c.m * ldc, 3);
  std::vector<T> out = c0;
  const gemm_impl::GemmOperands<T> g{c.transpose_a, c.transpose_b, c.m, c.n,        c.k, a.data(),
                                     lda,           b.data(),      ldb, out.data(), ldc, c.accumulate};
  if (pool != nullptr)
    gemm_impl::gemm(*pool, g);
  else
    gemm_impl::gemm(g);

  double worst = 0;
  for (std::int64_t i = 0; i < c.m; ++i)
    for (std::int64_t j = 0; j < c.n; ++j) {
      double sum = c.accumulate ? static_cast<double>(c0[i * ldc + j]) : 0.0;
      for (std::int64_t p = 0; p < c.k; ++p) {
        const double x = c.transpose_a ? a[p * lda + i] : a[i * lda + p];
        const double y = c.transpose_b ? b[j * ldb + p] : b[p * ldb + j];
        sum += x * y;
      }
      worst = std::max(worst, std::abs(static_cast<double>(out[i * ldc + j]) - sum) / (1.0 + std::sqrt(c.k)));
    }
  CHECK(worst <= tolerance);
  // The padding between rows is not C's and stays as it was.
  for (std::int64_t i = 0; i < c.m; ++i)
    for (std::int64_t j = c.n; j < ldc; ++j) CHECK(out[i * ldc + j] == c0[i * ldc + j]);
}

std::vector<GemmCase> gemm_cases() {
  const gemm_impl::GemmTile tile = gemm_impl::gemm_tile<float>();
  const std::int64_t mr = tile.mr, nr = tile.nr, kc = tile.kc;
  std::vector<GemmCase> cases;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // Tile edges, one element, K one past a block and a K block and a half, padded rows,
      // accumulation.
      cases.push_back({1, 1, 1, ta, tb});
      cases.push_back({mr - 1, nr + 1, 7, ta, tb});
      cases.push_back({mr + 1, nr - 1, kc + 1, ta, tb, 3});
      cases.push_back({2 * mr, 2 * nr, 64, ta, tb, 0, true});
      cases.push_back({37, 53, kc + kc / 2 + 3, ta, tb, 5, true});
      // Big enough for the pool: rows split across threads, and few rows (columns split).
      cases.push_back({130, 97, kc + 44, ta, tb});
      cases.push_back({3, 700, 600, ta, tb, 1});
    }
  // K so deep that B̃ is cut into several blocks of columns.
  cases.push_back({20, 600, 5000, false, false});
  cases.push_back({20, 600, 5000, true, true, 0, true});
  return cases;
}

}  // namespace

TEST_CASE("the CPU gemm agrees with a plain f64 sum for every transpose, tile edge, K block and padded row") {
  ThreadPool two(2), three(3);
  for (const GemmCase& c : gemm_cases()) {
    check_gemm<float>(c, nullptr, 2e-6);
    check_gemm<double>(c, nullptr, 1e-14);
    check_gemm<float>(c, &two, 2e-6);
    check_gemm<double>(c, &three, 1e-14);
  }
}

TEST_CASE("the CPU gemm of no rows, no columns or no depth writes nothing, or zeros when not accumulating") {
  ThreadPool pool(2);
  std::vector<float> c(6, 5.0f);
  const float one = 1.0f;
  gemm_impl::gemm<float>(pool, {false, false, 0, 3, 4, &one, 4, &one, 3, c.data(), 3});
  gemm_impl::gemm<float>(pool, {false, false, 2, 0, 4, &one, 4, &one, 0, c.data(), 3});
  CHECK(std::count(c.begin(), c.end(), 5.0f) == 6);
  gemm_impl::gemm<float>(pool, {false, false, 2, 3, 0, &one, 1, &one, 3, c.data(), 3, true});
  CHECK(std::count(c.begin(), c.end(), 5.0f) == 6);
  gemm_impl::gemm<float>(pool, {false, false, 2, 2, 0, &one, 1, &one, 2, c.data(), 3});
  CHECK(c == std::vector<float>{0, 0, 5, 0, 0, 5});
}

TEST_CASE("matmul on every instruction set this CPU runs agrees with a plain sum at sizes the pool splits") {
  struct Case {
    Shape a, b;
    bool transpose_a, transpose_b;
  };
  const std::vector<Case> cases = {
      {{140, 257}, {257, 100}, false, false},        // one product, rows split over the threads
      {{257, 140}, {100, 257}, true, true},          // both operands read transposed by the packing
      {{3, 200, 64}, {64, 333}, false, false},       // a batch against a shared b: one tall product
      {{5, 96, 80}, {5, 72, 80}, false, true},       // 5 whole products over the threads
      {{2, 1, 48, 600}, {3, 600, 40}, false, false}  // broadcast batch
  };
  for (Isa isa : kAllIsas) {
    if (!isa_supported(isa)) continue;
    CAPTURE(isa_name(isa));
    for (const Case& c : cases) {
      CAPTURE(c.a);
      CAPTURE(c.b);
      Graph g("gemm_isa");
      Value a = g.placeholder("a", f64, c.a), b = g.placeholder("b", f64, c.b);
      Value y = matmul(a, b, c.transpose_a, c.transpose_b);
      const Tensor ta = random_tensor(f64, c.a, 11), tb = random_tensor(f64, c.b, 12);
      const Tensor out = compile(g, {y}, cpu({.isa = isa})).run({{a, ta}, {b, tb}})[0];
      // The plain sum, through the portable kernels' batched loop (already checked above and by
      // the op tests) but computed here in f64 by hand on the flattened batch.
      Graph reference_graph("gemm_reference");
      Value ra = reference_graph.placeholder("a", f64, c.a), rb = reference_graph.placeholder("b", f64, c.b);
      Value product = mul(unsqueeze(c.transpose_a ? transpose(ra, -1, -2) : ra, -1),
                          unsqueeze(c.transpose_b ? transpose(rb, -1, -2) : rb, -3));
      Value expected = reduce_sum(product, {-2});
      const Tensor want =
          compile(reference_graph, {expected}, cpu({.isa = Isa::portable})).run({{ra, ta}, {rb, tb}})[0];
      check_close(out, want, 1e-12, 1e-12);
    }
  }
}
