// The CPU kernel of fused_elementwise (ops/fused_elementwise.h): one pass over memory for a
// whole chain of elementwise ops.
//
// The output's flat index range is cut into tiles of kTile elements. For one tile, each
// instruction of the program runs as its own tight loop over the tile, reading and writing
// REGISTERS that are kTile-element arrays (a few KB: they stay in L1). So the loops are the
// same vectorized loops the one-op kernels run, but the intermediate values never leave the
// cache, and memory is touched only to read the inputs once and write the outputs once:
//
//   for each tile [s, s + kTile):                    (tiles in parallel on the pool)
//     load:  in_k  → register k                      (a pointer into x when it is full-size,
//                                                     else a gather of its broadcast elements)
//     run:   r_j = op_j(r_a, r_b, r_c)  for each instruction j, over the tile
//     store: out_k ← its register                    (as T, or as bool: r ≠ 0)
//
// A program that matches one of compiled_programs.h's entries skips the interpreter: after the
// load, one straight-line loop over the tile computes every instruction per element, its values
// in vector registers, and stores the outputs (run_compiled_tile below).
//
// Booleans live in the registers as 0 or 1 of type T. `uniform` draws element i from Philox
// block i/4, lane i%4, with the arithmetic of the random_uniform kernel, so a fused dropout
// mask equals the unfused one bit for bit.
#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "fovea/backends/cpu/compiled_programs.h"
#include "fovea/backends/cpu/kernels.h"
#include "fovea/backends/cpu/philox_lanes.h"
#include "fovea/core/philox.h"
#include "fovea/ops/functors.h"
#include "fovea/ops/fused_elementwise.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

using fused::Opcode;

// Elements per tile: 256 for the interpreter, whose slots (one per live value) must stay in L1;
// 1024 for a compiled loop, which needs slots for gathered inputs and uniforms only and pays its
// per-tile costs (the call, the vector loop's remainder) a quarter as often: GELU's backward went
// from 1.12-1.31 to 1.01-1.06 ms per 2^20 elements.
constexpr std::int64_t kTile = 256;
constexpr std::int64_t kCompiledTile = 1024;

// How one input is read: its strides against the output's dims, with adjacent dims merged
// where the input walks them as one (both contiguous, or both broadcast).
struct InputLayout {
  enum class Kind { full, scalar, strided } kind = Kind::full;
  std::vector<std::int64_t> dims, strides;  // collapsed; innermost last
};

InputLayout layout_of(const Shape& in, const Shape& out) {
  const int rank = out.rank();
  std::vector<std::int64_t> d(out.begin(), out.end()), s(static_cast<std::size_t>(rank), 0);
  std::int64_t stride = 1;
  for (int i = in.rank() - 1, o = rank - 1; i >= 0; --i, --o) {
    if (in[i] != 1) s[static_cast<std::size_t>(o)] = stride;
    stride *= in[i];
  }
  InputLayout l;
  if (in.numel() == out.numel()) return l;  // same elements in the same order
  if (in.numel() == 1) {
    l.kind = InputLayout::Kind::scalar;
    return l;
  }
  l.kind = InputLayout::Kind::strided;
  for (int o = 0; o < rank; ++o) {
    const auto so = static_cast<std::size_t>(o);
    if (d[so] == 1) continue;
    if (!l.dims.empty()) {
      std::int64_t& last_stride = l.strides.back();
      std::int64_t& last_dim = l.dims.back();
      const bool both_broadcast = last_stride == 0 && s[so] == 0;
      const bool contiguous = s[so] != 0 && last_stride == s[so] * d[so];
      if (both_broadcast || contiguous) {
        last_dim *= d[so];
        last_stride = s[so];
        continue;
      }
    }
    l.dims.push_back(d[so]);
    l.strides.push_back(s[so]);
  }
  return l;
}

template <typename T, typename Src>
T as_register(Src v) {
  if constexpr (std::is_same_v<Src, std::uint8_t>)
    return v ? T(1) : T(0);
  else
    return static_cast<T>(v);
}

// Copies the input's elements for output indices [begin, begin + n) into `dst`.
template <typename T, typename Src>
void gather(const InputLayout& l, const Src* src, std::int64_t begin, std::int64_t n, T* dst) {
  const std::size_t rank = l.dims.size();
  std::int64_t idx[16];
  std::int64_t rest = begin, offset = 0;
  for (std::size_t d = rank; d-- > 0;) {
    idx[d] = rest % l.dims[d];
    rest /= l.dims[d];
    offset += idx[d] * l.strides[d];
  }
  const std::int64_t inner = l.dims[rank - 1], inner_stride = l.strides[rank - 1];
  std::int64_t done = 0;
  while (done < n) {
    const std::int64_t take = std::min(inner - idx[rank - 1], n - done);
    if (inner_stride == 0) {
      const T v = as_register<T>(src[offset]);
      for (std::int64_t j = 0; j < take; ++j) dst[done + j] = v;
    } else {
      for (std::int64_t j = 0; j < take; ++j) dst[done + j] = as_register<T>(src[offset + j * inner_stride]);
    }
    done += take;
    // Advance the odometer by `take` along the innermost dim, carrying outwards.
    offset += take * inner_stride;
    idx[rank - 1] += take;
    for (std::size_t d = rank - 1; d > 0 && idx[d] == l.dims[d]; --d) {
      offset -= idx[d] * l.strides[d];
      idx[d] = 0;
      idx[d - 1] += 1;
      offset += l.strides[d - 1];
    }
  }
}

// One instruction over a tile. Comparisons and logical ops return 0 or 1 (bool's storage), which
// in a register is T's 0 or 1: written as a select, which GCC vectorises (a compare and a masked
// move), where the conversion of the 8-bit result to T left the loop scalar (vcomiss, setae,
// vcvtusi2ss per element: most of a fused dropout's time).
template <typename Result>
constexpr bool is_flag = std::is_same_v<Result, std::uint8_t> || std::is_same_v<Result, bool>;

template <typename T, typename F>
void unary(const T* a, T* r, std::int64_t n) {
  const F f{};
  if constexpr (is_flag<decltype(f(a[0]))>)
    for (std::int64_t i = 0; i < n; ++i) r[i] = f(a[i]) ? T(1) : T(0);
  else
    for (std::int64_t i = 0; i < n; ++i) r[i] = static_cast<T>(f(a[i]));
}
template <typename T, typename F>
void binary(const T* a, const T* b, T* r, std::int64_t n) {
  const F f{};
  if constexpr (is_flag<decltype(f(a[0], b[0]))>)
    for (std::int64_t i = 0; i < n; ++i) r[i] = f(a[i], b[i]) ? T(1) : T(0);
  else
    for (std::int64_t i = 0; i < n; ++i) r[i] = static_cast<T>(f(a[i], b[i]));
}

// --- Compiled programs (compiled_programs.h) --------------------------------------------------

// One instruction on one element, with the interpreter's functors and conversions (unary() and
// binary() above, execute() below), so both give the same bits.
template <typename T, fused::Opcode op>
T apply(T a, T b, T c) {
  auto value = [](auto result) {
    if constexpr (is_flag<decltype(result)>)
      return result ? T(1) : T(0);
    else
      return static_cast<T>(result);
  };
  // clang-format off
#define FOVEA_COMPILED_UNARY(name, functor, ...) if constexpr (op == Opcode::name) return value(functor{}(a)); else
#define FOVEA_COMPILED_BINARY(name, functor, ...) if constexpr (op == Opcode::name) return value(functor{}(a, b)); else
  FOVEA_UNARY_OPS(FOVEA_COMPILED_UNARY)
  FOVEA_BINARY_OPS(FOVEA_COMPILED_BINARY)
#undef FOVEA_COMPILED_UNARY
#undef FOVEA_COMPILED_BINARY
  // clang-format on
  if constexpr (op == Opcode::copy) {
    return a;
  } else if constexpr (op == Opcode::to_bool) {
    return a != T(0) ? T(1) : T(0);
  } else {
    static_assert(op == Opcode::where, "every opcode but uniform (drawn beforehand) has a case");
    return a != T(0) ? b : c;
  }
}

// Element i of a compiled loop: its operands and its temporaries r.
template <typename T, std::size_t inputs, std::size_t immediates, std::size_t temporaries>
struct Element {
  const std::array<const T*, inputs>& in;
  const std::array<T, immediates>& k;
  T (&r)[temporaries];
  std::int64_t i;

  template <compiled::Operand o>
  T operand() const {
    using Kind = compiled::Operand::Kind;
    if constexpr (o.kind == Kind::input)
      return in[static_cast<std::size_t>(o.index)][i];
    else if constexpr (o.kind == Kind::immediate)
      return k[static_cast<std::size_t>(o.index)];
    else if constexpr (o.kind == Kind::temporary)
      return r[o.index];
    else
      return T(0);  // none
  }
  // `drawn`: the instruction's uniforms, when it is one.
  template <compiled::Instruction instruction>
  T compute(const T* drawn) const {
    if constexpr (instruction.op == Opcode::uniform)
      return drawn[i];
    else
      return apply<T, instruction.op>(operand<instruction.a>(), operand<instruction.b>(), operand<instruction.c>());
  }
  template <compiled::Output output>
  void store(void* out) const {
    const T v = r[output.temporary];
    if constexpr (output.is_bool)
      static_cast<std::uint8_t*>(out)[i] = v != T(0) ? 1 : 0;
    else
      static_cast<T*>(out)[i] = v;
  }
};

// The entry `spec` over n elements: in[k] points at input k's elements (in place or gathered
// into its slot, as for the interpreter), k holds the immediates, drawn[j] the uniforms of
// instruction j when it is one, out[k] output k (as T, or as bool). With every register index a
// constant, the compiler keeps the temporaries in vector registers. ivdep: element i reads only
// element i of each input, and an output shares memory with an input only exactly (the memory
// plan's "in place"), so no element's store reaches another element's load.
template <typename T, const auto& spec>
void run_compiled_tile(const T* const* in, const T* k, const T* const* drawn, void* const* out, std::int64_t n) {
  constexpr std::size_t count = spec.code.size(), outputs = spec.out.size();
  constexpr auto inputs = static_cast<std::size_t>(spec.inputs), immediates = static_cast<std::size_t>(spec.immediates);
  std::array<const T*, inputs> x;
  std::array<T, immediates> constants;
  std::array<const T*, count> uniforms;
  std::array<void*, outputs> y;
  std::copy_n(in, inputs, x.begin());
  std::copy_n(k, immediates, constants.begin());
  std::copy_n(drawn, count, uniforms.begin());
  std::copy_n(out, outputs, y.begin());
#pragma GCC ivdep
  for (std::int64_t i = 0; i < n; ++i) {
    T r[count];
    const Element<T, inputs, immediates, count> e{x, constants, r, i};
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      ((r[j] = e.template compute<spec.code[j]>(uniforms[j])), ...);
    }(std::make_index_sequence<count>{});
    [&]<std::size_t... o>(std::index_sequence<o...>) {
      (e.template store<spec.out[o]>(y[o]), ...);
    }(std::make_index_sequence<outputs>{});
  }
}

template <typename T>
using CompiledTile = void (*)(const T* const*, const T*, const T* const*, void* const*, std::int64_t);

// The loops, in compiled_programs.h's order.
template <typename T>
constexpr CompiledTile<T> kCompiledTiles[] = {
#define FOVEA_COMPILED_TILE(spec) &run_compiled_tile<T, compiled::spec>,
    FOVEA_COMPILED_PROGRAMS(FOVEA_COMPILED_TILE)
#undef FOVEA_COMPILED_TILE
};

template <typename T>
struct Run {
  const fused::Program& program;
  const KernelContext& ctx;
  std::vector<InputLayout> layouts;
  std::vector<std::uint64_t> streams;  // per random stream, with its step offset added

  // Storage: a tile-sized slot per register that needs one. Full-size T inputs are read in
  // place (no slot); a temporary's slot is handed to a later instruction once its last reader
  // has run, so the slots in use (and so the L1 footprint) follow the program's live values,
  // not its length.
  std::vector<std::size_t> slot_of;  // per register; kNoSlot when it needs none
  std::size_t slots = 0;
  static constexpr std::size_t kNoSlot = ~std::size_t{0};

  // The compiled loop of the entry the program matched (compiled_programs.h), or null: interpret.
  CompiledTile<T> compiled_tile = nullptr;
  std::vector<T> constants;  // the entry's immediates
  std::int64_t tile = kTile;

  Run(const fused::Program& p, const KernelContext& c, bool use_compiled) : program(p), ctx(c) {
    const Shape out(p.shape);
    for (std::size_t k = 0; k < c.inputs.size(); ++k) layouts.push_back(layout_of(c.in(k).shape(), out));
    for (const fused::RandomStream& rs : p.randoms) {
      std::uint64_t stream = static_cast<std::uint64_t>(rs.stream);
      if (rs.step_input >= 0)
        stream += static_cast<std::uint64_t>(*c.in(static_cast<std::size_t>(rs.step_input)).as<std::int64_t>());
      streams.push_back(stream);
    }
    if (use_compiled) {
      const compiled::Match match = compiled::match_compiled_program(p);
      if (match.entry >= 0) {
        compiled_tile = kCompiledTiles<T>[match.entry];
        tile = kCompiledTile;
        for (std::int32_t r : match.immediates) constants.push_back(immediate(r));
      }
    }
    assign_input_slots();
    if (compiled_tile != nullptr)
      assign_uniform_slots();
    else
      assign_slots();
  }

  T immediate(std::int32_t r) const {
    return static_cast<T>(program.immediates[static_cast<std::size_t>(r - program.first_immediate())]);
  }

  // Inputs that are not full-size T are gathered (or converted from bool) into a slot.
  void assign_input_slots() {
    slot_of.assign(static_cast<std::size_t>(program.registers()), kNoSlot);
    for (std::size_t k = 0; k < layouts.size(); ++k) {
      const DType t = ctx.in(k).type.dtype;
      if (t == DType::i64 || (layouts[k].kind == InputLayout::Kind::full && t != DType::boolean)) continue;
      slot_of[k] = slots++;
    }
  }

  // A compiled loop keeps its temporaries in registers: only the uniforms, drawn before it, need
  // a slot.
  void assign_uniform_slots() {
    for (std::size_t j = 0; j < program.code.size(); ++j)
      if (program.code[j].op == Opcode::uniform)
        slot_of[static_cast<std::size_t>(program.first_temporary()) + j] = slots++;
  }

  void assign_slots() {
    for (std::size_t j = 0; j < program.immediates.size(); ++j)
      slot_of[static_cast<std::size_t>(program.first_immediate()) + j] = slots++;
    // The last instruction reading each temporary (its own, when nothing reads it); outputs
    // live to the end of the tile.
    const auto first = static_cast<std::size_t>(program.first_temporary());
    const std::size_t count = program.code.size();
    std::vector<std::size_t> last_use(count);
    for (std::size_t j = 0; j < count; ++j) {
      last_use[j] = j;
      const fused::Instruction& in = program.code[j];
      for (std::int32_t r : {in.op == Opcode::uniform ? -1 : in.a, in.b, in.c})
        if (r >= 0 && static_cast<std::size_t>(r) >= first) last_use[static_cast<std::size_t>(r) - first] = j;
    }
    for (std::int32_t r : program.outputs)
      if (static_cast<std::size_t>(r) >= first) last_use[static_cast<std::size_t>(r) - first] = count;
    std::vector<std::vector<std::size_t>> dying(count);  // temporaries last read by instruction j
    for (std::size_t t = 0; t < count; ++t)
      if (last_use[t] < count) dying[last_use[t]].push_back(t);
    std::vector<std::size_t> free;
    for (std::size_t j = 0; j < count; ++j) {
      std::size_t slot;
      if (!free.empty()) {
        slot = free.back();
        free.pop_back();
      } else {
        slot = slots++;
      }
      slot_of[first + j] = slot;
      // Slots whose value was last read by this instruction are free from the next one on (not
      // for this one's result: a loop whose output aliases an input would not vectorize).
      for (std::size_t t : dying[j]) free.push_back(slot_of[first + t]);
    }
  }

  // Runs the program over output elements [begin, end), tile by tile.
  void range(std::int64_t begin, std::int64_t end) const {
    const auto registers = static_cast<std::size_t>(program.registers());
    std::vector<T> storage(slots * static_cast<std::size_t>(tile));
    std::vector<const T*> reg(registers);
    auto slot = [&](std::size_t r) { return storage.data() + slot_of[r] * static_cast<std::size_t>(tile); };
    if (compiled_tile != nullptr) {
      std::vector<const T*> drawn(program.code.size(), nullptr);
      std::vector<void*> out(program.outputs.size());
      for (std::int64_t s = begin; s < end; s += tile) {
        const std::int64_t n = std::min(tile, end - s);
        load_inputs(s, n, reg, slot);
        for (std::size_t j = 0; j < program.code.size(); ++j) {
          const fused::Instruction& in = program.code[j];
          if (in.op != Opcode::uniform) continue;
          T* r = slot(static_cast<std::size_t>(program.first_temporary()) + j);
          draw(in, immediate(in.b), immediate(in.c), r, s, n);
          drawn[j] = r;
        }
        for (std::size_t k = 0; k < out.size(); ++k)
          out[k] = program.output_is_bool[k] ? static_cast<void*>(ctx.out(k).as<std::uint8_t>() + s)
                                             : static_cast<void*>(ctx.out(k).as<T>() + s);
        compiled_tile(reg.data(), constants.data(), drawn.data(), out.data(), n);
      }
      return;
    }
    // Immediates: filled once.
    for (std::size_t j = 0; j < program.immediates.size(); ++j) {
      const std::size_t r = static_cast<std::size_t>(program.first_immediate()) + j;
      T* values = slot(r);
      std::fill(values, values + kTile, static_cast<T>(program.immediates[j]));
      reg[r] = values;
    }
    for (std::int64_t s = begin; s < end; s += kTile) {
      const std::int64_t n = std::min(kTile, end - s);
      load_inputs(s, n, reg, slot);
      for (std::size_t j = 0; j < program.code.size(); ++j) {
        const std::size_t target = static_cast<std::size_t>(program.first_temporary()) + j;
        T* r = slot(target);
        execute(program.code[j], reg, r, s, n);
        reg[target] = r;
      }
      store_outputs(s, n, reg);
    }
  }

  template <typename Slot>
  void load_inputs(std::int64_t s, std::int64_t n, std::vector<const T*>& reg, const Slot& slot) const {
    for (std::size_t k = 0; k < layouts.size(); ++k) {
      const TensorArg& in = ctx.in(k);
      if (in.type.dtype == DType::i64) continue;  // a random stream offset, not a register
      const InputLayout& l = layouts[k];
      const bool is_bool = in.type.dtype == DType::boolean;
      if (l.kind == InputLayout::Kind::full && !is_bool) {
        reg[k] = in.as<T>() + s;
        continue;
      }
      T* r = slot(k);
      if (l.kind == InputLayout::Kind::full) {
        const std::uint8_t* b = in.as<std::uint8_t>() + s;
        for (std::int64_t i = 0; i < n; ++i) r[i] = b[i] ? T(1) : T(0);
      } else if (l.kind == InputLayout::Kind::scalar) {
        const T v = is_bool ? as_register<T>(*in.as<std::uint8_t>()) : *in.as<T>();
        std::fill(r, r + n, v);
      } else if (is_bool) {
        gather<T>(l, in.as<std::uint8_t>(), s, n, r);
      } else {
        gather<T>(l, in.as<T>(), s, n, r);
      }
      reg[k] = r;
    }
  }

  void execute(const fused::Instruction& in, const std::vector<const T*>& reg, T* r, std::int64_t s,
               std::int64_t n) const {
    const T* a = in.a >= 0 && in.op != Opcode::uniform ? reg[static_cast<std::size_t>(in.a)] : nullptr;
    const T* b = in.b >= 0 ? reg[static_cast<std::size_t>(in.b)] : nullptr;
    const T* c = in.c >= 0 ? reg[static_cast<std::size_t>(in.c)] : nullptr;
    switch (in.op) {
#define FOVEA_FUSED_UNARY(name, functor, ...) \
  case Opcode::name:                          \
    return unary<T, functor>(a, r, n);
#define FOVEA_FUSED_BINARY(name, functor, ...) \
  case Opcode::name:                           \
    return binary<T, functor>(a, b, r, n);
      FOVEA_UNARY_OPS(FOVEA_FUSED_UNARY)
      FOVEA_BINARY_OPS(FOVEA_FUSED_BINARY)
#undef FOVEA_FUSED_UNARY
#undef FOVEA_FUSED_BINARY
      case Opcode::copy:
        std::copy(a, a + n, r);
        return;
      case Opcode::to_bool:
        for (std::int64_t i = 0; i < n; ++i) r[i] = a[i] != T(0) ? T(1) : T(0);
        return;
      case Opcode::where:
        for (std::int64_t i = 0; i < n; ++i) r[i] = a[i] != T(0) ? b[i] : c[i];
        return;
      case Opcode::uniform:
        return draw(in, b[0], c[0], r, s, n);
    }
    ctx.fail("fused_elementwise: unknown opcode");
  }

  // uniform over [low, high) for output elements [s, s + n).
  void draw(const fused::Instruction& in, T low, T high, T* r, std::int64_t s, std::int64_t n) const {
    const auto slot = static_cast<std::size_t>(in.a);
    philox_uniform_run<T>(static_cast<std::uint64_t>(program.randoms[slot].seed), streams[slot],
                          static_cast<double>(low), static_cast<double>(high), s, n, r);
  }

  void store_outputs(std::int64_t s, std::int64_t n, const std::vector<const T*>& reg) const {
    for (std::size_t k = 0; k < program.outputs.size(); ++k) {
      const T* r = reg[static_cast<std::size_t>(program.outputs[k])];
      if (program.output_is_bool[k]) {
        std::uint8_t* y = ctx.out(k).as<std::uint8_t>() + s;
        for (std::int64_t i = 0; i < n; ++i) y[i] = r[i] != T(0) ? 1 : 0;
      } else {
        std::memcpy(ctx.out(k).as<T>() + s, r, static_cast<std::size_t>(n) * sizeof(T));
      }
    }
  }
};

template <typename T, bool use_compiled>
void run_program(const KernelContext& ctx) {
  const fused::Program& program = ctx.params<FusedElementwiseParams>().program;
  const Run<T> run(program, ctx, use_compiled);
  const std::int64_t n = Shape(program.shape).numel();
  // Tiles are the unit of work; a thread takes whole tiles.
  const std::int64_t tile = run.tile, tiles = (n + tile - 1) / tile;
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / (tile * 4));
  ctx.pool->parallel_for(tiles, grain,
                         [&](std::int64_t t0, std::int64_t t1) { run.range(t0 * tile, std::min(n, t1 * tile)); });
}

// Keyed on output 0's dtype (which may be bool): the element type is the node's "dtype".
template <bool use_compiled>
void fused_elementwise_kernel(const KernelContext& ctx) {
  if (ctx.params<FusedElementwiseParams>().dtype == DType::f64)
    run_program<double, use_compiled>(ctx);
  else
    run_program<float, use_compiled>(ctx);
}

}  // namespace

void register_fused_elementwise_kernels(KernelRegistry& r, bool compiled_programs) {
  const Kernel kernel = compiled_programs ? &fused_elementwise_kernel<true> : &fused_elementwise_kernel<false>;
  for (DType t : {DType::f32, DType::f64, DType::boolean}) r.add(ops::fused_elementwise, t, kernel);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
