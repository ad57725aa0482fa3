#!/usr/bin/env bash
# Builds the release binary on this (GPU-less) machine and bundles it for the GPU machine, which
# has the CUDA driver and toolkit but no Rust. Then run there, from the repository root, carrying
# target/gpu-bundle (it must stay under the 64 MiB carry limit; checked below):
#     bash scripts/gpu-check.sh first  (the 6-minute first contact; other stages: see that script)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin cryptgpu
bundle=target/gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle"
cp target/release/cryptgpu "$bundle/"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -vc '^??' || true)
printf '{"commit":"%s","uncommitted_changes":%s,"built_utc":"%s","rustc":"%s"}\n' \
  "$commit" "${dirty:-0}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(rustc --version)" > "$bundle/bundle-info.json"
bytes=$(du -sb "$bundle" | cut -f1)
limit=$((64 << 20))
echo "bundle: $bytes bytes ($(awk "BEGIN { printf \"%.1f\", $bytes / 1048576 }") MiB) in $bundle; the carry limit is 64 MiB"
[ "$bytes" -lt "$limit" ] || { echo "the bundle is over the carry limit" >&2; exit 1; }
echo "bundle ready: carry target/gpu-bundle, run: bash scripts/gpu-check.sh first"
