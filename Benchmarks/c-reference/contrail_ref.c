/*
 * contrail_ref.c: a plain-C reference for `contrail bench translate` and `contrail bench ingest`
 * (issue 13, "ingest at C speed"). Same libraries as Contrail (libcbor's streaming decoder,
 * libzstd), same work: relay frame (DAG-CBOR header + body) -> CAR -> record DAG-CBOR ->
 * Jetstream v1 JSON, then (mode ingest) zstd level 3 with the dictionary per event, a log record
 * like Sources/EventLog/FORMAT.md appended to a file (write() in ~1 MiB chunks, fdatasync every
 * 100 ms) and a ring slot published. One thread, frames preloaded and decompressed.
 *
 *   contrail-ref json   FRAMES [--passes 200] [--trials 5] [--inline-heads]
 *   contrail-ref ingest FRAMES [--frames 50000] [--trials 3] [--dict PATH] [--dir DIR]
 *                              [--chunk BYTES] [--no-copies] [--keep] [--inline-heads]
 *   contrail-ref dump   FRAMES            (JSONL on stdout, to diff with `contrail translate`)
 *
 * --inline-heads decodes the one- and two-byte CBOR heads in line, as Contrail's CBORReader does,
 * and calls libcbor for the rest; by default every token goes through cbor_stream_decode.
 * Every length read from the input is checked against the bytes that remain.
 *
 * Build: cc -std=c11 -O2 -o contrail-ref contrail_ref.c -lcbor -lzstd
 */
#define _GNU_SOURCE
#include <cbor.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* ---------- small utilities ---------- */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("contrail-ref: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

typedef struct { const uint8_t *p; size_t n; } bytes_t;   /* a borrowed byte range */
typedef struct { uint8_t *p; size_t n, cap; } buf_t;       /* a growable output buffer */

static void buf_grow(buf_t *b, size_t extra) {
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->n < extra) {
    if (cap > SIZE_MAX / 2) die("out of memory");
    cap *= 2;
  }
  uint8_t *p = realloc(b->p, cap);
  if (!p) die("out of memory");
  b->p = p;
  b->cap = cap;
}
static inline void reserve(buf_t *b, size_t k) { if (b->cap - b->n < k) buf_grow(b, k); }
static inline void put(buf_t *b, const void *s, size_t k) {
  reserve(b, k);
  if (k) memcpy(b->p + b->n, s, k);
  b->n += k;
}
static inline void put1(buf_t *b, uint8_t c) { reserve(b, 1); b->p[b->n++] = c; }
#define PUTS(b, lit) put((b), (lit), sizeof(lit) - 1)
#define IS(s, lit) ((s).n == sizeof(lit) - 1 && memcmp((s).p, (lit), sizeof(lit) - 1) == 0)
#define BYTES(b) ((bytes_t){(b).p, (b).n})

static void put_u64(buf_t *b, uint64_t v) {
  char t[20];
  int i = 20;
  do { t[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  put(b, t + i, (size_t)(20 - i));
}
static void put_i64(buf_t *b, int64_t v) {
  if (v < 0) { put1(b, '-'); put_u64(b, (uint64_t)0 - (uint64_t)v); } else put_u64(b, (uint64_t)v);
}
static int cmp_bytes(bytes_t a, bytes_t b) {   /* Go's string order */
  size_t n = a.n < b.n ? a.n : b.n;
  int c = n ? memcmp(a.p, b.p, n) : 0;
  return c ? c : (a.n < b.n ? -1 : a.n > b.n);
}
static int64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------- DAG-CBOR tokens over libcbor's streaming decoder ---------- */

enum { T_INVALID, T_UINT, T_NEG, T_BYTES, T_TEXT, T_ARRAY, T_MAP, T_TAG, T_FLOAT, T_BOOL, T_NULL };
typedef struct { int kind; uint64_t arg; bytes_t s; double f; } tok_t;
typedef struct { const uint8_t *p; size_t off, end; } rd_t;
static rd_t reader(bytes_t b) { return (rd_t){b.p, 0, b.n}; }
static bool g_inline_heads = false;

typedef struct { int kind; uint64_t arg; double f; } slot_t;   /* what one callback reports */
#define SLOT(c) ((slot_t *)(c))
#define INT_CB(name, type, k) \
  static void name(void *c, type v) { SLOT(c)->kind = k; SLOT(c)->arg = (uint64_t)v; }
INT_CB(on_u8, uint8_t, T_UINT) INT_CB(on_u16, uint16_t, T_UINT) INT_CB(on_u32, uint32_t, T_UINT)
INT_CB(on_u64, uint64_t, T_UINT) INT_CB(on_n8, uint8_t, T_NEG) INT_CB(on_n16, uint16_t, T_NEG)
INT_CB(on_n32, uint32_t, T_NEG) INT_CB(on_n64, uint64_t, T_NEG) INT_CB(on_tag, uint64_t, T_TAG)
INT_CB(on_bool, bool, T_BOOL) INT_CB(on_array, size_t, T_ARRAY) INT_CB(on_map, size_t, T_MAP)
static void on_bytes(void *c, cbor_data d, size_t n) { (void)d; SLOT(c)->kind = T_BYTES; SLOT(c)->arg = n; }
static void on_text(void *c, cbor_data d, size_t n) { (void)d; SLOT(c)->kind = T_TEXT; SLOT(c)->arg = n; }
static void on_float(void *c, float v) { SLOT(c)->kind = T_FLOAT; SLOT(c)->f = v; }
static void on_double(void *c, double v) { SLOT(c)->kind = T_FLOAT; SLOT(c)->f = v; }
static void on_null(void *c) { SLOT(c)->kind = T_NULL; }
static struct cbor_callbacks g_cb;

static void init_callbacks(void) {
  /* Indefinite lengths, breaks and `undefined` keep their no-op callbacks: slot stays empty. */
  g_cb = cbor_empty_callbacks;
  g_cb.uint8 = on_u8; g_cb.uint16 = on_u16; g_cb.uint32 = on_u32; g_cb.uint64 = on_u64;
  g_cb.negint8 = on_n8; g_cb.negint16 = on_n16; g_cb.negint32 = on_n32; g_cb.negint64 = on_n64;
  g_cb.byte_string = on_bytes; g_cb.string = on_text;   /* the definite forms */
  g_cb.array_start = on_array; g_cb.map_start = on_map; g_cb.tag = on_tag;
  g_cb.float2 = on_float; g_cb.float4 = on_float; g_cb.float8 = on_double;
  g_cb.null = on_null; g_cb.boolean = on_bool;
}

/* The token for a head of major type 0-6 with argument `arg` and `hl` header bytes; every
 * length is checked against what remains (an array of n items needs n bytes, a map 2n). */
static int head_token(rd_t *r, tok_t *t, unsigned major, uint64_t arg, size_t hl) {
  t->kind = T_INVALID;
  if (hl > r->end - r->off) return T_INVALID;
  uint64_t rest = r->end - r->off - hl;
  t->arg = arg;
  switch (major) {
  case 0: case 1: r->off += hl; return t->kind = major ? T_NEG : T_UINT;
  case 2: case 3:
    if (arg > rest) return T_INVALID;
    t->s = (bytes_t){r->p + r->off + hl, (size_t)arg};
    r->off += hl + (size_t)arg;
    return t->kind = major == 2 ? T_BYTES : T_TEXT;
  case 4: if (arg > rest) return T_INVALID; r->off += hl; return t->kind = T_ARRAY;
  case 5: if (arg > rest / 2) return T_INVALID; r->off += hl; return t->kind = T_MAP;
  case 6: r->off += hl; return t->kind = T_TAG;
  }
  return T_INVALID;
}

/* Next token; T_INVALID on malformed or truncated input or anything DAG-CBOR forbids
 * (non-shortest heads, indefinite lengths, undefined and other simple values). */
static int next(rd_t *r, tok_t *t) {
  t->kind = T_INVALID;
  if (r->off >= r->end) return T_INVALID;
  uint8_t head = r->p[r->off], info = head & 31;
  if (g_inline_heads && info <= 24 && head < 0xE0 && (head >> 5 != 6 || info == 24)) {
    if (info < 24) return head_token(r, t, head >> 5, info, 1);
    if (r->end - r->off < 2 || r->p[r->off + 1] < 24) return T_INVALID;
    return head_token(r, t, head >> 5, r->p[r->off + 1], 2);
  }
  slot_t s = {0};
  struct cbor_decoder_result res = cbor_stream_decode(r->p + r->off, r->end - r->off, &g_cb, &s);
  if (res.status != CBOR_DECODER_FINISHED || s.kind == T_INVALID) return T_INVALID;
  if (head < 0xE0) {   /* shortest form, then our own length checks */
    static const uint64_t minimum[4] = {24, 0x100, 0x10000, 0x100000000};
    static const size_t length[4] = {2, 3, 5, 9};
    if (info > 27) return T_INVALID;
    if (info >= 24 && s.arg < minimum[info - 24]) return T_INVALID;
    return head_token(r, t, head >> 5, s.arg, info >= 24 ? length[info - 24] : 1);
  }
  if (res.read == 0 || res.read > r->end - r->off) return T_INVALID;
  r->off += res.read;
  t->arg = s.arg;
  t->f = s.f;
  return t->kind = s.kind;
}

static bool skip_value(rd_t *r, int depth);
static bool skip_n(rd_t *r, uint64_t n, int depth) {
  if (depth < 0) return false;
  for (uint64_t i = 0; i < n; i++) if (!skip_value(r, depth)) return false;
  return true;
}
static bool skip_value(rd_t *r, int depth) {
  tok_t t;
  switch (next(r, &t)) {
  case T_INVALID: return false;
  case T_ARRAY: return skip_n(r, t.arg, depth - 1);
  case T_MAP: return skip_n(r, 2 * t.arg, depth - 1);   /* arg <= bytes left / 2 */
  case T_TAG: return depth > 0 && skip_value(r, depth - 1);
  default: return true;
  }
}

/* ---------- varints, CIDs, multibase ---------- */

static bool varint(const uint8_t *p, size_t n, size_t off, uint64_t *v, size_t *len) {
  uint64_t x = 0;
  for (size_t i = off, shift = 0; i < n; shift += 7) {
    uint8_t b = p[i++];
    x |= (uint64_t)(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      if (x > INT64_MAX) return false;
      *v = x;
      *len = i - off;
      return true;
    }
    if (shift + 7 > 56) return false;
  }
  return false;
}
static size_t varint_size(uint64_t v) { size_t n = 1; while (v >= 0x80) { v >>= 7; n++; } return n; }
static uint8_t *put_varint(uint8_t *w, uint64_t v) {
  while (v >= 0x80) { *w++ = (uint8_t)(v | 0x80); v >>= 7; }
  *w++ = (uint8_t)v;
  return w;
}

/* Length of the binary CID at the start of `b` (0 if none): v0 = 12 20 + 32 bytes; v1 =
 * version 1, codec, hash code, digest length (minimal varints), digest. */
static size_t cid_length(bytes_t b) {
  if (b.n >= 2 && b.p[0] == 0x12 && b.p[1] == 0x20) return b.n >= 34 ? 34 : 0;
  size_t off = 0;
  for (int i = 0; i < 4; i++) {
    uint64_t v;
    size_t l;
    if (!varint(b.p, b.n, off, &v, &l) || (l > 1 && b.p[off + l - 1] == 0)) return 0;
    off += l;
    if (i == 0 && v != 1) return 0;
    if (i == 3) return v <= b.n - off ? off + (size_t)v : 0;
  }
  return 0;
}

static const char B32[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char B58[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_base32(buf_t *o, bytes_t d) {
  reserve(o, (d.n * 8 + 4) / 5);
  uint8_t *w = o->p + o->n;
  size_t i = 0;
  for (; i + 5 <= d.n; i += 5) {
    uint64_t g = 0;
    for (int k = 0; k < 5; k++) g = g << 8 | d.p[i + k];
    for (int k = 7; k >= 0; k--) *w++ = (uint8_t)B32[(g >> (5 * k)) & 31];
  }
  uint64_t acc = 0;
  int bits = 0;
  for (; i < d.n; i++) {
    acc = acc << 8 | d.p[i];
    for (bits += 8; bits >= 5;) { bits -= 5; *w++ = (uint8_t)B32[(acc >> bits) & 31]; }
  }
  if (bits) *w++ = (uint8_t)B32[(acc << (5 - bits)) & 31];
  o->n = (size_t)(w - o->p);
}
static void put_base58(buf_t *o, bytes_t d) {   /* only ever called for 34-byte CIDv0 */
  uint8_t digits[96] = {0};   /* big-endian base-58 digits */
  size_t zeros = 0, len = 0, cap = d.n * 138 / 100 + 1;
  if (cap > sizeof digits) die("base58 input too long");
  while (zeros < d.n && d.p[zeros] == 0) zeros++;
  for (size_t i = zeros; i < d.n; i++) {
    unsigned carry = d.p[i];
    size_t k = 0;
    for (size_t j = cap; carry || k < len; j--, k++) {
      carry += 256u * digits[j - 1];
      digits[j - 1] = (uint8_t)(carry % 58);
      carry /= 58;
    }
    len = k;
  }
  for (size_t i = 0; i < zeros; i++) put1(o, '1');
  for (size_t i = cap - len; i < cap; i++) put1(o, (uint8_t)B58[digits[i]]);
}
static void put_base64(buf_t *o, bytes_t d) {   /* standard alphabet, no padding */
  reserve(o, (d.n + 2) / 3 * 4);
  uint8_t *w = o->p + o->n;
  size_t i = 0;
  for (; i + 3 <= d.n; i += 3) {
    uint32_t v = (uint32_t)d.p[i] << 16 | (uint32_t)d.p[i + 1] << 8 | d.p[i + 2];
    *w++ = (uint8_t)B64[v >> 18]; *w++ = (uint8_t)B64[(v >> 12) & 63];
    *w++ = (uint8_t)B64[(v >> 6) & 63]; *w++ = (uint8_t)B64[v & 63];
  }
  if (i < d.n) {
    uint32_t v = (uint32_t)d.p[i] << 16 | (i + 1 < d.n ? (uint32_t)d.p[i + 1] << 8 : 0);
    *w++ = (uint8_t)B64[v >> 18]; *w++ = (uint8_t)B64[(v >> 12) & 63];
    if (i + 1 < d.n) *w++ = (uint8_t)B64[(v >> 6) & 63];
  }
  o->n = (size_t)(w - o->p);
}
static void put_cid(buf_t *o, bytes_t cid) {
  if (cid.n == 34 && cid.p[0] == 0x12 && cid.p[1] == 0x20) { put_base58(o, cid); return; }
  put1(o, 'b');
  put_base32(o, cid);
}

/* Decoders for the rare `{"$link": "..."}` and `{"$bytes": "..."}` maps written as CBOR text. */
static bool decode_base32(buf_t *o, bytes_t s) {
  uint64_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < s.n; i++) {
    uint8_t c = s.p[i], v;
    if (c >= 'a' && c <= 'z') v = c - 'a'; else if (c >= '2' && c <= '7') v = c - '2' + 26; else return false;
    acc = acc << 5 | v;
    if ((bits += 5) >= 8) { bits -= 8; put1(o, (uint8_t)(acc >> bits)); }
  }
  return bits < 5;
}
static bool decode_base58(buf_t *o, bytes_t s) {   /* s.n == 46 (a CIDv0 string) */
  uint8_t le[64] = {0};
  size_t zeros = 0, len = 0;
  while (zeros < s.n && s.p[zeros] == '1') zeros++;
  for (size_t i = zeros; i < s.n; i++) {
    const char *hit = s.p[i] ? strchr(B58, s.p[i]) : NULL;
    if (!hit) return false;
    unsigned carry = (unsigned)(hit - B58);
    for (size_t k = 0; k < len; k++) { carry += le[k] * 58u; le[k] = carry & 0xFF; carry >>= 8; }
    for (; carry; carry >>= 8) { if (len == sizeof le) return false; le[len++] = carry & 0xFF; }
  }
  for (size_t i = 0; i < zeros; i++) put1(o, 0);
  while (len) put1(o, le[--len]);
  return true;
}
static bool decode_base64(buf_t *o, bytes_t s) {   /* unpadded; `=` and 4k+1 lengths fail */
  if (s.n % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < s.n; i++) {
    uint8_t c = s.p[i];
    uint32_t v;
    if (c >= 'A' && c <= 'Z') v = c - 'A'; else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52; else if (c == '+') v = 62;
    else if (c == '/') v = 63; else return false;
    acc = acc << 6 | v;
    if ((bits += 6) >= 8) { bits -= 8; put1(o, (uint8_t)(acc >> bits)); }
  }
  return true;
}
/* CID string -> binary in `o` (cleared first): `b` + base32 (v1) or `Qm...` base58 (v0). */
static bool parse_cid(buf_t *o, bytes_t s) {
  o->n = 0;
  bool v1 = s.n > 0 && s.p[0] == 'b';
  if (s.n == 46 && s.p[0] == 'Q' && s.p[1] == 'm') { if (!decode_base58(o, s)) return false; }
  else if (!v1 || !decode_base32(o, (bytes_t){s.p + 1, s.n - 1})) return false;
  bytes_t b = BYTES(*o);
  return b.n > 0 && cid_length(b) == b.n && v1 == (b.n != 34 || b.p[0] != 0x12);
}

/* ---------- JSON strings, escaped as Go's encoding/json does ---------- */

static inline bool word_needs_attention(uint64_t v) {   /* non-ASCII, control, " & < > or \ */
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
#define HAS_ZERO(x) ((((x) - ones) & ~(x) & highs) != 0)
  if (v & highs) return true;
  if ((v - ones * 0x20) & ~v & highs) return true;
  if (HAS_ZERO((v | ones * 0x04) ^ (ones * 0x26))) return true;
  if (HAS_ZERO((v | ones * 0x02) ^ (ones * 0x3E))) return true;
  return HAS_ZERO(v ^ (ones * 0x5C));
}
static inline bool needs_escape(uint8_t c) {
  return c < 0x20 || c == '"' || c == '\\' || c == '&' || c == '<' || c == '>';
}
/* Length of the valid UTF-8 sequence at a non-ASCII byte, 0 if invalid. */
static size_t utf8_length(const uint8_t *p, size_t i, size_t n) {
  uint8_t c = p[i];
#define CONT(k) (i + (k) < n && (p[i + (k)] & 0xC0) == 0x80)
  if (c >= 0xC2 && c <= 0xDF) return CONT(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!CONT(1) || !CONT(2)) return 0;
    if ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] >= 0xA0)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!CONT(1) || !CONT(2) || !CONT(3)) return 0;
    if ((c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] >= 0x90)) return 0;
    return 4;
  }
  return 0;
}
/* Appends "..." for s. Invalid UTF-8 fails (records) or becomes \ufffd (envelope strings). */
static bool json_str(buf_t *o, bytes_t s, bool replace) {
  static const char hex[] = "0123456789abcdef";
  reserve(o, s.n + 2);
  o->p[o->n++] = '"';
  size_t run = 0, i = 0;
  while (i < s.n) {
    uint64_t w;
    if (i + 8 <= s.n && (memcpy(&w, s.p + i, 8), !word_needs_attention(w))) { i += 8; continue; }
    uint8_t c = s.p[i];
    if (c < 0x80) {
      if (!needs_escape(c)) { i++; continue; }
      put(o, s.p + run, i - run);
      switch (c) {
      case '"': PUTS(o, "\\\""); break;
      case '\\': PUTS(o, "\\\\"); break;
      case '\n': PUTS(o, "\\n"); break;
      case '\r': PUTS(o, "\\r"); break;
      case '\t': PUTS(o, "\\t"); break;
      default: PUTS(o, "\\u00"); put1(o, (uint8_t)hex[c >> 4]); put1(o, (uint8_t)hex[c & 15]);
      }
      run = ++i;
      continue;
    }
    size_t len = utf8_length(s.p, i, s.n);
    if (len == 0) {
      if (!replace) return false;
      put(o, s.p + run, i - run);
      PUTS(o, "\\ufffd");
      run = ++i;
      continue;
    }
    if (len == 3 && c == 0xE2 && s.p[i + 1] == 0x80 && (s.p[i + 2] & 0xFE) == 0xA8) {
      put(o, s.p + run, i - run);   /* U+2028, U+2029 */
      if (s.p[i + 2] == 0xA8) PUTS(o, "\\u2028"); else PUTS(o, "\\u2029");
      run = i += 3;
      continue;
    }
    i += len;
  }
  put(o, s.p + run, s.n - run);
  put1(o, '"');
  return true;
}

/* ---------- record DAG-CBOR -> atproto JSON (RecordConverter.swift) ---------- */

enum { MAX_BLOCK = 1 << 20, MAX_STRING = 1 << 20, MAX_ELEMS = 131072, MAX_KEY = 8192, MAX_DEPTH = 128 };
enum { V_OTHER, V_TEXT, V_LINK, V_LINKMAP, V_NONNEG };
typedef struct { int kind; bytes_t text; } val_t;
typedef struct { bytes_t key; size_t start, vstart, end; val_t v; } entry_t;   /* output offsets */
typedef struct { entry_t *e; size_t n, cap; buf_t scratch, tmp; } conv_t;

static void entry_push(conv_t *c, entry_t e) {
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    if (!(c->e = realloc(c->e, c->cap * sizeof *c->e))) die("out of memory");
  }
  c->e[c->n++] = e;
}
static int entry_order(const void *a, const void *b) {
  return cmp_bytes(((const entry_t *)a)->key, ((const entry_t *)b)->key);
}
static const entry_t *find(const entry_t *e, size_t n, const char *name) {
  size_t len = strlen(name);
  for (size_t i = 0; i < n; i++)
    if (e[i].key.n == len && memcmp(e[i].key.p, name, len) == 0) return &e[i];
  return NULL;
}
/* Moves out[from...] to the scratch buffer and truncates out to `from`. */
static size_t to_scratch(conv_t *c, buf_t *o, size_t from) {
  c->scratch.n = 0;
  put(&c->scratch, o->p + from, o->n - from);
  o->n = from;
  return from;
}
#define FROM_SCRATCH(c, o, a, b) put((o), (c)->scratch.p + (a), (b) - (a))

static bool write_value(conv_t *c, rd_t *r, buf_t *o, int depth, val_t *v);

/* After a map's entries are written: sort check, duplicate keys, the special maps of
 * PROTOCOL section 4.2 ($link, $bytes, blob, legacy blob), else a rewrite in key order. */
static bool finish_map(conv_t *c, size_t first, size_t map_start, buf_t *o, val_t *v) {
  entry_t *e = c->e + first;
  size_t n = c->n - first;
  bool sorted = true;
  for (size_t i = 1; i < n && sorted; i++) sorted = cmp_bytes(e[i - 1].key, e[i].key) <= 0;
  if (!sorted) {
    if (n <= 16) {
      for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && cmp_bytes(e[j - 1].key, e[j].key) > 0; j--) {
          entry_t t = e[j]; e[j] = e[j - 1]; e[j - 1] = t;
        }
    } else qsort(e, n, sizeof *e, entry_order);
  }
  for (size_t i = 1; i < n; i++) if (cmp_bytes(e[i - 1].key, e[i].key) == 0) return false;
  v->kind = V_OTHER;
  const entry_t *f, *ref, *mime, *size;
  if ((f = find(e, n, "$link"))) {
    if (n != 1 || f->v.kind != V_TEXT || !parse_cid(&c->tmp, f->v.text)) return false;
    o->n = map_start;
    PUTS(o, "{\"$link\":\""); put_cid(o, BYTES(c->tmp)); PUTS(o, "\"}");
    v->kind = V_LINKMAP;
    return true;
  }
  if ((f = find(e, n, "$bytes"))) {
    c->tmp.n = 0;
    if (n != 1 || f->v.kind != V_TEXT || !decode_base64(&c->tmp, f->v.text)) return false;
    o->n = map_start;
    PUTS(o, "{\"$bytes\":\""); put_base64(o, BYTES(c->tmp)); PUTS(o, "\"}");
    return true;
  }
  if ((f = find(e, n, "$type"))) {
    if (f->v.kind != V_TEXT || f->v.text.n == 0) return false;
    if (IS(f->v.text, "blob")) {   /* blobs keep struct order: $type, ref, mimeType, size */
      ref = find(e, n, "ref"); mime = find(e, n, "mimeType"); size = find(e, n, "size");
      if (n != 4 || !ref || (ref->v.kind != V_LINK && ref->v.kind != V_LINKMAP) || !mime ||
          mime->v.kind != V_TEXT || !size || size->v.kind != V_NONNEG) return false;
      size_t base = to_scratch(c, o, map_start);
      PUTS(o, "{\"$type\":\"blob\",\"ref\":"); FROM_SCRATCH(c, o, ref->vstart - base, ref->end - base);
      PUTS(o, ",\"mimeType\":"); FROM_SCRATCH(c, o, mime->vstart - base, mime->end - base);
      PUTS(o, ",\"size\":"); FROM_SCRATCH(c, o, size->vstart - base, size->end - base);
      put1(o, '}');
      return true;
    }
  } else if (n == 2 && (ref = find(e, n, "cid")) && (mime = find(e, n, "mimeType"))) {
    if (mime->v.kind != V_TEXT) return false;   /* legacy blob {"cid": "<CID>", "mimeType": ...} */
    size_t base = to_scratch(c, o, map_start);
    PUTS(o, "{\"cid\":\"");
    if (ref->v.kind == V_TEXT) {
      if (!parse_cid(&c->tmp, ref->v.text)) return false;
      put_cid(o, BYTES(c->tmp));
    } else if (ref->v.kind == V_LINK) {   /* written as {"$link":"<CID>"}: keep the string */
      FROM_SCRATCH(c, o, ref->vstart - base + 10, ref->end - base - 2);
    } else return false;
    PUTS(o, "\",\"mimeType\":"); FROM_SCRATCH(c, o, mime->vstart - base, mime->end - base);
    put1(o, '}');
    return true;
  }
  if (!sorted) {
    size_t base = to_scratch(c, o, map_start);
    put1(o, '{');
    for (size_t i = 0; i < n; i++) {
      if (i) put1(o, ',');
      FROM_SCRATCH(c, o, e[i].start - base, e[i].end - base);
    }
    put1(o, '}');
  }
  return true;
}

static bool write_map(conv_t *c, rd_t *r, buf_t *o, uint64_t count, int depth, val_t *v) {
  if (depth > MAX_DEPTH || count > MAX_ELEMS) return false;
  size_t map_start = o->n, first = c->n;
  put1(o, '{');
  for (uint64_t i = 0; i < count; i++) {
    tok_t t;
    if (next(r, &t) != T_TEXT || t.s.n > MAX_KEY) return false;
    if (i) put1(o, ',');
    size_t start = o->n;
    if (!json_str(o, t.s, false)) return false;
    put1(o, ':');
    size_t vstart = o->n;
    val_t val;
    if (!write_value(c, r, o, depth + 1, &val)) return false;
    entry_push(c, (entry_t){t.s, start, vstart, o->n, val});
  }
  put1(o, '}');
  bool ok = finish_map(c, first, map_start, o, v);
  c->n = first;
  return ok;
}

static bool link_content(rd_t *r, bytes_t *cid) {   /* the bytes after tag 42: 0x00 + one CID */
  tok_t t;
  if (next(r, &t) != T_BYTES || t.s.n < 2 || t.s.p[0] != 0) return false;
  *cid = (bytes_t){t.s.p + 1, t.s.n - 1};
  return cid_length(*cid) == cid->n;
}
static bool read_link(rd_t *r, bytes_t *cid) {
  tok_t t;
  return next(r, &t) == T_TAG && t.arg == 42 && link_content(r, cid);
}

static bool write_value(conv_t *c, rd_t *r, buf_t *o, int depth, val_t *v) {
  tok_t t;
  bytes_t cid;
  v->kind = V_OTHER;
  switch (next(r, &t)) {
  case T_UINT:
    if (t.arg > INT64_MAX) return false;
    put_u64(o, t.arg);
    v->kind = V_NONNEG;
    return true;
  case T_NEG:
    if (t.arg > INT64_MAX) return false;
    put1(o, '-'); put_u64(o, t.arg + 1);
    return true;
  case T_TEXT:
    if (t.s.n > MAX_STRING || !json_str(o, t.s, false)) return false;
    v->kind = V_TEXT;
    v->text = t.s;
    return true;
  case T_BYTES:
    if (t.s.n > MAX_STRING) return false;
    PUTS(o, "{\"$bytes\":\""); put_base64(o, t.s); PUTS(o, "\"}");
    return true;
  case T_TAG:
    if (t.arg != 42 || !link_content(r, &cid)) return false;
    PUTS(o, "{\"$link\":\""); put_cid(o, cid); PUTS(o, "\"}");
    v->kind = V_LINK;
    return true;
  case T_FLOAT: {   /* integral values in int64 range become integers; others fail */
    if (!(t.f >= -0x1p63 && t.f < 0x1p63) || (double)(int64_t)t.f != t.f) return false;
    int64_t i = (int64_t)t.f;
    put_i64(o, i);
    v->kind = i >= 0 ? V_NONNEG : V_OTHER;
    return true;
  }
  case T_BOOL: if (t.arg) PUTS(o, "true"); else PUTS(o, "false"); return true;
  case T_NULL: PUTS(o, "null"); return true;
  case T_ARRAY: {
    if (depth > MAX_DEPTH || t.arg > MAX_ELEMS) return false;
    uint64_t n = t.arg;
    val_t item;
    put1(o, '[');
    for (uint64_t i = 0; i < n; i++) {
      if (i) put1(o, ',');
      if (!write_value(c, r, o, depth + 1, &item)) return false;
    }
    put1(o, ']');
    return true;
  }
  case T_MAP: return write_map(c, r, o, t.arg, depth, v);
  default: return false;
  }
}

static bool convert_record(conv_t *c, bytes_t block, buf_t *o) {
  size_t mark = o->n;
  rd_t r = reader(block);
  tok_t t;
  val_t v;
  c->n = 0;
  if (block.n > MAX_BLOCK || next(&r, &t) != T_MAP || !write_map(c, &r, o, t.arg, 1, &v) ||
      r.off < r.end) {
    o->n = mark;
    return false;
  }
  return true;
}

/* ---------- RFC 3339 times as Go's time.Parse accepts them ---------- */

static bool rfc3339_valid(bytes_t s) {
  const uint8_t *p = s.p;
  size_t n = s.n, i = 19;
  if (n < 20) return false;
#define DIGITS(at, k, out)                                       \
  do {                                                           \
    out = 0;                                                     \
    for (size_t d_ = (at); d_ < (at) + (k); d_++) {              \
      if (p[d_] < '0' || p[d_] > '9') return false;              \
      out = out * 10 + (p[d_] - '0');                            \
    }                                                            \
  } while (0)
  int y, mo, d, h, mi, sec, oh, om;
  DIGITS(0, 4, y); DIGITS(5, 2, mo); DIGITS(8, 2, d); DIGITS(11, 2, h); DIGITS(14, 2, mi);
  DIGITS(17, 2, sec);
  if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':') return false;
  static const int days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  if (mo < 1 || mo > 12 || d < 1 || d > days[mo] + (mo == 2 && leap) || h > 23 || mi > 59 || sec > 59)
    return false;
  if (p[i] == '.') {
    size_t start = ++i;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    if (i == start) return false;
  }
  if (i >= n) return false;
  if (p[i] == 'Z') return i + 1 == n;
  if ((p[i] != '+' && p[i] != '-') || i + 6 != n || p[i + 3] != ':') return false;
  DIGITS(i + 1, 2, oh); DIGITS(i + 4, 2, om);
  return oh < 24 && om < 60;
}

/* ---------- CAR files ---------- */

typedef struct { bytes_t cid, data; } block_t;
typedef struct { block_t *b; size_t n, cap; } blocks_t;

static int block_order(const void *a, const void *b) {   /* by CID, then file order */
  const block_t *x = a, *y = b;
  int c = cmp_bytes(x->cid, y->cid);
  return c ? c : (x->cid.p > y->cid.p) - (x->cid.p < y->cid.p);
}
static bool car_first_root(bytes_t header, bytes_t *root) {   /* {roots: [CID...], version: 1} */
  rd_t r = reader(header);
  tok_t t;
  bool have_root = false;
  uint64_t version = 0;
  if (next(&r, &t) != T_MAP) return false;
  for (uint64_t i = 0, n = t.arg; i < n; i++) {
    if (next(&r, &t) != T_TEXT) return false;
    if (IS(t.s, "version")) {
      if (next(&r, &t) != T_UINT) return false;
      version = t.arg;
    } else if (IS(t.s, "roots")) {
      if (next(&r, &t) != T_ARRAY || t.arg == 0) return false;
      for (uint64_t j = 0, m = t.arg; j < m; j++) {
        bytes_t cid;
        if (!read_link(&r, &cid)) return false;
        if (j == 0) { *root = cid; have_root = true; }
      }
    } else if (!skip_value(&r, MAX_DEPTH)) return false;
  }
  return version == 1 && have_root && r.off >= r.end;
}
/* Fills `bl` with every (CID, data) section, sorted by CID when there are more than 16. */
static bool car_read(bytes_t car, blocks_t *bl, bytes_t *root) {
  uint64_t len;
  size_t vl;
  bl->n = 0;
  if (!varint(car.p, car.n, 0, &len, &vl) || len > car.n - vl) return false;
  if (!car_first_root((bytes_t){car.p + vl, (size_t)len}, root)) return false;
  for (size_t off = vl + (size_t)len; off < car.n;) {
    if (!varint(car.p, car.n, off, &len, &vl) || len > car.n - off - vl) return false;
    bytes_t sec = {car.p + off + vl, (size_t)len};
    size_t cl = cid_length(sec);
    if (!cl) return false;
    if (bl->n == bl->cap) {
      bl->cap = bl->cap ? 2 * bl->cap : 64;
      if (!(bl->b = realloc(bl->b, bl->cap * sizeof *bl->b))) die("out of memory");
    }
    bl->b[bl->n++] = (block_t){{sec.p, cl}, {sec.p + cl, sec.n - cl}};
    off += vl + sec.n;
  }
  if (bl->n > 16) {
    bool sorted = true;
    for (size_t i = 1; i < bl->n && sorted; i++) sorted = block_order(&bl->b[i - 1], &bl->b[i]) < 0;
    if (!sorted) qsort(bl->b, bl->n, sizeof *bl->b, block_order);
  }
  return true;
}
static bool block_find(const blocks_t *bl, bytes_t cid, bytes_t *data) {
  if (bl->n <= 16) {
    for (size_t i = 0; i < bl->n; i++)
      if (cmp_bytes(bl->b[i].cid, cid) == 0) { *data = bl->b[i].data; return true; }
    return false;
  }
  size_t lo = 0, hi = bl->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cmp_bytes(bl->b[mid].cid, cid) < 0) lo = mid + 1; else hi = mid;
  }
  if (lo == bl->n || cmp_bytes(bl->b[lo].cid, cid) != 0) return false;
  *data = bl->b[lo].data;
  return true;
}
static bool commit_block_ok(bytes_t block) {   /* a map with integer version 2 or 3 */
  rd_t r = reader(block);
  tok_t t;
  bytes_t cid;
  uint64_t version = 0;
  if (next(&r, &t) != T_MAP) return false;
  for (uint64_t i = 0, n = t.arg; i < n; i++) {
    if (next(&r, &t) != T_TEXT) return false;
    if (IS(t.s, "version")) {
      if (next(&r, &t) != T_UINT) return false;
      version = t.arg;
    } else if (IS(t.s, "did") || IS(t.s, "rev")) {
      if (next(&r, &t) != T_TEXT) return false;
    } else if (IS(t.s, "data")) {
      if (!read_link(&r, &cid)) return false;
    } else if (IS(t.s, "prev")) {
      size_t mark = r.off;
      if (next(&r, &t) == T_NULL) continue;
      r.off = mark;
      if (!read_link(&r, &cid)) return false;
    } else if (!skip_value(&r, MAX_DEPTH)) return false;
  }
  return version == 2 || version == 3;
}

/* ---------- frames -> events (FrameDecoder.swift, Translator.swift, EventJSON.swift) ---------- */

enum { K_COMMIT, K_IDENTITY, K_ACCOUNT };
typedef struct xlat xlat_t;
typedef void (*sink_fn)(xlat_t *x, int kind, int64_t time_us, int64_t seq, bytes_t did, bytes_t coll);
struct xlat {
  conv_t conv;
  buf_t record, event;
  blocks_t blocks;
  int64_t last_time_us;   /* the sequencer: max(wall clock us, last + 1) */
  int64_t seq_shift;      /* added to relay seqs (ingest replays the capture under new seqs) */
  uint64_t events, json_bytes, drops, undecodable;
  sink_fn sink;
  void *ctx;
};

static int64_t next_time_us(xlat_t *x) {
  int64_t now = now_ns(CLOCK_REALTIME) / 1000;
  return x->last_time_us = now > x->last_time_us + 1 ? now : x->last_time_us + 1;
}
static void emit(xlat_t *x, int kind, int64_t time_us, int64_t seq, bytes_t did, bytes_t coll) {
  x->events++;
  x->json_bytes += x->event.n;
  if (x->sink) x->sink(x, kind, time_us, seq + x->seq_shift, did, coll);
}
static void jstr(buf_t *o, bytes_t s) { json_str(o, s, true); }

typedef struct { bytes_t action, path, cid; bool has_cid; } op_t;
static bool decode_op(rd_t *r, op_t *op) {
  tok_t t;
  bool have_action = false, have_path = false;
  op->has_cid = false;
  if (next(r, &t) != T_MAP) return false;
  for (uint64_t i = 0, n = t.arg; i < n; i++) {
    if (next(r, &t) != T_TEXT) return false;
    if (IS(t.s, "action")) {
      if (next(r, &t) != T_TEXT) return false;
      op->action = t.s; have_action = true;
    } else if (IS(t.s, "path")) {
      if (next(r, &t) != T_TEXT) return false;
      op->path = t.s; have_path = true;
    } else if (IS(t.s, "cid")) {
      next(r, &t);
      if (t.kind == T_NULL) op->has_cid = false;
      else if (t.kind == T_TAG && t.arg == 42 && link_content(r, &op->cid)) op->has_cid = true;
      else return false;
    } else if (!skip_value(r, MAX_DEPTH)) return false;
  }
  return have_action && have_path;
}

static void translate_commit(xlat_t *x, bytes_t body) {
  rd_t r = reader(body), ops = {0};
  tok_t t;
  op_t op;
  int64_t seq = -1;
  bytes_t repo = {0}, rev = {0}, time = {0}, car = {0}, root, block;
  bool have_repo = false, have_time = false, have_car = false, too_big = false;
  uint64_t n_ops = 0;
  if (next(&r, &t) != T_MAP) goto bad;
  for (uint64_t i = 0, n = t.arg; i < n; i++) {
    if (next(&r, &t) != T_TEXT) goto bad;
    bytes_t k = t.s;
    if (IS(k, "seq")) {
      if (next(&r, &t) != T_UINT || t.arg > INT64_MAX) goto bad;
      seq = (int64_t)t.arg;
    } else if (IS(k, "repo")) {
      if (next(&r, &t) != T_TEXT) goto bad;
      repo = t.s; have_repo = true;
    } else if (IS(k, "rev")) {
      if (next(&r, &t) != T_TEXT) goto bad;
      rev = t.s;
    } else if (IS(k, "time")) {   /* a non-string time is dropped later as bad_time */
      if (next(&r, &t) == T_TEXT) { time = t.s; have_time = true; }
    } else if (IS(k, "tooBig")) {
      if (next(&r, &t) != T_BOOL) goto bad;
      too_big = t.arg;
    } else if (IS(k, "blocks")) {
      if (next(&r, &t) != T_BYTES) goto bad;
      car = t.s; have_car = true;
    } else if (IS(k, "ops")) {   /* validated now, decoded again below */
      if (next(&r, &t) != T_ARRAY) goto bad;
      n_ops = t.arg;
      ops = (rd_t){body.p, r.off, 0};
      for (uint64_t j = 0; j < n_ops; j++) if (!decode_op(&r, &op)) goto bad;
      ops.end = r.off;
    } else if (!skip_value(&r, MAX_DEPTH)) goto bad;
  }
  if (r.off < r.end || seq < 0 || !have_repo) goto bad;
  if (too_big || !have_time || !rfc3339_valid(time) || !have_car || !car_read(car, &x->blocks, &root) ||
      !block_find(&x->blocks, root, &block) || !commit_block_ok(block)) {
    x->drops++;
    return;
  }
  for (uint64_t j = 0; j < n_ops; j++) {
    decode_op(&ops, &op);
    const uint8_t *slash = op.path.n ? memchr(op.path.p, '/', op.path.n) : NULL;
    if (!slash) { x->drops++; continue; }
    bytes_t coll = {op.path.p, (size_t)(slash - op.path.p)};
    bytes_t rkey = {slash + 1, op.path.n - coll.n - 1};
    const uint8_t *end = rkey.n ? memchr(rkey.p, '/', rkey.n) : NULL;
    if (end) rkey.n = (size_t)(end - rkey.p);
    const char *operation;
    if (IS(op.action, "create")) operation = "\"operation\":\"create\"";
    else if (IS(op.action, "update")) operation = "\"operation\":\"update\"";
    else if (IS(op.action, "delete")) operation = NULL;
    else { x->drops++; continue; }
    x->record.n = 0;
    if (operation && (!op.has_cid || !block_find(&x->blocks, op.cid, &block) ||
                      !convert_record(&x->conv, block, &x->record))) {
      x->drops++;
      continue;
    }
    int64_t time_us = next_time_us(x);
    buf_t *o = &x->event;
    o->n = 0;
    reserve(o, x->record.n + 256);
    PUTS(o, "{\"did\":"); jstr(o, repo);
    PUTS(o, ",\"time_us\":"); put_i64(o, time_us);
    PUTS(o, ",\"kind\":\"commit\",\"commit\":{");
    if (rev.n) { PUTS(o, "\"rev\":"); jstr(o, rev); put1(o, ','); }
    if (operation) put(o, operation, strlen(operation)); else PUTS(o, "\"operation\":\"delete\"");
    if (coll.n) { PUTS(o, ",\"collection\":"); jstr(o, coll); }
    if (rkey.n) { PUTS(o, ",\"rkey\":"); jstr(o, rkey); }
    if (operation) {
      PUTS(o, ",\"record\":"); put(o, x->record.p, x->record.n);
      PUTS(o, ",\"cid\":\""); put_cid(o, op.cid); put1(o, '"');
    }
    PUTS(o, "}}");
    emit(x, K_COMMIT, time_us, seq, repo, coll);
  }
  return;
bad:
  x->undecodable++;
}

static void translate_identity_or_account(xlat_t *x, bytes_t body, bool account) {
  rd_t r = reader(body);
  tok_t t;
  int64_t seq = -1;
  bytes_t did = {0}, time = {0}, extra = {0};   /* extra: identity handle or account status */
  bool have_did = false, have_time = false, have_extra = false, active = false;
  if (next(&r, &t) != T_MAP) goto bad;
  for (uint64_t i = 0, n = t.arg; i < n; i++) {
    if (next(&r, &t) != T_TEXT) goto bad;
    bytes_t k = t.s;
    if (IS(k, "seq")) {
      if (next(&r, &t) != T_UINT || t.arg > INT64_MAX) goto bad;
      seq = (int64_t)t.arg;
    } else if (IS(k, "did")) {
      if (next(&r, &t) != T_TEXT) goto bad;
      did = t.s; have_did = true;
    } else if (IS(k, "time")) {
      if (next(&r, &t) == T_TEXT) { time = t.s; have_time = true; }
    } else if (account ? IS(k, "status") : IS(k, "handle")) {
      next(&r, &t);
      if (t.kind == T_TEXT) { extra = t.s; have_extra = true; }
      else if (t.kind == T_NULL) have_extra = false;
      else goto bad;
    } else if (account && IS(k, "active")) {
      if (next(&r, &t) != T_BOOL) goto bad;
      active = t.arg;
    } else if (!skip_value(&r, MAX_DEPTH)) goto bad;
  }
  if (r.off < r.end || seq < 0 || !have_did) goto bad;
  if (!have_time || !rfc3339_valid(time)) { x->drops++; return; }
  int64_t time_us = next_time_us(x);
  buf_t *o = &x->event;
  o->n = 0;
  PUTS(o, "{\"did\":"); jstr(o, did);
  PUTS(o, ",\"time_us\":"); put_i64(o, time_us);
  if (account) {
    PUTS(o, ",\"kind\":\"account\",\"account\":{\"active\":");
    if (active) PUTS(o, "true"); else PUTS(o, "false");
    PUTS(o, ",\"did\":"); jstr(o, did);
    PUTS(o, ",\"seq\":"); put_i64(o, seq);
    if (have_extra) { PUTS(o, ",\"status\":"); jstr(o, extra); }
  } else {
    PUTS(o, ",\"kind\":\"identity\",\"identity\":{\"did\":"); jstr(o, did);
    if (have_extra) { PUTS(o, ",\"handle\":"); jstr(o, extra); }
    PUTS(o, ",\"seq\":"); put_i64(o, seq);
  }
  PUTS(o, ",\"time\":"); jstr(o, time);
  PUTS(o, "}}");
  emit(x, account ? K_ACCOUNT : K_IDENTITY, time_us, seq, did, (bytes_t){0});
  return;
bad:
  x->undecodable++;
}

static void translate_frame(xlat_t *x, bytes_t frame) {
  rd_t r = reader(frame);
  tok_t t;
  int64_t op = 0;
  bool have_op = false;
  bytes_t type = {0};
  if (next(&r, &t) != T_MAP) goto bad;
  for (uint64_t i = 0, n = t.arg; i < n; i++) {
    if (next(&r, &t) != T_TEXT) goto bad;
    if (IS(t.s, "op")) {
      next(&r, &t);
      if (t.kind == T_UINT && t.arg <= 1ULL << 32) op = (int64_t)t.arg;
      else if (t.kind == T_NEG && t.arg <= 1ULL << 32) op = -1 - (int64_t)t.arg;
      else goto bad;
      have_op = true;
    } else if (IS(t.s, "t")) {
      if (next(&r, &t) != T_TEXT) goto bad;
      type = t.s;
    } else if (!skip_value(&r, MAX_DEPTH)) goto bad;
  }
  if (!have_op) goto bad;
  bytes_t body = {frame.p + r.off, frame.n - r.off};
  if (op != 1) return;   /* error frames (op -1) and unknown ops make no events */
  if (IS(type, "#commit")) translate_commit(x, body);
  else if (IS(type, "#identity")) translate_identity_or_account(x, body, false);
  else if (IS(type, "#account")) translate_identity_or_account(x, body, true);
  return;   /* #sync, #info, legacy and unknown types make no events */
bad:
  x->undecodable++;
}

/* ---------- ingest: zstd with the dictionary, log record append, ring publish ---------- */

static uint32_t crc_table[256];
static bool have_sse42 = false;
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(const uint8_t *p, size_t n) {
  uint64_t c = 0xFFFFFFFF;
  for (; n >= 8; p += 8, n -= 8) { uint64_t w; memcpy(&w, p, 8); c = _mm_crc32_u64(c, w); }
  uint32_t c32 = (uint32_t)c;
  for (; n; n--) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
#endif
static uint32_t crc32c(const uint8_t *p, size_t n) {   /* CRC-32C (Castagnoli) */
#if defined(__x86_64__)
  if (have_sse42) return crc32c_hw(p, n);
#endif
  uint32_t c = 0xFFFFFFFF;
  while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
  return ~c;
}
static void init_crc(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78 : c >> 1;
    crc_table[i] = c;
  }
#if defined(__x86_64__)
  have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
  if (crc32c((const uint8_t *)"123456789", 9) != 0xE3069283) die("CRC-32C self-test failed");
}

static const char *const COLLECTIONS[] = {   /* RecordCodec.collections: stored as one byte */
  "app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.feed.repost", "app.bsky.graph.follow",
  "app.bsky.graph.block", "app.bsky.graph.listitem", "app.bsky.actor.profile",
  "app.bsky.feed.threadgate", "app.bsky.feed.postgate", "app.bsky.graph.list",
  "app.bsky.feed.generator", "app.bsky.graph.starterpack", "app.bsky.graph.listblock",
  "app.bsky.labeler.service", "chat.bsky.actor.declaration", "app.bsky.actor.status",
  "app.bsky.graph.verification", "app.bsky.notification.declaration",
};
enum { RING_SLOTS = 1 << 16, ARENA_BYTES = 64 << 20 };
typedef struct { int64_t time_us, seq; const uint8_t *payload; uint32_t len; int kind; } slot_ev_t;
typedef struct {
  ZSTD_CCtx *cctx;
  ZSTD_CDict *cdict;
  unsigned dict_id;
  int fd;
  buf_t log;                    /* bytes appended, not yet write()n */
  size_t chunk;                 /* write() once this many are pending */
  int64_t base_time, base_seq, last_sync_ns;
  bool have_base;
  uint64_t unsynced, file_bytes, compressed_bytes, syncs, writes;
  slot_ev_t *ring;              /* the live ring: what subscribers would read */
  uint8_t *arena;               /* compressed payloads, reused circularly */
  size_t arena_off;
  _Atomic uint64_t head;
} ingest_t;

static void le32(uint8_t *w, uint32_t v) { for (int i = 0; i < 4; i++) w[i] = (uint8_t)(v >> (8 * i)); }
static void le64(uint8_t *w, uint64_t v) { for (int i = 0; i < 8; i++) w[i] = (uint8_t)(v >> (8 * i)); }

static void log_write(ingest_t *g) {
  for (size_t done = 0; done < g->log.n;) {
    ssize_t k = write(g->fd, g->log.p + done, g->log.n - done);
    if (k < 0) die("write: %s", strerror(errno));
    done += (size_t)k;
  }
  g->file_bytes += g->log.n;
  g->unsynced += g->log.n;
  g->log.n = 0;
  g->writes++;
}
static void log_sync_if_due(ingest_t *g, bool force) {
  int64_t now = now_ns(CLOCK_MONOTONIC);
  if (!force && now - g->last_sync_ns < 100 * 1000000LL) return;
  if (g->log.n) log_write(g);
  if (!g->unsynced) return;
  if (fdatasync(g->fd) != 0) die("fdatasync: %s", strerror(errno));
  g->unsynced = 0;
  g->last_sync_ns = now;
  g->syncs++;
}

static void ingest_sink(xlat_t *x, int kind, int64_t time_us, int64_t seq, bytes_t did, bytes_t coll) {
  ingest_t *g = x->ctx;
  /* 1. One self-contained zstd frame (content size and dictionary ID in its header). */
  size_t bound = ZSTD_compressBound(x->event.n);
  if (bound > ARENA_BYTES) die("event too large");
  if (g->arena_off + bound > ARENA_BYTES) g->arena_off = 0;
  uint8_t *z = g->arena + g->arena_off;
  size_t zn = ZSTD_compress_usingCDict(g->cctx, z, bound, x->event.p, x->event.n, g->cdict);
  if (ZSTD_isError(zn)) die("zstd: %s", ZSTD_getErrorName(zn));
  g->compressed_bytes += zn;
  /* 2. The log record of FORMAT.md: varint length, CRC-32C, time/seq offsets, flags + DID,
   *    collection, payload. (A segment header first; re-based in place if an offset overflows.) */
  int64_t dt = time_us - g->base_time, ds = seq - g->base_seq;
  if (!g->have_base || dt < 0 || dt > UINT32_MAX || ds < 0 || ds > UINT32_MAX) {
    uint8_t h[32];
    memcpy(h, "CTRLSEG1", 8); le32(h + 8, 1); le32(h + 12, g->dict_id);
    le64(h + 16, (uint64_t)time_us); le64(h + 24, (uint64_t)seq);
    put(&g->log, h, 32);
    g->base_time = time_us; g->base_seq = seq; g->have_base = true;
    dt = ds = 0;
  }
  bool packed = did.n == 32 && memcmp(did.p, "did:plc:", 8) == 0;
  for (size_t i = 8; packed && i < 32; i++)
    packed = (did.p[i] >= 'a' && did.p[i] <= 'z') || (did.p[i] >= '2' && did.p[i] <= '7');
  int code = coll.n ? 1 : 0;
  for (size_t i = 0; code == 1 && i < sizeof COLLECTIONS / sizeof *COLLECTIONS; i++)
    if (strlen(COLLECTIONS[i]) == coll.n && memcmp(COLLECTIONS[i], coll.p, coll.n) == 0) code = (int)i + 2;
  size_t did_len = packed ? 15 : varint_size(did.n) + did.n;
  size_t coll_len = code == 1 ? 1 + varint_size(coll.n) + coll.n : 1;
  size_t body = 8 + 1 + did_len + coll_len + zn;
  reserve(&g->log, 10 + 4 + body);
  uint8_t *w = put_varint(g->log.p + g->log.n, body + 4), *crc_at = w, *start = w + 4;
  w = start;
  le32(w, (uint32_t)dt); le32(w + 4, (uint32_t)ds); w += 8;
  *w++ = (uint8_t)(kind | (packed ? 4 : 0));
  if (packed) {
    uint64_t acc = 0;
    int bits = 0;
    for (size_t i = 8; i < 32; i++) {
      uint8_t c = did.p[i];
      acc = acc << 5 | (uint64_t)(c >= 'a' ? c - 'a' : c - '2' + 26);
      if ((bits += 5) >= 8) { bits -= 8; *w++ = (uint8_t)(acc >> bits); }
    }
  } else {
    w = put_varint(w, did.n);
    memcpy(w, did.p, did.n); w += did.n;
  }
  *w++ = (uint8_t)code;
  if (code == 1) { w = put_varint(w, coll.n); memcpy(w, coll.p, coll.n); w += coll.n; }
  memcpy(w, z, zn); w += zn;
  le32(crc_at, crc32c(start, (size_t)(w - start)));
  g->log.n = (size_t)(w - g->log.p);
  /* 3. Publish: fill the next ring slot, then release-store the head. */
  uint64_t head = atomic_load_explicit(&g->head, memory_order_relaxed);
  g->ring[head & (RING_SLOTS - 1)] = (slot_ev_t){time_us, seq, z, (uint32_t)zn, kind};
  atomic_store_explicit(&g->head, head + 1, memory_order_release);
  g->arena_off += zn;
  if (g->log.n >= g->chunk) log_write(g);
}

/* ---------- input, timing, modes ---------- */

static uint8_t *read_file(const char *path, size_t *n) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) die("cannot read %s: %s", path, strerror(errno));
  uint8_t *p = malloc((size_t)st.st_size + 1);
  if (!p) die("out of memory");
  size_t done = 0;
  for (ssize_t k; done < (size_t)st.st_size; done += (size_t)k)
    if ((k = read(fd, p + done, (size_t)st.st_size - done)) <= 0) die("read %s failed", path);
  close(fd);
  *n = done;
  return p;
}
/* Frames file: [u32 LE length][frame]..., plain or one zstd stream (FramesFile.swift). */
static bytes_t *load_frames(const char *path, size_t *count) {
  size_t n;
  uint8_t *raw = read_file(path, &n);
  if (n >= 4 && raw[0] == 0x28 && raw[1] == 0xB5 && raw[2] == 0x2F && raw[3] == 0xFD) {
    ZSTD_DStream *ds = ZSTD_createDStream();
    buf_t out = {0};
    ZSTD_inBuffer in = {raw, n, 0};
    size_t r = 1;
    while (in.pos < in.size || r != 0) {
      if (out.n > ((size_t)4 << 30)) die("%s decompresses to over 4 GiB", path);
      reserve(&out, 1 << 20);
      ZSTD_outBuffer ob = {out.p, out.cap, out.n};
      size_t before_in = in.pos, before_out = out.n;
      r = ZSTD_decompressStream(ds, &ob, &in);
      if (ZSTD_isError(r)) die("%s: %s", path, ZSTD_getErrorName(r));
      out.n = ob.pos;
      if (in.pos == before_in && out.n == before_out) die("%s: truncated zstd stream", path);
    }
    ZSTD_freeDStream(ds);
    free(raw);
    raw = out.p;
    n = out.n;
  }
  bytes_t *frames = NULL;
  size_t k = 0, cap = 0, off = 0;
  while (n - off >= 4) {
    size_t len = raw[off] | (size_t)raw[off + 1] << 8 | (size_t)raw[off + 2] << 16 | (size_t)raw[off + 3] << 24;
    if (len > n - off - 4) break;   /* a damaged tail: ignored, as FramesFile does */
    if (k == cap && !(frames = realloc(frames, (cap = cap ? 2 * cap : 256) * sizeof *frames))) die("out of memory");
    frames[k++] = (bytes_t){raw + off + 4, len};
    off += 4 + len;
  }
  if (k == 0) die("%s holds no frames", path);
  *count = k;
  return frames;
}
/* A frame's relay seq (the body's top-level `seq`), or -1 (FrameSeq.locate). */
static int64_t frame_seq(bytes_t frame) {
  rd_t r = reader(frame);
  tok_t t;
  if (!skip_value(&r, MAX_DEPTH) || next(&r, &t) != T_MAP) return -1;
  for (uint64_t i = 0, n = t.arg; i < n; i++) {
    if (next(&r, &t) != T_TEXT) return -1;
    if (IS(t.s, "seq")) return next(&r, &t) == T_UINT && t.arg <= INT64_MAX ? (int64_t)t.arg : -1;
    if (!skip_value(&r, MAX_DEPTH)) return -1;
  }
  return -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
static double seconds_since(int64_t start) { return (double)(now_ns(CLOCK_MONOTONIC) - start) / 1e9; }
static void run_frames(xlat_t *x, const bytes_t *frames, const int64_t *shift, size_t n) {
  for (size_t i = 0; i < n; i++) {
    x->seq_shift = shift ? shift[i] : 0;
    translate_frame(x, frames[i]);
  }
}
static void dump_sink(xlat_t *x, int kind, int64_t t, int64_t seq, bytes_t did, bytes_t coll) {
  (void)kind; (void)t; (void)seq; (void)did; (void)coll;
  fwrite(x->event.p, 1, x->event.n, stdout);
  fputc('\n', stdout);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "", *input = NULL;
  const char *dict_path = "Dictionaries/contrail-default.zdict", *dir = getenv("TMPDIR");
  long passes = 200, trials = -1, ingest_frames = 50000, chunk = 1 << 20;
  bool copies = true, keep = false;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--inline-heads")) g_inline_heads = true;
    else if (!strcmp(a, "--no-copies")) copies = false;
    else if (!strcmp(a, "--keep")) keep = true;
    else if (!strcmp(a, "--passes") && v) passes = atol(argv[++i]);
    else if (!strcmp(a, "--trials") && v) trials = atol(argv[++i]);
    else if (!strcmp(a, "--frames") && v) ingest_frames = atol(argv[++i]);
    else if (!strcmp(a, "--chunk") && v) chunk = atol(argv[++i]);
    else if (!strcmp(a, "--dict") && v) dict_path = argv[++i];
    else if (!strcmp(a, "--dir") && v) dir = argv[++i];
    else if (a[0] != '-' && !input) input = a;
    else die("unknown argument %s", a);
  }
  bool json = !strcmp(mode, "json"), ingest = !strcmp(mode, "ingest"), dump = !strcmp(mode, "dump");
  if ((!json && !ingest && !dump) || !input) {
    fprintf(stderr, "usage: %s json|ingest|dump FRAMES [options] (see the top of contrail_ref.c)\n", argv[0]);
    return 2;
  }
  if (trials < 0) trials = ingest ? 3 : 5;
  if (passes < 1 || trials < 1 || trials > 1000 || ingest_frames < 1 || chunk < 1) die("bad option value");
  init_callbacks();
  init_crc();
  size_t nf;
  bytes_t *frames = load_frames(input, &nf);
  size_t frame_bytes = 0;
  for (size_t i = 0; i < nf; i++) frame_bytes += frames[i].n;
  xlat_t x = {0};
  const char *heads = g_inline_heads ? "inline" : "libcbor";

  if (dump) {
    x.sink = dump_sink;
    run_frames(&x, frames, NULL, nf);
    fprintf(stderr, "c-ref dump: frames=%zu events=%llu json_bytes=%llu drops=%llu undecodable=%llu\n", nf,
            (unsigned long long)x.events, (unsigned long long)x.json_bytes, (unsigned long long)x.drops,
            (unsigned long long)x.undecodable);
    return 0;
  }
  double *times = calloc((size_t)trials, sizeof *times), *json_times = calloc((size_t)trials, sizeof *times);
  if (!times || !json_times) die("out of memory");

  if (json) {   /* as `contrail bench translate`: per trial a warm-up pass, then `passes` timed */
    run_frames(&x, frames, NULL, nf);
    uint64_t events = x.events, bytes = x.json_bytes, drops = x.drops, undecodable = x.undecodable;
    for (long t = 0; t < trials; t++) {
      run_frames(&x, frames, NULL, nf);
      int64_t start = now_ns(CLOCK_MONOTONIC);
      for (long p = 0; p < passes; p++) run_frames(&x, frames, NULL, nf);
      times[t] = seconds_since(start) / (double)passes;
    }
    qsort(times, (size_t)trials, sizeof *times, cmp_double);
    double best = times[0], median = times[trials / 2];
    printf("c-ref json: heads=%s frames=%zu frame_bytes=%zu events=%llu json_bytes=%llu drops=%llu "
           "undecodable=%llu passes=%ld trials=%ld best_us_per_event=%.3f median_us_per_event=%.3f "
           "best_events_per_s=%.0f median_events_per_s=%.0f\n",
           heads, nf, frame_bytes, (unsigned long long)events, (unsigned long long)bytes,
           (unsigned long long)drops, (unsigned long long)undecodable,
           passes, trials, best / (double)events * 1e6, median / (double)events * 1e6,
           (double)events / best, (double)events / median);
    return 0;
  }

  /* ingest: the capture repeated to `ingest_frames` frames under new seqs (each pass adds the
   * file's seq span), as `contrail bench ingest` builds its input; by default each frame is its
   * own copy in memory, as there, so frames come from memory rather than cache. */
  size_t total = (size_t)ingest_frames;
  int64_t first_seq = -1, last_seq = -1, span;
  for (size_t i = 0; i < nf; i++) {
    int64_t s = frame_seq(frames[i]);
    if (s >= 0) { if (first_seq < 0) first_seq = s; last_seq = s; }
  }
  span = first_seq < 0 ? 0 : last_seq - first_seq + 1;
  bytes_t *list = malloc(total * sizeof *list);
  int64_t *shift = malloc(total * sizeof *shift);
  if (!list || !shift) die("out of memory");
  size_t copy_bytes = 0;
  for (size_t i = 0; i < total; i++) copy_bytes += frames[i % nf].n;
  uint8_t *copy_area = copies ? malloc(copy_bytes ? copy_bytes : 1) : NULL;
  if (copies && !copy_area) die("out of memory");
  for (size_t i = 0, off = 0; i < total; i++) {
    bytes_t f = frames[i % nf];
    if (copies) { memcpy(copy_area + off, f.p, f.n); f.p = copy_area + off; off += f.n; }
    list[i] = f;
    shift[i] = (int64_t)(i / nf) * span;
  }
  size_t dict_n;
  uint8_t *dict = read_file(dict_path, &dict_n);
  ingest_t g = {0};
  g.cctx = ZSTD_createCCtx();
  g.cdict = ZSTD_createCDict(dict, dict_n, 3);
  g.dict_id = ZSTD_getDictID_fromDict(dict, dict_n);
  g.chunk = (size_t)chunk;
  g.ring = calloc(RING_SLOTS, sizeof *g.ring);
  g.arena = malloc(ARENA_BYTES);
  if (!g.cctx || !g.cdict || !g.ring || !g.arena) die("cannot set up zstd or the ring");
  reserve(&g.log, (size_t)chunk + (1 << 16));
  memset(g.arena, 0, ARENA_BYTES);
  char path[4096];
  snprintf(path, sizeof path, "%s/contrail-ref-ingest-%d.seg", dir && *dir ? dir : "/tmp", (int)getpid());
  uint64_t events = 0, json_bytes = 0;
  xlat_t j = {0};   /* decode + JSON alone; `x` (buffers kept across trials) runs the pipeline */
  x.sink = ingest_sink;
  x.ctx = &g;
  for (long t = 0; t < trials; t++) {
    /* Decode + JSON alone over the same frames, same trial, for the breakdown. */
    j.events = j.json_bytes = j.drops = j.undecodable = 0;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    run_frames(&j, list, shift, total);
    json_times[t] = seconds_since(start);
    /* The whole pipeline, from creating the file to the final fdatasync. */
    x.events = x.json_bytes = x.drops = x.undecodable = 0;
    g.have_base = false;
    g.log.n = g.unsynced = g.file_bytes = g.compressed_bytes = g.syncs = g.writes = 0;
    start = now_ns(CLOCK_MONOTONIC);
    g.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (g.fd < 0) die("cannot create %s: %s", path, strerror(errno));
    g.last_sync_ns = now_ns(CLOCK_MONOTONIC);
    for (size_t i = 0; i < total; i++) {
      x.seq_shift = shift[i];
      translate_frame(&x, list[i]);
      log_sync_if_due(&g, false);
    }
    log_sync_if_due(&g, true);
    times[t] = seconds_since(start);
    close(g.fd);
    if (!keep || t + 1 < trials) unlink(path);
    events = x.events;
    json_bytes = x.json_bytes;
    if (j.events != events) die("event counts differ between passes");
  }
  qsort(times, (size_t)trials, sizeof *times, cmp_double);
  qsort(json_times, (size_t)trials, sizeof *json_times, cmp_double);
  double best = times[0], median = times[trials / 2], e = (double)events;
  printf("c-ref ingest: heads=%s frames=%zu events=%llu json_bytes=%llu compressed_bytes=%llu "
         "file_bytes=%llu writes=%llu syncs=%llu copies=%d trials=%ld best_us_per_event=%.3f "
         "median_us_per_event=%.3f best_events_per_s=%.0f median_events_per_s=%.0f "
         "json_only_best_us_per_event=%.3f drops=%llu undecodable=%llu\n",
         heads, total, (unsigned long long)events, (unsigned long long)json_bytes,
         (unsigned long long)g.compressed_bytes, (unsigned long long)g.file_bytes,
         (unsigned long long)g.writes, (unsigned long long)g.syncs, copies, trials, best / e * 1e6,
         median / e * 1e6, e / best, e / median, json_times[0] / e * 1e6,
         (unsigned long long)x.drops, (unsigned long long)x.undecodable);
  if (keep) printf("kept %s (base time_us %lld)\n", path, (long long)g.base_time);
  return 0;
}
