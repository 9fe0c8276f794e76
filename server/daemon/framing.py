"""LSP base-protocol framing on the daemon's stdin, strict enough to notice when it is broken.

A message is header lines (``Content-Length: N``, optionally ``Content-Type: ...``, each ending in
CRLF), an empty line, then a body of exactly N bytes. pygls 2's reader (``pygls.io_.run_async``)
skips any line it does not recognise while it looks for the next header, so one message with a
wrong Content-Length leaves it out of step with the client for good: every later message is misread
and goes unanswered, and the editor is left with a daemon that is alive and deaf. This reader checks
the framing instead and raises :class:`BrokenStream`; the daemon then exits with status
:data:`BROKEN_STREAM_EXIT`, and the editor's restart policy starts a fresh daemon.

Broken (the stream cannot be brought back into step, so every later message would be lost):

- a header line other than ``Content-Length`` or ``Content-Type``, one that ends in LF without CR or
  is over 1 KiB, a header section without a Content-Length, a Content-Length that is not a number;
- bytes right after a body that cannot begin a header line: the Content-Length was shorter than the
  body, or longer and took the start of the next message's header. Only bytes that have already
  arrived can be checked; when they arrive later, the damaged body is answered first (a parse error)
  and the stream is found broken as soon as they come;
- the end of the stream inside a message.

Not broken: a well-framed body that is not valid JSON (the next message starts where it should: the
protocol answers it with a JSON-RPC parse error), and a body over :data:`MAX_MESSAGE_BYTES`, which is
skipped as it arrives without being held in memory. Its first :data:`HEAD_BYTES` are kept so that the
protocol can still answer the request it carried (see :func:`head_fields`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import sys
import threading
from typing import Any, Awaitable, Callable, Optional, Protocol

from pygls.io_ import StdoutWriter

log = logging.getLogger(__name__)

BROKEN_STREAM_EXIT = 3
"""The daemon's exit status when the client's byte stream is out of step with the framing."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Bodies up to this size are read and parsed (documents of several MB included); larger ones are
skipped unread. Parsing 16 MB of JSON holds the event loop for about 50 ms (measured: 18 MB of source
text in a string, 60 ms)."""
HEAD_BYTES = 64 * 1024
"""How much of a skipped body is kept to find the request's id and method."""

_HEADERS = (b"content-length", b"content-type")
_MAX_HEADER_LINE = 1024
_READ_SIZE = 64 * 1024
_READAHEAD_CHUNKS = 64  # at most 4 MiB read from the pipe ahead of the parser


class BrokenStream(Exception):
    """The client's bytes no longer follow the LSP framing; the message says what was found, in one line."""


@dataclasses.dataclass
class Frame:
    """One message from the client."""

    length: int
    """Its Content-Length."""
    body: bytes
    """The whole body, or only its first HEAD_BYTES when ``skipped``."""
    skipped: bool = False
    """The body was over the size limit and was read past, not kept."""


def _show(raw: bytes) -> str:
    """Client bytes for a one-line log message: quoted, escaped, at most 60 characters."""
    text = repr(bytes(raw[:60]))[1:]
    return text + ("..." if len(raw) > 60 else "")


def _header_problem(line: bytes, complete: bool) -> Optional[str]:
    """Why ``line`` (without its CRLF) cannot be, or cannot begin, a header line; None when it can.

    ``complete`` says whether the CRLF that ends the line has arrived; a partial line only has to be
    the beginning of a header line.
    """
    if b"\n" in line or b"\r" in line[:-1] or (complete and b"\r" in line):
        return f"a header line ends in LF without CR: {_show(line)}"
    name, colon, _ = line.partition(b":")
    if colon:
        ok = name.lower() in _HEADERS
    elif complete:
        ok = False
    else:
        partial = name.rstrip(b"\r").lower()
        ok = line == b"\r" or any(header.startswith(partial) for header in _HEADERS)
    if ok:
        return None
    return f"expected a Content-Length or Content-Type header, got {_show(line)}"


class FrameReader:
    """Splits the client's byte stream into messages, checking the framing as it goes.

    Args:
        read: returns the next chunk of the stream, ``b""`` at its end (e.g. :meth:`PipeReader.read`).
        max_message: bodies longer than this are skipped rather than read into memory.
    """

    def __init__(self, read: Callable[[], Awaitable[bytes]], max_message: int = MAX_MESSAGE_BYTES) -> None:
        self._read = read
        self._buf = bytearray()
        self._eof = False
        self.max_message = max_message

    async def next_frame(self) -> Optional[Frame]:
        """The next message; None when the client closed the stream between two messages."""
        length = await self._headers()
        if length is None:
            return None
        if length > self.max_message:
            return Frame(length, await self._skip(length), skipped=True)
        body = await self._exactly(length)
        self._check_boundary()
        return Frame(length, body)

    async def _fill(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the stream."""
        if self._eof:
            return False
        chunk = await self._read()
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    async def _line(self, first: bool) -> Optional[bytes]:
        """The next header line without its CRLF; None at the end of the stream before a message."""
        while True:
            end = self._buf.find(b"\r\n")
            if 0 <= end <= _MAX_HEADER_LINE:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                problem = _header_problem(line, complete=True) if line else None
                if problem:
                    raise BrokenStream(problem)
                return line
            if end > _MAX_HEADER_LINE or len(self._buf) > _MAX_HEADER_LINE:
                raise BrokenStream(f"a header line over {_MAX_HEADER_LINE} bytes: {_show(self._buf)}")
            problem = _header_problem(bytes(self._buf), complete=False)
            if problem:
                raise BrokenStream(problem)
            if not await self._fill():
                if first and not self._buf:
                    return None
                raise BrokenStream("the stream ended inside a message's header")

    async def _headers(self) -> Optional[int]:
        """Read a header section; its Content-Length, or None at the end of the stream."""
        length: Optional[int] = None
        first = True
        while True:
            line = await self._line(first)
            if line is None:
                return None
            if not line:
                if length is None:
                    raise BrokenStream("a header section without Content-Length" if not first
                                       else "an empty line where a header was expected")
                return length
            first = False
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                value = value.strip()
                if length is not None or not value.isdigit():
                    raise BrokenStream(f"a bad or repeated Content-Length: {_show(line)}")
                length = int(value)

    async def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._fill():
                raise BrokenStream(f"the stream ended inside a message body ({len(self._buf)} of {n} bytes)")
        body = bytes(self._buf[:n])
        del self._buf[:n]
        return body

    async def _skip(self, n: int) -> bytes:
        """Read past ``n`` body bytes as they arrive, keeping only the first HEAD_BYTES."""
        head = bytearray()
        remaining = n
        while remaining:
            if not self._buf and not await self._fill():
                raise BrokenStream(f"the stream ended inside a message body ({n - remaining} of {n} bytes)")
            take = min(remaining, len(self._buf))
            if len(head) < HEAD_BYTES:
                head += self._buf[: min(take, HEAD_BYTES - len(head))]
            del self._buf[:take]
            remaining -= take
        self._check_boundary()
        return bytes(head)

    def _check_boundary(self) -> None:
        """What already follows a body must begin a header, or the Content-Length was wrong."""
        if not self._buf:
            return
        end = self._buf.find(b"\r\n")
        first_line = bytes(self._buf[: end if end >= 0 else _MAX_HEADER_LINE + 1])
        if end == 0:
            problem: Optional[str] = "an empty line where a header was expected"
        else:
            problem = _header_problem(first_line, complete=end >= 0)
        if problem:
            raise BrokenStream(f"after a message body of the declared length, {problem}")


def head_fields(head: bytes) -> dict[str, Any]:
    """The scalar members at the top of a JSON object's text, up to its first object or array value.

    Enough to learn a skipped request's ``id`` and ``method``: vscode-jsonrpc and pygls write
    ``jsonrpc``, ``id`` and ``method`` before ``params``. Stops quietly where the head ends.
    """
    text = head.decode("utf-8", errors="replace")
    space = re.compile(r"\s*")
    decoder = json.JSONDecoder()
    fields: dict[str, Any] = {}
    i = space.match(text).end()
    if not text.startswith("{", i):
        return fields
    i += 1
    try:
        while True:
            i = space.match(text, i).end()
            if not text.startswith('"', i):
                return fields
            key, i = json.decoder.scanstring(text, i + 1)
            i = space.match(text, i).end()
            if not text.startswith(":", i):
                return fields
            i = space.match(text, i + 1).end()
            if text[i : i + 1] in ("{", "["):
                return fields
            fields[key], i = decoder.raw_decode(text, i)
            i = space.match(text, i).end()
            if not text.startswith(",", i):
                return fields
            i += 1
    except (ValueError, IndexError):  # the head ends inside a value
        return fields


class PipeReader:
    """Reads a file descriptor on a daemon thread and hands the chunks to the event loop.

    A thread rather than ``loop.connect_read_pipe``: that would put stdin in non-blocking mode, a flag
    of the open file that every process inheriting the descriptor shares, and it refuses regular
    files. A daemon thread blocked in ``read`` never delays the process's exit. At most
    ``_READAHEAD_CHUNKS`` chunks wait for the parser, so a flood is held in the pipe, not in memory.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._slots = threading.Semaphore(_READAHEAD_CHUNKS)
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, name="deepdive-stdin", daemon=True).start()

    def _pump(self) -> None:
        while True:
            self._slots.acquire()
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except OSError as exc:
                log.error("reading the client's messages failed: %s", exc)
                chunk = b""
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
            except RuntimeError:  # the loop is closed: the daemon is exiting
                return
            if not chunk:
                return

    async def read(self) -> bytes:
        chunk = await self._queue.get()
        self._slots.release()
        return chunk


class MessageSink(Protocol):
    """What the frames go to: the daemon's JSON-RPC protocol (``deepdive.daemon.jsonrpc``)."""

    exit_code: Optional[int]

    def set_writer(self, writer: Any) -> None: ...

    def receive(self, body: bytes) -> None: ...

    def refuse_oversized(self, length: int, head: bytes) -> None: ...


async def serve_frames(frames: FrameReader, sink: MessageSink) -> int:
    """Hand each message to ``sink`` until `exit` (its status) or the end of the stream (0)."""
    while sink.exit_code is None:
        frame = await frames.next_frame()
        if frame is None:
            log.info("the client closed the connection")
            return 0
        if frame.skipped:
            sink.refuse_oversized(frame.length, frame.body)
        else:
            sink.receive(frame.body)
    return sink.exit_code


def serve_stdio(sink: MessageSink, wind_down: Optional[Callable[[], Awaitable[None]]] = None) -> int:
    """Serve LSP on this process's stdin and stdout; the exit status the daemon should end with.

    Args:
        sink: the protocol that receives the messages.
        wind_down: awaited (for at most 5 s) before the event loop cancels what is left. The daemon
            stops its environment probes there: Python 3.11's ``asyncio.run`` cancels every task at
            once, and a subprocess still being created then never finishes, so the exit would hang.
    """
    sink.set_writer(StdoutWriter(sys.stdout.buffer))

    async def main() -> int:
        frames = FrameReader(PipeReader(sys.stdin.fileno()).read)
        try:
            return await serve_frames(frames, sink)
        except BrokenStream as exc:
            log.error("the client's message stream is broken (%s): exiting with status %d so that the "
                      "editor starts a fresh daemon", exc, BROKEN_STREAM_EXIT)
            return BROKEN_STREAM_EXIT
        except BrokenPipeError:
            log.error("the client closed its end of the connection")
            return 0
        finally:
            if wind_down is not None:
                await asyncio.wait([asyncio.ensure_future(wind_down())], timeout=5)

    return asyncio.run(main())
