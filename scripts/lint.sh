#!/usr/bin/env bash
# clang-format and clang-tidy over natbus' own code (the CI's gcc configuration runs both).
#   scripts/lint.sh format        clang-format --dry-run --Werror on every source
#   scripts/lint.sh tidy BUILDDIR clang-tidy on src/, examples/ and bench/ with BUILDDIR's compile_commands.json
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mapfile -t sources < <(git ls-files -co --exclude-standard -- '*.cpp' '*.hpp' '*.h' 2>/dev/null || find include src tests examples bench -name '*.[ch]pp')
case "${1:-format}" in
  format)
    clang-format --dry-run --Werror "${sources[@]}"
    echo "clang-format: ${#sources[@]} files clean"
    # GCC 12 miscompiles these coroutine patterns (README, "Compiler notes"); none may appear in
    # natbus' own code: co_await in an if/switch condition, and a designated-initializer
    # aggregate temporary inside a co_await expression (our option structs are exempt: they are
    # trivially destructible).
    if grep -nE '\b(if|switch) *\( *[!(]* *co_await|(if|switch) *\([^;]*(&&|\|\|) *co_await' "${sources[@]}"; then
      echo "lint: co_await directly in an if/switch condition (GCC 12 miscompiles it): bind the result first" >&2
      exit 1
    fi
    if grep -nE 'co_await [^;]*(ErrorContext|ConsumerSpec|Resolved|StreamInfo|ConsumerInfo|PubAck)\{' "${sources[@]}"; then
      echo "lint: aggregate temporary with non-trivial members inside co_await (GCC 12 destroys it twice)" >&2
      exit 1
    fi
    if grep -nE '\? *co_await|: *co_await [^;]*;' "${sources[@]}" | grep -vE '^\S+:[0-9]+: *(case|default|public|private|protected)|//'; then
      echo "lint: co_await in a conditional expression (GCC 12 destroys the resulting temporary early): use if/else" >&2
      exit 1
    fi
    echo "gcc12 coroutine patterns: none"
    ;;
  tidy)
    build=${2:?usage: lint.sh tidy BUILDDIR}
    mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep -E '^(src|examples|bench)/.*\.cpp$')
    clang-tidy -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option "${units[@]}"
    echo "clang-tidy: ${#units[@]} files clean"
    ;;
  *) echo "usage: lint.sh format | tidy BUILDDIR" >&2; exit 2 ;;
esac
