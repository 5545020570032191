#include "fovea/core/cpu_features.h"

#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "fovea/core/error.h"

namespace fovea {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable:
      return "portable";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "unknown";
}

Isa detected_isa() {
#if defined(__x86_64__) && defined(FOVEA_ISA_VARIANTS)
  // The psABI level names test every feature of the level at once, and the OS's support for
  // the register state (XCR0) with them.
  if (__builtin_cpu_supports("x86-64-v4")) return Isa::avx512;
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::avx2;
#endif
  return Isa::portable;
}

bool isa_supported(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(detected_isa()); }

Isa parse_isa(std::string_view name) {
  for (Isa isa : kAllIsas)
    if (name == isa_name(isa)) return isa;
  throw Error(fmt::format("FOVEA_ISA: unknown instruction set '{}' (expected portable, avx2 or avx512)", name));
}

void require_isa(Isa isa) {
  if (isa_supported(isa)) return;
  throw Error(fmt::format("instruction set {} is not supported by this CPU, which runs {} at best", isa_name(isa),
                          isa_name(detected_isa())));
}

Isa choose_isa(std::optional<std::string_view> requested) {
  if (!requested) return detected_isa();
  const Isa isa = parse_isa(*requested);
  if (!isa_supported(isa))
    throw Error(fmt::format("FOVEA_ISA={}: this CPU does not run {}; it runs {} at best", *requested, isa_name(isa),
                            isa_name(detected_isa())));
  return isa;
}

Isa active_isa() {
  static const Isa isa = [] {
    const char* value = std::getenv("FOVEA_ISA");
    return choose_isa(value ? std::optional<std::string_view>(value) : std::nullopt);
  }();
  return isa;
}

}  // namespace fovea
