// The instruction-set levels (core/cpu_features.h): names, FOVEA_ISA's parsing, and the CPU
// backend of each level.
#include <doctest/doctest.h>

#include <fovea/backends/backend.h>
#include <fovea/core/cpu_features.h>
#include <fovea/core/error.h>

#include <cstdlib>
#include <string>

using namespace fovea;

TEST_CASE("FOVEA_ISA names parse to their level and back") {
  for (Isa isa : kAllIsas) CHECK(parse_isa(isa_name(isa)) == isa);
  CHECK(choose_isa(std::nullopt) == detected_isa());
  CHECK(choose_isa("portable") == Isa::portable);
  CHECK(isa_supported(Isa::portable));
  CHECK(active_isa() == choose_isa(std::getenv("FOVEA_ISA") ? std::optional<std::string_view>(std::getenv("FOVEA_ISA"))
                                                            : std::nullopt));
}

TEST_CASE("an unknown FOVEA_ISA name is an Error listing the names") {
  for (const char* bad : {"", "AVX2", "avx", "sse4", "avx512f", "native"}) {
    try {
      choose_isa(bad);
      FAIL("no error for '" << bad << "'");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("expected portable, avx2 or avx512") != std::string::npos);
    }
  }
}

TEST_CASE("a level the CPU lacks is an Error saying what it runs, for FOVEA_ISA and for cpu()") {
  for (Isa isa : kAllIsas) {
    if (isa_supported(isa)) {
      CHECK(cpu({.isa = isa})->kernels().size() == cpu({.isa = Isa::portable})->kernels().size());
      CHECK(cpu({.isa = isa}) == cpu({.isa = isa}));  // one backend per level for the process
      continue;
    }
    const std::string runs = "runs " + std::string(isa_name(detected_isa())) + " at best";
    CHECK_THROWS_WITH_AS(choose_isa(isa_name(isa)), doctest::Contains(runs.c_str()), Error);
    CHECK_THROWS_WITH_AS(cpu({.isa = isa}), doctest::Contains(runs.c_str()), Error);
  }
}
