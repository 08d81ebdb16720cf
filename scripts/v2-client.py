#!/usr/bin/env python3
"""Drives the unmodified PyPI `atproto` (0.0.73) AsyncJetstreamClient against a Contrail server.

    v2-client.py --uri ws://127.0.0.1:PORT/xrpc --cursor SEQ --count N [--timeout SECONDS]

It connects with the client's defaults (compression on: the client fetches getZstdDictionary
itself), kinds commit+identity+account, the given cursor, collects exactly N events (#info frames
are written but not counted), stops the client, and writes one JSON line per message to stdout:

    {"seq": 1, "kind": "commit", "did": …, "time": …, "operation": …, "collection": …,
     "rkey": …, "rev": …, "cid": …, "record": {…}}
    {"seq": 9, "kind": "identity", "did": …, "time": …, "identity": {…}}
    {"seq": 12, "kind": "account", "did": …, "time": …, "account": {…}}
    {"kind": "info", "name": …, "message": …}

then a last line {"summary": {…}}: events delivered, the client's cursor, whether it ended up
compressed (`client.compressed`: a dictionary fetched and loaded), and what the `websockets`
library logged at debug level: each handshake's request path (with `zstdDictionary=<ID>` when
compressed) and response status, and the data frames received, binary and text, and any close
frame the server sent.

Exit status: 0 with exactly N events; 2 on the timeout, 3 when the client stopped on its own
before N events, 4 when it raised (its exception is printed) or a message could not be written.
Every failure says why on stderr.
Installed by `scripts/setup-deps --tests` in `.build/python-v2` (see README).
"""

import argparse
import asyncio
import json
import logging
import sys
import time

from atproto_client.models.base import ModelBase
from atproto_client.models.blob_ref import BlobRef
from atproto_client.models.dot_dict import DotDict
from atproto_jetstream import AsyncJetstreamClient
from websockets.frames import Close, Frame, Opcode

KINDS = ['commit', 'identity', 'account']
COMMIT = 'network.bsky.jetstream.subscribeEvents#commit'
IDENTITY = 'network.bsky.jetstream.subscribeEvents#identity'
ACCOUNT = 'network.bsky.jetstream.subscribeEvents#account'
INFO = 'network.bsky.jetstream.subscribeEvents#info'


class WireLog(logging.Handler):
    """What the websockets library logs at debug level: every handshake request ("> GET %s
    HTTP/1.1") and response status ("< HTTP/1.1 %d %s"), and every frame received ("< %s")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.requests = []
        self.statuses = []
        self.binary = 0
        self.text = 0
        self.closes = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.args:
            return
        if record.msg == '> GET %s HTTP/1.1':
            self.requests.append(record.args[0])
        elif record.msg == '< HTTP/1.1 %d %s':
            self.statuses.append(record.args[0])
        elif record.msg == '< %s' and isinstance(record.args[0], Frame):
            frame = record.args[0]
            if frame.opcode is Opcode.BINARY:
                self.binary += 1
            elif frame.opcode is Opcode.TEXT:
                self.text += 1
            elif frame.opcode is Opcode.CLOSE:
                self.closes.append(str(Close.parse(frame.data)) if frame.data else 'no status')


def plain(value):
    """What the client parsed, as plain JSON values: a model's fields as they came from the
    wire (`exclude_unset`, so defaults it fills in, like a nested `$type`, are not invented)."""
    if isinstance(value, (ModelBase, BlobRef)):
        value = value.model_dump(mode='json', by_alias=True, exclude_unset=True)
    elif isinstance(value, DotDict):
        value = value.to_dict()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def line(message) -> dict:
    kind = getattr(message, 'py_type', None)
    if kind == COMMIT:
        return {
            'seq': message.seq,
            'kind': 'commit',
            'did': message.did,
            'time': message.time,
            'operation': message.operation,
            'collection': message.collection,
            'rkey': message.rkey,
            'rev': message.rev,
            'cid': message.cid,
            'record': plain(message.record),
        }
    if kind == IDENTITY:
        return {
            'seq': message.seq,
            'kind': 'identity',
            'did': message.did,
            'time': message.time,
            'identity': plain(message.identity),
        }
    if kind == ACCOUNT:
        return {
            'seq': message.seq,
            'kind': 'account',
            'did': message.did,
            'time': message.time,
            'account': plain(message.account),
        }
    if kind == INFO:
        return {'kind': 'info', 'name': message.name, 'message': message.message}
    return {'kind': 'unexpected', 'type': str(kind), 'value': plain(message)}


async def run(uri: str, cursor: int, count: int, timeout: float) -> int:
    wire = WireLog()
    websockets_logger = logging.getLogger('websockets.client')
    websockets_logger.setLevel(logging.DEBUG)
    websockets_logger.addHandler(wire)
    websockets_logger.propagate = False

    client = AsyncJetstreamClient(params={'kinds': KINDS, 'cursor': cursor}, base_uri=uri)
    received = 0
    out = sys.stdout
    failures = []

    async def on_message(message) -> None:
        nonlocal received
        if received >= count or failures:
            return
        try:
            entry = line(message)
            out.write(json.dumps(entry, ensure_ascii=False, separators=(',', ':')) + '\n')
        except Exception as error:  # noqa: BLE001
            failures.append(f'{type(error).__name__}: {error} (message {message!r})')
            await client.stop()
            return
        if entry['kind'] != 'info':
            received += 1
            if received == count:
                # Stopped here, inside the callback, so the client reads no further frame.
                await client.stop()

    started = time.monotonic()
    status = 0
    try:
        await asyncio.wait_for(client.start(on_message), timeout=timeout)
    except asyncio.TimeoutError:
        print(
            f'v2-client: timed out after {timeout:g} s with {received} of {count} events '
            f'(client cursor {client.cursor}, compressed {client.compressed})',
            file=sys.stderr,
        )
        status = 2
    except Exception as error:  # noqa: BLE001
        print(
            f'v2-client: the client raised after {received} of {count} events: '
            f'{type(error).__name__}: {error}',
            file=sys.stderr,
        )
        status = 4
    else:
        if failures:
            print(f'v2-client: could not write a message: {failures[0]}', file=sys.stderr)
            status = 4
        elif received < count:
            print(
                f'v2-client: the client stopped on its own after {received} of {count} events '
                f'(client cursor {client.cursor})',
                file=sys.stderr,
            )
            status = 3
    if status != 0:
        await client.stop()

    summary = {
        'events': received,
        'cursor': client.cursor,
        'compressed': client.compressed,
        'requests': wire.requests,
        'statuses': wire.statuses,
        'binaryFrames': wire.binary,
        'textFrames': wire.text,
        'closes': wire.closes,
        'seconds': round(time.monotonic() - started, 3),
    }
    out.write(json.dumps({'summary': summary}, separators=(',', ':')) + '\n')
    out.flush()
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--uri', required=True, help='base URI, e.g. ws://127.0.0.1:6008/xrpc')
    parser.add_argument('--cursor', type=int, required=True)
    parser.add_argument('--count', type=int, required=True)
    parser.add_argument('--timeout', type=float, default=60)
    arguments = parser.parse_args()
    return asyncio.run(run(arguments.uri, arguments.cursor, arguments.count, arguments.timeout))


if __name__ == '__main__':
    sys.exit(main())
