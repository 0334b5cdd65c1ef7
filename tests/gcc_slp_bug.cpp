// Regression test for a GCC 12.2 miscompile with AVX-512 (-march=native on an
// AVX-512 machine): the SLP vectorizer stores {5, 5, 5, 5} for {5, 5, 0, 0}.
// Built with lamina::lamina's flags, which carry -fno-tree-slp-vectorize for
// GCC < 12.3 (the CMake option LAMINA_GCC_SLP_WORKAROUND, on by default), it
// must print the right values.
#include <cstdio>
#include <cstring>
#include <vector>

__attribute__((noinline)) void fill(long* out) {
  long a[4] = {5, 5, 0, 0};
  std::memcpy(out, a, sizeof a);
}
__attribute__((noinline)) std::vector<double> make() { return std::vector<double>{0.5, 0.5, 0.0, 0.0}; }

int main() {
  long out[4];
  fill(out);
  const std::vector<double> v = make();
  const bool ok = out[0] == 5 && out[1] == 5 && out[2] == 0 && out[3] == 0 && v[2] == 0.0 && v[3] == 0.0;
  std::printf("%ld %ld %ld %ld / %g %g %g %g: %s\n", out[0], out[1], out[2], out[3], v[0], v[1], v[2], v[3],
              ok ? "ok" : "MISCOMPILED");
  return ok ? 0 : 1;
}
