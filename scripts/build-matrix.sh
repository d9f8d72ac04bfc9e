#!/usr/bin/env bash
# The conventional builds of a clone, as users run them: natbus configured at the top level with
# its default options (tests, examples and the benchmark on; NATBUS_WERROR off), built, and the
# package tests run against the result (find_package of the installed build, add_subdirectory,
# pkg-config, and the .deb). One line per configuration, then a summary.
#   scripts/build-matrix.sh                     every build type x generator x compiler (16)
#   MATRIX="Release:Ninja:g++ Debug:Make:clang++" scripts/build-matrix.sh    only those
#   scripts/build-matrix.sh ci                  the covering subset CI runs (below)
# CI (scripts/test.sh, configuration "matrix") runs two of them, Release/Make/g++ and
# MinSizeRel/Make/clang++; with the gcc (RelWithDebInfo/Ninja/g++), asan (Debug/Ninja/g++, with
# sanitizers) and tsan (RelWithDebInfo/Ninja/clang++) configurations, every build type and every
# pair of generator and compiler is built. The full 16 take ~40 minutes on 2 cores, more than
# CI's budget.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=${JOBS:-$(nproc)}
work=${MATRIX_DIR:-$root/build/matrix}

all=()
for type in Release Debug RelWithDebInfo MinSizeRel; do
  for gen in Make Ninja; do
    for cxx in g++ clang++; do all+=("$type:$gen:$cxx"); done
  done
done
ci=(Release:Make:g++ MinSizeRel:Make:clang++)
if [[ "${1:-}" == ci ]]; then
  combos=("${ci[@]}")
else
  read -r -a combos <<<"${MATRIX:-${all[*]}}"
fi

summary=()
for combo in "${combos[@]}"; do
  IFS=: read -r type gen cxx <<<"$combo"
  case "$gen" in
    Make) generator="Unix Makefiles" ;;
    Ninja) generator="Ninja" ;;
    *) echo "unknown generator $gen (Make, Ninja)" >&2; exit 2 ;;
  esac
  case "$cxx" in
    g++) cc=gcc ;;
    clang++) cc=clang ;;
    *) echo "unknown compiler $cxx (g++, clang++)" >&2; exit 2 ;;
  esac
  dir="$work/$type-$gen-$cxx"
  t0=$SECONDS
  echo "=== [matrix $type $gen $cxx] configure, build, package tests"
  rm -rf "$dir"
  mkdir -p "$work"
  # Exactly what a user types, plus the compiler choice: no project-internal options.
  cmake -S "$root" -B "$dir" -G "$generator" -DCMAKE_BUILD_TYPE="$type" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; exit 1; }
  cmake --build "$dir" --parallel "$jobs" >"$dir.build.log" 2>&1 || { tail -n 80 "$dir.build.log"; exit 1; }
  warnings=$(grep -c "warning:" "$dir.build.log" || true)
  (cd "$dir" && ctest -L package --output-on-failure >"$dir.test.log" 2>&1) || { cat "$dir.test.log"; exit 1; }
  summary+=("$type $gen $cxx: built and packaged in $((SECONDS - t0)) s ($warnings compiler warnings, not errors)")
  rm -rf "$dir"
done
printf '%s\n' "=== matrix summary" "${summary[@]}"
