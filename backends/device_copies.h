// DeviceCopies: the one device copy of each host buffer that a device backend keeps, written
// once for every device backend (the CUDA one, and the tests' FakeDevice).
//
// Parameters, state and constants live in host Tensors owned by the graph. A device backend
// makes one copy of each on first use and hands the same copy to every executable on it, so
// that a training step and an evaluation see the same weights (Backend::persistent_copy); pull()
// and push() move the values between a copy and its host Tensor.
//
// Copies are keyed by the host buffer's address. A copy holds its host Tensor, so the address
// cannot be reused while the copy exists; a copy whose Tensor nobody else holds any more
// belongs to a graph that is gone, and is dropped at the next lookup, before its address can
// come back for a new tensor.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

#include "fovea/core/tensor.h"

namespace fovea {

class Backend;

class DeviceCopies {
 public:
  // `device` allocates and copies; it must outlive this object (a backend owns its copies).
  explicit DeviceCopies(Backend& device) : device_(device) {}

  // The device copy of `host`, made (and filled) on first use.
  std::byte* copy_of(const Tensor& host);
  // host ← its copy, or copy ← host; nothing when `host` has no copy.
  void pull(const Tensor& host);
  void push(const Tensor& host);
  // Drops every copy (a backend shutting down).
  void clear();

 private:
  struct Copy {
    Tensor host;  // keeps the host buffer, and so its address, alive while the copy exists
    std::shared_ptr<std::byte[]> data;
  };
  Backend& device_;
  std::mutex mutex_;
  std::map<const std::byte*, Copy> copies_;  // by host buffer address
};

}  // namespace fovea
