"""Small network helpers shared by the daemon's servers and the engine (standard library only)."""

from __future__ import annotations

import ipaddress
from typing import Optional

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: Optional[str]) -> bool:
    """True for loopback addresses (127.0.0.0/8, ::1) and the usual names of this host's loopback."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
