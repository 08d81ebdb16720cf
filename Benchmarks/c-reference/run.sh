#!/usr/bin/env bash
# Side by side, interleaved: the C reference (contrail_ref.c) against `contrail bench translate`
# and `contrail bench ingest` on the same frames, for ROUNDS rounds (issue 13).
#
#   Benchmarks/c-reference/run.sh            # from anywhere; runs in the package root
#   ROUNDS=7 CONTRAIL=.build/release/contrail Benchmarks/c-reference/run.sh
#
# Environment (defaults in brackets):
#   CONTRAIL       the contrail binary [.build-release/release/contrail, else .build/release/contrail]
#   FRAMES         frames file for translate [../shared/corpus/jetstream-v1-capture/frames.bin.zst];
#                  `contrail bench ingest` always reads that capture, so keep the default for ingest
#   DICT           zstd dictionary [Dictionaries/contrail-default.zdict]
#   ROUNDS [5]  PASSES [200]  TRIALS [5]  INGEST_FRAMES [50000]  INGEST_TRIALS [3]
#   OUT            where the binary, raw outputs and the summary go [${TMPDIR:-/tmp}/contrail-c-reference]
#
# Ratios (the done-when criteria of issue 13):
#   translate: Contrail µs/event ÷ C µs/event (decode + JSON), best of trials; target ≤ 1.3
#   ingest:    Contrail events/s ÷ C events/s (decode + JSON + zstd-3 + append + publish); target ≥ 0.8
#              (Contrail at level 3 too, as the C side, although serve's default is level 1)
# The C side is measured twice: every CBOR token through libcbor's cbor_stream_decode ("libcbor",
# the primary reference), and with one- and two-byte heads decoded in line as Contrail's
# CBORReader does ("inline", the stricter reference).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

default_frames=../shared/corpus/jetstream-v1-capture/frames.bin.zst
if [[ -z "${CONTRAIL:-}" ]]; then
  CONTRAIL=.build-release/release/contrail
  [[ -x $CONTRAIL ]] || CONTRAIL=.build/release/contrail
fi
FRAMES=${FRAMES:-$default_frames}
DICT=${DICT:-Dictionaries/contrail-default.zdict}
ROUNDS=${ROUNDS:-5}
PASSES=${PASSES:-200}
TRIALS=${TRIALS:-5}
INGEST_FRAMES=${INGEST_FRAMES:-50000}
INGEST_TRIALS=${INGEST_TRIALS:-3}
OUT=${OUT:-${TMPDIR:-/tmp}/contrail-c-reference}

[[ -x $CONTRAIL ]] || { echo "no contrail binary at $CONTRAIL (set CONTRAIL)" >&2; exit 1; }
[[ -f $FRAMES ]] || { echo "no frames file at $FRAMES (set FRAMES)" >&2; exit 1; }
[[ $FRAMES -ef $default_frames ]] ||
  echo "warning: contrail bench ingest reads $default_frames, not $FRAMES: ingest ratios compare different frames" >&2
mkdir -p "$OUT"
BIN=$OUT/contrail-ref

cc -std=c11 -O2 -Wall -Wextra -o "$BIN" "$here/contrail_ref.c" -lcbor -lzstd
echo "built $BIN ($(cc --version | head -1)); contrail: $CONTRAIL"

# --- Same work: the C JSON against `contrail translate` on the same frames (time_us aside). ---
"$BIN" dump "$FRAMES" >"$OUT/c.jsonl" 2>"$OUT/c-dump.txt"
"$CONTRAIL" translate "$FRAMES" -o "$OUT/contrail.jsonl" 2>"$OUT/contrail-translate.txt"
strip() { sed -E 's/"time_us":[0-9]+//' "$1"; }
c_lines=$(wc -l <"$OUT/c.jsonl"); s_lines=$(wc -l <"$OUT/contrail.jsonl")
c_bytes=$(wc -c <"$OUT/c.jsonl"); s_bytes=$(wc -c <"$OUT/contrail.jsonl")
if cmp -s <(strip "$OUT/c.jsonl") <(strip "$OUT/contrail.jsonl"); then same="byte-identical apart from time_us"
else same="DIFFERENT (diff <(sed -E 's/\"time_us\":[0-9]+//' $OUT/c.jsonl) <(sed ... $OUT/contrail.jsonl))"; fi
echo "check: C $c_lines events / $c_bytes bytes of JSONL; contrail translate $s_lines events / $s_bytes bytes; $same"

# --- Interleaved rounds (odd rounds run C first, even rounds Contrail first). ---
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }   # a key=value from a C result line
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
rows=()
for ((r = 1; r <= ROUNDS; r++)); do
  c_translate() {
    cj=$("$BIN" json "$FRAMES" --passes "$PASSES" --trials "$TRIALS")
    cji=$("$BIN" json "$FRAMES" --passes "$PASSES" --trials "$TRIALS" --inline-heads)
  }
  s_translate() {
    st=$("$CONTRAIL" bench translate "$FRAMES" --passes "$PASSES" --trials "$TRIALS" --no-baseline)
  }
  c_ingest() {
    ci=$("$BIN" ingest "$FRAMES" --frames "$INGEST_FRAMES" --trials "$INGEST_TRIALS" --dict "$DICT")
    cii=$("$BIN" ingest "$FRAMES" --frames "$INGEST_FRAMES" --trials "$INGEST_TRIALS" --dict "$DICT" --inline-heads)
  }
  s_ingest() {
    si=$("$CONTRAIL" bench ingest --frames "$INGEST_FRAMES" --trials "$INGEST_TRIALS" --dictionary "$DICT" \
      --level 3 --input capture --no-rss |
      grep '^real capture')
  }
  if ((r % 2)); then c_translate; s_translate; c_ingest; s_ingest
  else s_translate; c_translate; s_ingest; c_ingest; fi
  printf '%s\n' "$cj" "$cji" "$st" "$ci" "$cii" "$si" >"$OUT/round-$r.txt"

  cj_us=$(kv "$cj" best_us_per_event); cji_us=$(kv "$cji" best_us_per_event)
  st_us=$(sed -n 's/^translate best *: .*, \([0-9.]*\) µs\/event$/\1/p' <<<"$st")
  st_med=$(sed -n 's/^translate median *: .*, \([0-9.]*\) µs\/event$/\1/p' <<<"$st")
  ci_eps=$(kv "$ci" best_events_per_s); cii_eps=$(kv "$cii" best_events_per_s)
  ci_us=$(kv "$ci" best_us_per_event); ci_json=$(kv "$ci" json_only_best_us_per_event)
  si_eps=$(sed -n 's/.*; ingest \([0-9]*\) events\/s.*/\1/p' <<<"$si")
  si_us=$(sed -n 's/.*events\/s (\([0-9.]*\) µs\/event).*/\1/p' <<<"$si")
  si_tr=$(sed -n 's/.* vs translate \([0-9.]*\) + compress.*/\1/p' <<<"$si")
  si_events=$(sed -n 's/.* frames, \([0-9]*\) events;.*/\1/p' <<<"$si")
  [[ -n $st_us && -n $si_eps && -n $cj_us && -n $ci_eps ]] || { echo "could not parse round $r: see $OUT/round-$r.txt" >&2; exit 1; }
  [[ $si_events == "$(kv "$ci" events)" ]] ||
    echo "warning: round $r: contrail ingested $si_events events, C $(kv "$ci" events)" >&2
  row="$r $cj_us $cji_us $st_us $st_med $(ratio "$st_us" "$cj_us") $(ratio "$st_us" "$cji_us")"
  row+=" $ci_eps $ci_us $cii_eps $si_eps $si_us $(ratio "$si_eps" "$ci_eps") $(ratio "$si_eps" "$cii_eps") $ci_json $si_tr"
  rows+=("$row")
  echo "round $r (load $(cut -d' ' -f1-3 /proc/loadavg)): translate C $cj_us (inline $cji_us) vs contrail $st_us µs/event -> $(ratio "$st_us" "$cj_us");" \
    "ingest C $ci_eps (inline $cii_eps) vs contrail $si_eps events/s -> $(ratio "$si_eps" "$ci_eps")"
done

# --- Summary: per-round tables, then the median (min–max) of each column. ---
col() { printf '%s\n' "${rows[@]}" | awk -v c="$1" '{ print $c }'; }
stat() {   # median (min–max) of column $1
  col "$1" | sort -g | awk '{ a[NR] = $1 } END {
    m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    if (a[NR] >= 1000) printf "%.0f (%.0f–%.0f)", m, a[1], a[NR]; else printf "%.3f (%.3f–%.3f)", m, a[1], a[NR] }'
}
{
  echo
  echo "$(kv "$cj" frames) frames ($(kv "$cj" events) events) × $PASSES passes × $TRIALS trials for translate;" \
    "$INGEST_FRAMES frames ($(kv "$ci" events) events) × $INGEST_TRIALS trials for ingest; best of trials."
  echo
  echo "| round | C json µs/event (libcbor) | C json µs/event (inline heads) | Contrail translate µs/event (best) | (median) | ratio vs libcbor | ratio vs inline |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}" | awk '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }'
  echo "| **median (min–max)** | $(stat 2) | $(stat 3) | $(stat 4) | $(stat 5) | **$(stat 6)** | **$(stat 7)** |"
  echo
  echo "| round | C ingest events/s (libcbor) | C µs/event | C ingest events/s (inline heads) | Contrail ingest events/s | Contrail µs/event | ratio vs libcbor | ratio vs inline | C decode+JSON alone, same frames, µs/event | Contrail translate alone, same frames, µs/event |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}" | awk '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $8, $9, $10, $11, $12, $13, $14, $15, $16 }'
  echo "| **median (min–max)** | $(stat 8) | $(stat 9) | $(stat 10) | $(stat 11) | $(stat 12) | **$(stat 13)** | **$(stat 14)** | $(stat 15) | $(stat 16) |"
} | tee "$OUT/summary.md"
echo
echo "raw outputs: $OUT/round-*.txt; summary: $OUT/summary.md"
