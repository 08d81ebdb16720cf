#!/usr/bin/env bash
# Scale-out cost (issue 16): `contrail bench edge` with a small preloaded library that counts
# the calls a serve process makes to zstd's compressor and decompressor and to libcbor's
# decoder, so the benchmark can show, per event stored and per window, that an edge neither
# decodes records (cbor_stream_decode) nor compresses them (ZSTD_compress2) while the primary
# does both. The counters live in a file the library maps (BENCH_CALL_COUNTS, one Int64 per
# call), which the benchmark reads before and after each window. Results: Benchmarks/RESULTS.md.
#
# Usage: Benchmarks/edge-bench.sh [bench edge options…]
#   CONTRAIL  the release binary (default: a copy of .build-release/release/contrail)
#   CC        the C compiler (default cc); needs libzstd-dev and libcbor-dev
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
contrail=${CONTRAIL:-}
if [[ -z $contrail ]]; then
  # A copy, so that a rebuild during the run cannot change it.
  cp "$here/../.build-release/release/contrail" "$work/contrail"
  contrail=$work/contrail
fi

cat >"$work/callcount.c" <<'C'
#define _GNU_SOURCE
#include <cbor.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

/* In the order of CallCounts.names in Sources/contrail/BenchEdge.swift. */
enum { COMPRESS2, COMPRESS_STREAM2, DECOMPRESS_DCTX, DECOMPRESS_STREAM, CBOR_STREAM_DECODE, COUNT };
static int64_t unmapped[COUNT];
static int64_t *counts = unmapped;

__attribute__((constructor)) static void map_counts(void) {
  const char *path = getenv("BENCH_CALL_COUNTS");
  if (!path) return;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  if (ftruncate(fd, sizeof(int64_t) * COUNT) == 0) {
    void *map = mmap(NULL, sizeof(int64_t) * COUNT, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map != MAP_FAILED) counts = map;
  }
  close(fd);
}

#define COUNTED(index) __atomic_fetch_add(&counts[index], 1, __ATOMIC_RELAXED)
#define REAL(name)                                                                              \
  static __typeof__(name) *real;                                                                \
  if (!real) real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

size_t ZSTD_compress2(ZSTD_CCtx *cctx, void *dst, size_t capacity, const void *src, size_t size) {
  REAL(ZSTD_compress2);
  COUNTED(COMPRESS2);
  return real(cctx, dst, capacity, src, size);
}

size_t ZSTD_compressStream2(ZSTD_CCtx *cctx, ZSTD_outBuffer *out, ZSTD_inBuffer *in,
                            ZSTD_EndDirective end) {
  REAL(ZSTD_compressStream2);
  COUNTED(COMPRESS_STREAM2);
  return real(cctx, out, in, end);
}

size_t ZSTD_decompressDCtx(ZSTD_DCtx *dctx, void *dst, size_t capacity, const void *src,
                           size_t size) {
  REAL(ZSTD_decompressDCtx);
  COUNTED(DECOMPRESS_DCTX);
  return real(dctx, dst, capacity, src, size);
}

size_t ZSTD_decompressStream(ZSTD_DStream *stream, ZSTD_outBuffer *out, ZSTD_inBuffer *in) {
  REAL(ZSTD_decompressStream);
  COUNTED(DECOMPRESS_STREAM);
  return real(stream, out, in);
}

struct cbor_decoder_result cbor_stream_decode(cbor_data source, size_t size,
                                              const struct cbor_callbacks *callbacks,
                                              void *context) {
  REAL(cbor_stream_decode);
  COUNTED(CBOR_STREAM_DECODE);
  return real(source, size, callbacks, context);
}
C
"${CC:-cc}" -O2 -shared -fPIC -Wall -Werror -o "$work/libcallcount.so" "$work/callcount.c" -ldl
"$contrail" bench edge --preload "$work/libcallcount.so" "$@"
