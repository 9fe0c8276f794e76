"""Numbers as a person reads them: floats to 4 significant digits, integers unchanged.

A study's parameters and values are floats that Optuna samples to full precision
(``lr=0.052341873920147``); what matters of them is the first few digits. One rule, here and in
``extension/src/tune/rounding.ts`` (the same cases are checked on both sides from
``tests/tune/shared_cases.json``), for the terminal tables, the progress line, the editor's
messages and the dashboard:

* ``round_sig(0.052341873920147) == 0.05234`` (a float stays a float; an int, or a float with an
  integer value such as ``256.0``, is left whole: JavaScript cannot tell the two apart);
* ``format_sig``: whole numbers whole (``256``); else plain decimals from 1e-4 up to (not
  including) 1e4 (``0.05234``, ``1235``), else a short exponent (``1.235e4``, ``1e-5``); no
  trailing zeros.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

SIG_DIGITS = 4


def round_sig(value: Any, digits: int = SIG_DIGITS) -> Any:
    """``value`` rounded to ``digits`` significant digits when it is a finite float; anything else as is."""
    if not isinstance(value, float) or not math.isfinite(value) or value.is_integer():
        return value
    return float(f"{value:.{digits - 1}e}")


def format_sig(value: Any, digits: int = SIG_DIGITS) -> str:
    """``value`` for a person: floats to ``digits`` significant digits (see the module), the rest by ``str``."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    mantissa, _, exp_text = f"{value:.{digits - 1}e}".partition("e")
    exponent = int(exp_text)
    if -4 <= exponent < digits:
        return _trim(f"{value:.{digits - 1 - exponent}f}")
    return f"{_trim(mantissa)}e{exponent}"


def format_params(params: Mapping[str, Any], digits: int = SIG_DIGITS) -> str:
    """``lr=0.05234, hidden=256``: parameters in their order, each by :func:`format_sig`."""
    return ", ".join(f"{name}={format_sig(value, digits)}" for name, value in params.items())


def _trim(text: str) -> str:
    """``"0.05230"`` -> ``"0.0523"``, ``"256.0"`` -> ``"256"`` (digits after the point only)."""
    return text.rstrip("0").rstrip(".") if "." in text else text
