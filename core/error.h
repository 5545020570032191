// fovea::Error: the one exception type a user sees for their own mistakes.
//
// A message names what went wrong and, when a graph node is involved, the op, the node's
// scoped name and the user's file:line where the node was built:
//
//   fovea::Error: add: shapes f32[32,10] and f32[784] do not broadcast (dim -1: 10 vs 784)
//     node 'mlp/l1/add' (op add), built at examples/quickstart/main.cpp:12
#pragma once

#include <source_location>
#include <stdexcept>
#include <string>

namespace fovea {

// Where a node was built, or where a call was made: a plain copy of the user's
// std::source_location, so that it outlives nothing and prints as "file:line".
struct SourceLoc {
  const char* file = "";
  unsigned line = 0;
  SourceLoc() = default;
  SourceLoc(const std::source_location& l) : file(l.file_name()), line(l.line()) {}  // NOLINT
  bool known() const { return line != 0; }
  // "main.cpp:12" with the directory part kept as given by the compiler.
  std::string to_string() const;
};

class Error : public std::runtime_error {
 public:
  // A message that involves no node (a bad file, a bad argument).
  explicit Error(const std::string& message);
  // A message about a node: the op, its scoped name and where the user built it.
  Error(const std::string& message, std::string op, std::string node, SourceLoc where);

  const std::string& message() const { return message_; }
  const std::string& op() const { return op_; }
  const std::string& node() const { return node_; }
  const SourceLoc& where() const { return where_; }

 private:
  std::string message_, op_, node_;
  SourceLoc where_;
};

}  // namespace fovea
