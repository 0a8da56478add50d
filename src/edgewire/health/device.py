"""Local device load for health reports: CPU, memory and battery (psutil), injectable.

The probe reads ``/proc`` (or the platform's equivalent) through psutil: no clock, no
socket. Tests and simulations inject :class:`StaticDevice` instead.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["DeviceProbe", "PsutilDevice", "StaticDevice"]


class DeviceProbe(Protocol):
    """Anything that can say how loaded this device is."""

    def sample(self) -> dict[str, Any]:
        """``{"cpu_percent", "memory_percent", "battery_percent", "on_battery"}``; a
        figure the device cannot tell is None."""
        ...


class StaticDevice:
    """A device whose load is whatever it was told (tests, simulations)."""

    def __init__(self, *, cpu_percent: float | None = None,
                 memory_percent: float | None = None,
                 battery_percent: float | None = None,
                 on_battery: bool | None = None) -> None:
        self.cpu_percent = cpu_percent
        self.memory_percent = memory_percent
        self.battery_percent = battery_percent
        self.on_battery = on_battery

    def sample(self) -> dict[str, Any]:
        """The figures given to the constructor (or set since)."""
        return {"cpu_percent": self.cpu_percent, "memory_percent": self.memory_percent,
                "battery_percent": self.battery_percent, "on_battery": self.on_battery}


class PsutilDevice:
    """This machine's load, read with psutil (the ``health`` extra).

    CPU is the system-wide utilisation since the previous sample (psutil's non-blocking
    form: the first sample after creation reads 0.0, so the constructor primes it).
    """

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError as exc:  # pragma: no cover - the extra is a dev dependency
            raise ImportError("device load needs psutil: pip install 'edgewire[health]'"
                              ) from exc
        self._psutil = psutil
        psutil.cpu_percent(interval=None)

    def sample(self) -> dict[str, Any]:
        """CPU and memory utilisation in percent; battery level and whether the device
        runs on it, None where the platform has no battery sensor."""
        ps = self._psutil
        battery_percent: float | None = None
        on_battery: bool | None = None
        try:
            battery = ps.sensors_battery()
        except (AttributeError, OSError, RuntimeError):
            battery = None  # no sensor support on this platform
        if battery is not None:
            battery_percent = round(float(battery.percent), 1)
            plugged = battery.power_plugged
            on_battery = None if plugged is None else not plugged
        return {"cpu_percent": round(float(ps.cpu_percent(interval=None)), 1),
                "memory_percent": round(float(ps.virtual_memory().percent), 1),
                "battery_percent": battery_percent, "on_battery": on_battery}
