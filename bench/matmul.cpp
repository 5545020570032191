// Matmul through the engine against raw cblas_sgemm on the same buffers and thread count.
//
// For each shape, three engine timings, each run followed by a raw cblas run, so that a noisy
// machine slows both sides of a pair alike:
//
//   engine+feed  run() of a graph with two placeholders: copies both operands into the
//                arena, runs the matmul kernel, copies the result out (what a user's
//                inference call costs);
//   engine       run() of a graph whose operands are parameters: no feed copy, but run()
//                still copies the result out into a newly allocated tensor (for outputs of
//                tens of MB, fresh pages: the gap between this and `kernel`);
//   kernel       the CPU backend's matmul kernel called directly on the parameters' buffers
//                (the kernel's own overhead: attribute lookup, batch logic, BLAS calls);
//   cblas        cblas_sgemm on the same buffers: one call per matrix of the batch, or one
//                tall call when b is shared, on BLAS's own threads (as many as the pool's).
//                The engine runs OpenBLAS single-threaded and spreads the work over its own
//                pool (backends/cpu/matmul_kernels.cpp). After each raw call the bench waits
//                150 ms, so that OpenBLAS's threads, which busy-wait for about 0.1 s after a
//                call, are parked before the engine's next run instead of competing with it.
//
// Each timing is the mean over back-to-back calls of one variant lasting --span-ms (30 ms), after
// an untimed call, so that each side is timed with its threads awake, as in a loop of products. A
// thread woken from sleep on this kind of virtual machine can take from tens of microseconds to a
// scheduler tick to run (it may be queued behind the thread that woke it while the other core
// idles), and the machine drifts between fast and slow phases lasting seconds: timing single
// calls made the millisecond shapes' ratios scatter from 0.8 to 1.3 between runs.
//
// GFLOP/s are from median times (cblas: over all its runs); the machine's measured f32 multiply-add
// peak (runtime/machine.h) is reported with them, key machine_fma_peak_gflops. Ratios are medians over
// repetitions of the paired ratio t_cblas / t_variant; >= 0.97 is the target.
// min_ratio_vs_cblas is over the engine (parameter) variant.
//
//   build/bench/matmul [--reps 7] [--span-ms 30] [--quick] [--json FILE]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <fovea/fovea.h>
#include <fovea/runtime/machine.h>
#include <CLI/CLI.hpp>

#include "report.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  std::string name;
  fovea::Shape a, b;
  bool transpose_b = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <typename F>
double seconds(F&& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Seconds per call of f, over a run of back-to-back calls lasting at least `span` seconds, after
// one untimed call: the threads are awake and the caches warm, as in a loop of products (a training
// step). A single call of a millisecond-long product on this kind of shared virtual machine measures
// the hypervisor's scheduling as much as the product, and its ratios scatter by ±30%.
template <typename F>
double seconds_per_call(F&& f, double span) {
  const double first = seconds(f);
  const int calls = std::clamp(static_cast<int>(span / std::max(first, 1e-7)), 2, 100000);
  const auto start = Clock::now();
  for (int i = 0; i < calls; ++i) f();
  return std::chrono::duration<double>(Clock::now() - start).count() / calls;
}

// y[β] = a[β]·op(b[β]) with raw cblas_sgemm: one call per matrix of the batch (a and b have
// the same batch here, or b none).
void cblas_matmul(const Case& c, const float* a, const float* b, float* y) {
  const int ra = c.a.rank(), rb = c.b.rank();
  const int m = static_cast<int>(c.a[ra - 2]), k = static_cast<int>(c.a[ra - 1]);
  const int n = static_cast<int>(c.transpose_b ? c.b[rb - 2] : c.b[rb - 1]);
  const std::int64_t batch = c.a.numel() / (std::int64_t{m} * k);
  const bool shared_b = rb == 2;
  const CBLAS_TRANSPOSE tb = c.transpose_b ? CblasTrans : CblasNoTrans;
  const int ldb = c.transpose_b ? k : n;
  if (shared_b) {  // the batch is one tall matrix
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, static_cast<int>(batch * m), n, k, 1.0f, a, k, b, ldb, 0.0f, y, n);
    return;
  }
  for (std::int64_t i = 0; i < batch; ++i)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, m, n, k, 1.0f, a + i * m * k, k, b + i * k * n, ldb, 0.0f,
                y + i * m * n, n);
}

struct Result {
  double engine_gflops, feed_gflops, kernel_gflops, cblas_gflops;
  double ratio, ratio_feed, ratio_kernel;
};

Result measure(const Case& c, int reps, double span) {
  using namespace fovea;
  // Parameter graph: operands live in persistent buffers, nothing is fed.
  Graph pg("matmul_parameters");
  Value pa = pg.parameter("a", f32, c.a, init::normal(0.0, 1.0));
  Value pb = pg.parameter("b", f32, c.b, init::normal(0.0, 1.0));
  Value py = matmul(pa, pb, false, c.transpose_b);
  Executable param_exe = compile(pg, {py}, cpu());
  const Tensor& a = pg.parameter_value(pa);
  const Tensor& b = pg.parameter_value(pb);

  // Feed graph: the same operands fed into placeholders at every run.
  Graph fg("matmul_feeds");
  Value fa = fg.placeholder("a", f32, c.a);
  Value fb = fg.placeholder("b", f32, c.b);
  Value fy = matmul(fa, fb, false, c.transpose_b);
  Executable feed_exe = compile(fg, {fy}, cpu());
  const Feeds feeds{{fa, a}, {fb, b}};

  // The kernel alone, on the parameters' buffers, writing into `out`.
  Tensor out = Tensor::zeros(f32, py.shape());
  const Kernel kernel = cpu()->kernels().find(ops::matmul, f32);
  const TensorArg args[3] = {{const_cast<std::byte*>(a.raw()), py.graph().type(py.node().inputs[0])},
                             {const_cast<std::byte*>(b.raw()), py.graph().type(py.node().inputs[1])},
                             {out.raw(), py.type()}};
  const std::unique_ptr<const DecodedParams> params = decode_params(py.graph(), py.node());
  const KernelContext context{&py.node(), {args, 2}, {args + 2, 1}, &cpu()->pool(), nullptr, params.get()};
  Tensor reference = Tensor::zeros(f32, py.shape());

  const double flops = 2.0 * static_cast<double>(py.shape().numel()) * static_cast<double>(c.a[c.a.rank() - 1]);
  auto run_engine = [&] { return param_exe.run({}); };
  auto run_feed = [&] { return feed_exe.run(feeds); };
  auto run_kernel = [&] { kernel(context); };
  const int threads = cpu()->pool().size();
  auto run_cblas = [&] {
    openblas_set_num_threads(threads);
    cblas_matmul(c, a.data<float>().data(), b.data<float>().data(), reference.data<float>().data());
    openblas_set_num_threads(1);
  };

  for (int i = 0; i < 2; ++i) {  // warm-up: page in buffers, start BLAS threads
    run_engine();
    run_feed();
    run_kernel();
    run_cblas();
  }
  // The engine must compute what cblas computes.
  const Tensor check = run_engine()[0];
  run_cblas();
  for (std::int64_t i = 0; i < check.numel(); ++i)
    if (std::abs(check.at(i) - reference.at(i)) > 1e-3 * (1.0 + std::abs(reference.at(i)))) {
      std::printf("  warning: %s differs from cblas at element %lld\n", c.name.c_str(), static_cast<long long>(i));
      break;
    }

  // Each variant's run is followed by a cblas run; the pair gives one ratio.
  std::vector<double> t_engine, t_feed, t_kernel, t_cblas, r_engine, r_feed, r_kernel;
  // Each side is timed over a run of calls in a row (seconds_per_call), so both are timed warm:
  // their threads awake and spinning, as in a loop of products, rather than woken from sleep.
  auto paired = [&](auto&& variant, std::vector<double>& times, std::vector<double>& ratios) {
    times.push_back(seconds_per_call(variant, span));
    t_cblas.push_back(seconds_per_call(run_cblas, span));
    ratios.push_back(t_cblas.back() / times.back());
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  };
  for (int r = 0; r < reps; ++r) {
    paired(run_engine, t_engine, r_engine);
    paired(run_feed, t_feed, r_feed);
    paired(run_kernel, t_kernel, r_kernel);
  }
  const double g = flops * 1e-9;
  return Result{g / median(t_engine), g / median(t_feed), g / median(t_kernel), g / median(t_cblas),
                median(r_engine),     median(r_feed),     median(r_kernel)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fovea matmul against raw cblas_sgemm"};
  int reps = 7;
  double span_ms = 30;
  bool quick = false;
  std::string json;
  app.add_option("--reps", reps, "timed repetitions per shape (medians are reported)")->check(CLI::Range(1, 1000));
  app.add_option("--span-ms", span_ms, "each timing is the mean of back-to-back calls lasting this long")
      ->check(CLI::Range(0.0, 10000.0));
  app.add_flag("--quick", quick, "only the square shapes n = 256 and 512");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);

  std::vector<Case> cases;
  for (std::int64_t n : {256, 512, 1024, 2048})
    if (!quick || n <= 512) cases.push_back({"square_" + std::to_string(n), {n, n}, {n, n}});
  if (!quick) {
    cases.push_back({"proj_4096x512x512", {4096, 512}, {512, 512}});
    cases.push_back({"ffn_up_4096x512x2048", {4096, 512}, {512, 2048}});
    cases.push_back({"ffn_down_4096x2048x512", {4096, 2048}, {2048, 512}});
    cases.push_back({"batched_proj_32x128x512x512", {32, 128, 512}, {512, 512}});
    cases.push_back({"attn_scores_32x8x64x64_tb", {32, 8, 64, 64}, {32, 8, 64, 64}, true});
    cases.push_back({"attn_values_32x8x64x64", {32, 8, 64, 64}, {32, 8, 64, 64}});
    cases.push_back({"attn_scores_8x8x256x64_tb", {8, 8, 256, 64}, {8, 8, 256, 64}, true});
  }

  const int threads = fovea::cpu()->pool().size();
  std::printf(
      "matmul f32, %d threads (the engine's pool; OpenBLAS's for raw cblas), %d reps, medians; ratio = "
      "t_cblas / t_engine\n\n",
      threads, reps);
  std::printf("%-30s %12s %12s %12s %12s %8s %8s %8s\n", "shape", "engine", "engine+feed", "kernel", "cblas", "ratio",
              "r+feed", "r_kern");
  std::printf("%-30s %12s %12s %12s %12s\n", "", "GFLOP/s", "GFLOP/s", "GFLOP/s", "GFLOP/s");

  fovea::tools::Report report;
  double min_ratio = 1e9, min_ratio_feed = 1e9, min_ratio_kernel = 1e9;
  for (const Case& c : cases) {
    const Result r = measure(c, reps, span_ms * 1e-3);
    std::printf("%-30s %12.1f %12.1f %12.1f %12.1f %8.3f %8.3f %8.3f\n", c.name.c_str(), r.engine_gflops, r.feed_gflops,
                r.kernel_gflops, r.cblas_gflops, r.ratio, r.ratio_feed, r.ratio_kernel);
    std::fflush(stdout);
    report.set(c.name + "_engine_gflops", r.engine_gflops);
    report.set(c.name + "_engine_with_feed_copy_gflops", r.feed_gflops);
    report.set(c.name + "_kernel_gflops", r.kernel_gflops);
    report.set(c.name + "_cblas_gflops", r.cblas_gflops);
    report.set(c.name + "_ratio", r.ratio);
    report.set(c.name + "_ratio_with_feed_copy", r.ratio_feed);
    report.set(c.name + "_ratio_kernel_only", r.ratio_kernel);
    min_ratio = std::min(min_ratio, r.ratio);
    min_ratio_feed = std::min(min_ratio_feed, r.ratio_feed);
    min_ratio_kernel = std::min(min_ratio_kernel, r.ratio_kernel);
  }
  const fovea::MachinePeak& peak = fovea::machine_peak();
  std::printf("\nthe machine's f32 multiply-add peak, measured (runtime/machine.h): %.1f GFLOP/s on %d threads\n",
              peak.gflops, peak.threads);
  report.set("machine_fma_peak_gflops", peak.gflops);
  report.set("threads", threads);
  report.set("reps", reps);
  report.set("min_ratio_vs_cblas", min_ratio);
  report.set("min_ratio_vs_cblas_with_feed_copy", min_ratio_feed);
  report.set("min_ratio_vs_cblas_kernel_only", min_ratio_kernel);
  report.finish(json);
  return 0;
}
