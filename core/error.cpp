#include "fovea/core/error.h"

#include <fmt/format.h>

namespace fovea {

std::string SourceLoc::to_string() const {
  return known() ? fmt::format("{}:{}", file, line) : std::string("<unknown location>");
}

Error::Error(const std::string& message) : std::runtime_error(message), message_(message) {}

static std::string describe(const std::string& message, const std::string& op,
                            const std::string& node, const SourceLoc& where) {
  std::string s = fmt::format("{}: {}", op, message);
  if (!node.empty()) s += fmt::format("\n  node '{}' (op {})", node, op);
  if (where.known()) s += fmt::format(", built at {}", where.to_string());
  return s;
}

Error::Error(const std::string& message, std::string op, std::string node, SourceLoc where)
    : std::runtime_error(describe(message, op, node, where)),
      message_(message),
      op_(std::move(op)),
      node_(std::move(node)),
      where_(where) {}

}  // namespace fovea
