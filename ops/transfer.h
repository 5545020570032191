// to_device and to_host: the copies between the host and a device's memory, as steps of a
// compiled schedule.
//
//   to_device(x)   y = x, x in host memory (the staging buffer run() copies a feed into),
//                  y in the device's (the placeholder's buffer in the arena)
//   to_host(x)     y = x, x in the device's memory (an output's arena buffer, or a parameter's
//                  device copy), y in host memory (the staging buffer run() hands results from)
//
// Why they are ops: a run on a device is copies in, kernels, copies out. When the copies are
// steps of the schedule like the kernels, the executable prints them (Executable::to_string),
// times them (set_profiling) and records them into a CUDA Graph with everything else, so that a
// recorded training step is one launch from the host, copies included; and a backend serves
// them from its kernel registry like any other op (backends/backend.h).
//
// Nobody builds them into a graph: compile() adds a to_device step for every fed placeholder and
// a to_host step for every requested output when the backend's memory is not the host's
// (runtime/executable.h). So there is no builder function, no gradient rule, and no CPU kernel:
// the CPU reads feeds and writes outputs in place.
#pragma once

#include "fovea/core/op.h"

namespace fovea::ops {

// One input, one output of the same type.
extern const OpDef to_device, to_host;

}  // namespace fovea::ops
