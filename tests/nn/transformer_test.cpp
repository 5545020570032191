// Transformer layers and models (nn/transformer.h): each block is the residual composition of
// its sub-layers, decoders are causal, every layer and model passes the gradient check, and a
// tiny GPT learns.
#include <cmath>
#include <string>
#include <vector>

#include "gradcheck.h"

using namespace fovea;

namespace {

nn::BlockConfig tiny_block(bool pre_norm, double dropout = 0.0) {
  return {.d_model = 4,
          .heads = 2,
          .d_ff = 8,
          .dropout = dropout,
          .pre_norm = pre_norm,
          .activation = nn::Activation::gelu,
          .dtype = f64};
}

nn::GPT::Config tiny_gpt(double dropout = 0.0) {
  return {
      .vocab = 7, .d_model = 8, .heads = 2, .d_ff = 16, .layers = 1, .max_len = 4, .dropout = dropout, .dtype = f64};
}

nn::Transformer::Config tiny_transformer(bool pre_norm = true, bool learned_positions = false) {
  return {.source_vocab = 7,
          .target_vocab = 7,
          .d_model = 8,
          .heads = 2,
          .d_ff = 16,
          .layers = 1,
          .max_len = 4,
          .dropout = 0.0,
          .pre_norm = pre_norm,
          .activation = nn::Activation::gelu,
          .learned_positions = learned_positions,
          .dtype = f64};
}

// Small random values in every bias and LayerNorm β, so that their gradients are not checked
// only at a symmetric starting point.
void randomize_parameters(Graph& g, std::uint64_t seed) {
  for (Value p : g.parameters())
    if (p.name().ends_with("/bias") || p.name().ends_with("/beta"))
      g.parameter_value(p) = testing::random_tensor(p.dtype(), p.shape(), seed++, -0.2, 0.2);
}

// Checks the gradients of every parameter of the graph (see testing::check_parameter_gradients).
void check_parameter_gradients(Graph& g, Value y, const Feeds& feeds, double tolerance = 1e-6) {
  testing::check_parameter_gradients(g, y, g.parameters(), feeds, tolerance);
}

using testing::error_of;

std::string here(int line) { return "transformer_test.cpp:" + std::to_string(line); }

const Tensor source_ids = Tensor::from<std::int64_t>({1, 5, 2, 6, 0, 3, 3, 4}, {2, 4});
const Tensor target_ids = Tensor::from<std::int64_t>({2, 2, 6, 1, 4, 0, 5, 3}, {2, 4});

}  // namespace

// --- Encoder layer --------------------------------------------------------------------------

TEST_CASE("an encoder layer is the residual composition of its sub-layers, pre-norm and post-norm") {
  for (bool pre_norm : {true, false}) {
    CAPTURE(pre_norm);
    Graph g;
    nn::TransformerEncoderLayer layer(g, "layer0", tiny_block(pre_norm));
    randomize_parameters(g, 1);
    CHECK(layer.self_attn.q_proj.weight.name() == "layer0/self_attn/q_proj/weight");
    CHECK(layer.feed_forward.up.weight.name() == "layer0/feed_forward/up/weight");
    CHECK(layer.norm2.gamma.name() == "layer0/norm2/gamma");
    Value x = g.placeholder("x", f64, {2, 3, 4});
    Value probs;
    Value y = layer(x, {}, {}, &probs);
    CHECK(y.shape() == Shape{2, 3, 4});
    CHECK(probs.shape() == Shape{2, 2, 3, 3});

    auto scope = g.scope("reference");
    Value want;
    if (pre_norm) {
      const Value h = layer.norm1(x);
      const Value x1 = x + layer.self_attn(h, h);
      want = x1 + layer.feed_forward(layer.norm2(x1));
    } else {
      const Value x1 = layer.norm1(x + layer.self_attn(x, x));
      want = layer.norm2(x1 + layer.feed_forward(x1));
    }
    const auto got = testing::run(g, {y, want}, {{x, testing::random_tensor(f64, {2, 3, 4}, 2)}});
    testing::check_close(got[0], got[1], 1e-12, 1e-12);
  }
}

TEST_CASE("the encoder layer passes the gradient check, pre-norm and post-norm, with and without dropout") {
  for (bool pre_norm : {true, false}) {
    CAPTURE(pre_norm);
    testing::gradcheck("encoder layer",
                       [&](Graph& g, const std::vector<Value>& x) {
                         nn::TransformerEncoderLayer layer(g, "layer", tiny_block(pre_norm));
                         randomize_parameters(g, 3);
                         return layer(x[0], nn::causal_mask(g, 3, 3, f64));
                       },
                       {{Shape{2, 3, 4}}});
    testing::gradcheck("encoder layer with dropout at a fixed step",
                       [&](Graph& g, const std::vector<Value>& x) {
                         nn::TransformerEncoderLayer layer(g, "layer", tiny_block(pre_norm, 0.2));
                         const Value step = g.constant(Tensor::scalar<std::int64_t>(7), "step");
                         return layer(x[0], {}, {.training = true, .step = step});
                       },
                       {{Shape{2, 3, 4}}});
  }
}

// --- Decoder layer --------------------------------------------------------------------------

TEST_CASE("a decoder layer is causal self-attention, cross-attention and feed-forward with residuals") {
  for (bool pre_norm : {true, false}) {
    CAPTURE(pre_norm);
    Graph g;
    nn::TransformerDecoderLayer layer(g, "layer0", tiny_block(pre_norm));
    randomize_parameters(g, 4);
    CHECK(layer.cross_attn.k_proj.weight.name() == "layer0/cross_attn/k_proj/weight");
    CHECK(layer.norm3.beta.name() == "layer0/norm3/beta");
    Value x = g.placeholder("x", f64, {2, 3, 4});
    Value memory = g.placeholder("memory", f64, {2, 5, 4});
    Value self_probs, cross_probs;
    Value y = layer(x, memory, {}, {}, {}, &self_probs, &cross_probs);
    CHECK(self_probs.shape() == Shape{2, 2, 3, 3});
    CHECK(cross_probs.shape() == Shape{2, 2, 3, 5});

    auto scope = g.scope("reference");
    const nn::AttentionMask causal = nn::causal_mask(g, 3, 3, f64);
    Value want;
    if (pre_norm) {
      const Value h = layer.norm1(x);
      const Value x1 = x + layer.self_attn(h, h, causal);
      const Value x2 = x1 + layer.cross_attn(layer.norm2(x1), memory);
      want = x2 + layer.feed_forward(layer.norm3(x2));
    } else {
      const Value x1 = layer.norm1(x + layer.self_attn(x, x, causal));
      const Value x2 = layer.norm2(x1 + layer.cross_attn(x1, memory));
      want = layer.norm3(x2 + layer.feed_forward(x2));
    }
    const auto got = testing::run(
        g, {y, want, self_probs},
        {{x, testing::random_tensor(f64, {2, 3, 4}, 5)}, {memory, testing::random_tensor(f64, {2, 5, 4}, 6)}});
    testing::check_close(got[0], got[1], 1e-12, 1e-12);
    for (std::int64_t row = 0; row < 12; ++row)
      for (std::int64_t j = row % 3 + 1; j < 3; ++j) CHECK(got[2].at(row * 3 + j) == 0.0);
  }
}

TEST_CASE("the decoder layer's output at position t does not depend on later positions") {
  Graph g;
  nn::TransformerDecoderLayer layer(g, "layer", tiny_block(true));
  Value x = g.placeholder("x", f64, {1, 4, 4});
  Value memory = g.placeholder("memory", f64, {1, 2, 4});
  Executable exe = compile(g, {layer(x, memory)});
  const Tensor tm = testing::random_tensor(f64, {1, 2, 4}, 7);
  const Tensor a = testing::random_tensor(f64, {1, 4, 4}, 8);
  Tensor b = a.clone();
  for (int j = 8; j < 16; ++j) b.data<double>()[j] += 0.5;  // positions 2 and 3 change
  const Tensor ya = exe.run({{x, a}, {memory, tm}})[0], yb = exe.run({{x, b}, {memory, tm}})[0];
  for (int j = 0; j < 8; ++j) CHECK(ya.at(j) == doctest::Approx(yb.at(j)).epsilon(1e-14));
  double later = 0;
  for (int j = 8; j < 16; ++j) later += std::abs(ya.at(j) - yb.at(j));
  CHECK(later > 1e-3);
}

TEST_CASE("the decoder layer passes the gradient check with respect to its input and the memory") {
  for (bool pre_norm : {true, false}) {
    CAPTURE(pre_norm);
    const Tensor source_padding = Tensor::from<std::uint8_t>({0, 0, 1, 0, 0, 0}, {2, 3});
    testing::gradcheck(
        "decoder layer",
        [&](Graph& g, const std::vector<Value>& x) {
          nn::TransformerDecoderLayer layer(g, "layer", tiny_block(pre_norm));
          randomize_parameters(g, 9);
          return layer(x[0], x[1], {}, nn::padding_mask(x[2], f64));
        },
        {{Shape{2, 4, 4}}, {Shape{2, 3, 4}}, {.shape = Shape{2, 3}, .dtype = boolean, .value = source_padding}});
  }
}

// --- Transformer ----------------------------------------------------------------------------

TEST_CASE("the Transformer maps source and target ids to target logits and hands back every attention map") {
  for (bool learned : {false, true})
    for (bool pre_norm : {true, false}) {
      CAPTURE(learned);
      CAPTURE(pre_norm);
      Graph g;
      nn::Transformer::Config config = tiny_transformer(pre_norm, learned);
      config.layers = 2;
      nn::Transformer model(g, config);
      CHECK(model.encoder.size() == 2);
      CHECK(model.decoder.size() == 2);
      CHECK(model.encoder_norm.has_value() == pre_norm);
      CHECK(g.find("transformer/encoder/layer1/self_attn/q_proj/weight") != nullptr);
      CHECK(g.find("transformer/decoder/layer0/cross_attn/v_proj/bias") != nullptr);
      CHECK(g.find("transformer/source_embedding/table") != nullptr);
      CHECK((g.find("transformer/target_positions/table") != nullptr) == learned);
      Value source = g.placeholder("source", i64, {2, 3});
      Value target = g.placeholder("target", i64, {2, 4});
      nn::AttentionMaps maps;
      Value logits = model(source, target, {}, {}, &maps);
      CHECK(logits.shape() == Shape{2, 4, 7});
      REQUIRE(maps.encoder.size() == 2);
      REQUIRE(maps.decoder_self.size() == 2);
      REQUIRE(maps.decoder_cross.size() == 2);
      CHECK(maps.encoder[1].shape() == Shape{2, 2, 3, 3});
      CHECK(maps.decoder_self[0].shape() == Shape{2, 2, 4, 4});
      CHECK(maps.decoder_cross[1].shape() == Shape{2, 2, 4, 3});
      CHECK(maps.decoder_cross[1].name().starts_with("transformer/decoder/layer1/cross_attn/attention/"));
      const Tensor got = testing::run1(
          g, logits, {{source, Tensor::from<std::int64_t>({1, 2, 3, 4, 5, 6}, {2, 3})}, {target, target_ids}});
      for (std::int64_t i = 0; i < got.numel(); ++i) CHECK(std::isfinite(got.at(i)));
    }
}

TEST_CASE("a tiny Transformer's parameter gradients match finite differences, pre-norm and post-norm") {
  for (bool pre_norm : {true, false}) {
    CAPTURE(pre_norm);
    Graph g;
    nn::Transformer model(g, tiny_transformer(pre_norm));
    randomize_parameters(g, 10);
    Value source = g.placeholder("source", i64, {2, 4});
    Value target = g.placeholder("target", i64, {2, 4});
    Value pad = g.placeholder("pad", boolean, {2, 4});
    Value logits = model(source, target, nn::padding_mask(pad, f64));
    check_parameter_gradients(g, logits,
                              {{source, source_ids},
                               {target, target_ids},
                               {pad, Tensor::from<std::uint8_t>({0, 0, 0, 1, 0, 0, 0, 0}, {2, 4})}});
  }
}

TEST_CASE("the Transformer checks its ids and sizes at the user's line") {
  Graph g;
  nn::Transformer model(g, tiny_transformer());
  Value long_source = g.placeholder("source", i64, {2, 5});
  Value target = g.placeholder("target", i64, {2, 4});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { model(long_source, target); });
  CHECK(message.find("max_len = 4") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  CHECK_THROWS_WITH_AS(model(g.placeholder("f", f32, {2, 4}), target), doctest::Contains("i32 or i64"), Error);
  Graph other;
  CHECK_THROWS_WITH_AS(nn::Transformer(other, {.source_vocab = 7, .target_vocab = 7, .d_model = 10, .heads = 4}),
                       doctest::Contains("multiple of heads"), Error);
}

// --- GPT ------------------------------------------------------------------------------------

TEST_CASE("GPT maps ids to logits of shape B,T,V and hands back each block's causal attention map") {
  Graph g;
  nn::GPT::Config config = tiny_gpt();
  config.layers = 2;
  nn::GPT gpt(g, config);
  CHECK(gpt.blocks.size() == 2);
  CHECK(g.find("gpt/block1/self_attn/out_proj/weight") != nullptr);
  CHECK(g.find("gpt/position_embedding/table") != nullptr);
  CHECK(g.find("gpt/final_norm/gamma") != nullptr);
  CHECK(!gpt.lm_head.bias.defined());
  Value ids = g.placeholder("ids", i64, {2, 4});
  std::vector<Value> maps;
  Value logits = gpt(ids, {}, &maps);
  CHECK(logits.shape() == Shape{2, 4, 7});
  REQUIRE(maps.size() == 2);
  CHECK(maps[1].shape() == Shape{2, 2, 4, 4});
  const auto got = testing::run(g, {logits, maps[0]}, {{ids, source_ids}});
  for (std::int64_t row = 0; row < 16; ++row)
    for (std::int64_t j = row % 4 + 1; j < 4; ++j) CHECK(got[1].at(row * 4 + j) == 0.0);
}

TEST_CASE("GPT's logits at position t depend on tokens 0..t only") {
  Graph g;
  nn::GPT gpt(g, tiny_gpt());
  Value ids = g.placeholder("ids", i64, {1, 4});
  Executable exe = compile(g, {gpt(ids)});
  const Tensor a = exe.run({{ids, Tensor::from<std::int64_t>({1, 2, 3, 4}, {1, 4})}})[0];
  const Tensor b = exe.run({{ids, Tensor::from<std::int64_t>({1, 2, 6, 0}, {1, 4})}})[0];
  for (int j = 0; j < 14; ++j) CHECK(a.at(j) == doctest::Approx(b.at(j)).epsilon(1e-14));
  double later = 0;
  for (int j = 14; j < 28; ++j) later += std::abs(a.at(j) - b.at(j));
  CHECK(later > 1e-6);
}

TEST_CASE("a tiny GPT's parameter gradients match finite differences, with and without dropout") {
  for (double dropout : {0.0, 0.2}) {
    CAPTURE(dropout);
    Graph g;
    nn::GPT gpt(g, tiny_gpt(dropout));
    randomize_parameters(g, 11);
    Value ids = g.placeholder("ids", i64, {2, 4});
    const Value step = g.constant(Tensor::scalar<std::int64_t>(3), "step");
    check_parameter_gradients(g, gpt(ids, {.training = dropout > 0, .step = step}), {{ids, source_ids}});
  }
}

TEST_CASE("GPT rejects sequences longer than max_len at the user's line") {
  Graph g;
  nn::GPT gpt(g, tiny_gpt());
  Value ids = g.placeholder("ids", i64, {1, 5});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { gpt(ids); });
  CHECK(message.find("max_len = 4") != std::string::npos);
  CHECK(message.find("'gpt'") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
}

TEST_CASE("a tiny GPT learns to continue a fixed sequence with AdamW and dropout") {
  Graph g;
  nn::GPT gpt(g, {.vocab = 7, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 1, .max_len = 8, .dropout = 0.1});
  Value ids = g.placeholder("ids", i64, {2, 6});
  Value targets = g.placeholder("targets", i64, {2, 6});
  Value step = g.placeholder("step", i64, {});
  const Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets);
  const nn::TrainStep train = nn::adamw(loss, g.parameters(), {.lr = nn::constant_lr(1e-2)});
  Executable exe = compile(g, {loss}, cpu(), {.updates = train.updates});
  const Tensor tokens = Tensor::from<std::int64_t>({1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1}, {2, 6});
  const Tensor next = Tensor::from<std::int64_t>({2, 3, 4, 5, 6, 0, 5, 4, 3, 2, 1, 0}, {2, 6});
  double first = 0, last = 0;
  for (std::int64_t i = 0; i < 80; ++i) {
    last = exe.run({{ids, tokens}, {targets, next}, {step, Tensor::scalar<std::int64_t>(i)}})[0].item();
    if (i == 0) first = last;
  }
  CHECK(first < 2 * std::log(7.0));  // untrained: near chance, ln 7 ≈ 1.95
  CHECK(last < 0.15 * first);
}

// --- Locations ------------------------------------------------------------------------------

// A layer opens a LocationScope at its caller's line; the layers it calls keep that one, so
// whatever goes wrong deep inside a block is reported at the line of the user's call.
TEST_CASE("a mistake inside the layers of a block names the user's line, and the block's nodes record it") {
  Graph g;
  const int built = __LINE__ + 1;
  nn::TransformerEncoderLayer layer(g, "layer", tiny_block(true));
  nn::TransformerEncoderLayer post(g, "post", tiny_block(false));
  CHECK(g.find("layer/self_attn/q_proj/weight")->where.line == static_cast<unsigned>(built));
  CHECK(g.find("layer/feed_forward/down/bias")->where.line == static_cast<unsigned>(built));
  Value x = g.placeholder("x", f64, {2, 3, 4});
  const std::size_t before = g.size();
  const int called = __LINE__ + 1;
  const Value y = layer(x);
  for (std::uint32_t id = static_cast<std::uint32_t>(before); id < g.size(); ++id) {
    const Node& n = g.node(id);
    CAPTURE(n.name);
    CHECK(std::string(n.where.file).ends_with("transformer_test.cpp"));
    CHECK(n.where.line == static_cast<unsigned>(called));
  }
  CHECK(y.node().where.line == static_cast<unsigned>(called));
  CHECK_FALSE(g.location_override().known());

  // The first check to fail is the inner LayerNorm's (pre-norm) or MultiHeadAttention's (post-norm).
  Value wide = g.placeholder("wide", f64, {2, 3, 5});
  int line = __LINE__ + 1;
  std::string message = error_of([&] { layer(wide); });
  CHECK(message.find("normalises a last axis of 4 features") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  line = __LINE__ + 1;
  message = error_of([&] { post(wide); });
  CHECK(message.find("expects query [B,Tq,4]") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  // A mask that does not fit is found by the attention two layers down.
  line = __LINE__ + 1;
  message = error_of([&] { layer(x, nn::causal_mask(g, 5, 5, f64)); });
  CHECK(message.find("does not fit the attention scores") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  CHECK_FALSE(g.location_override().known());

  // A sub-layer built in a constructor's initializer list checks its arguments at the user's line.
  line = __LINE__ + 1;
  message = error_of([&] { nn::TransformerEncoderLayer(g, "bad", {.d_model = 10, .heads = 4}); });
  CHECK(message.find("multiple of heads") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
}

TEST_CASE("a shape error found by an op inside a decoder layer names the user's line") {
  Graph g;
  nn::TransformerDecoderLayer layer(g, "decoder", tiny_block(true));
  Value x = g.placeholder("x", f64, {2, 3, 4});
  Value memory = g.placeholder("memory", f64, {2, 5, 4});
  // Padding for 5 target positions where there are 3: the sum with the layer's causal mask fails
  // in shape inference, in an op the layer builds without being handed a location.
  Value padding = g.placeholder("padding", boolean, {2, 5});
  const int line = __LINE__ + 1;
  const std::string message = error_of([&] { layer(x, memory, nn::padding_mask(padding, f64)); });
  CHECK(message.find("add") != std::string::npos);
  CHECK(message.find(here(line)) != std::string::npos);
  CHECK_FALSE(g.location_override().known());
}

TEST_CASE("GPT's nodes, down to its blocks' attention, record the line that called it") {
  Graph g;
  nn::GPT gpt(g, tiny_gpt());
  Value ids = g.placeholder("ids", i64, {2, 4});
  const int line = __LINE__ + 1;
  (void)gpt(ids);
  const Node* scores = g.find("gpt/block0/self_attn/attention/matmul");
  REQUIRE(scores != nullptr);
  CHECK(scores->where.line == static_cast<unsigned>(line));
  CHECK(g.find("gpt/block0/self_attn/q_proj/weight")->where.line != static_cast<unsigned>(line));
}
