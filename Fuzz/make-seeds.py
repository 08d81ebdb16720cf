#!/usr/bin/env python3
"""Fills Fuzz/corpus/<Target>/ with seed inputs made from the project's own fixtures.

Run by scripts/fuzz before fuzzing (nothing here is committed except this script, the small
hand-written seeds in Fuzz/Seeds/ and the dictionaries). Seeds are named by their SHA-1, so
running it again adds what is new and keeps what the fuzzer grew; `--fresh` deletes
Fuzz/corpus/ first. Sources:
  - Fixtures/synthetic-2000.frames.zst (frames `[u32 LE length][frame]...`, zstd), and
    optionally more frames files given on the command line (e.g. a local capture: never commit
    what comes from it);
  - frames -> FuzzTranslator; their `blocks` CARs -> FuzzCAR; the CAR blocks -> FuzzRecord;
  - event-log records built here (same format as docs/FORMAT.md) -> FuzzLogRecord,
    FuzzSegment;
  - websocket frame streams built here (RFC 6455) -> FuzzRelayMessage;
  - Fuzz/Seeds/<Target>/* copied as they are.
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "Fuzz")
CORPUS = os.path.join(FUZZ, "corpus")
MAX_FRAMES = 400  # per frames file
MAX_BYTES = 64 << 10  # the largest seed kept (the frame target's -max_len)


def put(target, data):
    if len(data) > MAX_BYTES:
        return
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def frames(path):
    raw = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
    offset = 0
    while offset + 4 <= len(raw):
        (n,) = struct.unpack_from("<I", raw, offset)
        yield raw[offset + 4 : offset + 4 + n]
        offset += 4 + n


# A minimal DAG-CBOR reader: enough to find `blocks` in a commit body.
def head(b, i):
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info < 24:
        return major, info, i
    size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
    return major, int.from_bytes(b[i : i + size], "big"), i + size


def item(b, i):
    major, arg, i = head(b, i)
    if major in (0, 1, 7):
        return arg, i
    if major in (2, 3):
        return b[i : i + arg], i + arg
    if major == 4:
        out = []
        for _ in range(arg):
            v, i = item(b, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(arg):
            k, i = item(b, i)
            v, i = item(b, i)
            out[bytes(k)] = v
        return out, i
    return item(b, i)  # tag: the tagged value


def varint(b, i):
    value, shift = 0, 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def car_blocks(car):
    n, i = varint(car, 0)
    i += n
    while i < len(car):
        n, j = varint(car, i)
        section = car[j : j + n]
        i = j + n
        # CIDv1: varint version, varint codec, multihash (varint code, varint length, digest)
        _, k = varint(section, 0)
        _, k = varint(section, k)
        _, k = varint(section, k)
        length, k = varint(section, k)
        yield section[k + length :]


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def uvarint(n):
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append(n & 0x7F | 0x80)
        n >>= 7


def log_record(time_offset, seq_offset, event_seq_offset, kind, did, collection_code, collection,
               payload):
    body = struct.pack("<III", time_offset, seq_offset, event_seq_offset)
    if isinstance(did, bytes) and len(did) == 15:  # a packed did:plc
        body += bytes([kind | 4]) + did
    else:
        body += bytes([kind]) + uvarint(len(did)) + did
    body += bytes([collection_code])
    if collection_code == 1:
        body += uvarint(len(collection)) + collection
    body += payload
    return uvarint(len(body) + 4) + struct.pack("<I", crc32c(body)) + body


def ws_frame(opcode, payload, fin=True, mask=None):
    """One websocket frame, with the shortest length encoding."""
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    out = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        out += bytes([mask_bit | n])
    elif n <= 0xFFFF:
        out += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        out += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if mask:
        out += mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    else:
        out += payload
    return out


def relay_messages():
    """FuzzRelayMessage inputs: u16 LE limit (mod 4097), four chunk-size bytes (b < 128: 1 + b,
    else 64 * (b - 127); 255: the whole stream at once), then frames."""
    def seed(limit, chunks, stream):
        return struct.pack("<H", limit) + bytes(chunks) + stream

    small = ws_frame(2, b"\x01\x02\x03")
    fragmented = ws_frame(2, b"ab", fin=False) + ws_frame(0, b"cd", fin=False) + ws_frame(0, b"ef")
    ping_between = (ws_frame(2, b"12", fin=False) + ws_frame(9, b"hi") + ws_frame(10, b"")
                    + ws_frame(0, b"34"))
    text = ws_frame(1, b"hello")
    big = bytes(range(256)) * 8  # 2048 bytes
    oversize = ws_frame(2, big) + small
    oversize_fragments = (ws_frame(2, big[:700], fin=False) + ws_frame(9, b"")
                          + ws_frame(0, big[:700]) + small)
    long_header = bytes([0x82, 127]) + struct.pack(">Q", 300) + big[:300]  # 127-length header
    huge = bytes([0x82, 127]) + struct.pack(">Q", 2**63 - 1) + b"\0" * 64
    masked = ws_frame(2, b"masked", mask=b"\x01\x02\x03\x04")
    close = ws_frame(8, b"\x03\xe8")
    everything = (small + fragmented + ping_between + text + oversize + masked + long_header
                  + close)
    return [
        seed(1000, [0, 0, 0, 0], small),
        seed(1000, [2, 4, 0, 7], fragmented),
        seed(1000, [1, 2, 3, 4], ping_between),
        seed(1000, [255, 255, 255, 255], text),
        seed(1000, [63, 5, 200, 1], oversize),
        seed(1000, [99, 0, 9, 255], oversize_fragments),
        seed(4096, [8, 1, 30, 2], long_header),
        seed(100, [255, 255, 255, 255], long_header),
        seed(1000, [255, 255, 255, 255], huge),
        seed(1000, [3, 3, 3, 3], masked + close),
        seed(0, [255, 255, 255, 255], small + ws_frame(2, b"")),
        seed(4096, [16, 3, 127, 0], everything),
        seed(1000, [6, 6, 6, 6], everything),
    ]


def main():
    args = sys.argv[1:]
    if "--fresh" in args:
        args = [a for a in args if a != "--fresh"]
        if os.path.isdir(CORPUS):
            shutil.rmtree(CORPUS)
    sources = [os.path.join(ROOT, "Fixtures", "synthetic-2000.frames.zst")] + args
    for source in sources:
        for count, frame in enumerate(frames(source)):
            if count >= MAX_FRAMES:
                break
            put("FuzzTranslator", frame)
            try:
                _, i = item(frame, 0)
                body, _ = item(frame, i)
                car = body.get(b"blocks") if isinstance(body, dict) else None
                if car:
                    put("FuzzCAR", bytes(car))
                    for block in car_blocks(car):
                        put("FuzzRecord", bytes(block))
            except (IndexError, KeyError, ValueError, TypeError):
                pass
    packed = bytes(range(15))
    records = [
        log_record(0, 0, 0, 0, packed, 3, b"", b"\x28\xb5\x2f\xfd payload"),
        log_record(5, 1, 1, 1, b"did:web:example.com", 0, b"", b"{}"),
        log_record(9, 2, 2, 2, b"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", 1, b"com.example.thing", b"x" * 40),
        log_record(70000, 3, 3, 0, packed, 19, b"", b""),
        log_record(70001, 3, 4, 3, packed, 0, b"", b"sync"),
    ]
    for mode in (0, 1, 2, 3):
        put("FuzzLogRecord", bytes([mode]) + b"".join(records))
        put("FuzzLogRecord", bytes([mode]) + records[1])
    for mode in (0, 1, 2, 4, 5):
        put("FuzzSegment", bytes([mode]) + b"".join(records))
        put("FuzzSegment", bytes([mode]) + records[0] + b"\xff" * 9 + records[2])
    bases = struct.pack("<qqq", 1_700_000_000_000_000, 1_000, 500)
    put("FuzzSegment", bytes([9]) + bases + b"".join(records))
    put("FuzzSegment", bytes([9]) + struct.pack("<qqq", 2**63 - 2**32, 0, 2**63 - 2**32) + records[1])
    # A resync match whose time follows but whose event seq does not.
    stale = log_record(10, 2, 1, 1, b"did:web:example.com", 0, b"", b"{}")
    put("FuzzSegment", bytes([0]) + records[1] + b"\xff" * 3 + stale + records[2])
    for data in relay_messages():
        put("FuzzRelayMessage", data)
    seeds = os.path.join(FUZZ, "Seeds")
    for target in sorted(os.listdir(seeds)):
        for name in sorted(os.listdir(os.path.join(seeds, target))):
            with open(os.path.join(seeds, target, name), "rb") as f:
                put(target, f.read())
    for target in sorted(os.listdir(CORPUS)):
        print(f"{target}: {len(os.listdir(os.path.join(CORPUS, target)))} inputs", file=sys.stderr)


if __name__ == "__main__":
    main()
