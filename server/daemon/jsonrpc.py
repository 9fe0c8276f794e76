"""The daemon's JSON-RPC layer: what pygls 2 leaves unanswered, answered the way the specs say.

pygls parses a message inside ``json.loads``'s object hook and hands anything that goes wrong to a
logger, so a client that sends invalid JSON, an object as ``id`` or a request after ``shutdown``
gets no answer at all (or a Python traceback in ``data``). :class:`DeepdiveProtocol` receives each
framed body itself (:mod:`deepdive.daemon.framing` does the framing), checks the envelope, and only
then lets pygls dispatch it:

- a body that is not valid JSON: ``-32700`` Parse error, ``id: null`` (JSON-RPC 2.0);
- not a JSON-RPC 2.0 message (an array, ``jsonrpc`` other than "2.0", an id that is neither a
  string nor an integer, a method that is not a string): ``-32600`` Invalid Request, with the id
  when it is a valid one, else ``null``;
- a request after ``shutdown`` (other than ``exit``): ``-32600`` (LSP: "should error with
  InvalidRequest"); notifications after it are dropped;
- ``exit``: the daemon ends with status 0 when ``shutdown`` came first, 1 otherwise (LSP);
- params of a standard LSP method that do not fit its type: ``-32602`` naming the field, instead of
  no answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import JsonRPCRequestMessage, LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from deepdive.daemon.framing import MAX_MESSAGE_BYTES, head_fields
from deepdive.protocol import REQUESTS

log = logging.getLogger("deepdive.daemon")

_CUSTOM_REQUESTS = {r.method for r in REQUESTS}
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


def _is_id(value: Any) -> bool:
    """LSP's request id: an integer or a string (JSON-RPC's fractional numbers are not allowed)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _kind(value: Any) -> str:
    """The JSON type of a value, for messages."""
    if value is None:
        return "null"
    return {bool: "a boolean", dict: "an object", list: "an array", float: "a fractional number"}.get(
        type(value), type(value).__name__
    )


def envelope_problem(data: Any) -> tuple[Optional[str], Any]:
    """Why ``data`` is not a JSON-RPC 2.0 message (None when it is), and the id to answer it with."""
    if isinstance(data, list):
        return "a batch (a JSON array) is not part of LSP: send one message at a time", None
    if not isinstance(data, dict):
        return f"a message must be a JSON object, got {_kind(data)}", None
    msg_id = data.get("id")
    is_request = "method" in data and "id" in data
    if "id" in data and not _is_id(msg_id) and (is_request or msg_id is not None):
        return f"the id must be a string or an integer, got {_kind(msg_id)}", None
    if data.get("jsonrpc") != "2.0":
        return 'not a JSON-RPC 2.0 message: "jsonrpc" must be "2.0"', msg_id
    if "method" in data:
        if not isinstance(data["method"], str):
            return f"the method must be a string, got {_kind(data['method'])}", msg_id
        if data.get("params") is not None and not isinstance(data["params"], (dict, list)):
            return f"params must be an object or an array, got {_kind(data['params'])}", msg_id
    elif "id" not in data or ("result" not in data and "error" not in data):
        return "neither a request, a notification nor a response (no method, no result, no error)", msg_id
    return None, msg_id


def _params_problem(exc: JsonRpcException) -> str:
    """One line from pygls's failure to structure a message: cattrs' field errors when there are some."""
    cause = exc.__cause__
    if isinstance(cause, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(cause, path="message"))
    return str(cause or exc)


class DeepdiveProtocol(LanguageServerProtocol):
    """pygls's LSP protocol with strict JSON-RPC handling and Deepdive's params kept as plain JSON.

    pygls turns unknown params into namedtuples and, when structuring fails, drops the request
    without an answer; the params of Deepdive's own requests stay JSON and are validated by the
    handler instead, which answers with an error that names the bad field.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_received = False
        self.exit_code: Optional[int] = None
        """Set by `exit`: the status the daemon ends with."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        if "jsonrpc" in data and "id" in data and data.get("method") in _CUSTOM_REQUESTS:
            return JsonRPCRequestMessage(
                id=data["id"], method=data["method"], jsonrpc=data["jsonrpc"], params=data.get("params")
            )
        return super().structure_message(data)

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, body: bytes) -> None:
        """One framed message body: parsed, its envelope checked, then dispatched by pygls."""
        try:
            data = json.loads(body)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            self.reply_error(None, PARSE_ERROR, f"Parse error: the message body is not valid JSON ({exc})")
            return
        problem, msg_id = envelope_problem(data)
        if problem is not None:
            self.reply_error(msg_id, INVALID_REQUEST, f"Invalid Request: {problem}")
            return
        try:
            message = self.structure_message(data)
        except JsonRpcException as exc:
            self._refuse_unstructured(data, exc)
            return
        self.handle_message(message)

    def _refuse_unstructured(self, data: dict[str, Any], exc: JsonRpcException) -> None:
        method = data.get("method", "a response")
        problem = f"invalid params for {method}: {_params_problem(exc)}"
        if "method" in data and "id" in data:
            self.reply_error(data["id"], INVALID_PARAMS, problem)
        else:
            log.warning("ignored a message from the client: %s", problem)

    def refuse_oversized(self, length: int, head: bytes) -> None:
        """A message over the size limit was skipped unread: answer its request when its head names one."""
        fields = head_fields(head)
        method = fields.get("method") if isinstance(fields.get("method"), str) else None
        reason = (f"the message is {length:,} bytes, over the daemon's limit of {MAX_MESSAGE_BYTES:,} bytes "
                  f"per message; it was skipped unread")
        if method is not None and "id" in fields and _is_id(fields["id"]):
            self.reply_error(fields["id"], INVALID_REQUEST, f"{method} refused: {reason}")
        else:
            log.warning("%s: %s", method or "a message with no id or method in its first bytes", reason)

    def handle_message(self, message: Any) -> None:
        """Requests after `shutdown` get InvalidRequest; everything else goes to pygls."""
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if is_request and self.shutdown_received and method != types.EXIT:
            self.reply_error(message.id, INVALID_REQUEST,
                             f"the daemon is shutting down: {method} came after `shutdown`; only `exit` is accepted now")
            return
        if is_request and method == types.SHUTDOWN:
            self.shutdown_received = True
        super().handle_message(message)

    def reply_error(self, msg_id: Any, code: int, message: str) -> None:
        """An error response, with ``"id": null`` when the id is unknown (lsprotocol would leave it out)."""
        log.warning("refused a message from the client: %s", message)
        self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})

    # -- exit ------------------------------------------------------------------------------------

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> None:
        """exit: stop reading; the status is 0 after `shutdown`, 1 without it (LSP).

        pygls raises SystemExit from inside the handler, which its own I/O loop swallows, so the
        daemon exited 0 either way; :func:`deepdive.daemon.framing.serve_frames` returns this status.
        """
        self.exit_code = 0 if self.shutdown_received else 1
        if self.exit_code:
            log.warning("exit without shutdown: the daemon ends with status 1")
