// Bytes as a file with a path, held in memory (Linux memfd_create): the loaders under test read
// paths, and a memory file spares the disk a write per fuzz input.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "fovea/core/error.h"

namespace fovea::fuzz {

class MemoryFile {
 public:
  MemoryFile(const std::uint8_t* data, std::size_t size) : fd_(::memfd_create("fovea-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error(fmt::format("memfd_create: {}", std::strerror(errno)));
    while (size > 0) {
      const ssize_t n = ::write(fd_, data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd_);
        throw std::runtime_error(fmt::format("writing a memory file: {}", std::strerror(errno)));
      }
      data += n;
      size -= static_cast<std::size_t>(n);
    }
  }
  ~MemoryFile() { ::close(fd_); }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;

  // A path that opens the bytes afresh, from their start.
  std::string path() const { return fmt::format("/proc/self/fd/{}", fd_); }

 private:
  int fd_;
};

}  // namespace fovea::fuzz
