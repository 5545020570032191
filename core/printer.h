#pragma once

#include "fovea/core/graph.h"

namespace fovea {}  // namespace fovea
