#!/usr/bin/env python3
"""A small single-threaded reference translator: relay frames file -> Jetstream v1 JSONL.

The baseline `contrail translate` is benchmarked against (Benchmarks/RESULTS.md).
It reads the same frames file format ([u32 little-endian length][frame]..., plain, or zstd when
the `zstandard` package is installed) in a streaming fashion and writes one JSON line per event:
commits give one event per op (create/update with the record as AT-JSON, delete without), and
#identity / #account frames give identity / account events. Field order follows Jetstream; the
output is close to but not byte-identical with Contrail's (escaping, drop rules).

DAG-CBOR is decoded by cbrrr (a C extension; `pip install cbrrr`); records are decoded straight
into AT-JSON form (`{"$link": ...}`, `{"$bytes": ...}`) by its atjson mode. The CAR is split into
blocks in Python (varint + CID length per block), and only the records that ops name are decoded.

Usage: translate.py INPUT [-o OUTPUT]; a summary line goes to standard error.
"""

import argparse
import base64
import json
import sys
import time

from cbrrr import _cbrrr, CID

FRAME_CAP = 16 << 20  # frames over this are skipped unread, as Contrail does
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

dumps_record = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False
).encode
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def decode(data, atjson=False):
    """One DAG-CBOR item from the start of `data`: (value, bytes used)."""
    return _cbrrr.decode_dag_cbor(data, CID, atjson)


def varint(buf, pos):
    n = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def car_blocks(car):
    """{cid bytes: block bytes} for a CARv1 (the header is skipped)."""
    view = memoryview(car)
    header_len, pos = varint(car, 0)
    pos += header_len
    blocks = {}
    end = len(car)
    while pos < end:
        length, pos = varint(car, pos)
        block_end = pos + length
        # CIDv1: version, codec, hash code, digest length, digest.
        _, p = varint(car, pos)
        _, p = varint(car, p)
        _, p = varint(car, p)
        digest_len, p = varint(car, p)
        cid_end = p + digest_len
        blocks[car[pos:cid_end]] = view[cid_end:block_end]
        pos = block_end
    if pos != end:
        raise ValueError("truncated CAR")
    return blocks


class Clock:
    """Strictly increasing microsecond timestamps (Jetstream's time_us cursor)."""

    def __init__(self):
        self.last = 0

    def now(self):
        t = time.time_ns() // 1000
        if t <= self.last:
            t = self.last + 1
        self.last = t
        return t


def cid_string(cid):
    return "b" + base64.b32encode(cid.cid_bytes).decode().lower().rstrip("=")


def translate_commit(body, clock, out, counts):
    if body.get("tooBig"):
        counts["dropped"] += 1
        return
    did = body["repo"]
    rev = body["rev"]
    blocks = car_blocks(body["blocks"])
    prefix = '{"did":' + dumps(did) + ',"time_us":'
    commit_head = ',"kind":"commit","commit":{"rev":' + dumps(rev) + ',"operation":'
    for op in body["ops"]:
        action = op["action"]
        collection, _, rkey = op["path"].partition("/")
        rkey = rkey.split("/", 1)[0]
        head = (
            commit_head
            + dumps(action)
            + ',"collection":'
            + dumps(collection)
            + ',"rkey":'
            + dumps(rkey)
        )
        if action == "delete":
            out.append(prefix + str(clock.now()) + head + "}}")
        elif action in ("create", "update"):
            cid = op.get("cid")
            block = blocks.get(cid.cid_bytes) if cid is not None else None
            if block is None:
                counts["dropped"] += 1
                continue
            record, used = decode(block, True)
            if used != len(block):
                counts["dropped"] += 1
                continue
            out.append(
                prefix
                + str(clock.now())
                + head
                + ',"record":'
                + dumps_record(record)
                + ',"cid":'
                + dumps(cid_string(cid))
                + "}}"
            )
        else:
            counts["dropped"] += 1
            continue
        counts["events"] += 1


def translate_identity(body, clock, out, counts):
    did = body["did"]
    inner = {"did": did}
    if "handle" in body:
        inner["handle"] = body["handle"]
    inner["seq"] = body["seq"]
    inner["time"] = body["time"]
    out.append(
        '{"did":'
        + dumps(did)
        + ',"time_us":'
        + str(clock.now())
        + ',"kind":"identity","identity":'
        + dumps(inner)
        + "}"
    )
    counts["events"] += 1


def translate_account(body, clock, out, counts):
    did = body["did"]
    inner = {"active": body["active"], "did": did, "seq": body["seq"]}
    if body.get("status") is not None:
        inner["status"] = body["status"]
    inner["time"] = body["time"]
    out.append(
        '{"did":'
        + dumps(did)
        + ',"time_us":'
        + str(clock.now())
        + ',"kind":"account","account":'
        + dumps(inner)
        + "}"
    )
    counts["events"] += 1


HANDLERS = {
    "#commit": translate_commit,
    "#identity": translate_identity,
    "#account": translate_account,
}


def frames(stream, counts):
    """Yields each frame's bytes; frames over the cap are read past and counted."""
    read = stream.read
    while True:
        prefix = read(4)
        if len(prefix) < 4:
            counts["trailing"] = len(prefix)
            return
        length = int.from_bytes(prefix, "little")
        if length > FRAME_CAP:
            skipped = 0
            while skipped < length:
                chunk = read(min(1 << 20, length - skipped))
                if not chunk:
                    counts["trailing"] = 4 + skipped
                    return
                skipped += len(chunk)
            counts["oversized"] += 1
            continue
        frame = read(length)
        if len(frame) < length:
            counts["trailing"] = 4 + len(frame)
            return
        yield frame


def open_input(path):
    raw = open(path, "rb", buffering=1 << 20)
    if raw.peek(4)[:4] == ZSTD_MAGIC:
        import zstandard  # only needed for compressed input

        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 18)
    return raw


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input")
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    out_file = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    counts = {"frames": 0, "events": 0, "undecodable": 0, "dropped": 0, "oversized": 0}
    counts["trailing"] = 0
    clock = Clock()
    lines = []
    with open_input(args.input) as stream:
        for frame in frames(stream, counts):
            counts["frames"] += 1
            try:
                header, used = decode(frame)
                handler = HANDLERS.get(header.get("t")) if header.get("op") == 1 else None
                if handler is None:
                    continue
                body, used2 = decode(memoryview(frame)[used:])
                if used + used2 != len(frame):
                    raise ValueError("trailing bytes in frame")
                handler(body, clock, lines, counts)
            except Exception:  # any malformed frame is skipped and counted, never fatal
                counts["undecodable"] += 1
            if len(lines) >= 512:
                lines.append("")
                out_file.write("\n".join(lines))
                lines.clear()
    if lines:
        lines.append("")
        out_file.write("\n".join(lines))
    out_file.flush()
    summary = "frames {frames}, events {events}, undecodable {undecodable}, dropped {dropped}"
    summary = summary.format(**counts)
    if counts["oversized"]:
        summary += f"; {counts['oversized']} oversized frames skipped"
    if counts["trailing"]:
        summary += f"; {counts['trailing']} trailing bytes do not form a whole frame"
    print(summary, file=sys.stderr)


if __name__ == "__main__":
    main()
