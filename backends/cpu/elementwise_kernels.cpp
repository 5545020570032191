// CPU kernels for the elementwise ops: y[i] = f(x[i]) and y[i] = f(a[i'], b[i'']) with
// NumPy broadcasting. The math is the shared functors of ops/functors.h; these loops only
// walk memory. Same-shape and scalar operands take flat loops the compiler vectorizes.
#include <array>
#include <type_traits>

#include "fovea/backends/cpu/broadcast.h"
#include "fovea/backends/cpu/kernels.h"
#include "fovea/ops/functors.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

template <typename T, typename Out, typename F>
void unary_kernel(const KernelContext& ctx) {
  const T* x = ctx.in(0).as<T>();
  Out* y = ctx.out().as<Out>();
  ctx.pool->parallel_for(ctx.out().numel(), kElementwiseGrain, [&](std::int64_t begin, std::int64_t end) {
    const F f{};
    for (std::int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  });
}

// y over one row of `n` elements, with each operand's stride 0 (broadcast) or 1.
template <typename T, typename Out, typename F>
inline void binary_row(const T* a, std::int64_t sa, const T* b, std::int64_t sb, Out* y, std::int64_t n) {
  const F f{};
  if (sa == 1 && sb == 1) {
    for (std::int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = *b;
    for (std::int64_t i = 0; i < n; ++i) y[i] = f(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = *a;
    for (std::int64_t i = 0; i < n; ++i) y[i] = f(av, b[i]);
  } else {
    for (std::int64_t i = 0; i < n; ++i) y[i] = f(a[i * sa], b[i * sb]);
  }
}

template <typename T, typename Out, typename F>
void binary_kernel(const KernelContext& ctx) {
  const TensorArg &A = ctx.in(0), &B = ctx.in(1), &Y = ctx.out();
  const T* a = A.as<T>();
  const T* b = B.as<T>();
  Out* y = Y.as<Out>();
  const std::int64_t n = Y.numel();
  // Fast paths: same shapes, or one side a single element.
  if (A.numel() == n && B.numel() == n) {
    ctx.pool->parallel_for(n, kElementwiseGrain, [&](std::int64_t s, std::int64_t e) {
      binary_row<T, Out, F>(a + s, 1, b + s, 1, y + s, e - s);
    });
    return;
  }
  if (A.numel() == n && B.numel() == 1) {
    ctx.pool->parallel_for(n, kElementwiseGrain, [&](std::int64_t s, std::int64_t e) {
      binary_row<T, Out, F>(a + s, 1, b, 0, y + s, e - s);
    });
    return;
  }
  if (A.numel() == 1 && B.numel() == n) {
    ctx.pool->parallel_for(n, kElementwiseGrain, [&](std::int64_t s, std::int64_t e) {
      binary_row<T, Out, F>(a, 0, b + s, 1, y + s, e - s);
    });
    return;
  }
  const BroadcastLayout<2> layout(Y.shape(), {&A.shape(), &B.shape()});
  const std::int64_t inner = layout.inner(), rows = layout.rows();
  const std::int64_t sa = layout.inner_stride(0), sb = layout.inner_stride(1);
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / std::max<std::int64_t>(inner, 1));
  ctx.pool->parallel_for(rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const auto off = layout.row_offsets(r);
      binary_row<T, Out, F>(a + off[0], sa, b + off[1], sb, y + r * inner, inner);
    }
  });
}

// Integer division and remainder by zero are undefined behaviour in C++: reject them with the
// node's name.
template <typename T, typename F>
void checked_integer_div_kernel(const KernelContext& ctx) {
  const T* b = ctx.in(1).as<T>();
  for (std::int64_t i = 0; i < ctx.in(1).numel(); ++i)
    if (b[i] == 0) ctx.fail(std::is_same_v<F, fn::Div> ? "integer division by zero" : "integer modulo by zero");
  binary_kernel<T, T, F>(ctx);
}

using i32_t = std::int32_t;
using i64_t = std::int64_t;
using bool_t = std::uint8_t;

// The element types each kind of op (ops/elementwise_table.h) has kernels for.
template <typename... Ts>
struct Types {};
template <ElementwiseKind>
struct TypesOf;
template <>
struct TypesOf<ElementwiseKind::numeric> : Types<float, double, i32_t, i64_t> {};
template <>
struct TypesOf<ElementwiseKind::floating> : Types<float, double> {};
template <>
struct TypesOf<ElementwiseKind::logical> : Types<bool_t> {};
template <>
struct TypesOf<ElementwiseKind::comparison> : Types<float, double, i32_t, i64_t, bool_t> {};
template <>
struct TypesOf<ElementwiseKind::classify> : Types<float, double> {};

// Registers f's kernel for each element type of its kind; comparisons, classifications and
// logical ops write bool.
template <typename F, ElementwiseKind Kind, typename... Ts>
void add_unary(KernelRegistry& r, const OpDef& op, Types<Ts...>) {
  constexpr bool writes_bool = Kind == ElementwiseKind::classify || Kind == ElementwiseKind::logical;
  (r.add(op, dtype_of<Ts>, &unary_kernel<Ts, std::conditional_t<writes_bool, bool_t, Ts>, F>), ...);
}
template <typename F, ElementwiseKind Kind, typename... Ts>
void add_binary(KernelRegistry& r, const OpDef& op, Types<Ts...>) {
  constexpr bool writes_bool = Kind == ElementwiseKind::comparison || Kind == ElementwiseKind::logical;
  (r.add(op, dtype_of<Ts>, &binary_kernel<Ts, std::conditional_t<writes_bool, bool_t, Ts>, F>), ...);
}

}  // namespace

// One registration per row of the table; then integer division and remainders, which check
// their divisors.
void register_elementwise_kernels(KernelRegistry& r) {
#define FOVEA_ADD_UNARY(name, functor, kind, ...) \
  add_unary<functor, ElementwiseKind::kind>(r, ops::name, TypesOf<ElementwiseKind::kind>{});
#define FOVEA_ADD_BINARY(name, functor, kind, ...) \
  add_binary<functor, ElementwiseKind::kind>(r, ops::name, TypesOf<ElementwiseKind::kind>{});
  FOVEA_UNARY_OPS(FOVEA_ADD_UNARY)
  FOVEA_BINARY_OPS(FOVEA_ADD_BINARY)
#undef FOVEA_ADD_UNARY
#undef FOVEA_ADD_BINARY
  r.add(ops::div, DType::i32, &checked_integer_div_kernel<i32_t, fn::Div>);
  r.add(ops::div, DType::i64, &checked_integer_div_kernel<i64_t, fn::Div>);
  r.add(ops::mod, DType::i32, &checked_integer_div_kernel<i32_t, fn::Mod>);
  r.add(ops::mod, DType::i64, &checked_integer_div_kernel<i64_t, fn::Mod>);
  r.add(ops::fmod, DType::i32, &checked_integer_div_kernel<i32_t, fn::Fmod>);
  r.add(ops::fmod, DType::i64, &checked_integer_div_kernel<i64_t, fn::Fmod>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
