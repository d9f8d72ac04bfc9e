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
    # The layers of src/ (docs/architecture.md), lowest first: a folder includes only its own
    # and lower folders' headers. jetstream/ and core/ are peers; bus/, then service/, kv/ and objects/ (built on it), are the top.
    declare -A rank=([base]=0 [runtime]=1 [transport]=2 [message]=3 [subscription]=4 [jetstream]=5 [core]=5 [bus]=6 [service]=7 [kv]=7 [objects]=7)
    bad=0
    for file in $(printf '%s\n' "${sources[@]}" | grep '^src/'); do
      from=$(echo "$file" | cut -d/ -f2)
      [[ -n "${rank[$from]:-}" ]] || { echo "lint: $file is in no known layer (scripts/lint.sh, rank)" >&2; bad=1; continue; }
      while IFS= read -r to; do
        [[ -n "${rank[$to]:-}" ]] || continue
        if ((rank[$to] > rank[$from])) || { ((rank[$to] == rank[$from])) && [[ $to != "$from" ]]; }; then
          echo "lint: $file includes $to/ (layer $to is not below $from)" >&2
          bad=1
        fi
      done < <(sed -nE 's@^#include "([a-z_]+)/.*@\1@p' "$file" | sort -u)
    done
    ((bad == 0)) || exit 1
    echo "layers: src/ includes only downward"
    ;;
  tidy)
    build=${2:?usage: lint.sh tidy BUILDDIR}
    mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep -E '^(src|examples|bench)/.*\.cpp$')
    # One clang-tidy per file, one per core: it is the long pole of the gcc configuration. Each
    # prints "N warnings generated" for the headers it skips; only findings are shown.
    log=$(mktemp)
    status=0
    printf '%s\0' "${units[@]}" |
      xargs -0 -n 1 -P "${JOBS:-$(nproc)}" clang-tidy -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option \
        >"$log" 2>&1 || status=$?
    grep -vE '^[0-9]+ warnings? generated\.$' "$log" || true
    rm -f "$log"
    ((status == 0)) || { echo "clang-tidy: findings above (status $status)" >&2; exit 1; }
    echo "clang-tidy: ${#units[@]} files clean"
    ;;
  *) echo "usage: lint.sh format | tidy BUILDDIR" >&2; exit 2 ;;
esac
