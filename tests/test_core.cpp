// Tensor, Shape, Rng and the thread knob.
#include <lamina/lamina.hpp>

#include <set>

#include "support.hpp"

using namespace lamina;

TEST_CASE("Shape reports rank, size and text") {
  Shape s{28, 28, 1};
  CHECK(s.rank() == 3);
  CHECK(s.size() == 784);
  CHECK(s.to_string() == "(28, 28, 1)");
  CHECK(s.to_string("N") == "(N, 28, 28, 1)");
  CHECK(Shape{10}.to_string() == "(10,)");
  CHECK(s.prepend(5) == Shape{5, 28, 28, 1});
  CHECK(s.prepend(5).drop_first() == s);
  CHECK_THROWS_AS((Shape{1, 2, 3, 4}.prepend(2)), ShapeError);
  CHECK_THROWS_WITH((Shape{1, 2, 3, 4, 5}), Catch::Contains("at most 4 dimensions"));
}

TEST_CASE("Tensor is aligned, zeroed, copyable and checked") {
  Tensor<float> t(Shape{2, 3, 5, 7});
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  CHECK(t.size() == 210);
  for (float v : t) CHECK(v == 0.0f);
  t(1, 2, 4, 6) = 3.5f;
  CHECK(t[209] == 3.5f);
  t(0, 1, 0, 0) = 1.0f;
  CHECK(t[35] == 1.0f);

  Tensor<float> copy = t;
  CHECK(copy.data() != t.data());
  CHECK(copy[209] == 3.5f);

  // Views are cheap and share memory; slices cover samples.
  TensorView<float> v = t.view();
  v[0] = 9.0f;
  CHECK(t[0] == 9.0f);
  TensorView<float> second = v.slice(1, 2);
  CHECK(second.shape() == Shape{1, 3, 5, 7});
  CHECK(second.data() == t.data() + 105);
  CHECK(v.reshape(Shape{2, 105}).dim(1) == 105);
  CHECK_THROWS_AS(v.reshape(Shape{2, 100}), ShapeError);
  CHECK_THROWS_AS(v.slice(1, 3), ShapeError);

  // Bounds and rank are checked in debug builds (tests build with LAMINA_CHECKS=1).
  CHECK_THROWS_WITH(t(2, 0, 0, 0), Catch::Contains("out of range on axis 0"));
  CHECK_THROWS_WITH(t(0, 0), Catch::Contains("with 2 indices"));
  CHECK_THROWS_AS(t[210], ShapeError);
}

TEST_CASE("Tensor::resize reuses its buffer when it fits") {
  Tensor<double> t(Shape{100});
  const double* before = t.data();
  t.resize(Shape{10, 5});
  CHECK(t.data() == before);
  t.resize(Shape{10, 10});
  CHECK(t.data() == before);
  t.resize(Shape{101});
  CHECK(t.size() == 101);
}

TEST_CASE("Rng is deterministic, seedable and forks independent streams") {
  Rng a(42), b(42), c(43);
  std::vector<std::uint64_t> va, vb, vc;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.next_u64());
    vb.push_back(b.next_u64());
    vc.push_back(c.next_u64());
  }
  CHECK(va == vb);
  CHECK(va != vc);

  // Known first values pin the algorithm (xoshiro256** seeded by splitmix64):
  // a change here changes every seeded result lamina produces.
  Rng pinned(0);
  CHECK(pinned.next_u64() == 0x99ec5f36cb75f2b4ull);

  Rng root(7);
  Rng f1 = root.fork(1), f1b = root.fork(1), f2 = root.fork(2);
  CHECK(f1.next_u64() == f1b.next_u64());
  CHECK(root.fork(1).next_u64() != f2.next_u64());

  // Snapshots restore the exact stream, including the cached normal.
  Rng s(5);
  s.normal();
  const auto snap = s.snapshot();
  const double n1 = s.normal(), n2 = s.normal();
  s.restore(snap);
  CHECK(s.normal() == n1);
  CHECK(s.normal() == n2);
}

TEST_CASE("Rng distributions have the right moments") {
  Rng rng(123);
  const int n = 200000;
  double sum = 0, sum2 = 0, usum = 0;
  std::vector<int> buckets(10, 0);
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    sum += z;
    sum2 += z * z;
    const double u = rng.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    usum += u;
    ++buckets[rng.below(10)];
  }
  CHECK(sum / n == Approx(0.0).margin(0.01));
  CHECK(sum2 / n == Approx(1.0).epsilon(0.01));
  CHECK(usum / n == Approx(0.5).margin(0.005));
  for (int count : buckets) CHECK(count == Approx(n / 10).epsilon(0.03));
  for (int i = 0; i < 1000; ++i) {
    const double t = rng.truncated_normal(1.5);
    REQUIRE(std::abs(t) <= 3.0);
  }
}

TEST_CASE("Rng::shuffle is a permutation and depends on the seed") {
  std::vector<int> a(100), b(100);
  std::iota(a.begin(), a.end(), 0);
  b = a;
  Rng r1(1), r2(2);
  r1.shuffle(a);
  r2.shuffle(b);
  CHECK(a != b);
  std::set<int> seen(a.begin(), a.end());
  CHECK(seen.size() == 100);
}

TEST_CASE("set_num_threads is the one knob, and rejects nonsense") {
  set_num_threads(2);
  CHECK(num_threads() == 2);
  CHECK(Eigen::nbThreads() == 1);  // Eigen never adds threads of its own
  set_num_threads(1);
  CHECK(num_threads() == 1);
  CHECK_THROWS_WITH(set_num_threads(0), Catch::Contains("at least 1 thread"));

  // parallel_for runs every chunk exactly once, whatever the thread count.
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<int> hits(37, 0);
    parallel_for(37, [&](std::ptrdiff_t c) { hits[static_cast<std::size_t>(c)] += 1; });
    for (int h : hits) CHECK(h == 1);
  }
}
