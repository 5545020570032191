// CUDA kernels for the elementwise ops, over the functors shared with the CPU backend
// (ops/functors.h): the GPU computes exactly the formulas the CPU tests check.
//
//   unary:   y[i] = f(x[i])
//   binary:  y[i] = f(a[i'], b[i''])   with i', i'' the broadcast positions of i (launch.h, Walk)
//
// One thread per element, grid-stride. Each (op, element type) pair the CPU backend registers
// is one instantiation here; launch_unary and launch_binary map the runtime pair to it.
#include "fovea/backends/cuda/device.cuh"
#include "fovea/core/philox.h"
#include "fovea/ops/functors.h"
#include "fovea/ops/fused_opcodes.h"

namespace fovea::cuda_backend {

namespace {

template <typename T, typename Out, typename F>
__global__ void unary_kernel(const T* x, Out* y, std::int64_t n) {
  const F f{};
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) y[i] = f(x[i]);
}

template <typename T, typename Out, typename F>
__global__ void binary_kernel(const T* a, const T* b, Out* y, std::int64_t n, const __grid_constant__ Walk<2> walk) {
  const F f{};
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) {
    std::int64_t offset[2];
    walk_offsets(walk, i, offset);
    y[i] = f(a[offset[0]], b[offset[1]]);
  }
}

// first = min { p : b[p] == 0 }
template <typename T>
__global__ void find_zero_kernel(const T* b, std::int64_t n, unsigned long long* first) {
  for (std::int64_t i = first_element(); i < n; i += grid_stride())
    if (b[i] == T(0)) record_first(first, i);
}

// The arguments of one launch, passed to the dispatch helpers below.
struct UnaryArgs {
  const void* x;
  void* y;
  std::int64_t n;
  cudaStream_t stream;
};

struct BinaryArgs {
  const void* a;
  const void* b;
  void* y;
  std::int64_t n;
  const Walk<2>& walk;
  cudaStream_t stream;
};

template <typename T, typename Out, typename F>
bool unary_as(const UnaryArgs& p) {
  unary_kernel<T, Out, F>
      <<<blocks_for(p.n), kThreads, 0, p.stream>>>(static_cast<const T*>(p.x), static_cast<Out*>(p.y), p.n);
  return true;
}

template <typename T, typename Out, typename F>
bool binary_as(const BinaryArgs& p) {
  binary_kernel<T, Out, F><<<blocks_for(p.n), kThreads, 0, p.stream>>>(
      static_cast<const T*>(p.a), static_cast<const T*>(p.b), static_cast<Out*>(p.y), p.n, p.walk);
  return true;
}

// f over f32, f64, i32, i64 (numeric) or over f32, f64 (floating).
template <typename F>
bool unary_numeric(Element t, const UnaryArgs& p) {
  switch (t) {
    case Element::f32:
      return unary_as<float, float, F>(p);
    case Element::f64:
      return unary_as<double, double, F>(p);
    case Element::i32:
      return unary_as<std::int32_t, std::int32_t, F>(p);
    case Element::i64:
      return unary_as<std::int64_t, std::int64_t, F>(p);
    default:
      return false;
  }
}

template <typename F>
bool unary_floating(Element t, const UnaryArgs& p) {
  switch (t) {
    case Element::f32:
      return unary_as<float, float, F>(p);
    case Element::f64:
      return unary_as<double, double, F>(p);
    default:
      return false;
  }
}

// Classifications (isnan, isinf): f32 or f64 in, bool (one byte) out.
template <typename F>
bool unary_classify(Element t, const UnaryArgs& p) {
  switch (t) {
    case Element::f32:
      return unary_as<float, std::uint8_t, F>(p);
    case Element::f64:
      return unary_as<double, std::uint8_t, F>(p);
    default:
      return false;
  }
}

template <typename F>
bool binary_numeric(Element t, const BinaryArgs& p) {
  switch (t) {
    case Element::f32:
      return binary_as<float, float, F>(p);
    case Element::f64:
      return binary_as<double, double, F>(p);
    case Element::i32:
      return binary_as<std::int32_t, std::int32_t, F>(p);
    case Element::i64:
      return binary_as<std::int64_t, std::int64_t, F>(p);
    default:
      return false;
  }
}

template <typename F>
bool binary_floating(Element t, const BinaryArgs& p) {
  switch (t) {
    case Element::f32:
      return binary_as<float, float, F>(p);
    case Element::f64:
      return binary_as<double, double, F>(p);
    default:
      return false;
  }
}

// Comparisons: any dtype in, bool (one byte) out.
template <typename F>
bool comparison(Element t, const BinaryArgs& p) {
  switch (t) {
    case Element::f32:
      return binary_as<float, std::uint8_t, F>(p);
    case Element::f64:
      return binary_as<double, std::uint8_t, F>(p);
    case Element::i32:
      return binary_as<std::int32_t, std::uint8_t, F>(p);
    case Element::i64:
      return binary_as<std::int64_t, std::uint8_t, F>(p);
    case Element::boolean:
      return binary_as<std::uint8_t, std::uint8_t, F>(p);
  }
  return false;
}

template <typename F>
bool logical(Element t, const BinaryArgs& p) {
  return t == Element::boolean && binary_as<std::uint8_t, std::uint8_t, F>(p);
}

// The element types of each kind of op (ops/elementwise_table.h); only the kind's own are
// instantiated.
template <typename F, ElementwiseKind Kind>
bool unary_of_kind(Element t, const UnaryArgs& p) {
  if constexpr (Kind == ElementwiseKind::numeric)
    return unary_numeric<F>(t, p);
  else if constexpr (Kind == ElementwiseKind::floating)
    return unary_floating<F>(t, p);
  else if constexpr (Kind == ElementwiseKind::classify)
    return unary_classify<F>(t, p);
  else
    return t == Element::boolean && unary_as<std::uint8_t, std::uint8_t, F>(p);
}

template <typename F, ElementwiseKind Kind>
bool binary_of_kind(Element t, const BinaryArgs& p) {
  if constexpr (Kind == ElementwiseKind::numeric)
    return binary_numeric<F>(t, p);
  else if constexpr (Kind == ElementwiseKind::floating)
    return binary_floating<F>(t, p);
  else if constexpr (Kind == ElementwiseKind::comparison)
    return comparison<F>(t, p);
  else
    return logical<F>(t, p);
}

}  // namespace

bool launch_unary(UnaryOp op, Element type, const void* x, void* y, std::int64_t n, void* stream) {
  if (n == 0) return true;
  const UnaryArgs p{x, y, n, as_stream(stream)};
  switch (op) {
#define FOVEA_LAUNCH_UNARY(name, functor, kind, ...) \
  case UnaryOp::name:                                \
    return unary_of_kind<functor, ElementwiseKind::kind>(type, p);
    FOVEA_UNARY_OPS(FOVEA_LAUNCH_UNARY)
#undef FOVEA_LAUNCH_UNARY
  }
  return false;
}

bool launch_binary(BinaryOp op, Element type, const void* a, const void* b, void* y, std::int64_t n,
                   const Walk<2>& walk, void* stream) {
  if (n == 0) return true;
  const BinaryArgs p{a, b, y, n, walk, as_stream(stream)};
  switch (op) {
#define FOVEA_LAUNCH_BINARY(name, functor, kind, ...) \
  case BinaryOp::name:                                \
    return binary_of_kind<functor, ElementwiseKind::kind>(type, p);
    FOVEA_BINARY_OPS(FOVEA_LAUNCH_BINARY)
#undef FOVEA_LAUNCH_BINARY
  }
  return false;
}

bool launch_find_zero(Element type, const void* b, std::int64_t n, unsigned long long* first, void* stream) {
  if (n == 0) return true;
  switch (type) {
    case Element::i32:
      find_zero_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<const std::int32_t*>(b), n,
                                                                          first);
      return true;
    case Element::i64:
      find_zero_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<const std::int64_t*>(b), n,
                                                                          first);
      return true;
    default:
      return false;
  }
}

// --- fused_elementwise -------------------------------------------------------------------------
//
// One thread per output element runs the whole program in registers (the per-thread array
// below; the compiler keeps it in local memory, cached in L1), with the same functors and the
// same Philox draws as the CPU kernel: element i of a `uniform` is lane i%4 of block i/4.
namespace {

constexpr int kFusedMaxRegisters = kFusedMaxInputs + kFusedMaxImmediates + kFusedMaxCode;

template <typename T>
__device__ T fused_apply(int op, T a, T b, T c) {
  using fused::Opcode;
  switch (static_cast<Opcode>(op)) {
    // A functor's result converts to T: comparisons and logical ops give 0 or 1.
#define FOVEA_FUSED_UNARY(name, functor, ...) \
  case Opcode::name:                          \
    return static_cast<T>(functor{}(a));
#define FOVEA_FUSED_BINARY(name, functor, ...) \
  case Opcode::name:                           \
    return static_cast<T>(functor{}(a, b));
    FOVEA_UNARY_OPS(FOVEA_FUSED_UNARY)
    FOVEA_BINARY_OPS(FOVEA_FUSED_BINARY)
#undef FOVEA_FUSED_UNARY
#undef FOVEA_FUSED_BINARY
    case Opcode::copy:
      return a;
    case Opcode::to_bool:
      return a != T(0) ? T(1) : T(0);
    case Opcode::where:
      return a != T(0) ? b : c;
    case Opcode::uniform:
      break;  // handled by the caller
  }
  return T(0);
}

template <typename T>
__global__ void fused_elementwise_kernel(const __grid_constant__ FusedProgram p, std::int64_t n) {
  T reg[kFusedMaxRegisters];
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) {
    for (int k = 0; k < p.inputs; ++k) {
      const FusedInput& in = p.input[k];
      if (in.kind == 2) continue;
      std::int64_t offset[1];
      walk_offsets(in.walk, i, offset);
      reg[k] = in.kind == 1 ? (static_cast<const std::uint8_t*>(in.data)[offset[0]] ? T(1) : T(0))
                            : static_cast<const T*>(in.data)[offset[0]];
    }
    for (int j = 0; j < p.immediates; ++j) reg[p.inputs + j] = static_cast<T>(p.immediate[j]);
    const int first_temporary = p.inputs + p.immediates;
    for (int j = 0; j < p.code; ++j) {
      T r;
      if (p.op[j] == static_cast<int>(fused::Opcode::uniform)) {
        const int slot = p.a[j];
        std::uint64_t stream = p.random_stream[slot];
        if (p.random_step_input[slot] >= 0)
          stream +=
              static_cast<std::uint64_t>(*static_cast<const std::int64_t*>(p.input[p.random_step_input[slot]].data));
        const double low = static_cast<double>(reg[p.b[j]]), high = static_cast<double>(reg[p.c[j]]);
        r = static_cast<T>(low +
                           (high - low) * philox::uniform(p.random_seed[slot], stream, static_cast<std::uint64_t>(i)));
      } else {
        const T a = p.a[j] >= 0 ? reg[p.a[j]] : T(0), b = p.b[j] >= 0 ? reg[p.b[j]] : T(0),
                c = p.c[j] >= 0 ? reg[p.c[j]] : T(0);
        r = fused_apply<T>(p.op[j], a, b, c);
      }
      reg[first_temporary + j] = r;
    }
    for (int k = 0; k < p.outputs; ++k) {
      const T v = reg[p.output_register[k]];
      if (p.output_is_bool[k])
        static_cast<std::uint8_t*>(p.output[k])[i] = v != T(0) ? 1 : 0;
      else
        static_cast<T*>(p.output[k])[i] = v;
    }
  }
}

}  // namespace

bool launch_fused_elementwise(Element type, const FusedProgram& program, std::int64_t n, void* stream) {
  if (program.inputs > kFusedMaxInputs || program.immediates > kFusedMaxImmediates || program.code > kFusedMaxCode ||
      program.outputs > kFusedMaxOutputs || program.randoms > kFusedMaxRandoms)
    return false;
  if (n == 0) return true;
  switch (type) {
    case Element::f32:
      fused_elementwise_kernel<float><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(program, n);
      return true;
    case Element::f64:
      fused_elementwise_kernel<double><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(program, n);
      return true;
    default:
      return false;
  }
}

}  // namespace fovea::cuda_backend
