// Report: the final figures of an example or benchmark. They are printed last, one per
// line, and written to the --json file when one was asked for (written to a temporary file
// and renamed, so a reader never sees half a report).
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace fovea::tools {

class Report {
 public:
  template <typename T> void set(const std::string& key, const T& value) { json_[key] = value; }
  const nlohmann::json& json() const { return json_; }

  // Prints every figure ("key: value") and writes the JSON file if `path` is not empty.
  void finish(const std::string& path) const {
    std::printf("\n== results ==\n");
    for (const auto& [key, value] : json_.items()) std::printf("%s: %s\n", key.c_str(), value.dump().c_str());
    if (path.empty()) return;
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp);
      if (!out) throw std::runtime_error("cannot write " + tmp);
      out << json_.dump(2) << "\n";
    }
    std::filesystem::rename(tmp, path);
    std::printf("wrote %s\n", path.c_str());
  }

 private:
  nlohmann::json json_ = nlohmann::json::object();
};

}  // namespace fovea::tools
