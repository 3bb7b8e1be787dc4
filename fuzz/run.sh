#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20) from the checked-in
# corpus and dictionary, and fails if any target finds a crash, a panic, a
# failed check or a hang. Installs the pinned cargo-fuzz if it is missing.
#
#   fuzz/run.sh            # 20 s per target (CI)
#   fuzz/run.sh 600        # the long run of fuzz/README.md
#   FUZZ_TARGETS="delivery" fuzz/run.sh 60
#
# The corpus is copied to a temporary folder first, so the inputs a run finds
# are not written into git. A failing input is kept in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
targets=(${FUZZ_TARGETS:-signature delivery reply})
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
  echo "==> installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# -s none: no sanitizer, so the stable toolchain does (Rust code is memory
# safe; the checks are the targets' own assertions). -a: debug assertions and
# overflow checks on, so integer overflow panics instead of wrapping.
echo "==> building the fuzz targets"
cargo fuzz build -s none -a

failed=()
summary=()
for target in "${targets[@]}"; do
  echo "==> fuzzing $target for ${seconds}s"
  cp -R "corpus/$target" "$work/$target"
  log="$work/$target.log"
  status=0
  cargo fuzz run -s none -a "$target" "$work/$target" -- \
    -max_total_time="$seconds" \
    -dict="dict/$target.dict" \
    -max_len=65536 \
    -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs="$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)"
  cov="$(grep -oE '#[0-9]+.*cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' || true)"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    failed+=("$target")
    summary+=("$target: FAILED (exit $status); input in fuzz/artifacts/$target/")
  else
    summary+=("$target: ok, ${runs:-? runs}, $cov")
  fi
done

echo
echo "==> fuzz summary (${seconds}s per target)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
