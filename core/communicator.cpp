#include "fovea/core/communicator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "fovea/core/error.h"

namespace fovea {

namespace {

// FOVEA_COLLECTIVE_TIMEOUT in seconds, or ten minutes (what PyTorch gives NCCL collectives).
std::chrono::milliseconds default_timeout() {
  if (const char* text = std::getenv("FOVEA_COLLECTIVE_TIMEOUT")) {
    char* end = nullptr;
    const double seconds = std::strtod(text, &end);
    if (end != text && *end == '\0' && seconds > 0)
      return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
    throw Error(fmt::format("FOVEA_COLLECTIVE_TIMEOUT='{}' is not a positive number of seconds", text));
  }
  return std::chrono::minutes(10);
}

struct Registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<Communicator>> entries;
};
Registry& registry() {
  static Registry instance;
  return instance;
}

}  // namespace

std::string_view reduction_name(Reduction reduction) { return reduction == Reduction::sum ? "sum" : "mean"; }

Communicator::Communicator() : timeout_(default_timeout()) {}

void Communicator::check_root(const char* collective, int root) const {
  if (root < 0 || root >= size())
    throw Error(fmt::format("{}: root {} is not a rank of a communicator of {} rank(s)", collective, root, size()));
}

void SoloCommunicator::broadcast(void*, std::int64_t, DType, int root, void*) { check_root("broadcast", root); }
void SoloCommunicator::reduce(void*, std::int64_t, DType, int root, void*) { check_root("reduce", root); }

void SoloCommunicator::all_gather(const void* send, void* receive, std::int64_t count, DType dtype, void*) {
  std::memcpy(receive, send, static_cast<std::size_t>(count) * dtype_size(dtype));
}

void SoloCommunicator::reduce_scatter(const void* send, void* receive, std::int64_t count, DType dtype, Reduction,
                                      void*) {
  std::memcpy(receive, send, static_cast<std::size_t>(count) * dtype_size(dtype));
}

void SoloCommunicator::wait(std::uint64_t ticket, void*) {
  if (ticket == 0 || ticket > tickets_) throw Error(fmt::format("wait: ticket {} was never issued", ticket));
}

int register_communicator(std::shared_ptr<Communicator> communicator) {
  if (!communicator) throw Error("register_communicator: no communicator");
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  const auto found = std::find(r.entries.begin(), r.entries.end(), communicator);
  if (found != r.entries.end()) return static_cast<int>(found - r.entries.begin());
  r.entries.push_back(std::move(communicator));
  return static_cast<int>(r.entries.size() - 1);
}

std::shared_ptr<Communicator> registered_communicator(std::int64_t id) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (id < 0 || id >= static_cast<std::int64_t>(r.entries.size()))
    throw Error(fmt::format("no communicator is registered under {} (register_communicator)", id));
  return r.entries[static_cast<std::size_t>(id)];
}

}  // namespace fovea
