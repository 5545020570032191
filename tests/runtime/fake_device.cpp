// FakeDevice (fake_device.h): the CPU's kernels behind a device's face.
#include "fake_device.h"

#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fovea/ops/transfer.h>

namespace fovea::testing {

namespace {

constexpr int kPoison = 0xFF;

void poison(std::byte* p, std::size_t bytes) {
  if (bytes > 0) std::memset(p, kPoison, bytes);
}

// y ← x, staging to device memory; then the staging slot is poisoned (see the header).
void to_device_kernel(const KernelContext& ctx) {
  const std::size_t bytes = ctx.out().type.nbytes();
  if (bytes == 0) return;
  std::memcpy(ctx.out().data, ctx.in(0).data, bytes);
  poison(ctx.in(0).data, bytes);
}

// y ← x, device memory to staging.
void to_host_kernel(const KernelContext& ctx) {
  const std::size_t bytes = ctx.out().type.nbytes();
  if (bytes > 0) std::memcpy(ctx.out().data, ctx.in(0).data, bytes);
}

std::int64_t index_at(const TensorArg& ids, std::int64_t p) {
  return ids.type.dtype == DType::i32 ? ids.as<std::int32_t>()[p] : ids.as<std::int64_t>()[p];
}

// gather: y[o, p, j] = x[o, ids[p], j], or 0 where ids[p] is outside [0, n), with x seen as
// [outer, n, inner] around the axis. Like the CUDA backend's, it waits for nobody: the first bad
// position and its index go into the step's verdict, and the run goes on.
void gather_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &ids = ctx.in(1), &y = ctx.out();
  if (!ctx.verdict) ctx.fail("fake device: gather was run without a verdict");
  const int axis = ctx.params<AxisParams>().axis;
  std::int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= x.shape()[d];
  for (int d = axis + 1; d < x.shape().rank(); ++d) inner *= x.shape()[d];
  const std::int64_t n = x.shape()[axis], m = ids.numel();
  for (std::int64_t p = 0; p < m && !ctx.verdict->failed(); ++p) {
    const std::int64_t id = index_at(ids, p);
    if (id < 0 || id >= n) *ctx.verdict = {static_cast<std::uint64_t>(p), static_cast<std::uint64_t>(id)};
  }
  const std::size_t row = static_cast<std::size_t>(inner) * dtype_size(x.type.dtype);
  if (row == 0) return;
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t p = 0; p < m; ++p) {
      std::byte* to = y.data + static_cast<std::size_t>(o * m + p) * row;
      const std::int64_t id = index_at(ids, p);
      if (id >= 0 && id < n)
        std::memcpy(to, x.data + static_cast<std::size_t>(o * n + id) * row, row);
      else
        std::memset(to, 0, row);
    }
}

// The kernels behind the fake's registry: the CPU's, then the fake's own.
const KernelRegistry& real_kernels() {
  static const KernelRegistry registry = [] {
    KernelRegistry r = cpu()->kernels();
    for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean}) {
      r.add(ops::to_device, t, &to_device_kernel);
      r.add(ops::to_host, t, &to_host_kernel);
      r.add(ops::gather, t, &gather_kernel, &fake_gather_message);
    }
    for (DType t : {DType::bf16, DType::f16}) {
      r.add(ops::to_device, t, &to_device_kernel);
      r.add(ops::to_host, t, &to_host_kernel);
    }
    return r;
  }();
  return registry;
}

// The fake whose begin_capture() is in effect, if any.
FakeDevice*& recording_device() {
  static FakeDevice* device = nullptr;
  return device;
}

class FakeRecording final : public RecordedRun {
 public:
  FakeRecording(FakeDevice& device, std::vector<std::function<void()>> tape)
      : device_(device), tape_(std::move(tape)) {}
  bool replay(std::string& reason) override {
    if (device_.stale_next_replay) {
      device_.stale_next_replay = false;
      reason = "the test made it stale";
      return false;
    }
    ++device_.replays;
    for (const auto& call : tape_) call();
    return true;
  }

 private:
  FakeDevice& device_;
  std::vector<std::function<void()>> tape_;
};

}  // namespace

// Every kernel of the fake's registry: finds the real kernel by the op and the dtype it was
// looked up with (kernel_dtype, from the context's types), then runs it, or notes it on the
// tape while a recording is in progress.
void dispatch(const KernelContext& ctx) {
  const Node& node = *ctx.node;
  const DType dtype = (node.inputs.empty() || node.op->key_on_output) ? ctx.out().type.dtype : ctx.in(0).type.dtype;
  const Kernel kernel = real_kernels().find(*node.op, dtype);
  if (!kernel) ctx.fail("fake device: no kernel behind this op and dtype");
  FakeDevice* device = recording_device();
  if (!device) return kernel(ctx);
  if (node.op->name == device->fail_recording_op) ctx.fail("cannot be recorded (the test said so)");
  device->tape_.emplace_back([kernel, ctx] { kernel(ctx); });
}

FakeDevice::FakeDevice() {
  const KernelRegistry& real = real_kernels();
  for (const auto& [op, dtype] : real.keys()) kernels_.add(*op, dtype, &dispatch, real.verdict_message(*op, dtype));
}

FakeDevice::~FakeDevice() {
  if (recording_device() == this) recording_device() = nullptr;
}

std::shared_ptr<std::byte[]> FakeDevice::allocate(std::size_t bytes) {
  auto memory = allocate_aligned(bytes);
  poison(memory.get(), bytes);
  return memory;
}

std::shared_ptr<std::byte[]> FakeDevice::allocate_host_staging(std::size_t bytes) {
  ++staging_allocations;
  return allocate(bytes);
}

void FakeDevice::copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

void FakeDevice::copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

void FakeDevice::clear_verdicts(Verdict* verdicts, std::size_t count) {
  auto clear = [verdicts, count] { poison(reinterpret_cast<std::byte*>(verdicts), count * sizeof(Verdict)); };
  if (recording_device() == this)
    tape_.emplace_back(clear);
  else
    clear();
}

std::byte* FakeDevice::persistent_copy(const Tensor& host) { return persistent_.copy_of(host); }
void FakeDevice::pull(const Tensor& host) { persistent_.pull(host); }
void FakeDevice::push(const Tensor& host) { persistent_.push(host); }

bool FakeDevice::can_capture(std::string_view op, DType, std::string& reason) const {
  if (op != refuse_capture_op) return true;
  reason = "the test said so";
  return false;
}

bool FakeDevice::begin_capture(std::string&) {
  recording_device() = this;
  tape_.clear();
  return true;
}

std::unique_ptr<RecordedRun> FakeDevice::end_capture(std::string&) {
  recording_device() = nullptr;
  ++recordings;
  return std::make_unique<FakeRecording>(*this, std::exchange(tape_, {}));
}

void FakeDevice::discard_capture() {
  recording_device() = nullptr;
  tape_.clear();
  ++discarded;
}

std::string fake_gather_message(const KernelContext& ctx, const Verdict& verdict) {
  const Shape& shape = ctx.in(1).shape();
  std::vector<std::int64_t> position(static_cast<std::size_t>(shape.rank()));
  auto p = static_cast<std::int64_t>(verdict.position);
  for (int d = shape.rank() - 1; d >= 0; --d) {
    position[static_cast<std::size_t>(d)] = p % shape[d];
    p /= shape[d];
  }
  const int axis = ctx.params<AxisParams>().axis;
  return fmt::format(
      "index {} at position [{}] of indices {} is out of range for axis {} of x {}: valid indices are [0, {})",
      static_cast<std::int64_t>(verdict.detail), fmt::join(position, ","), ctx.in(1).type.to_string(), axis,
      ctx.in(0).type.to_string(), ctx.in(0).shape()[axis]);
}

}  // namespace fovea::testing
