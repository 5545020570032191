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

template <typename T, typename F>
__global__ void unary_kernel(const T* x, T* y, std::int64_t n) {
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

template <typename T, typename F>
bool unary_as(const UnaryArgs& p) {
  unary_kernel<T, F><<<blocks_for(p.n), kThreads, 0, p.stream>>>(static_cast<const T*>(p.x), static_cast<T*>(p.y), p.n);
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
      return unary_as<float, F>(p);
    case Element::f64:
      return unary_as<double, F>(p);
    case Element::i32:
      return unary_as<std::int32_t, F>(p);
    case Element::i64:
      return unary_as<std::int64_t, F>(p);
    default:
      return false;
  }
}

template <typename F>
bool unary_floating(Element t, const UnaryArgs& p) {
  switch (t) {
    case Element::f32:
      return unary_as<float, F>(p);
    case Element::f64:
      return unary_as<double, F>(p);
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

}  // namespace

bool launch_unary(UnaryOp op, Element type, const void* x, void* y, std::int64_t n, void* stream) {
  if (n == 0) return true;
  const UnaryArgs p{x, y, n, as_stream(stream)};
  switch (op) {
    case UnaryOp::neg:
      return unary_numeric<fn::Neg>(type, p);
    case UnaryOp::abs:
      return unary_numeric<fn::Abs>(type, p);
    case UnaryOp::relu:
      return unary_numeric<fn::Relu>(type, p);
    case UnaryOp::exp:
      return unary_floating<fn::Exp>(type, p);
    case UnaryOp::log:
      return unary_floating<fn::Log>(type, p);
    case UnaryOp::sqrt:
      return unary_floating<fn::Sqrt>(type, p);
    case UnaryOp::rsqrt:
      return unary_floating<fn::Rsqrt>(type, p);
    case UnaryOp::tanh:
      return unary_floating<fn::Tanh>(type, p);
    case UnaryOp::sigmoid:
      return unary_floating<fn::Sigmoid>(type, p);
    case UnaryOp::sin:
      return unary_floating<fn::Sin>(type, p);
    case UnaryOp::cos:
      return unary_floating<fn::Cos>(type, p);
    case UnaryOp::logical_not:
      return type == Element::boolean && unary_as<std::uint8_t, fn::LogicalNot>(p);
  }
  return false;
}

bool launch_binary(BinaryOp op, Element type, const void* a, const void* b, void* y, std::int64_t n,
                   const Walk<2>& walk, void* stream) {
  if (n == 0) return true;
  const BinaryArgs p{a, b, y, n, walk, as_stream(stream)};
  switch (op) {
    case BinaryOp::add:
      return binary_numeric<fn::Add>(type, p);
    case BinaryOp::sub:
      return binary_numeric<fn::Sub>(type, p);
    case BinaryOp::mul:
      return binary_numeric<fn::Mul>(type, p);
    case BinaryOp::div:
      return binary_numeric<fn::Div>(type, p);
    case BinaryOp::pow:
      return binary_floating<fn::Pow>(type, p);
    case BinaryOp::maximum:
      return binary_numeric<fn::Maximum>(type, p);
    case BinaryOp::minimum:
      return binary_numeric<fn::Minimum>(type, p);
    case BinaryOp::equal:
      return comparison<fn::Equal>(type, p);
    case BinaryOp::not_equal:
      return comparison<fn::NotEqual>(type, p);
    case BinaryOp::less:
      return comparison<fn::Less>(type, p);
    case BinaryOp::less_equal:
      return comparison<fn::LessEqual>(type, p);
    case BinaryOp::greater:
      return comparison<fn::Greater>(type, p);
    case BinaryOp::greater_equal:
      return comparison<fn::GreaterEqual>(type, p);
    case BinaryOp::logical_and:
      return logical<fn::LogicalAnd>(type, p);
    case BinaryOp::logical_or:
      return logical<fn::LogicalOr>(type, p);
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
    case Opcode::neg:
      return fn::Neg{}(a);
    case Opcode::abs:
      return fn::Abs{}(a);
    case Opcode::relu:
      return fn::Relu{}(a);
    case Opcode::exp:
      return fn::Exp{}(a);
    case Opcode::log:
      return fn::Log{}(a);
    case Opcode::sqrt:
      return fn::Sqrt{}(a);
    case Opcode::rsqrt:
      return fn::Rsqrt{}(a);
    case Opcode::tanh:
      return fn::Tanh{}(a);
    case Opcode::sigmoid:
      return fn::Sigmoid{}(a);
    case Opcode::sin:
      return fn::Sin{}(a);
    case Opcode::cos:
      return fn::Cos{}(a);
    case Opcode::logical_not:
      return a != T(0) ? T(0) : T(1);
    case Opcode::copy:
      return a;
    case Opcode::to_bool:
      return a != T(0) ? T(1) : T(0);
    case Opcode::add:
      return fn::Add{}(a, b);
    case Opcode::sub:
      return fn::Sub{}(a, b);
    case Opcode::mul:
      return fn::Mul{}(a, b);
    case Opcode::div:
      return fn::Div{}(a, b);
    case Opcode::pow:
      return fn::Pow{}(a, b);
    case Opcode::maximum:
      return fn::Maximum{}(a, b);
    case Opcode::minimum:
      return fn::Minimum{}(a, b);
    case Opcode::equal:
      return fn::Equal{}(a, b) ? T(1) : T(0);
    case Opcode::not_equal:
      return fn::NotEqual{}(a, b) ? T(1) : T(0);
    case Opcode::less:
      return fn::Less{}(a, b) ? T(1) : T(0);
    case Opcode::less_equal:
      return fn::LessEqual{}(a, b) ? T(1) : T(0);
    case Opcode::greater:
      return fn::Greater{}(a, b) ? T(1) : T(0);
    case Opcode::greater_equal:
      return fn::GreaterEqual{}(a, b) ? T(1) : T(0);
    case Opcode::logical_and:
      return (a != T(0) && b != T(0)) ? T(1) : T(0);
    case Opcode::logical_or:
      return (a != T(0) || b != T(0)) ? T(1) : T(0);
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
