#include <doctest/doctest.h>

#include <fovea/fovea.h>

TEST_CASE("a placeholder fed through add and relu gives the elementwise result") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {2, 3});
  auto y = fovea::relu(x + 1.0f);
  auto exe = fovea::compile(g, {y});
  auto out = exe.run({{x, fovea::Tensor::from<float>({-3, -1, 0, 1, 2, -0.5f}, {2, 3})}});
  REQUIRE(out.size() == 1);
  const std::vector<float> want{0, 0, 1, 2, 3, 0.5f};
  for (int i = 0; i < 6; ++i) CHECK(out[0].at(i) == doctest::Approx(want[i]));
}
