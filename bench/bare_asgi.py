"""Bare ASGI endpoint that parses a JSON body and returns 201: the stack's ceiling.

It runs under uvicorn with the same arguments as ``palais serve``, so the
throughput gap between this app and Palais is the cost of FastAPI, validation
and the database writes. Usage: ``python bench/bare_asgi.py --port 18081``.
"""

from __future__ import annotations

import argparse
import json

import uvicorn

RESPONSE_HEADERS = [(b"content-type", b"application/json")]


async def read_body(receive) -> bytes:  # noqa: ANN001
    chunks = []
    more_body = True
    while more_body:
        message = await receive()
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    return b"".join(chunks)


async def app(scope, receive, send) -> None:  # noqa: ANN001
    if scope["type"] != "http":
        return
    document = json.loads(await read_body(receive))
    if not isinstance(document, dict):
        document = {}
    status = 201 if document else 422
    # A response of the same shape as Palais's keeps the bytes on the wire equal.
    payload = {"duplicate": False, "node": document.get("node"), "checks": 10}
    body = json.dumps(payload).encode()
    headers = RESPONSE_HEADERS + [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=18081, help="TCP port to bind")
    args = parser.parse_args()
    # The same call as palais.cli.cmd_serve: default loop and HTTP parser.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
