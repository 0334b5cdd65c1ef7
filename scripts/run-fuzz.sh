#!/usr/bin/env bash
# Builds lamina's libFuzzer harnesses (fuzz/fuzz_*.cpp) with clang and runs each
# one for a while on a copy of its seed corpus (docs/robustness.md).
#
#   scripts/run-fuzz.sh [seconds per harness, default 60] [harness ...]
#   scripts/run-fuzz.sh 600 model        # only fuzz_model, for ten minutes
#
# Needs clang++ and the compiler-rt sanitizer/fuzzer runtimes; installs them
# from Debian when missing (through sudo when not root):
#   apt-get install clang libclang-rt-14-dev
#
# Everything goes to build-fuzz/ (override with LAMINA_FUZZ_DIR): the binaries,
# the working corpora (build-fuzz/corpus/<harness>, a fresh copy of
# fuzz/corpus/<harness> plus fuzz/regressions/<harness> on every run: the
# committed corpus is never written to), the logs and any crashing input
# (build-fuzz/artifacts/<harness>/). The script fails (exit status 1) if any
# harness finds a crash, a sanitizer report, an exception other than
# lamina::Error, a leak, a hang over 10 s or an allocation over 2 GB.
# CXX overrides the compiler (default clang++). Harnesses run one after the
# other, one process each (no -jobs): the machine is shared.
set -euo pipefail

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "run-fuzz: the time must be a whole number of seconds, got '$seconds'" >&2; exit 2 ;;
esac
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(csv idx model)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${LAMINA_FUZZ_DIR:-$root/build-fuzz}"
CXX="${CXX:-clang++}"

# ---- toolchain --------------------------------------------------------------
packages=(clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "run-fuzz: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- build ------------------------------------------------------------------
# -O1 -g and all three sanitizers, UB made fatal (otherwise UBSan only prints).
# LAMINA_CHECKS=0: the Release behaviour. The debug checks turn an
# out-of-bounds access into a lamina::ShapeError, which the harnesses accept, so
# they would hide from ASan exactly the loader bugs we are looking for.
# No -fopenmp: loading runs no parallel region, and libomp's thread pool only
# adds noise to the leak checker.
mkdir -p "$out/bin" "$out/logs"
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -DLAMINA_CHECKS=0 -I"$root/include" -isystem /usr/include/eigen3)
for h in "${harnesses[@]}"; do
  src="$root/fuzz/fuzz_$h.cpp"
  [ -f "$src" ] || { echo "run-fuzz: no harness $src" >&2; exit 2; }
  echo "run-fuzz: building fuzz_$h"
  "$CXX" "${flags[@]}" "$src" -o "$out/bin/fuzz_$h" -lz
done

# ---- run --------------------------------------------------------------------
# Per harness: the longest input libFuzzer may try. A valid Kaggle CSV needs a
# 6 KB header and about 1.6 KB per row, so the CSV harness gets room for a few
# rows; the others stay near the default.
max_len() {
  case "$1" in
    csv) echo 32768 ;;
    *) echo 8192 ;;
  esac
}

status=0
summaries=()
for h in "${harnesses[@]}"; do
  corpus="$out/corpus/$h"
  artifacts="$out/artifacts/$h"
  log="$out/logs/fuzz_$h.log"
  rm -rf "$corpus"
  mkdir -p "$corpus" "$artifacts"
  cp "$root/fuzz/corpus/$h"/* "$corpus"/
  if [ -d "$root/fuzz/regressions/$h" ] && compgen -G "$root/fuzz/regressions/$h/*" >/dev/null; then
    cp "$root/fuzz/regressions/$h"/* "$corpus"/
  fi
  dict=()
  [ -f "$root/fuzz/dicts/$h.dict" ] && dict=(-dict="$root/fuzz/dicts/$h.dict")
  echo "run-fuzz: fuzz_$h for ${seconds} s (log: $log)"
  set +e
  "$out/bin/fuzz_$h" "$corpus" "${dict[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -max_len="$(max_len "$h")" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  # libFuzzer's last status line ("#123 DONE cov: 456 ft: 789 corp: 12/3Kb ...")
  # and its final stats ("stat::number_of_executed_units: N", "stat::average_exec_per_sec: R").
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    verdict="ok"
  else
    status=1
    reason=$(grep -Eo 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer): [a-zA-Z-]+|runtime error: .*|terminate called .*|uncaught exception.*' "$log" | head -n 1)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    verdict="FAILED (exit $rc${reason:+: $reason}${crash:+; input: $crash})"
  fi
  summaries+=("fuzz_$h: ${verdict}; ${runs:-?} executions in ${seconds} s (${rate:-?}/s); ${cov:-no coverage line}")
done

echo
printf '%s\n' "${summaries[@]}"
exit "$status"
