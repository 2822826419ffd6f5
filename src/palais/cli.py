"""Palais: the control room of a Headscale fleet and its ComfyUI studio."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import math
import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from palais import __version__
from palais.config import (
    NODE_NAME_ACCEPTED,
    NODE_NAME_PATTERN,
    ConfigError,
    Settings,
)

log = logging.getLogger("palais")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Also handed to uvicorn, which applies it in each --workers process.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": LOG_FORMAT}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        # httpx logs every request at INFO; the agent logs outcomes itself.
        "httpx": {"level": "WARNING"},
        "alembic.runtime.plugins": {"level": "WARNING"},
    },
}


def configure_logging() -> None:
    logging.config.dictConfig(LOGGING)


def load_settings() -> Settings:
    try:
        settings = Settings()
        settings.seed_nodes  # noqa: B018 - parse PALAIS_NODES now, not mid-start
        settings.sqlalchemy_url  # noqa: B018
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "PALAIS_" + str(error["loc"][0]).upper()
        raise SystemExit(f"palais: invalid {name}: {error['msg']}") from None
    except ConfigError as exc:
        raise SystemExit(f"palais: {exc}") from None
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from palais.app import create_app

    settings = load_settings()
    app = create_app(settings, freeze_gc=True)
    if settings.api_token is None:
        log.info("API token file: %s", (settings.data_dir / "api_token").resolve())
    options = {"host": args.host, "port": args.port, "log_config": LOGGING}
    if args.workers == 1:
        uvicorn.run(app, access_log=False, **options)
        return 0

    # Each worker process builds its own app from the environment. Migrating
    # here first means the workers find the schema current and skip it.
    cmd_migrate(args)
    uvicorn.run(
        "palais.app:serve_app",
        factory=True,
        workers=args.workers,
        access_log=False,
        **options,
    )
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    from palais.db.engine import create_engine, upgrade

    settings = load_settings()
    settings.ensure_data_dir()

    async def run() -> None:
        engine = create_engine(settings.sqlalchemy_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    log.info("database upgraded to the latest schema")
    return 0


def read_token(args: argparse.Namespace, command: str = "palais agent") -> str:
    if args.token:
        return args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SystemExit(
                f"{command}: cannot read --token-file {args.token_file}: {exc.strerror}"
            ) from None
        if not token:
            raise SystemExit(f"{command}: --token-file {args.token_file} is empty")
        return token
    token = os.environ.get("PALAIS_API_TOKEN", "").strip()
    if not token:
        raise SystemExit(
            f"{command}: missing token; pass --token, --token-file or set "
            "PALAIS_API_TOKEN"
        )
    return token


def default_spool_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "palais" / "spool"


def cmd_agent(args: argparse.Namespace) -> int:
    from palais.agent.probes import parse_check, parse_peer
    from palais.agent.runner import Agent, AgentConfig
    from palais.agent.spool import Spool

    try:
        checks = [parse_check(text) for text in args.check]
        peers = [parse_peer(text) for text in args.peer]
    except ValueError as exc:
        raise SystemExit(f"palais agent: {exc}") from None
    check_agent_names(args.node, [check.name for check in checks])
    if not args.url.startswith(("http://", "https://")):
        raise SystemExit(
            f"palais agent: invalid --url {args.url!r}; expected http(s)://host[:port]"
        )
    config = AgentConfig(
        url=args.url,
        node=args.node,
        token=read_token(args),
        interval=args.interval,
        checks=checks,
        peers=peers,
        spool_dir=args.spool or default_spool_dir(),
    )
    return asyncio.run(
        _run_agent(
            Agent(config, spool=Spool(config.spool_dir, args.spool_max)), args.once
        )
    )


async def _run_agent(agent, once: bool) -> int:  # noqa: ANN001
    config = agent.config
    log.info(
        "agent started: node %s, server %s, every %g s, spool %s",
        config.node,
        config.url,
        config.interval,
        config.spool_dir,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, agent.stopping.set)
    try:
        if once:
            return await agent.run_once()
        await agent.run_forever()
        return 0
    finally:
        await agent.close()
        log.info("agent stopped: %d report(s) in the spool", len(agent.spool.pending()))


def check_agent_names(node: str, check_names: list[str]) -> None:
    """Reject locally what the server would reject in every report."""
    if not NODE_NAME_PATTERN.match(node):
        raise SystemExit(
            f"palais agent: invalid --node {node!r}; accepted: {NODE_NAME_ACCEPTED}"
        )
    duplicates = sorted({name for name in check_names if check_names.count(name) > 1})
    if duplicates:
        raise SystemExit(
            f"palais agent: duplicate --check name {duplicates[0]!r}; each check "
            "needs its own name"
        )


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value) or not value > 0:
        raise argparse.ArgumentTypeError(
            f"must be a finite number greater than 0, got {text}"
        )
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of 1 or more, got {text}"
        )
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="palais", description=__doc__)
    parser.add_argument("--version", action="version", version=f"palais {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, seed and serve the dashboard")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to bind")
    serve.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="server processes; one of them runs the background work",
    )
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema")
    migrate.set_defaults(handler=cmd_migrate)

    add_agent_parser(commands)
    add_backup_parser(commands)
    return parser


def add_agent_parser(commands) -> None:  # noqa: ANN001
    agent = commands.add_parser("agent", help="report this host to a Palais server")
    agent.add_argument("--url", required=True, help="base URL of the Palais server")
    agent.add_argument("--node", required=True, help="name of this node in Palais")
    agent.add_argument("--token", help="API token (or PALAIS_API_TOKEN)")
    agent.add_argument("--token-file", help="file that contains the API token")
    agent.add_argument(
        "--interval", type=positive_float, default=30.0, help="seconds between reports"
    )
    agent.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="service to probe: NAME=tcp://host:port or NAME=http(s)://...",
    )
    agent.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="node to measure TCP connect latency to",
    )
    agent.add_argument(
        "--spool",
        type=Path,
        help="folder of undelivered reports (default: $XDG_STATE_HOME/palais/spool)",
    )
    agent.add_argument(
        "--spool-max",
        type=positive_int,
        default=10_000,
        help="reports kept in the spool",
    )
    agent.add_argument(
        "--once", action="store_true", help="send one report, then exit (1 if any left)"
    )
    agent.set_defaults(handler=cmd_agent)


def cmd_backup_report(args: argparse.Namespace) -> int:
    from palais.health.restic_report import report

    if not args.url.startswith(("http://", "https://")):
        raise SystemExit(
            f"palais backup report: invalid --url {args.url!r}; expected "
            "http(s)://host[:port]"
        )
    if not Path(args.password_file).is_file():
        raise SystemExit(
            f"palais backup report: --password-file {args.password_file} is not a file"
        )
    return report(
        url=args.url,
        token=read_token(args, "palais backup report"),
        repo=args.repo,
        password_file=args.password_file,
        node=args.node,
        source=args.source,
        exit_code=args.exit_code,
    )


def add_backup_parser(commands) -> None:  # noqa: ANN001
    backup = commands.add_parser("backup", help="backup status commands")
    actions = backup.add_subparsers(dest="backup_command", required=True)
    report = actions.add_parser(
        "report", help="read a restic repository and post its status to Palais"
    )
    report.add_argument("--url", required=True, help="base URL of the Palais server")
    report.add_argument("--repo", required=True, help="restic repository (-r)")
    report.add_argument(
        "--password-file", required=True, help="file with the repository password"
    )
    report.add_argument("--token", help="API token (or PALAIS_API_TOKEN)")
    report.add_argument("--token-file", help="file that contains the API token")
    report.add_argument(
        "--node", help="node the backup belongs to (default: the server's self node)"
    )
    report.add_argument(
        "--source", default="restic", help="name of this backup in Palais"
    )
    report.add_argument(
        "--exit-code",
        type=int,
        help="exit code of the `restic backup` run: 0 ok, 3 partial, else failed",
    )
    report.set_defaults(handler=cmd_backup_report)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return args.handler(args)
    except SystemExit as exc:
        # Commands raise SystemExit("message") for invalid settings or flags;
        # exit 2 as argparse does for usage errors, not Python's default 1.
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
