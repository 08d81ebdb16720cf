#!/usr/bin/env bash
# `contrail translate` versus the Python reference translator (Benchmarks/python/translate.py) on
# the same frames file, interleaved run by run (the machine is shared and noisy). Reports each
# run's whole-process CPU time (user + sys) and max RSS from /usr/bin/time, then the median,
# spread (min–max) and ratio, and the median of the run-by-run ratios. Results:
# Benchmarks/RESULTS.md.
#
# Usage: Benchmarks/translate-bench.sh [RUNS]
#   CONTRAIL  the release binary (default .build-release/release/contrail; operators run the
#             --static-swift-stdlib build of OPERATIONS §1, ~6 % less CPU here: RESULTS.md)
#   PYTHON    an interpreter with cbrrr installed (default python3)
#   INPUT     the frames file (default /tmp/contrail-translate-bench.frames; build it with
#             Benchmarks/build-translate-input.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-7}
contrail=${CONTRAIL:-$here/../.build-release/release/contrail}
python=${PYTHON:-python3}
input=${INPUT:-/tmp/contrail-translate-bench.frames}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

measure() { # name command...
  local name=$1
  shift
  /usr/bin/time -f "%U %S %M" -o "$work/time" "$@" 2>"$work/$name.stderr" >/dev/null
  read -r user sys rss <"$work/time"
  local cpu
  cpu=$(echo "$user + $sys" | bc)
  echo "$name $cpu $user $sys $rss $(stat -c %s "$work/$name.jsonl")" | tee -a "$work/results"
}

echo "input: $input ($(stat -c %s "$input") bytes), runs: $runs"
echo "# name cpu_s user_s sys_s max_rss_kB output_bytes"
for run in $(seq "$runs"); do
  if ((run % 2)); then order="contrail python"; else order="python contrail"; fi
  for name in $order; do
    case $name in
      contrail) measure contrail "$contrail" translate "$input" -o "$work/contrail.jsonl" ;;
      python) measure python "$python" "$here/python/translate.py" "$input" -o "$work/python.jsonl" ;;
    esac
  done
done
for name in contrail python; do echo "$name: $(tail -1 "$work/$name.stderr")"; done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
stats = {}
for name in ("contrail", "python"):
    cpu = [float(r[1]) for r in rows if r[0] == name]
    rss = [int(r[4]) for r in rows if r[0] == name]
    stats[name] = (statistics.median(cpu), min(cpu), max(cpu), max(rss) / 1024, len(cpu))
print("| translator | runs | median CPU (s) | spread (s) | max RSS (MB) |")
print("|---|---|---|---|---|")
for name, (med, lo, hi, rss, n) in stats.items():
    print(f"| {name} | {n} | {med:.3f} | {lo:.3f}–{hi:.3f} | {rss:.1f} |")
ratio = stats["python"][0] / stats["contrail"][0]
print(f"\nratio (Python median CPU / Contrail median CPU): {ratio:.1f}×")
# Each run is one Contrail and one Python process back to back, so their ratio sees the same
# state of a shared machine; its median is steadier than the ratio of medians when that drifts.
pairs = [
    float(rows[i + 1][1]) / float(rows[i][1]) if rows[i][0] == "contrail"
    else float(rows[i][1]) / float(rows[i + 1][1])
    for i in range(0, len(rows) - 1, 2)
]
print(f"ratio run by run: median {statistics.median(pairs):.1f}× "
      f"({min(pairs):.1f}–{max(pairs):.1f}× over {len(pairs)} runs)")
PY
