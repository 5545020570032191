// FakeDevice: a test-only device backend, so that the executable's device path (transfer steps,
// host staging, deferred verdicts, recorded runs) is run and checked on any machine, GPU or not.
//
// It runs the CPU backend's kernels, but behaves as a device in every way the executable can see:
//
//  - uses_host_memory() is false, so compile() lowers the schedule with to_device and to_host
//    steps (ops/transfer.h) and plans host staging for it;
//  - its memory is its own: allocate() and allocate_host_staging() hand out fresh buffers full of
//    poison (every byte 0xFF: NaN in floats, -1 in integers, an invalid bool), and parameters get
//    device copies (persistent_copy) that only the first use, push() and pull() keep in step with
//    the graph's host Tensors;
//  - its to_device kernel poisons the staging slot it has just copied from, so a run that did not
//    copy its feeds into staging, a kernel that read staging instead of the arena, or a skipped
//    transfer all meet poison, and the results differ from the CPU's;
//  - its gather defers its index check as the CUDA backend's does: it records the first bad
//    position and index in the step's Verdict, writes 0 for bad rows, and lets the run finish;
//  - it records runs as CUDA stream capture does: between begin_capture() and end_capture() its
//    kernels and clear_verdicts() are noted on a tape instead of running, and a replay runs the
//    tape again.
//
// Counters and switches let a test see and steer what the executable does.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fovea/backends/device_copies.h>
#include <fovea/engine.h>

namespace fovea::testing {

class FakeDevice final : public Backend {
 public:
  FakeDevice();
  ~FakeDevice() override;
  FakeDevice(const FakeDevice&) = delete;
  FakeDevice& operator=(const FakeDevice&) = delete;

  std::string_view name() const override { return "fake-device"; }
  Device device() const override { return Device::cpu; }
  const KernelRegistry& kernels() const override { return kernels_; }
  ThreadPool& pool() override { return cpu_->pool(); }

  std::shared_ptr<std::byte[]> allocate(std::size_t bytes) override;
  std::shared_ptr<std::byte[]> allocate_host_staging(std::size_t bytes) override;
  void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) override;
  void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) override;
  void clear_verdicts(Verdict* verdicts, std::size_t count) override;
  void synchronize() override { ++synchronizations; }

  bool uses_host_memory() const override { return false; }
  std::byte* persistent_copy(const Tensor& host) override;
  void pull(const Tensor& host) override;
  void push(const Tensor& host) override;

  bool supports_capture() const override { return true; }
  bool can_capture(std::string_view op, DType dtype, std::string& reason) const override;
  bool begin_capture(std::string& reason) override;
  std::unique_ptr<RecordedRun> end_capture(std::string& reason) override;
  void discard_capture() override;

  // What happened so far.
  int synchronizations = 0;
  int staging_allocations = 0;
  int recordings = 0, replays = 0, discarded = 0;
  // Switches: can_capture() refuses this op; recording a node of this op throws, as a kernel
  // that waited for the device would; the next replay reports the recording stale.
  std::string refuse_capture_op;
  std::string fail_recording_op;
  bool stale_next_replay = false;

 private:
  friend void dispatch(const KernelContext& ctx);
  std::shared_ptr<Backend> cpu_ = cpu();
  KernelRegistry kernels_;
  DeviceCopies persistent_{*this};
  std::vector<std::function<void()>> tape_;  // what was noted since begin_capture()
};

// The error message the fake gather gives for a failed verdict: the CPU's words.
std::string fake_gather_message(const KernelContext& ctx, const Verdict& verdict);

}  // namespace fovea::testing
