"""The health report that agents and n8n send, parsed and checked whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from palais import validation as v
from palais.config import NODE_NAME_ACCEPTED, NODE_NAME_PATTERN
from palais.errors import ApiError

SERVICE_STATUSES = ("healthy", "unhealthy", "unknown")
MAX_SERVICES = 500
MAX_PEERS = 500
MAX_SERVICE_NAME = 100
MAX_EVENT_ID = 200
# An hour, far above any probe timeout: a larger value is in the wrong unit.
MAX_RESPONSE_TIME_MS = 3_600_000


@dataclass(frozen=True)
class ServiceCheck:
    name: str
    status: str
    response_time_ms: float | None
    details: dict[str, Any] | None


@dataclass(frozen=True)
class PeerLatency:
    node: str
    latency_ms: float | None


@dataclass(frozen=True)
class HealthReport:
    node: str
    cpu_percent: float
    ram_percent: float
    disk_percent: float
    temperature: float | None
    timestamp: datetime
    event_id: str | None
    services: list[ServiceCheck] = field(default_factory=list)
    peers: list[PeerLatency] = field(default_factory=list)


def node_name(value: Any, field_name: str) -> str:
    return v.text(
        value,
        field_name,
        max_length=63,
        pattern=NODE_NAME_PATTERN,
        accepted=NODE_NAME_ACCEPTED,
    )


def parse_report(body: dict[str, Any], now: datetime) -> HealthReport:
    """Check every field of a report and raise on the first invalid one."""
    node = node_name(v.required(body, "node"), "node")
    percents = {
        key: v.number(
            v.required(body, key), key, minimum=0, maximum=limit, unit=" (percent)"
        )
        for key, limit in (
            ("cpu_percent", 100),
            ("ram_percent", 100),
            # Disk usage can pass 100 % of the user's share into reserved blocks.
            ("disk_percent", 110),
        )
    }
    temperature = v.optional_number(
        body.get("temperature"), "temperature", minimum=-40, maximum=150, unit=" °C"
    )
    reported_at = v.optional_timestamp(body.get("timestamp"), "timestamp", now=now)
    event_id = body.get("event_id")
    if event_id is not None:
        event_id = v.text(event_id, "event_id", max_length=MAX_EVENT_ID)
    services = parse_services(v.required(body, "services"))
    peers = parse_peers(body.get("peers"), node)
    # A clock up to 5 minutes fast is accepted, but the report is stored at the
    # server's time. Node state only moves forward, so a report from the future
    # would hide every later report until its time had passed.
    timestamp = min(reported_at, now) if reported_at else now
    return HealthReport(
        node=node,
        temperature=temperature,
        timestamp=timestamp,
        event_id=event_id,
        services=services,
        peers=peers,
        **percents,
    )


def parse_services(value: Any) -> list[ServiceCheck]:
    items = v.array(value, "services", max_items=MAX_SERVICES)
    services: list[ServiceCheck] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        prefix = f"services[{index}]"
        if not isinstance(item, dict):
            raise v.invalid(prefix, item, "an object with name and status")
        name = v.text(
            v.required(item, "name", prefix + "."),
            prefix + ".name",
            max_length=MAX_SERVICE_NAME,
        )
        if name in seen:
            raise ApiError(
                422,
                f"{prefix}.name: duplicate service name {name!r}; accepted: "
                "names unique within one report",
                field=prefix + ".name",
                value=name,
                accepted="names unique within one report",
            )
        seen.add(name)
        services.append(_parse_service(item, prefix, name))
    return services


def _parse_service(item: dict[str, Any], prefix: str, name: str) -> ServiceCheck:
    status = v.choice(
        v.required(item, "status", prefix + "."), prefix + ".status", SERVICE_STATUSES
    )
    response_time = v.optional_number(
        item.get("response_time_ms"),
        prefix + ".response_time_ms",
        minimum=0,
        maximum=MAX_RESPONSE_TIME_MS,
        unit=" ms",
    )
    details = v.object_or_none(item.get("details"), prefix + ".details")
    return ServiceCheck(name, status, response_time, details)


def parse_peers(value: Any, reporter: str) -> list[PeerLatency]:
    if value is None:
        return []
    peers: list[PeerLatency] = []
    seen: set[str] = set()
    for index, item in enumerate(v.array(value, "peers", max_items=MAX_PEERS)):
        prefix = f"peers[{index}]"
        if not isinstance(item, dict):
            raise v.invalid(prefix, item, "an object with node and latency_ms")
        peer = node_name(v.required(item, "node", prefix + "."), prefix + ".node")
        # A link to itself or a second figure for one peer cannot be drawn.
        if peer == reporter or peer in seen:
            raise v.invalid(
                prefix + ".node",
                peer,
                "each other node at most once, not the reporting node itself",
            )
        seen.add(peer)
        latency = v.optional_number(
            item.get("latency_ms"),
            prefix + ".latency_ms",
            minimum=0,
            maximum=MAX_RESPONSE_TIME_MS,
            unit=" ms",
        )
        peers.append(PeerLatency(peer, latency))
    return peers
