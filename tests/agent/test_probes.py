"""Parsing of --check and --peer, and what a probe reports."""

from __future__ import annotations

import httpx
import pytest

from palais.agent.probes import Check, parse_check, parse_peer, probe


def test_parse_check_kinds() -> None:
    assert parse_check("db=tcp://127.0.0.1:5432") == Check("db", "tcp://127.0.0.1:5432")
    assert parse_check("web = https://example.test/health").target == (
        "https://example.test/health"
    )


@pytest.mark.parametrize(
    "text",
    ["db", "=tcp://h:1", "db=tcp://127.0.0.1", "db=ftp://h:21", "db=http://"],
)
def test_parse_check_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid check"):
        parse_check(text)


def test_parse_peer() -> None:
    assert parse_peer("sese-ai=100.64.0.1:8000") == ("sese-ai", "100.64.0.1", 8000)
    assert parse_peer("v6=[fd7a::1]:22") == ("v6", "fd7a::1", 22)
    with pytest.raises(ValueError, match="NAME=host:port"):
        parse_peer("sese-ai=100.64.0.1")


def test_public_target_hides_credentials() -> None:
    check = Check("web", "https://user:secret@example.test:8443/health?key=abc")

    assert check.public_target == "https://example.test:8443/health"


async def test_http_probe_reports_status_without_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    check = Check("web", "http://user:secret@service.test/health?token=abc")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await probe(check, client)

    assert result["status"] == "unhealthy"
    assert result["details"] == {
        "target": "http://service.test/health",
        "status_code": 503,
    }
    assert "secret" not in str(result)
