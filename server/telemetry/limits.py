"""What one telemetry message may hold: how deep it nests and how long its strings are.

The hub checks every ``/ingest`` message with :func:`bound` (a ``/stream`` query with :func:`check_depth`) before it
keeps, relays or stores anything of it:

* **Nesting** deeper than ``max_depth`` levels (the message object is level 1, its ``samples`` list
  level 2, a sample level 3, a list or object a sample holds level 4, a logged 2-D tensor's rows
  level 5) makes the message malformed: it is answered with an error like any other malformed
  input. JSON nested deeper than Python's parser can follow is reported the same way
  (:data:`TOO_DEEP`), so neither can crash a connection or, later, the store's encoder.
* **A string** (a value or a key) longer than ``max_chars`` characters is cut to its first
  ``max_chars`` characters followed by a marker that says how long it was
  (``...[deepdive hub: truncated, 921600 characters]``), and counted. Cutting, rather than refusing
  the message, keeps the numbers of the same sample and every other sample of the batch: one
  oversized note costs its own tail, never a batch of steps.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32
MAX_STRING_CHARS = 8192
TOO_DEEP = "nested deeper than {depth} levels: send samples and events as flat objects of numbers and short strings"


class TooDeep(ValueError):
    """A message nests deeper than the hub accepts."""

    def __init__(self, depth: int) -> None:
        super().__init__(TOO_DEEP.format(depth=depth))


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, with a marker giving its full length."""
    return f"{text[:max_chars]}...[deepdive hub: truncated, {len(text)} characters]"


def bound(value: Any, max_depth: int = MAX_DEPTH, max_chars: int = MAX_STRING_CHARS) -> tuple[int, int]:
    """Check the nesting of a parsed JSON value and cut its long strings, in place.

    Iterative (no recursion), so any value ``json.loads`` returned can be checked.

    Args:
        value (Any): the parsed message; its dicts and lists are changed in place.
        max_depth (int): the deepest nesting accepted (``value`` itself is level 1).
        max_chars (int): the longest string kept whole.

    Returns:
        tuple[int, int]: how many strings were cut (keys and values), and how many characters that
        removed (net of the markers).

    Raises:
        TooDeep: ``value`` nests deeper than ``max_depth``.
    """
    cut = removed = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise TooDeep(max_depth)
        if isinstance(node, dict):
            long_keys = []
            for key, item in node.items():
                if isinstance(item, str):
                    if len(item) > max_chars:
                        node[key] = short = truncate(item, max_chars)
                        cut, removed = cut + 1, removed + len(item) - len(short)
                elif isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
                if len(key) > max_chars:
                    long_keys.append(key)
            for key in long_keys:
                short = truncate(key, max_chars)
                node[short] = node.pop(key)
                cut, removed = cut + 1, removed + len(key) - len(short)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    if len(item) > max_chars:
                        node[index] = short = truncate(item, max_chars)
                        cut, removed = cut + 1, removed + len(item) - len(short)
                elif isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
    return cut, removed


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`TooDeep` when ``value`` nests deeper than ``max_depth`` (nothing is changed)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise TooDeep(max_depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((item, depth + 1) for item in children if isinstance(item, (dict, list)))
