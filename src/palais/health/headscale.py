"""Client of the Headscale REST API, for both generations of the node list.

Headscale 0.23 and later list nodes at ``GET /api/v1/node`` under the key
``nodes``; 0.22 and older list them at ``GET /api/v1/machine`` under
``machines``. Both use grpc-gateway's JSON: lowerCamelCase keys, 64-bit ids
as strings, RFC 3339 timestamps with up to 9 fractional digits, and ``null``
for unset timestamps. The API key is sent only in the Authorization header and
never appears in errors or logs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import httpx

from palais import validation as v
from palais.errors import ApiError

log = logging.getLogger(__name__)

NODE_PATH = "/api/v1/node"
MACHINE_PATH = "/api/v1/machine"
DEFAULT_TIMEOUT_SECONDS = 10.0
# Headscale's zero time, sent by 0.22 clients registered without expiry.
ZERO_TIME_YEAR = 1


class HeadscaleError(Exception):
    """A failed poll, described in words that are safe to show and log."""


@dataclass(frozen=True)
class VpnNode:
    id: str
    name: str
    ips: list[str]
    online: bool
    expired: bool
    expiry: str | None
    last_seen_at: str | None
    user: str | None
    tags: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class HeadscaleClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def list_nodes(self, now: datetime) -> tuple[str, list[VpnNode]]:
        """Return the API path that responded and the parsed node list.

        ``/api/v1/node`` is tried first; any 404 there means an older server,
        so ``/api/v1/machine`` is tried next.
        """
        response = await self._get(NODE_PATH)
        path, key = NODE_PATH, "nodes"
        if response.status_code == 404:
            response = await self._get(MACHINE_PATH)
            path, key = MACHINE_PATH, "machines"
        _raise_for_status(response, path)
        return path, parse_node_list(response, key, now)

    async def _get(self, path: str) -> httpx.Response:
        try:
            return await self._client.get(path)
        except httpx.TimeoutException:
            raise HeadscaleError(
                f"Headscale timed out on {path} after {self._client.timeout.read:g} s"
            ) from None
        except httpx.HTTPError as exc:
            # The message of a connection error names the host, never the key.
            raise HeadscaleError(
                f"cannot reach Headscale at {self.base_url}: "
                f"{type(exc).__name__}: {exc}"
            ) from None


def _raise_for_status(response: httpx.Response, path: str) -> None:
    status = response.status_code
    if status == 200:
        return
    body = response.text.strip()
    # Headscale 0.26 and older return 500 "Unauthorized" for an unknown key.
    if status == 401 or (status == 500 and body == "Unauthorized"):
        raise HeadscaleError(
            f"Headscale rejected the API key (HTTP {status} on {path}); "
            "check PALAIS_HEADSCALE_API_KEY and its expiry"
        )
    raise HeadscaleError(f"Headscale returned HTTP {status} on {path}{_detail(body)}")


def _detail(body: str) -> str:
    """Return ': <message>' from a grpc-gateway error body, if there is one."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    message = document.get("message") if isinstance(document, dict) else None
    if isinstance(message, str) and message:
        return f": {message[:200]}"
    return ""


def parse_node_list(response: httpx.Response, key: str, now: datetime) -> list[VpnNode]:
    """Parse the node list, skipping with a warning each node that cannot be read.

    One odd node (a hand-edited database, a newer field format) should not
    hide the rest of the fleet. A list in which no node can be read points to
    an API change, so it fails the poll.
    """
    try:
        document = response.json()
    except ValueError:
        raise HeadscaleError("Headscale returned a body that is not JSON") from None
    items = document.get(key) if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise HeadscaleError(f"Headscale's response has no list under {key!r}")
    nodes, problems = [], []
    for index, item in enumerate(items):
        try:
            nodes.append(parse_node(item, now, f"{key}[{index}]"))
        except HeadscaleError as exc:
            log.warning("skipped a Headscale node: %s", exc)
            problems.append(str(exc))
    if problems and not nodes:
        raise HeadscaleError(
            f"none of the {len(items)} Headscale nodes could be read; "
            f"the first: {problems[0]}"
        )
    return nodes


def parse_node(item: Any, now: datetime, where: str) -> VpnNode:
    """Map one ``v1Node`` or ``v1Machine`` to :class:`VpnNode`.

    Missing keys are accepted like ``null``. Status comes from ``online`` and
    the expiry only: newer servers update ``lastSeen`` on disconnect alone.
    """
    if not isinstance(item, dict):
        raise HeadscaleError(f"{where} is not an object")
    where = f"{where} (id {str(item.get('id'))[:40]})"
    name = item.get("givenName") or item.get("name") or f"id-{item.get('id')}"
    expiry = _time(item.get("expiry"), f"{where}.expiry", now)
    if expiry is not None and expiry.year == ZERO_TIME_YEAR:
        expiry = None
    last_seen = _time(item.get("lastSeen"), f"{where}.lastSeen", now)
    user = item.get("user")
    tags = item.get("tags")
    if tags is None:
        # Before 0.28 the tags were split into forced and valid ones.
        tags = _strings(item.get("forcedTags"), f"{where}.forcedTags")
        tags += _strings(item.get("validTags"), f"{where}.validTags")
    return VpnNode(
        id=str(item.get("id", "")),
        name=str(name),
        ips=_strings(item.get("ipAddresses"), f"{where}.ipAddresses"),
        online=item.get("online") is True,
        expired=expiry is not None and expiry <= now,
        expiry=_iso(expiry),
        last_seen_at=_iso(last_seen),
        user=str(user.get("name")) if isinstance(user, dict) else None,
        tags=_strings(tags, f"{where}.tags"),
    )


def _strings(value: Any, where: str) -> list[str]:
    """Return a list of strings; a missing list is empty."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise HeadscaleError(f"{where} is not a list of strings")
    return list(value)


def _time(value: Any, field: str, now: datetime) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return v.timestamp(value, field, now=now, allow_future=True)
    except ApiError:
        # The webhook's message would add "at most 5 minutes in the future",
        # which does not apply here because expiries are rightly in the future.
        value_text = repr(value)[:60]
        raise HeadscaleError(f"{field}: invalid timestamp {value_text}") from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
