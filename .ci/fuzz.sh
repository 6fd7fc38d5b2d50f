#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 30) each; fails on any crash.
#
# New inputs go to a scratch corpus outside the repository (the first corpus dir
# given to libFuzzer), so fuzz/corpus/ only ever holds the committed seeds. A crash
# leaves its input in fuzz/artifacts/<target>/ (gitignored): minimize it with
# `cargo fuzz tmin -s none <target> <file>` and commit it under fuzz/regressions/.
set -euo pipefail

seconds="${FUZZ_SECONDS:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

cd "$root/fuzz"
targets=$(cargo fuzz list)
# Build once, with debug assertions and overflow checks: an overflow is a bug here.
cargo fuzz build -s none -a
for target in $targets; do
    mkdir -p "$scratch/$target"
    echo "== fuzzing $target for ${seconds}s"
    cargo fuzz run -s none -a "$target" "$scratch/$target" "corpus/$target" \
        -- -max_total_time="$seconds"
done
echo "== all targets ran ${seconds}s without a crash"
