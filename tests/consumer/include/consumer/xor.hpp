// The consumer project's library: a function whose implementation uses lamina.
// Its header does not include lamina, so the downstream program that uses the
// installed library gets lamina only through the library's exported link.
#pragma once

namespace consumer {

// Trains a tiny model on XOR and returns its accuracy on the four points.
double xor_accuracy();

// LAMINA_CHECKS as the library was compiled (the switch travels with lamina::lamina).
int lamina_checks();

}  // namespace consumer
