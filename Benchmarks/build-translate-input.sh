#!/usr/bin/env bash
# Builds the `contrail translate` benchmark input: the real relay capture (150 frames) repeated
# 667 times into one uncompressed frames file (~546 MB). Never commit the output.
# Usage: Benchmarks/build-translate-input.sh [OUTPUT] [REPEATS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
capture=${CAPTURE:-$here/../../shared/corpus/jetstream-v1-capture/frames.bin.zst}
output=${1:-/tmp/contrail-translate-bench.frames}
repeats=${2:-667}
once=$(mktemp)
trap 'rm -f "$once"' EXIT
zstd -dcq "$capture" >"$once"
: >"$output"
for _ in $(seq "$repeats"); do cat "$once"; done >>"$output"
echo "$output: $(stat -c %s "$output") bytes ($repeats × $(stat -c %s "$once"))" >&2
