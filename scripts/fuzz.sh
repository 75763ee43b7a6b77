#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer) of the request parser, sender normalization
# and the reader of Postfix's log, each for N seconds (default 600), starting from fuzz/seeds/
# plus whatever fuzz/corpus/ holds from earlier runs. A crash fails the script and leaves the input in
# fuzz/artifacts/. cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the
# stable toolchain this project uses.
#
#   scripts/fuzz.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for target in parser sender maillog; do
  mkdir -p "corpus/$target"
  cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
  echo "== fuzzing $target for ${secs}s"
  cargo fuzz run -O "$target" "corpus/$target" -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY)|Test unit written" || true
  # cargo fuzz exits non-zero on a finding; pipefail is masked by grep, so check artifacts.
  if ls "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/timeout-* >/dev/null 2>&1; then
    echo "fuzz: $target found a failing input: $(ls artifacts/$target)" >&2
    exit 1
  fi
done
echo "fuzz: no findings"
