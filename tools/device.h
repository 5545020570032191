// DeviceOptions: the --device and --mixed-precision options of the training examples.
//
//   tools::DeviceOptions device;
//   device.add_to(app);                               // --device cpu|cuda, --mixed-precision
//   auto backend = device.backend();                  // fovea::Error saying why when no GPU
//   auto train = passes::compile_training_step(g, {loss}, build, backend,
//                                              {.pipeline = device.pipeline()});
//
// On a GPU, the parameters and the optimizer's state live on the device: an example brings
// them back with Executable::pull_state() before saving a checkpoint, and sends a loaded one
// over with push_state().
#pragma once

#include <memory>
#include <string>

#include <fovea/engine.h>
#include <CLI/CLI.hpp>

namespace fovea::tools {

struct DeviceOptions {
  std::string device = "cpu";
  bool mixed_precision = false;

  void add_to(CLI::App& app, bool offer_mixed_precision = true) {
    app.add_option("--device", device, "where to train: cpu or cuda (an NVIDIA GPU)")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    if (offer_mixed_precision)
      app.add_flag("--mixed-precision", mixed_precision,
                   "attention in bf16 with f32 sums (tensor cores on a GPU; slower on the CPU, which has none)");
  }

  std::shared_ptr<Backend> backend() const { return device == "cuda" ? cuda() : cpu(); }

  passes::PipelineOptions pipeline() const {
    passes::PipelineOptions options;
    if (mixed_precision) options.mixed_precision = passes::MixedPrecisionOptions{};
    return options;
  }
};

}  // namespace fovea::tools
