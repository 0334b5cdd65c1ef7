// A user's program: calls the user's library, which trains with lamina.
#include "consumer/xor.hpp"

#include <cstdio>

int main() {
  const double accuracy = consumer::xor_accuracy();
  std::printf("consumer: XOR accuracy %.2f, LAMINA_CHECKS=%d\n", accuracy, consumer::lamina_checks());
  return accuracy == 1.0 ? 0 : 1;
}
