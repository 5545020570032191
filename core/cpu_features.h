// Which x86 instruction set the CPU kernels run with, chosen when the process starts.
//
// The library is compiled for plain x86-64, so that one binary runs on any x86-64 machine.
// The CPU backend's kernels (backends/cpu/*_kernels.cpp) are compiled once per Isa below, and
// the CPU backend registers the kernels of the active one (docs/architecture.md, "Instruction
// sets"). The levels are those of the x86-64 psABI:
//
//   portable  x86-64 (SSE2), what every x86-64 CPU has;
//   avx2      x86-64-v3: AVX, AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE;
//   avx512    x86-64-v4: v3 plus AVX-512 F, BW, CD, DQ and VL.
//
// FOVEA_ISA=portable|avx2|avx512 picks a lower level than the CPU's best (to compare them, or
// to rule a kernel's vector code out when chasing a bug); asking for one the CPU lacks is an
// error rather than a crash on the first instruction it cannot run.
#pragma once

#include <optional>
#include <string_view>

namespace fovea {

// Ordered: each level includes the ones before it.
enum class Isa { portable, avx2, avx512 };

inline constexpr Isa kAllIsas[] = {Isa::portable, Isa::avx2, Isa::avx512};

// "portable", "avx2" or "avx512": the names FOVEA_ISA takes.
std::string_view isa_name(Isa isa);

// The best level this CPU runs, with the operating system saving the wider registers (on x86,
// GCC's __builtin_cpu_supports checks XCR0 through xgetbv, not only cpuid's feature bits).
// Portable where the library was built without the other levels (another CPU or compiler).
Isa detected_isa();

// Whether this CPU can run code compiled for `isa`.
bool isa_supported(Isa isa);

// The Isa a name stands for; throws fovea::Error listing the names for any other.
Isa parse_isa(std::string_view name);

// The level FOVEA_ISA would choose were it set to `requested` (nullopt: unset, the detected
// level). Throws fovea::Error for an unknown name or a level the CPU lacks, saying what it has.
Isa choose_isa(std::optional<std::string_view> requested);

// Throws fovea::Error unless this CPU runs `isa`, saying what it has.
void require_isa(Isa isa);

// choose_isa of the environment's FOVEA_ISA, read on the first call; the level fovea::cpu()
// runs its kernels with.
Isa active_isa();

}  // namespace fovea
