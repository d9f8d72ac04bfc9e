#!/usr/bin/env bash
# Builds natbus' libFuzzer targets with clang (ASan+UBSan, coverage) and runs each for
# FUZZ_SECONDS (default 60) from the seed corpus in fuzz/corpus/<target>. A crash fails the run;
# its input is kept under build/fuzz/artifacts/ (turn it into a unit test).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${FUZZ_SECONDS:-60}
dir="$root/build/fuzz"
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
  -DNATBUS_FUZZ=ON -DNATBUS_BUILD_TESTS=OFF -DNATBUS_BUILD_EXAMPLES=OFF -DNATBUS_BUILD_BENCH=OFF -DNATBUS_WERROR=OFF >/dev/null
targets=(server_list headers gzip puback received)
cmake --build "$dir" --parallel "${JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}"
mkdir -p "$dir/artifacts"
# The targets run side by side, one per core, to keep CI short.
fuzz_one() {
  local t=$1 work="$dir/corpus-$1"
  rm -rf "$work" && mkdir -p "$work"
  if ! "$dir/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
      -artifact_prefix="$dir/artifacts/$t-" "$work" "$root/fuzz/corpus/$t" 2>"$dir/fuzz_$t.log"; then
    tail -50 "$dir/fuzz_$t.log"
    echo "fuzz_$t FAILED (input saved under $dir/artifacts)" >&2
    return 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/fuzz_$t.log" | grep -o '[0-9]*$')
  echo "fuzz_$t: $execs executions in ${seconds}s, no crash"
}
parallel=${FUZZ_JOBS:-$(nproc)}
failed=0
pids=()
for t in "${targets[@]}"; do
  echo "=== fuzz_$t for ${seconds}s"
  fuzz_one "$t" &
  pids+=($!)
  if ((${#pids[@]} >= parallel)); then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit "$failed"
