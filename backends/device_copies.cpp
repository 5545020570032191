#include "fovea/backends/device_copies.h"

#include <iterator>

#include "fovea/backends/backend.h"

namespace fovea {

std::byte* DeviceCopies::copy_of(const Tensor& host) {
  const std::lock_guard lock(mutex_);
  for (auto it = copies_.begin(); it != copies_.end();)
    it = it->second.host.is_unique() ? copies_.erase(it) : std::next(it);
  if (auto it = copies_.find(host.raw()); it != copies_.end()) return it->second.data.get();
  Copy copy{host, device_.allocate(host.nbytes())};
  device_.copy_from_host(copy.data.get(), host.raw(), host.nbytes());
  std::byte* data = copy.data.get();
  copies_.emplace(host.raw(), std::move(copy));
  return data;
}

void DeviceCopies::pull(const Tensor& host) {
  const std::lock_guard lock(mutex_);
  if (auto it = copies_.find(host.raw()); it != copies_.end())
    device_.copy_to_host(const_cast<std::byte*>(host.raw()), it->second.data.get(), host.nbytes());
}

void DeviceCopies::push(const Tensor& host) {
  const std::lock_guard lock(mutex_);
  if (auto it = copies_.find(host.raw()); it != copies_.end())
    device_.copy_from_host(it->second.data.get(), host.raw(), host.nbytes());
}

void DeviceCopies::clear() {
  const std::lock_guard lock(mutex_);
  copies_.clear();
}

}  // namespace fovea
