// KernelRegistry: kernels are found by the op's definition, not by its name, and every row of
// the elementwise table (ops/elementwise_table.h) reaches the CPU's registry and the fused
// programs' instruction set.
#include <fovea/ops/fused_elementwise.h>

#include "testing.h"

using namespace fovea;

namespace {

void kernel_a(const KernelContext&) {}
void kernel_b(const KernelContext&) {}

// Two distinct ops that happen to share a name (an extension's "scale", a test's op).
const OpDef twin_a{.name = "twin"};
const OpDef twin_b{.name = "twin"};

}  // namespace

TEST_CASE("the kernel registry keys kernels by the op's definition, so two ops of one name keep their own kernels") {
  KernelRegistry r;
  r.add(twin_a, f32, &kernel_a);
  CHECK((r.find(twin_a, f32) == &kernel_a));
  CHECK((r.find(twin_b, f32) == nullptr));
  CHECK((r.find(twin_a, f64) == nullptr));
  r.add(twin_b, f32, &kernel_b);
  CHECK((r.find(twin_a, f32) == &kernel_a));
  CHECK((r.find(twin_b, f32) == &kernel_b));
  CHECK(r.size() == 2);
}

TEST_CASE("every row of the elementwise table has an OpDef of its name, an opcode of that name, and CPU kernels") {
  const KernelRegistry& cpu_kernels = cpu()->kernels();
  auto check_row = [&](const OpDef& op, std::string_view name, DType dtype) {
    CAPTURE(name);
    CHECK(op.name == name);
    CHECK(op.elementwise);
    fused::Opcode code{};
    REQUIRE(fused::opcode_of(op.name, code));
    CHECK(fused::opcode_name(code) == name);
    CHECK((cpu_kernels.find(op, dtype) != nullptr));
  };
  auto first_dtype = [](ElementwiseKind kind) { return kind == ElementwiseKind::logical ? boolean : f32; };
#define FOVEA_CHECK_ROW(name, functor, kind, ...) check_row(ops::name, #name, first_dtype(ElementwiseKind::kind));
  FOVEA_UNARY_OPS(FOVEA_CHECK_ROW)
  FOVEA_BINARY_OPS(FOVEA_CHECK_ROW)
#undef FOVEA_CHECK_ROW
  // Names map to their own opcodes, and the program-only opcodes are not ops.
  fused::Opcode code{};
  CHECK(fused::opcode_of("where", code));
  CHECK(code == fused::Opcode::where);
  CHECK_FALSE(fused::opcode_of("copy", code));
  CHECK_FALSE(fused::opcode_of("uniform", code));
}
