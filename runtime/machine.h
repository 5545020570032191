// machine_peak: what this computer's CPU can do at best, measured once per process, so that the
// time a run takes can be set against the work it does (ops/cost.h): a roofline.
//
// Two small benchmarks, about 0.3 s together on the first call:
//   - the f32 multiply-add peak of the engine's thread pool (core/thread_pool.h): every thread
//     runs a chain of fused multiply-adds on enough independent vector accumulators to keep
//     every FMA unit busy despite each instruction's latency, counted as 2 FLOPs per lane;
//   - the memory bandwidth: a triad a[i] = b[i] + s·c[i] on the pool over three arrays far
//     larger than any cache, counting the bytes read and written (as STREAM does).
// Both are the best a simple loop reaches, not the vendor's figure: real kernels come close to
// the bandwidth, and BLAS-class matmuls to the FLOP peak.
#pragma once

#include <string>

namespace fovea {

struct MachinePeak {
  double gflops = 0;             // f32 FLOPs per nanosecond, all threads together
  double gbytes_per_second = 0;  // memory traffic, in 10^9 bytes per second
  int threads = 0;               // the pool's threads the figures were measured with
  std::string method;            // how, in one sentence, for a report to show
};

// Measured on the first call (from any thread; the others wait for it), then the same object.
const MachinePeak& machine_peak();

}  // namespace fovea
