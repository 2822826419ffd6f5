"""Host metrics: CPU, RAM and disk from psutil, temperature where there is one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

# Sensor names that measure the CPU or SoC, in order of preference. On a
# Raspberry Pi the kernel calls the SoC sensor cpu_thermal (older kernels) or
# cpu-thermal; x86 machines report coretemp (Intel) or k10temp (AMD).
CPU_SENSORS = ("cpu_thermal", "cpu-thermal", "soc_thermal", "coretemp", "k10temp")
# Readings outside this range come from a broken or unconnected sensor.
PLAUSIBLE_CELSIUS = (-40.0, 150.0)

SensorReader = Callable[[], dict[str, list]]


class MetricsCollector:
    """Take one sample of the host's metrics per call to :meth:`collect`."""

    def __init__(
        self,
        *,
        disk_path: str = "/",
        sys_root: Path = Path("/sys"),
        read_sensors: SensorReader | None = None,
    ) -> None:
        self.disk_path = disk_path
        self.sys_root = sys_root
        self.read_sensors = read_sensors or _psutil_sensors
        self._cpu_primed = False

    def collect(self) -> dict[str, float | None]:
        return {
            "cpu_percent": self.cpu_percent(),
            "ram_percent": float(psutil.virtual_memory().percent),
            "disk_percent": float(psutil.disk_usage(self.disk_path).percent),
            "temperature": self.temperature(),
        }

    def cpu_percent(self) -> float:
        # psutil measures CPU use since the previous call, and the first call
        # has nothing to compare with, so it samples over a short interval.
        if not self._cpu_primed:
            self._cpu_primed = True
            return float(psutil.cpu_percent(interval=0.5))
        return float(psutil.cpu_percent(interval=None))

    def temperature(self) -> float | None:
        """Return the CPU temperature in °C, or None when there is no sensor."""
        for name, value in self._candidates():
            if PLAUSIBLE_CELSIUS[0] <= value <= PLAUSIBLE_CELSIUS[1]:
                return round(value, 1)
            log.warning("dropped implausible temperature %.1f °C from %s", value, name)
        return None

    def _candidates(self) -> list[tuple[str, float]]:
        sensors = self.read_sensors()
        ordered = [name for name in CPU_SENSORS if name in sensors]
        ordered += [name for name in sensors if name not in ordered]
        candidates = [
            (name, float(entry.current))
            for name in ordered
            for entry in sensors[name][:1]
            if entry.current is not None
        ]
        return candidates or self._thermal_zones()

    def _thermal_zones(self) -> list[tuple[str, float]]:
        """Read /sys/class/thermal, where psutil finds nothing on some Pi kernels."""
        zones = sorted((self.sys_root / "class" / "thermal").glob("thermal_zone*"))
        found: list[tuple[int, str, float]] = []
        for zone in zones:
            try:
                kind = (zone / "type").read_text().strip()
                millidegrees = int((zone / "temp").read_text().strip())
            except (OSError, ValueError):
                continue
            rank = CPU_SENSORS.index(kind) if kind in CPU_SENSORS else len(CPU_SENSORS)
            found.append((rank, kind, millidegrees / 1000))
        return [(kind, value) for _rank, kind, value in sorted(found)]


def _psutil_sensors() -> dict[str, list]:
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return {}
    try:
        return reader() or {}
    except (OSError, RuntimeError) as exc:
        log.debug("psutil could not read sensors: %s", exc)
        return {}
