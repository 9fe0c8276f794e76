"""``deepdive.engine``: the library a training script imports.

It depends on torch and never on the daemon. Importing this package stays cheap: submodules load
when used.
"""

from deepdive.engine.devices import DeviceInfo, describe_devices, matmul_throughput

__all__ = ["DeviceInfo", "describe_devices", "matmul_throughput"]
