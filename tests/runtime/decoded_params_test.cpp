// Decoded attributes (core/op.h): an op's attributes are read into its typed struct once, when a
// schedule is compiled, and every run's kernel reads that struct.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>

#include "testing.h"

using namespace fovea;

namespace {

// A test op, y = x · factor + offset, whose decoder counts its calls.
std::atomic<int> decodes{0};

struct AffineParams {
  float factor = 1, offset = 0;
  static AffineParams decode(const DecodeContext& context) {
    ++decodes;
    return {static_cast<float>(context.attrs.get_float("factor")),
            static_cast<float>(context.attrs.get_float("offset"))};
  }
};

std::vector<TensorType> infer_same(const InferContext& ctx) { return {ctx.input(0)}; }

const OpDef affine{.name = "test_affine",
                   .min_inputs = 1,
                   .max_inputs = 1,
                   .infer = infer_same,
                   .differentiable = false,
                   .decode = decode_as<AffineParams>};

void affine_kernel(const KernelContext& ctx) {
  const AffineParams& p = ctx.params<AffineParams>();
  const float* x = ctx.in(0).as<float>();
  float* y = ctx.out().as<float>();
  for (std::int64_t i = 0; i < ctx.out().numel(); ++i) y[i] = x[i] * p.factor + p.offset;
}

// The CPU backend with the test op's kernel added.
class CpuWithAffine final : public Backend {
 public:
  CpuWithAffine() : cpu_(cpu()) {
    for (const auto& [op, dtype] : cpu_->kernels().keys()) kernels_.add(*op, dtype, cpu_->kernels().find(*op, dtype));
    kernels_.add(affine, f32, &affine_kernel);
  }
  std::string_view name() const override { return "cpu+affine"; }
  Device device() const override { return Device::cpu; }
  const KernelRegistry& kernels() const override { return kernels_; }
  ThreadPool& pool() override { return cpu_->pool(); }
  std::shared_ptr<std::byte[]> allocate(std::size_t bytes) override { return cpu_->allocate(bytes); }
  void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) override {
    cpu_->copy_from_host(dst, src, bytes);
  }
  void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) override {
    cpu_->copy_to_host(dst, src, bytes);
  }

 private:
  std::shared_ptr<Backend> cpu_;
  KernelRegistry kernels_;
};

}  // namespace

TEST_CASE("an op's attributes are decoded once when the graph is compiled, not on every run") {
  Graph g("decode");
  Value x = g.placeholder("x", f32, {3});
  const std::array<Value, 1> in{x};
  Value y = g.apply1(affine, in, {{"factor", 2.0}, {"offset", 0.5}}, Loc::current());
  decodes = 0;
  Executable exe = compile(g, {y}, std::make_shared<CpuWithAffine>());
  CHECK(decodes == 1);
  const Tensor feed = Tensor::from<float>({1, 2, 3}, {3});
  for (int run = 0; run < 3; ++run) {
    const std::vector<Tensor> out = exe.run({{x, feed}});
    const auto y_values = out[0].data<float>();
    CHECK(std::vector<float>(y_values.begin(), y_values.end()) == std::vector<float>{2.5f, 4.5f, 6.5f});
  }
  CHECK(decodes == 1);
}

TEST_CASE("attributes a decoder cannot read fail at compile time, naming the node and the user's line") {
  Graph g("decode");
  Value x = g.placeholder("x", f32, {3});
  const std::array<Value, 1> in{x};
  Value y = g.apply1(affine, in, {{"factor", 2.0}}, Loc::current());  // no offset
  const int line = __LINE__ - 1;
  try {
    (void)compile(g, {y}, std::make_shared<CpuWithAffine>());
    FAIL("compile accepted a node whose attributes cannot be decoded");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("test_affine") != std::string::npos);
    CHECK(message.find("offset") != std::string::npos);
    CHECK(message.find("decoded_params_test.cpp:" + std::to_string(line)) != std::string::npos);
  }
}

TEST_CASE("no kernel reads a node's attribute list: every backend source reads decoded params") {
  // KernelContext has no attrs(); this catches the way around it, node->attrs.
  const std::filesystem::path root = std::filesystem::path(FOVEA_FUZZ_DIR).parent_path() / "backends";
  const std::regex reads_attributes(R"((->|\.)attrs\b)");
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path());
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      CAPTURE(entry.path().string() + ":" + std::to_string(number));
      CHECK_FALSE(std::regex_search(line, reads_attributes));
    }
    ++files;
  }
  CHECK(files > 40);
}
