"""Where the telemetry reporter sends: the environment variables that configure it and the check of the hub's URL.

:func:`hub_url_problem` says, in one sentence with its fix, why a ``DEEPDIVE_HUB`` value cannot be
used (not a ws URL, no token, a host off this machine); :func:`redact` shows a URL without the
token it carries. :class:`deepdive.engine.reporter.Reporter` refuses such a URL, and
``Reporter.from_env`` warns and goes on without the hub.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import parse_qs, urlsplit

from deepdive.netutil import is_loopback

__all__ = ["ALLOW_REMOTE_ENV", "HUB_ENV", "METRICS_OUT_ENV", "hub_url_problem", "redact"]

HUB_ENV = "DEEPDIVE_HUB"
ALLOW_REMOTE_ENV = "DEEPDIVE_HUB_ALLOW_REMOTE"
METRICS_OUT_ENV = "DEEPDIVE_METRICS_OUT"


def hub_url_problem(url: str, allow_remote: bool = False) -> Optional[str]:
    """Why ``url`` cannot be used as the hub's ingest URL, or None when it can.

    Args:
        url (str): the candidate, e.g. ``ws://127.0.0.1:8765/ingest?token=abc``.
        allow_remote (bool): accept hosts other than loopback.

    Returns:
        Optional[str]: one sentence naming the problem and its fix (the token is never shown).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{HUB_ENV} is not a URL ({exc}): expected ws://127.0.0.1:PORT/ingest?token=TOKEN"
    if parts.scheme not in ("ws", "wss"):
        return (f"{HUB_ENV} must be a ws:// or wss:// URL such as ws://127.0.0.1:PORT/ingest?token=TOKEN, "
                f"not {parts.scheme or 'a URL without scheme'}")
    host = parts.hostname
    if not host or port is None:
        return f"{HUB_ENV} needs a host and a port, e.g. ws://127.0.0.1:PORT/ingest?token=TOKEN"
    if not parse_qs(parts.query).get("token"):
        return (f"{HUB_ENV} ({redact(url)}) has no token=... query parameter: use the URL the Deepdive "
                "daemon gives its jobs, which carries the hub's token")
    if not allow_remote and not is_loopback(host):
        return (f"telemetry hub {redact(url)} is not on this machine and its token would cross the network "
                f"in clear: not sending telemetry there; use an SSH tunnel to 127.0.0.1, or set "
                f"{ALLOW_REMOTE_ENV}=1 to send anyway")
    return None


def redact(url: str) -> str:
    """``url`` without its query string (which carries the token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return shown + ("?…" if parts.query else "")
