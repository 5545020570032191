// The kernels of the collective ops (ops/collective.h), written once for every backend: what
// differs between host and device memory (a copy, a fill, scratch, the stream) comes in
// CollectiveMemory, and the communicator does the exchange.
//
// Each kernel copies its input into its output and exchanges the output in place, so the
// input, which the memory plan may hand to another value right after this step, is never
// touched by the communicator. all_gather and reduce_scatter along an axis other than 0 go
// through scratch: the communicator's buffers hold one rank's part after another, and the
// values want the parts side by side along the axis, so a strided copy rearranges them.
//
// The asynchronous pair: all_reduce_start hands its output buffer to the communicator and
// remembers the ticket under the buffer's address; all_reduce_wait, whose input is that buffer
// (and whose output is the same bytes: a view), takes the ticket and waits for it.
#pragma once

#include <cstddef>
#include <functional>

#include "fovea/backends/backend.h"

namespace fovea {

struct CollectiveMemory {
  // Copies `rows` rows of `row_bytes` each, rows `source_pitch` and `target_pitch` bytes apart.
  void (*copy_rows)(void* target, std::size_t target_pitch, const void* source, std::size_t source_pitch,
                    std::size_t row_bytes, std::size_t rows, void* stream) = nullptr;
  void (*zero)(void* data, std::size_t bytes, void* stream) = nullptr;
  // `bytes` of scratch in this memory, valid until the next call.
  std::function<void*(std::size_t bytes)> scratch;
  void* stream = nullptr;
};

// Registers the collective ops' kernels, for every dtype they carry, with kernels that run
// them through `run_collective` with the backend's memory.
void register_collective_kernels(KernelRegistry& registry, Kernel kernel);

// What every backend's collective kernel does, given its memory.
void run_collective(const KernelContext& ctx, const CollectiveMemory& memory);

// CollectiveMemory for host memory.
const CollectiveMemory& host_collective_memory();

// For a backend that runs an all_reduce_start to completion at once (staging device memory
// through a host communicator): tells the wait on `buffer` that there is nothing to wait for.
void remember_finished_all_reduce(const void* buffer);

}  // namespace fovea
