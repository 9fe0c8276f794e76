"""The daemon's log records as the client sees them: ``window/logMessage``, and pygls' stderr without the noise.

:class:`ClientLogHandler` sends each record to the client (from any thread); :func:`drop_expected_request_errors`
keeps a request refused with a JSON-RPC error, which is an answer, from reaching stderr as a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from deepdive.daemon.language_server import DeepdiveServer


class ClientLogHandler(logging.Handler):
    """Sends log records to the client as window/logMessage (stderr gets them too)."""

    _TYPES = {
        logging.ERROR: types.MessageType.Error,
        logging.WARNING: types.MessageType.Warning,
        logging.INFO: types.MessageType.Info,
        logging.DEBUG: types.MessageType.Log,
    }

    def __init__(self, ls: DeepdiveServer) -> None:
        super().__init__()
        self.ls = ls
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.loop is None or self.loop.is_closed() or self.ls.protocol.writer is None:
            return
        level = max(lvl for lvl in self._TYPES if lvl <= max(record.levelno, logging.DEBUG))
        params = types.LogMessageParams(type=self._TYPES[level], message=self.format(record))
        try:
            if threading_is_loop(self.loop):
                self.ls.window_log_message(params)
            else:
                self.loop.call_soon_threadsafe(self.ls.window_log_message, params)
        except Exception:
            self.handleError(record)


def threading_is_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def drop_expected_request_errors(record: logging.LogRecord) -> bool:
    """A request refused with a JSON-RPC error is an answer, not a daemon fault: no traceback.

    pygls also logs a traceback when a message's params do not fit their LSP type; the protocol
    answers (or logs) that in one line (see :mod:`deepdive.daemon.jsonrpc`).
    """
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(record.msg, str) and record.msg.startswith("Unable to deserialize message"):
        return False
    return not isinstance(exc, JsonRpcException)
