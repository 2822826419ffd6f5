"""Host metrics: real psutil readings and the temperature sources."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from palais.agent.metrics import MetricsCollector


def sensor(current: float | None) -> SimpleNamespace:
    return SimpleNamespace(label="", current=current, high=None, critical=None)


def write_zone(root: Path, index: int, kind: str, millidegrees: str) -> None:
    zone = root / "class" / "thermal" / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(kind + "\n")
    (zone / "temp").write_text(millidegrees + "\n")


def no_sensors() -> dict:
    return {}


def test_real_readings_within_bounds(tmp_path: Path) -> None:
    collector = MetricsCollector(sys_root=tmp_path)

    first = collector.collect()
    second = collector.collect()

    for sample in (first, second):
        assert 0 <= sample["cpu_percent"] <= 100
        assert 0 < sample["ram_percent"] <= 100
        assert 0 < sample["disk_percent"] <= 110


@pytest.mark.parametrize("name", ["cpu_thermal", "cpu-thermal"])
def test_raspberry_pi_sensor_names(name: str, tmp_path: Path) -> None:
    sensors = {"nvme": [sensor(38.0)], name: [sensor(51.34)]}
    collector = MetricsCollector(sys_root=tmp_path, read_sensors=lambda: sensors)

    assert collector.temperature() == 51.3


def test_sysfs_fallback_prefers_cpu_zone(tmp_path: Path) -> None:
    write_zone(tmp_path, 0, "gpu-thermal", "60000")
    write_zone(tmp_path, 1, "cpu-thermal", "48312")
    collector = MetricsCollector(sys_root=tmp_path, read_sensors=no_sensors)

    assert collector.temperature() == 48.3


def test_no_sensor_means_none(tmp_path: Path) -> None:
    collector = MetricsCollector(sys_root=tmp_path, read_sensors=no_sensors)

    assert collector.temperature() is None


def test_implausible_reading_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_zone(tmp_path, 0, "cpu-thermal", "-273000")
    collector = MetricsCollector(sys_root=tmp_path, read_sensors=no_sensors)

    with caplog.at_level(logging.WARNING):
        value = collector.temperature()

    assert value is None
    assert "implausible temperature -273.0" in caplog.text


def test_implausible_sensor_falls_through(tmp_path: Path) -> None:
    sensors = {"cpu_thermal": [sensor(-500.0)], "acpitz": [sensor(44.0)]}
    collector = MetricsCollector(sys_root=tmp_path, read_sensors=lambda: sensors)

    assert collector.temperature() == 44.0


def test_unreadable_zone_skipped(tmp_path: Path) -> None:
    write_zone(tmp_path, 0, "cpu-thermal", "not-a-number")
    collector = MetricsCollector(sys_root=tmp_path, read_sensors=no_sensors)

    assert collector.temperature() is None
