"""The daemon's LSP framing, fed byte streams cut into chunks the way a pipe may deliver them."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from deepdive.daemon.framing import HEAD_BYTES, BrokenStream, FrameReader, head_fields


def message(obj: Any, *, length_error: int = 0, content_type: bool = False) -> bytes:
    body = json.dumps(obj, ensure_ascii=False).encode()  # Content-Length counts bytes, not characters
    headers = f"Content-Length: {len(body) + length_error}\r\n"
    if content_type:
        headers += "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
    return (headers + "\r\n").encode() + body


def reader(stream: bytes, chunk: int, max_message: Optional[int] = None) -> FrameReader:
    """A FrameReader over ``stream`` delivered ``chunk`` bytes at a time."""
    pieces = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    async def read() -> bytes:
        return pieces.pop(0) if pieces else b""

    return FrameReader(read) if max_message is None else FrameReader(read, max_message)


async def raw_bodies(frames: FrameReader) -> list[bytes]:
    out = []
    while (frame := await frames.next_frame()) is not None:
        out.append(frame.body)
    return out


async def bodies(frames: FrameReader) -> list[Any]:
    return [json.loads(body) for body in await raw_bodies(frames)]


A = {"jsonrpc": "2.0", "id": 1, "method": "deepdive/version"}
B = {"jsonrpc": "2.0", "method": "initialized", "params": {"text": "é\r\nContent-Length: 3\r\n\r\n"}}


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 16])
async def test_messages_come_through_however_the_pipe_cuts_them(chunk: int):
    stream = message(A) + message(B, content_type=True) + message(A)
    assert await bodies(reader(stream, chunk)) == [A, B, A]


@pytest.mark.parametrize("chunk", [1, 64, 1 << 16])
@pytest.mark.parametrize("length_error", [-5, -1, +1, +5])
async def test_a_wrong_content_length_is_a_broken_stream(chunk: int, length_error: int):
    stream = message(A) + message(A, length_error=length_error) + message(A) + message(A)
    frames = reader(stream, chunk)
    assert json.loads((await frames.next_frame()).body) == A
    with pytest.raises(BrokenStream):
        await raw_bodies(frames)


@pytest.mark.parametrize("stream, fragment", [
    (b"Content-Length: 2\n\n{}", "LF without CR"),
    (b"Content-Lenght: 2\r\n\r\n{}", "expected a Content-Length"),
    (b"X-Trace: 1\r\nContent-Length: 2\r\n\r\n{}", "expected a Content-Length"),
    (b"Content-Type: text/plain\r\n\r\n{}", "without Content-Length"),
    (b"Content-Length: -2\r\n\r\n{}", "bad or repeated Content-Length"),
    (b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", "bad or repeated Content-Length"),
    (b"\r\n", "an empty line"),
    (b"Content-Length: " + b"9" * 2000 + b"\r\n\r\n", "over 1024 bytes"),
    (b"Content-Length: 10\r\n\r\n{}", "ended inside a message body"),
    (b"Content-Len", "ended inside a message's header"),
])
async def test_what_the_framing_refuses(stream: bytes, fragment: str):
    with pytest.raises(BrokenStream, match=fragment):
        await raw_bodies(reader(stream, 3))


async def test_a_body_that_is_not_json_is_still_a_frame():
    """Well framed but invalid JSON: a frame (the protocol answers -32700), and the next one follows."""
    stream = b"Content-Length: 5\r\n\r\n{oops" + message(A)
    frames = reader(stream, 64)
    assert (await frames.next_frame()).body == b"{oops"
    assert json.loads((await frames.next_frame()).body) == A


async def test_an_oversized_message_is_skipped_keeping_its_head_and_the_next_one_is_read():
    big = {"jsonrpc": "2.0", "id": "req-7", "method": "deepdive/generate", "params": {"prompt": "x" * 500_000}}
    frames = reader(message(big) + message(A), 4096, max_message=100_000)
    skipped = await frames.next_frame()
    assert skipped.skipped and skipped.length > 500_000 and len(skipped.body) == HEAD_BYTES
    assert head_fields(skipped.body) == {"jsonrpc": "2.0", "id": "req-7", "method": "deepdive/generate"}
    assert json.loads((await frames.next_frame()).body) == A


def test_head_fields_stops_at_the_first_structured_value_or_the_end():
    assert head_fields(b'{"id": 3, "params": {"id": 4}, "method": "m"}') == {"id": 3}
    assert head_fields(b' { "jsonrpc" : "2.0" , "id" : "a\\"b", "meth') == {"jsonrpc": "2.0", "id": 'a"b'}
    assert head_fields(b"[1, 2]") == {}
    assert head_fields(b"") == {}
