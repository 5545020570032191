#pragma once

#include "fovea/ops/elementwise.h"

namespace fovea {}  // namespace fovea
