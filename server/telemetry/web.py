"""The hub's HTTP side: who may connect (the token), the responses it builds, and the dashboard bundle.

:mod:`deepdive.telemetry.hub` routes each request; this module checks the token every request must
carry (query parameter ``token=``, ``Authorization: Bearer TOKEN`` or the :data:`COOKIE` the
dashboard page sets), builds plain responses with the headers a page whose URL carries a token needs,
and serves the files of the dashboard bundle from ``static_dir`` (``/`` is its ``index.html``).
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import http
import mimetypes
from pathlib import Path
from typing import Iterable, Optional

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

COOKIE = "deepdive_hub_token"


def authorized(request: Request, query: dict[str, list[str]], token: bytes) -> Optional[bool]:
    """True for the right token, False for a wrong one, None when none was given."""
    candidates: list[str] = list(query.get("token", []))
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        candidates.append(auth[7:].strip())
    for part in request.headers.get("Cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            candidates.append(value)
    if not candidates:
        return None
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(candidate.encode(), token)
    return ok


def response(status: int, body: bytes, content_type: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
    """An HTTP response that closes the connection and is never cached nor sniffed."""
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Length", str(len(body))),
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),  # the page's URL carries the token
    ])
    for name, value in extra:
        headers[name] = value
    status_enum = http.HTTPStatus(status)
    return Response(status_enum.value, status_enum.phrase, headers, body)


async def static(connection: ServerConnection, static_dir: Optional[Path], token: str, path: str,
                 query: dict) -> Response:
    """A file of the dashboard bundle (``/`` and ``/dashboard`` are its ``index.html``), or a 404 saying why."""
    if static_dir is None or not (static_dir / "index.html").is_file():
        where = f" ({static_dir} has no index.html)" if static_dir is not None else ""
        return connection.respond(http.HTTPStatus.NOT_FOUND,
                                  f"the dashboard bundle is not built{where}: run `npm run build` in the "
                                  "extension's folder, or use the editor's Deepdive sidebar\n")
    relative = path[len("/dashboard"):] if path.startswith("/dashboard") else path
    relative = relative.lstrip("/") or "index.html"
    target = (static_dir / relative).resolve()
    if not target.is_relative_to(static_dir) or not target.is_file():
        return connection.respond(http.HTTPStatus.NOT_FOUND, f"no file {path} in the dashboard bundle\n")
    body = await asyncio.to_thread(target.read_bytes)
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
        content_type += "; charset=utf-8"
    extra = []
    if query.get("token"):  # the page: later requests (scripts, styles) carry the token as a cookie
        extra.append(("Set-Cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"))
    return response(200, body, content_type, extra)
