"""``deepdive.engine``: the library a training script imports.

It depends on torch and never on the daemon. The public names load on first use, so
``import deepdive.engine as dd`` stays cheap until the script calls ``dd.setup(...)``.

Example::

    import deepdive.engine as dd
    run = dd.setup(precision="auto", grad_compression="auto")
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "setup": "deepdive.engine.run",
    "Run": "deepdive.engine.run",
    "DeviceInfo": "deepdive.engine.devices",
    "describe_devices": "deepdive.engine.devices",
    "matmul_throughput": "deepdive.engine.devices",
    "resolve_precision": "deepdive.engine.precision",
    "PrecisionPlan": "deepdive.engine.precision",
    "init_empty": "deepdive.engine.materialize",
    "FsdpOptions": "deepdive.engine.fsdp",
    "plan_units": "deepdive.engine.fsdp",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deepdive.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
