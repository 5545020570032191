// Data-parallel training (docs/distributed.md): what the all-reduce costs, and how much of it
// the backward hides. Run it on 1, 2 and 4 processes:
//
//   build/bench/data_parallel [--json FILE]                  (one process: the step alone)
//   mpirun -np 2 build/bench/data_parallel [--json FILE]      (FOVEA_NUM_THREADS=1 on 2 cores)
//
// 1. The all-reduce alone: MpiCommunicator::all_reduce of f32 buffers from 4 KB to 16 MB, the
//    median over repetitions, and the ring model t = α + (2(p−1)/p)·bytes / B fitted to them by
//    least squares on relative error: α the latency term, B the bus bandwidth.
// 2. A training step: an MLP of `--layers` square layers of `--width` (about 4·width² bytes of
//    gradients per layer) with AdamW on `--batch` rows per rank, timed without data parallelism
//    (the compute alone), then data-parallel with each bucket size in `--buckets` (MB) with
//    overlap, and with buckets of 4 MB without it (each all-reduce blocking where it stands).
// 3. The overlap: the fraction of the step's all-reduce time hidden behind the backward,
//    (t_blocking − t_overlap) / t_all_reduce at 4 MB buckets, where t_all_reduce is the time of
//    the step's 4 MB buckets all-reduced alone.
//
// Rank 0 prints and writes the figures; every rank runs the same steps.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <fovea/distributed/mpi_communicator.h>
#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"

namespace {

namespace nn = fovea::nn;
using fovea::Value;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median seconds of `reps` calls of `f`, after two warm-up calls, with a barrier before each so
// that every rank starts together.
template <typename F>
double time_median(fovea::Communicator& world, int reps, F&& f) {
  std::vector<double> seconds;
  for (int r = 0; r < reps + 2; ++r) {
    world.barrier();
    const auto start = std::chrono::steady_clock::now();
    f();
    if (r >= 2) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return median(seconds);
}

struct Fit {
  double latency_s = 0, bandwidth_bytes_per_s = 0;
};

// Least squares of t = α + β·x with x = (2(p−1)/p)·bytes, α the latency and 1/β the bandwidth,
// on relative errors (each point weighted by 1/t²): the sizes span four decades, and plain least
// squares would fit the largest alone.
Fit fit_ring(const std::vector<double>& bytes, const std::vector<double>& seconds, int ranks) {
  const double factor = 2.0 * (ranks - 1) / ranks;
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const double x = factor * bytes[i], y = seconds[i], w = 1.0 / (y * y);
    sw += w, sx += w * x, sy += w * y, sxx += w * x * x, sxy += w * x * y;
  }
  const double beta = (sw * sxy - sx * sy) / (sw * sxx - sx * sx);
  return {(sy - beta * sx) / sw, beta > 0 ? 1.0 / beta : 0.0};
}

struct Step {
  fovea::Graph graph{"mlp"};
  Value x, y;
  std::unique_ptr<fovea::Executable> executable;
  std::int64_t gradient_bytes = 0;
};

// The MLP's training step, with the gradients averaged over `world` when `data_parallel`.
void build_step(Step& s, std::int64_t batch, std::int64_t width, int layers,
                const std::optional<nn::DataParallelOptions>& data_parallel) {
  s.graph.set_seed(1);
  s.x = s.graph.placeholder("x", fovea::f32, {batch, width});
  s.y = s.graph.placeholder("y", fovea::f32, {batch, width});
  Value h = s.x;
  for (int l = 0; l < layers; ++l) {
    nn::Linear layer(s.graph, fmt::format("layer{}", l), width, width);
    h = l + 1 < layers ? fovea::relu(layer(h)) : layer(h);
  }
  const Value loss = nn::mse_loss(h, s.y);
  const nn::TrainStep step = nn::adamw(loss, s.graph.parameters(), {.data_parallel = data_parallel});
  for (const Value& p : s.graph.parameters()) s.gradient_bytes += p.shape().numel() * 4;
  s.executable =
      std::make_unique<fovea::Executable>(fovea::compile(s.graph, {loss}, fovea::cpu(), {.updates = step.updates}));
}

double step_seconds(fovea::Communicator& world, Step& s, std::int64_t batch, std::int64_t width, int reps) {
  const fovea::Tensor x = fovea::Tensor::full(fovea::f32, {batch, width}, 0.5);
  const fovea::Tensor y = fovea::Tensor::full(fovea::f32, {batch, width}, 0.25);
  return time_median(world, reps, [&] { s.executable->run({{s.x, x}, {s.y, y}}); });
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Data-parallel training: all-reduce cost and overlap"};
  std::int64_t batch = 64, width = 1024;
  int layers = 6, reps = 15;
  std::vector<double> bucket_mb = {0.25, 1, 4, 25};
  std::string json;
  app.add_option("--batch", batch, "rows per rank and step");
  app.add_option("--width", width, "width of the MLP's square layers");
  app.add_option("--layers", layers, "layers of the MLP");
  app.add_option("--buckets", bucket_mb, "bucket sizes to time, in MB");
  app.add_option("--reps", reps, "timed repetitions (medians are reported)");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);

  const std::shared_ptr<fovea::MpiCommunicator> world = fovea::MpiCommunicator::world();
  const int ranks = world->size();
  if (world->rank() != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) std::perror("quieting stdout");
  fovea::tools::Report report;
  report.set("ranks", ranks);
  report.set("threads_per_rank", fovea::default_thread_pool().size());

  // 1. The all-reduce alone, and the ring model fitted to it.
  std::vector<double> sizes, times;
  for (std::int64_t bytes = 4096; bytes <= (std::int64_t{16} << 20); bytes *= 4) {
    std::vector<float> buffer(static_cast<std::size_t>(bytes / 4), 1.0f);
    const double t = time_median(*world, reps, [&] {
      world->all_reduce(buffer.data(), static_cast<std::int64_t>(buffer.size()), fovea::f32, fovea::Reduction::sum);
    });
    sizes.push_back(static_cast<double>(bytes));
    times.push_back(t);
    std::printf("all_reduce %9lld bytes: %8.3f ms  (%.2f GB/s bus bandwidth)\n", static_cast<long long>(bytes), 1e3 * t,
                ranks > 1 ? 2.0 * (ranks - 1) / ranks * static_cast<double>(bytes) / t / 1e9 : 0.0);
    report.set(fmt::format("all_reduce_{}_bytes_ms", bytes), 1e3 * t);
  }
  if (ranks > 1) {
    const Fit fit = fit_ring(sizes, times, ranks);
    std::printf("ring model: latency %.1f us, bus bandwidth %.2f GB/s\n", 1e6 * fit.latency_s,
                fit.bandwidth_bytes_per_s / 1e9);
    report.set("fitted_latency_us", 1e6 * fit.latency_s);
    report.set("fitted_bus_bandwidth_gb_s", fit.bandwidth_bytes_per_s / 1e9);
  }

  // 2. The step: compute alone, then data-parallel with each bucket size.
  Step alone;
  build_step(alone, batch, width, layers, std::nullopt);
  const double t_compute = step_seconds(*world, alone, batch, width, reps);
  std::printf("\nstep of a %d-layer MLP, width %lld, %lld rows per rank, %.1f MB of gradients:\n", layers,
              static_cast<long long>(width), static_cast<long long>(batch),
              static_cast<double>(alone.gradient_bytes) / 1e6);
  std::printf("  without data parallelism: %8.2f ms\n", 1e3 * t_compute);
  report.set("gradient_bytes", alone.gradient_bytes);
  report.set("step_compute_only_ms", 1e3 * t_compute);
  auto timed = [&](double mb, bool overlap) {
    Step s;
    build_step(s, batch, width, layers,
               nn::DataParallelOptions{
                   .communicator = world, .bucket_bytes = static_cast<std::int64_t>(mb * 1048576), .overlap = overlap});
    return step_seconds(*world, s, batch, width, reps);
  };
  constexpr double kOverlapBucketMb = 4;
  double t_overlap = 0;
  for (double mb : bucket_mb) {
    const double t = timed(mb, true);
    std::printf("  buckets of %5.2f MB, overlapped: %8.2f ms\n", mb, 1e3 * t);
    report.set(fmt::format("step_bucket_{}mb_ms", mb), 1e3 * t);
    if (mb == kOverlapBucketMb) t_overlap = t;
  }
  if (t_overlap == 0) t_overlap = timed(kOverlapBucketMb, true);
  const double t_blocking = timed(kOverlapBucketMb, false);
  std::printf("  buckets of %5.2f MB, blocking:   %8.2f ms\n", kOverlapBucketMb, 1e3 * t_blocking);
  report.set("step_bucket_4mb_blocking_ms", 1e3 * t_blocking);

  // 3. The overlap: the step's buckets all-reduced alone, against what overlapping saved.
  if (ranks > 1) {
    std::vector<float> gradients(static_cast<std::size_t>(alone.gradient_bytes / 4), 1.0f);
    const auto bucket = static_cast<std::int64_t>(kOverlapBucketMb * 1048576 / 4);
    const double t_all_reduce = time_median(*world, reps, [&] {
      for (std::int64_t first = 0; first < static_cast<std::int64_t>(gradients.size()); first += bucket)
        world->all_reduce(gradients.data() + first,
                          std::min<std::int64_t>(bucket, static_cast<std::int64_t>(gradients.size()) - first),
                          fovea::f32, fovea::Reduction::mean);
    });
    const double hidden = std::clamp((t_blocking - t_overlap) / t_all_reduce, 0.0, 1.0);
    std::printf("  the step's all-reduces alone: %.2f ms; hidden behind the backward: %.0f%%\n", 1e3 * t_all_reduce,
                100 * hidden);
    report.set("step_all_reduce_alone_ms", 1e3 * t_all_reduce);
    report.set("overlap_fraction", hidden);
  }
  report.finish(json);
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
