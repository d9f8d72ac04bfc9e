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
    ;;
  tidy)
    build=${2:?usage: lint.sh tidy BUILDDIR}
    mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep -E '^(src|examples|bench)/.*\.cpp$')
    clang-tidy -p "$build" --quiet "${units[@]}"
    echo "clang-tidy: ${#units[@]} files clean"
    ;;
  *) echo "usage: lint.sh format | tidy BUILDDIR" >&2; exit 2 ;;
esac
