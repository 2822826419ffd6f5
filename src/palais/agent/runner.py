"""The node agent: collect a report, spool it, deliver the spool oldest first.

Every report goes to the spool before any delivery, so a crash or a server
that is down loses nothing. A delivered report is deleted; one the server
rejects as invalid is moved to ``rejected/``; the rest wait for the next try.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from palais import __version__
from palais.agent.metrics import MetricsCollector
from palais.agent.probes import Check, peer_latency, probe
from palais.agent.spool import Spool

log = logging.getLogger("palais.agent")

DELIVERY_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 2.0
# Statuses that mean "fix the configuration", not "this report is invalid".
# The report stays in the spool and goes out once the token or node list is fixed.
CONFIG_STATUSES = {401, 403, 404}
TRANSIENT_STATUSES = {408, 425, 429}


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass
class AgentConfig:
    url: str
    node: str
    token: str = field(repr=False)
    interval: float = 30.0
    checks: list[Check] = field(default_factory=list)
    peers: list[tuple[str, str, int]] = field(default_factory=list)
    spool_dir: Path = Path("spool")

    @property
    def webhook_url(self) -> str:
        return self.url.rstrip("/") + "/api/v1/health/webhook"


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        collector: MetricsCollector | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.config = config
        self.collector = collector or MetricsCollector()
        self.spool = spool or Spool(config.spool_dir)
        self.client = httpx.AsyncClient(
            timeout=DELIVERY_TIMEOUT_SECONDS,
            headers={"User-Agent": f"palais-agent/{__version__}"},
        )
        self.stopping = asyncio.Event()
        self.rejected = 0

    async def close(self) -> None:
        await self.client.aclose()

    async def collect_report(self) -> dict[str, Any]:
        metrics = await asyncio.to_thread(self.collector.collect)
        services = await asyncio.gather(
            *(probe(check, self.client) for check in self.config.checks)
        )
        peers = await asyncio.gather(
            *(peer_latency(name, host, port) for name, host, port in self.config.peers)
        )
        return {
            "node": self.config.node,
            "event_id": str(uuid.uuid4()),
            "timestamp": datetime.now(UTC).isoformat(),
            **metrics,
            "services": list(services),
            "peers": list(peers),
        }

    async def spool_new_report(self) -> None:
        report = await self.collect_report()
        self.spool.add(report)
        unhealthy = [s["name"] for s in report["services"] if s["status"] != "healthy"]
        log.info(
            "collected report %s: %d services, unhealthy: %s",
            report["event_id"],
            len(report["services"]),
            ", ".join(unhealthy) or "none",
        )

    async def deliver(self, path: Path) -> Outcome:
        report = self.spool.read(path)
        if report is None:
            return Outcome.REJECTED
        event_id = report.get("event_id")
        try:
            # httpx bounds each read; this bounds the whole delivery.
            async with asyncio.timeout(DELIVERY_TIMEOUT_SECONDS):
                response = await self.client.post(
                    self.config.webhook_url,
                    json=report,
                    headers={"Authorization": f"Bearer {self.config.token}"},
                )
        except TimeoutError:
            log.warning(
                "delivery of report %s failed: timed out after %g s",
                event_id,
                DELIVERY_TIMEOUT_SECONDS,
            )
            return Outcome.FAILED
        except httpx.HTTPError as exc:
            log.warning(
                "delivery of report %s failed: %s", event_id, _describe_error(exc)
            )
            return Outcome.FAILED
        return self._settle(path, report, response)

    def _settle(
        self, path: Path, report: dict[str, Any], response: httpx.Response
    ) -> Outcome:
        status = response.status_code
        event_id = report.get("event_id")
        if status < 300:
            self.spool.remove(path)
            log.debug("delivered report %s (HTTP %d)", event_id, status)
            return Outcome.DELIVERED
        message = _error_sentence(response)
        if status == 404 and report.get("node") != self.config.node:
            # Spooled under an earlier --node: fixing the configuration will
            # never deliver it, and it must not hold back the newer reports.
            log.error(
                "report %s for node %r rejected: HTTP 404 %s; the agent now "
                "reports as %r, so the report was moved to %s",
                event_id,
                report.get("node"),
                message,
                self.config.node,
                self.spool.rejected_directory,
            )
            self.spool.reject(path)
            return Outcome.REJECTED
        if status in CONFIG_STATUSES:
            log.error(
                "delivery of report %s rejected: HTTP %d %s; check --token and --node",
                event_id,
                status,
                message,
            )
            return Outcome.FAILED
        if status < 500 and status not in TRANSIENT_STATUSES:
            log.error(
                "report %s rejected by the server (HTTP %d %s); moved to %s",
                event_id,
                status,
                message,
                self.spool.rejected_directory,
            )
            self.spool.reject(path)
            return Outcome.REJECTED
        log.warning(
            "delivery of report %s failed: HTTP %d %s", event_id, status, message
        )
        return Outcome.FAILED

    async def flush(self) -> bool:
        """Deliver spooled reports oldest first; True when the spool is empty."""
        for path in self.spool.pending():
            if self.stopping.is_set():
                return False
            outcome = await self.deliver(path)
            if outcome is Outcome.REJECTED:
                self.rejected += 1
            if outcome is Outcome.FAILED:
                return False
        return True

    async def run_once(self) -> int:
        """Collect a report, try once to deliver the spool, return the exit code."""
        await self.spool_new_report()
        await self.flush()
        left = len(self.spool.pending())
        if left:
            log.error("%d report(s) left in the spool %s", left, self.spool.directory)
        # A rejected report will never be stored, which a cron job must see.
        return 1 if left or self.rejected else 0

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time()
        retry_in = FIRST_RETRY_SECONDS
        while not self.stopping.is_set():
            if loop.time() >= next_report:
                await self.spool_new_report()
                next_report += self.config.interval
                next_report = max(next_report, loop.time())

            if await self.flush():
                retry_in = FIRST_RETRY_SECONDS
                wait = next_report - loop.time()
            else:
                wait = min(retry_in, max(0.0, next_report - loop.time()))
                log.info(
                    "retrying delivery of %d spooled report(s) in %.0f s",
                    len(self.spool.pending()),
                    wait,
                )
                retry_in = min(retry_in * 2, max(self.config.interval, 60.0))
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            pass


def _error_sentence(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))[:300]
    except (ValueError, AttributeError):
        return response.reason_phrase


def _describe_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {DELIVERY_TIMEOUT_SECONDS:g} s"
    return str(exc) or type(exc).__name__
