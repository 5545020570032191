// Fashion-MNIST loading and the Batcher's shuffled, resumable minibatches.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <fovea/fovea.h>

#include "skip.h"
#include "testing.h"

namespace {

// A temporary directory of this file's tests (tests/testing.h).
struct TempDir : fovea::testing::TempDir {
  explicit TempDir(const std::string& tag) : fovea::testing::TempDir("dataset-" + tag) {}
};

// Writes a gzip-compressed u8 IDX file.
void write_u8_idx(const std::string& path, const std::vector<std::uint32_t>& dims,
                  const std::vector<unsigned char>& data) {
  std::vector<unsigned char> bytes = {0, 0, 0x08, static_cast<unsigned char>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<unsigned char>(d >> shift));
  bytes.insert(bytes.end(), data.begin(), data.end());
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const fovea::Error& e) {
    return e.what();
  }
  FAIL("no fovea::Error was thrown");
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool fashion_mnist_installed() {
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                           "t10k-labels-idx1-ubyte.gz"})
    if (!std::filesystem::exists(std::filesystem::path(fovea::fashion_mnist_default_dir) / name)) return false;
  return true;
}

// N examples of `features` values: images[i, f] = 10·i + f, labels[i] = i.
fovea::Dataset counting_dataset(std::int64_t n, std::int64_t features) {
  fovea::Dataset d;
  d.images = fovea::Tensor::empty(fovea::f32, {n, features});
  d.labels = fovea::Tensor::empty(fovea::i32, {n});
  auto images = d.images.data<float>();
  auto labels = d.labels.data<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    labels[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    for (std::int64_t f = 0; f < features; ++f)
      images[static_cast<std::size_t>(i * features + f)] = static_cast<float>(10 * i + f);
  }
  return d;
}

bool is_permutation_of_range(const std::vector<std::int64_t>& order) {
  std::vector<std::int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != static_cast<std::int64_t>(i)) return false;
  return true;
}

// The labels of every batch of one epoch, in order.
std::vector<std::int32_t> epoch_labels(fovea::Batcher& batcher, std::int64_t epoch, std::int64_t first_batch = 0) {
  std::vector<std::int32_t> out;
  fovea::Tensor x = fovea::Tensor::empty(fovea::f32, {batcher.batch_size(), 3});
  fovea::Tensor y = fovea::Tensor::empty(fovea::i32, {batcher.batch_size()});
  for (std::int64_t i = first_batch; i < batcher.batches_per_epoch(); ++i) {
    batcher.batch(epoch, i, x, y);
    for (std::int32_t v : y.data<std::int32_t>()) out.push_back(v);
  }
  return out;
}

}  // namespace

TEST_CASE("load_fashion_mnist loads 60000 training and 10000 test images scaled to 0..1 with balanced labels") {
  if (!fashion_mnist_installed()) {
    fovea::testing::skip_test_case("Fashion-MNIST is not installed in " +
                                   std::string(fovea::fashion_mnist_default_dir) +
                                   " (apt-get install dataset-fashion-mnist)");
    return;
  }
  for (const auto& [split, count] : {std::pair<std::string, std::int64_t>{"train", 60000}, {"test", 10000}}) {
    CAPTURE(split);
    const fovea::Dataset d = fovea::load_fashion_mnist(split);
    CHECK(d.size() == count);
    CHECK(d.images.dtype() == fovea::f32);
    CHECK(d.images.shape() == fovea::Shape{count, 784});
    CHECK(d.labels.dtype() == fovea::i32);
    CHECK(d.labels.shape() == fovea::Shape{count});

    const auto pixels = d.images.data<float>();
    const auto [low, high] = std::minmax_element(pixels.begin(), pixels.end());
    CHECK(*low == 0.0f);
    CHECK(*high == 1.0f);

    std::vector<std::int64_t> per_class(10, 0);
    std::int64_t out_of_range = 0;
    for (std::int32_t label : d.labels.data<std::int32_t>()) {
      if (label < 0 || label >= 10)
        ++out_of_range;
      else
        ++per_class[static_cast<std::size_t>(label)];
    }
    CHECK(out_of_range == 0);
    for (std::int64_t n : per_class) CHECK(n == count / 10);
  }
}

TEST_CASE("load_fashion_mnist names the missing file and suggests installing the dataset") {
  TempDir dir("missing");
  const std::string message = error_of([&] { fovea::load_fashion_mnist("train", dir.path.string()); });
  CHECK(contains(message, dir.file("train-images-idx3-ubyte.gz")));
  CHECK(contains(message, "apt-get install dataset-fashion-mnist"));
}

TEST_CASE("load_fashion_mnist rejects an unknown split") {
  CHECK(contains(error_of([] { fovea::load_fashion_mnist("validation"); }), "unknown split 'validation'"));
}

TEST_CASE("load_fashion_mnist rejects images of the wrong size and labels outside 0..9, naming the file") {
  TempDir dir("bad");
  const std::string images = dir.file("t10k-images-idx3-ubyte.gz"), labels = dir.file("t10k-labels-idx1-ubyte.gz");
  SUBCASE("images that are not 28x28") {
    write_u8_idx(images, {10000, 27, 28}, std::vector<unsigned char>(10000 * 27 * 28, 0));
    write_u8_idx(labels, {10000}, std::vector<unsigned char>(10000, 1));
    const std::string message = error_of([&] { fovea::load_fashion_mnist("test", dir.path.string()); });
    CHECK(contains(message, images));
    CHECK(contains(message, "[10000,28,28]"));
    CHECK(contains(message, "[10000,27,28]"));
  }
  SUBCASE("too few labels") {
    write_u8_idx(images, {10000, 28, 28}, std::vector<unsigned char>(10000 * 28 * 28, 0));
    write_u8_idx(labels, {9999}, std::vector<unsigned char>(9999, 1));
    const std::string message = error_of([&] { fovea::load_fashion_mnist("test", dir.path.string()); });
    CHECK(contains(message, labels));
    CHECK(contains(message, "[9999]"));
  }
  SUBCASE("a label of 10") {
    write_u8_idx(images, {10000, 28, 28}, std::vector<unsigned char>(10000 * 28 * 28, 0));
    std::vector<unsigned char> values(10000, 3);
    values[1234] = 10;
    write_u8_idx(labels, {10000}, values);
    const std::string message = error_of([&] { fovea::load_fashion_mnist("test", dir.path.string()); });
    CHECK(contains(message, labels));
    CHECK(contains(message, "label 10 of example 1234"));
  }
}

TEST_CASE("fashion_mnist_class_name names the ten classes and rejects others") {
  CHECK(fovea::fashion_mnist_class_name(0) == "T-shirt/top");
  CHECK(fovea::fashion_mnist_class_name(7) == "Sneaker");
  CHECK(fovea::fashion_mnist_class_name(9) == "Ankle boot");
  CHECK_THROWS_AS(fovea::fashion_mnist_class_name(10), fovea::Error);
  CHECK_THROWS_AS(fovea::fashion_mnist_class_name(-1), fovea::Error);
}

TEST_CASE("Batcher's order for each epoch is a permutation, and epochs differ") {
  fovea::Batcher batcher(counting_dataset(1000, 3), 10, /*seed=*/7);
  const std::vector<std::int64_t> epoch0 = batcher.permutation(0), epoch1 = batcher.permutation(1);
  CHECK(epoch0.size() == 1000);
  CHECK(is_permutation_of_range(epoch0));
  CHECK(is_permutation_of_range(epoch1));
  CHECK(epoch0 != epoch1);
  std::vector<std::int64_t> identity(1000);
  for (std::size_t i = 0; i < identity.size(); ++i) identity[i] = static_cast<std::int64_t>(i);
  CHECK(epoch0 != identity);
}

TEST_CASE("Batcher gives the same batches for the same seed and a different order for another seed") {
  const fovea::Dataset d = counting_dataset(100, 3);
  fovea::Batcher a(d, 10, 42), b(d, 10, 42), c(d, 10, 43);
  CHECK(a.permutation(3) == b.permutation(3));
  CHECK(epoch_labels(a, 2) == epoch_labels(b, 2));
  CHECK(a.permutation(0) != c.permutation(0));
}

TEST_CASE("Batcher shuffles uniformly: each example lands in each position about equally often") {
  // 5 examples over 4000 epochs: each (example, position) pair is expected 800 times, with a
  // standard deviation of about 25; a biased shuffle (the classic off-by-one) misses by hundreds.
  fovea::Batcher batcher(counting_dataset(5, 1), 1, 3);
  std::vector<std::vector<int>> counts(5, std::vector<int>(5, 0));
  for (std::int64_t epoch = 0; epoch < 4000; ++epoch) {
    const std::vector<std::int64_t> order = batcher.permutation(epoch);
    for (std::size_t position = 0; position < 5; ++position)
      ++counts[static_cast<std::size_t>(order[position])][position];
  }
  for (const auto& row : counts)
    for (int n : row) {
      CHECK(n > 650);
      CHECK(n < 950);
    }
}

TEST_CASE("Batcher's batches follow the epoch's permutation and cover each example once") {
  const fovea::Dataset d = counting_dataset(10, 3);
  fovea::Batcher batcher(d, 3, 5);
  CHECK(batcher.batches_per_epoch() == 3);  // drop_last: 10 = 3·3 + 1
  const std::vector<std::int64_t> order = batcher.permutation(4);
  fovea::Tensor x = fovea::Tensor::empty(fovea::f32, {3, 3});
  fovea::Tensor y = fovea::Tensor::empty(fovea::i32, {3});
  std::set<std::int32_t> seen;
  for (std::int64_t i = 0; i < 3; ++i) {
    batcher.batch(4, i, x, y);
    for (std::int64_t r = 0; r < 3; ++r) {
      const std::int64_t example = order[static_cast<std::size_t>(i * 3 + r)];
      CHECK(y.at(r) == example);
      for (std::int64_t f = 0; f < 3; ++f) CHECK(x.at(r * 3 + f) == 10.0 * static_cast<double>(example) + f);
      CHECK(seen.insert(static_cast<std::int32_t>(y.at(r))).second);
    }
  }
  CHECK(seen.size() == 9);
}

TEST_CASE("sharded Batchers split each global batch into the ranks' shares, in rank order") {
  const fovea::Dataset d = counting_dataset(20, 2);
  fovea::Batcher whole(d, 6, 9);
  std::vector<fovea::Batcher> shares(3, fovea::Batcher(d, 6, 9));
  for (int r = 0; r < 3; ++r) shares[static_cast<std::size_t>(r)].shard(r, 3);
  CHECK(shares[0].rows_in_batch(0) == 2);
  CHECK(shares[0].batches_per_epoch() == whole.batches_per_epoch());
  fovea::Tensor x = fovea::Tensor::empty(fovea::f32, {6, 2}), y = fovea::Tensor::empty(fovea::i32, {6});
  fovea::Tensor xs = fovea::Tensor::empty(fovea::f32, {2, 2}), ys = fovea::Tensor::empty(fovea::i32, {2});
  for (std::int64_t i = 0; i < whole.batches_per_epoch(); ++i) {
    whole.batch(1, i, x, y);
    for (int r = 0; r < 3; ++r) {
      shares[static_cast<std::size_t>(r)].batch(1, i, xs, ys);
      for (std::int64_t j = 0; j < 2; ++j) {
        CHECK(ys.at(j) == y.at(2 * r + j));
        CHECK(xs.at(2 * j + 1) == x.at(2 * (2 * r + j) + 1));
      }
    }
  }
  fovea::Batcher odd(d, 5, 9);
  CHECK_THROWS_WITH(odd.shard(0, 2), doctest::Contains("does not split evenly over 2 ranks"));
  fovea::Batcher short_last(d, 6, 9, true, /*drop_last=*/false);
  CHECK_THROWS_WITH(short_last.shard(1, 2), doctest::Contains("sharding needs drop_last"));
  CHECK_THROWS_WITH(whole.shard(3, 3), doctest::Contains("is not a rank"));
}

TEST_CASE("Batcher without drop_last ends the epoch with a short batch") {
  fovea::Batcher batcher(counting_dataset(10, 3), 4, 5, /*shuffle=*/true, /*drop_last=*/false);
  CHECK(batcher.batches_per_epoch() == 3);
  CHECK(batcher.rows_in_batch(0) == 4);
  CHECK(batcher.rows_in_batch(2) == 2);
  fovea::Tensor x = fovea::Tensor::empty(fovea::f32, {2, 3});
  fovea::Tensor y = fovea::Tensor::empty(fovea::i32, {2});
  batcher.batch(0, 2, x, y);
  const std::vector<std::int64_t> order = batcher.permutation(0);
  CHECK(y.at(0) == order[8]);
  CHECK(y.at(1) == order[9]);
  fovea::Tensor x4 = fovea::Tensor::empty(fovea::f32, {4, 3});
  fovea::Tensor y4 = fovea::Tensor::empty(fovea::i32, {4});
  CHECK(contains(error_of([&] { batcher.batch(0, 2, x4, y4); }), "f32[2,3]"));
}

TEST_CASE("Batcher resumed at (epoch, index) sees exactly the batches of an uninterrupted run") {
  const fovea::Dataset d = counting_dataset(50, 3);
  fovea::Batcher uninterrupted(d, 5, 11);
  std::vector<std::int32_t> straight;
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<std::int32_t> labels = epoch_labels(uninterrupted, epoch);
    straight.insert(straight.end(), labels.begin(), labels.end());
  }
  // A fresh process resumes at epoch 1, batch 4.
  fovea::Batcher resumed(d, 5, 11);
  std::vector<std::int32_t> tail = epoch_labels(resumed, 1, 4);
  const std::vector<std::int32_t> last = epoch_labels(resumed, 2);
  tail.insert(tail.end(), last.begin(), last.end());
  const std::vector<std::int32_t> expected(straight.begin() + 50 + 4 * 5, straight.end());
  CHECK(tail == expected);
}

TEST_CASE("Batcher fills the caller's tensors in place") {
  fovea::Batcher batcher(counting_dataset(20, 3), 4, 1);
  fovea::Tensor x = fovea::Tensor::empty(fovea::f32, {4, 3});
  fovea::Tensor y = fovea::Tensor::empty(fovea::i32, {4});
  const std::byte* x_buffer = x.raw();
  const std::byte* y_buffer = y.raw();
  batcher.batch(0, 0, x, y);
  batcher.batch(1, 3, x, y);
  CHECK(x.raw() == x_buffer);
  CHECK(y.raw() == y_buffer);
}

TEST_CASE("Batcher without shuffle keeps the dataset's order") {
  fovea::Batcher batcher(counting_dataset(6, 3), 2, 9, /*shuffle=*/false);
  const std::vector<std::int64_t> order{0, 1, 2, 3, 4, 5};
  CHECK(batcher.permutation(0) == order);
  CHECK(batcher.permutation(5) == order);
}

TEST_CASE("Batcher rejects bad sizes, indices and output tensors with a clear error") {
  const fovea::Dataset d = counting_dataset(10, 3);
  CHECK(contains(error_of([&] { fovea::Batcher(d, 0, 1); }), "batch size must be positive"));
  CHECK(contains(error_of([&] { fovea::Batcher(d, 11, 1); }), "larger than the dataset"));
  fovea::Dataset mismatched = d;
  mismatched.labels = fovea::Tensor::zeros(fovea::i32, {9});
  CHECK(contains(error_of([&] { fovea::Batcher(mismatched, 2, 1); }), "labels must be i32 [N]"));

  fovea::Batcher batcher(d, 2, 1);
  fovea::Tensor x = fovea::Tensor::empty(fovea::f32, {2, 3});
  fovea::Tensor y = fovea::Tensor::empty(fovea::i32, {2});
  CHECK(contains(error_of([&] { batcher.batch(0, 5, x, y); }), "batch index 5 is out of range"));
  CHECK(contains(error_of([&] { batcher.batch(-1, 0, x, y); }), "epoch must be non-negative"));
  fovea::Tensor wrong_x = fovea::Tensor::empty(fovea::f64, {2, 3});
  CHECK(contains(error_of([&] { batcher.batch(0, 0, wrong_x, y); }), "images_out of f32[2,3]"));
  fovea::Tensor wrong_y = fovea::Tensor::empty(fovea::i64, {2});
  CHECK(contains(error_of([&] { batcher.batch(0, 0, x, wrong_y); }), "labels_out of i32[2]"));
}
