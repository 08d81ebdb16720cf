#!/usr/bin/env bash
# v1 subscribers before and after a change: `bench fanout` and `bench latency` of two release
# binaries, interleaved round by round (odd rounds BEFORE first, even rounds AFTER first; the
# machine is shared and noisy), then per row the median and spread (min–max) of each binary and
# of the per-round ratio AFTER / BEFORE. The AFTER binary gets `--wire v1` (its v1 rows only);
# a BEFORE binary from before the v2 wire has no --wire and runs v1 only anyway.
# Results: Benchmarks/RESULTS.md.
#
# Usage: Benchmarks/v1-before-after.sh fanout|latency [ROUNDS]
#   BEFORE   the baseline binary (e.g. a release build of 2ab99e5, copied aside)
#   AFTER    the binary measured (default: a copy of .build-release/release/contrail)
#   FANOUT_ARGS, LATENCY_ARGS  the benchmark's options (defaults below; the same for both)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:?fanout or latency}
rounds=${2:-5}
before=${BEFORE:?set BEFORE to the baseline binary}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
after=${AFTER:-}
if [[ -z $after ]]; then
  # A copy, so that a rebuild during the run cannot change it.
  cp "$here/../.build-release/release/contrail" "$work/contrail-after"
  after=$work/contrail-after
fi
fanout_args=${FANOUT_ARGS:---subscribers 1,100,1000 --idle 1 --replay 500000}
latency_args=${LATENCY_ARGS:---rates 5000 --seconds 20 --warmup 5}

run() { # name round
  local name=$1 round=$2 binary extra=()
  if [[ $name == before ]]; then binary=$before; else binary=$after extra=(--wire v1); fi
  local out="$work/$name-$round.out"
  case $bench in
    # shellcheck disable=SC2086
    fanout) "$binary" bench fanout $fanout_args "${extra[@]}" >"$out" 2>&1 ;;
    # shellcheck disable=SC2086
    latency) "$binary" bench latency $latency_args "${extra[@]}" >"$out" 2>&1 ;;
    *) echo "fanout or latency" >&2; exit 2 ;;
  esac
  echo "round $round $name: $(grep -c . "$out") lines, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

echo "bench $bench, $rounds rounds; before: $before; after: $after"
echo "fanout args: $fanout_args; latency args: $latency_args"
for round in $(seq "$rounds"); do
  if ((round % 2)); then order="before after"; else order="after before"; fi
  for name in $order; do run "$name" "$round"; done
done

python3 - "$work" "$bench" "$rounds" <<'PY'
import re, statistics, sys
work, bench, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

def parse(path):
    """{row: {metric: value}} from one run's output."""
    rows = {}
    text = open(path).read()
    if bench == "fanout":
        for m in re.finditer(
            r"^((?:live|replay)[^:]*): (\d+) events/s delivered, [\d.]+ MB/s, server CPU ([\d.]+) µs/message"
            r"(?:.*other processes ([\d.]+) % of a core)?",
            text, re.M):
            rows[m.group(1)] = {"events/s": float(m.group(2)), "CPU µs/message": float(m.group(3))}
            if m.group(4) is not None:  # binaries that report it (after the v2-wire benchmarks)
                rows[m.group(1)]["CPU % others"] = float(m.group(4))
    else:
        rate = None
        for line in text.splitlines():
            m = re.match(r"== (\d+) frames/s", line)
            if m: rate = m.group(1)
            m = re.search(r"latency relay write → subscriber read, ms: p50 ([\d.]+), p90 ([\d.]+), p99 ([\d.]+), p999 ([\d.]+), max ([\d.]+)", line)
            if m and rate and not line.startswith("["):
                rows.setdefault(f"{rate} frames/s", {}).update(
                    {"p50": float(m.group(1)), "p99": float(m.group(3)), "p999": float(m.group(4))})
            m = re.search(r"this process \(.*?\) ([\d.]+), the load-client process(?:es)? ([\d.]+), other processes ([\d.]+)", line)
            if m and rate:
                rows.setdefault(f"{rate} frames/s", {}).update(
                    {"CPU % process": float(m.group(1)), "CPU % others": float(m.group(3))})
    return rows

runs = {(name, r): parse(f"{work}/{name}-{r}.out") for name in ("before", "after") for r in range(1, rounds + 1)}
def spread(values, digits):
    if not values: return "–"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"

rows = list(runs[("before", 1)].keys())
metrics = ["events/s", "CPU µs/message", "CPU % others"] if bench == "fanout" else ["p50", "p99", "p999", "CPU % process", "CPU % others"]
print()
print("| row | metric | before: median (min–max) | after: median (min–max) | after / before, per round: median (min–max) |")
print("|---|---|---|---|---|")
for row in rows:
    for metric in metrics:
        b = [runs[("before", r)].get(row, {}).get(metric) for r in range(1, rounds + 1)]
        a = [runs[("after", r)].get(row, {}).get(metric) for r in range(1, rounds + 1)]
        ratios = [x / y for x, y in zip(a, b) if x is not None and y]
        digits = 0 if metric == "events/s" else (1 if "%" in metric else 3)
        print(f"| {row} | {metric} | {spread([v for v in b if v is not None], digits)} "
              f"| {spread([v for v in a if v is not None], digits)} | {spread(ratios, 3)} |")
PY
