"""Pages and API responses are gzipped for clients that accept it."""

from __future__ import annotations

import gzip

from fastapi.testclient import TestClient

from palais.web.templating import STATIC_DIR
from tests.conftest import AUTH
from tests.web.conftest import log_in

GZIP = {"Accept-Encoding": "gzip"}


def raw_get(client: TestClient, path: str, headers: dict[str, str]):
    """GET without httpx's automatic decoding, to see the bytes on the wire."""
    with client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def test_page_gzipped_when_accepted(web_client: TestClient) -> None:
    assert log_in(web_client).status_code == 303
    response, body = raw_get(web_client, "/health", GZIP)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "<h2>Nodes</h2>" in gzip.decompress(body).decode()


def test_plain_when_not_accepted(web_client: TestClient) -> None:
    response, body = raw_get(
        web_client, "/api/v1/health/nodes", {**AUTH, "Accept-Encoding": "identity"}
    )
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert body.startswith(b'{"nodes":')


def test_api_answer_gzipped(web_client: TestClient) -> None:
    # Big enough to pass the 1 KiB below which compression is not worth it.
    services = [
        {"name": f"service-{index}", "status": "healthy"} for index in range(40)
    ]
    report = {"node": "rpi5", "cpu_percent": 1, "ram_percent": 2, "disk_percent": 3}
    report["services"] = services
    response = web_client.post("/api/v1/health/webhook", json=report, headers=AUTH)
    assert response.status_code == 201
    response, body = raw_get(web_client, "/api/v1/health/nodes", {**AUTH, **GZIP})
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b'{"nodes":')


def test_byte_range_never_gzipped(web_client: TestClient) -> None:
    whole = (STATIC_DIR / "htmx.min.js").read_bytes()
    response, body = raw_get(
        web_client, "/static/htmx.min.js", {**GZIP, "Range": "bytes=100-1999"}
    )
    assert response.status_code == 206
    assert "content-encoding" not in response.headers
    assert body == whole[100:2000]
