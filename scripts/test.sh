#!/usr/bin/env bash
# One command from a fresh Debian bookworm machine to the whole test suite: installs the
# dependencies, then builds and runs the suite in each configuration below. CI runs exactly this.
#   scripts/test.sh                 all configurations
#   scripts/test.sh gcc asan        only those
# Configurations:
#   gcc    g++ RelWithDebInfo: unit, integration, package and lint tests
#   asan   g++ with AddressSanitizer + UndefinedBehaviorSanitizer (catches GCC 12's coroutine bugs)
#   tsan   clang with ThreadSanitizer
#   fuzz   clang libFuzzer targets, each for FUZZ_SECONDS (30 here; scripts/fuzz.sh alone: 60)
#   matrix the conventional user builds (default options, no -Werror) of four build type /
#          generator / compiler combinations, each with its package tests (scripts/build-matrix.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh" test

configs=("$@")
((${#configs[@]})) || configs=(gcc asan tsan fuzz matrix)
jobs=${JOBS:-$(nproc)}
summary=()

run_config() {
  local name=$1; shift
  local dir="$root/build/test-$name"
  local t0=$SECONDS
  echo "=== [$name] configure"
  cmake -S "$root" -B "$dir" -G Ninja -DNATBUS_BUILD_TESTS=ON -DNATBUS_BUILD_EXAMPLES=ON -DNATBUS_BUILD_BENCH=ON \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DNATBUS_REQUIRE_GO=ON -DNATBUS_REQUIRE_DOCS=ON -DNATBUS_WERROR=ON "$@" >/dev/null
  echo "=== [$name] build"
  cmake --build "$dir" --parallel "$jobs"
  echo "=== [$name] test"
  local label_args=()
  [[ "$name" != gcc ]] && label_args=(-LE 'package|lint')
  (cd "$dir" && ctest --output-on-failure --parallel "$jobs" --timeout 600 "${label_args[@]}")
  summary+=("$name: passed in $((SECONDS - t0)) s")
}

for c in "${configs[@]}"; do
  case "$c" in
    gcc)  run_config gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc ;;
    asan) run_config asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc \
            -DNATBUS_SANITIZE=address,undefined ;;
    tsan) run_config tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
            -DNATBUS_SANITIZE=thread ;;
    fuzz) if [[ -x "$root/scripts/fuzz.sh" ]]; then
            t0=$SECONDS; FUZZ_SECONDS=${FUZZ_SECONDS:-30} "$root/scripts/fuzz.sh"; summary+=("fuzz: passed in $((SECONDS - t0)) s")
          fi ;;
    matrix) t0=$SECONDS; "$root/scripts/build-matrix.sh" ci; summary+=("matrix: passed in $((SECONDS - t0)) s") ;;
    *) echo "unknown configuration: $c (gcc asan tsan fuzz matrix)" >&2; exit 2 ;;
  esac
done
printf '%s\n' "=== summary" "${summary[@]}"
