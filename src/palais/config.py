"""Settings, read from the environment with the prefix ``PALAIS_``.

Secrets that are not set (API token, admin password, session secret) are
generated once into files of mode 0600 in the data directory. Their values are
never printed or logged, only the path of the file that contains them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# DNS-label style names, as Headscale and Tailscale use for machines.
NODE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
NODE_NAME_ACCEPTED = (
    "1 to 63 characters: letters, digits, '.', '_' or '-', starting with a letter "
    "or digit"
)

PACKAGE_DIR = Path(__file__).resolve().parent
# Below this a secret set by hand is guessable; generated ones have 43.
MIN_SECRET_LENGTH = 16


class ConfigError(ValueError):
    """Raised when a setting has a value Palais cannot use. The message names it."""


@dataclass(frozen=True)
class SeedNode:
    name: str
    tailscale_ip: str | None


def parse_nodes(text: str) -> list[SeedNode]:
    """Parse ``name[=tailscale_ip]`` entries separated by commas."""
    nodes: dict[str, SeedNode] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, _, ip = entry.partition("=")
        name, ip = name.strip(), ip.strip()
        if not NODE_NAME_PATTERN.match(name):
            raise ConfigError(
                f"PALAIS_NODES: invalid node name {name!r}; accepted: "
                f"{NODE_NAME_ACCEPTED}"
            )
        # A second entry would silently replace the first one's address.
        if name in nodes:
            raise ConfigError(
                f"PALAIS_NODES: node {name!r} is listed twice; accepted: each name once"
            )
        nodes[name] = SeedNode(name=name, tailscale_ip=_address(name, ip))
    return list(nodes.values())


def _address(name: str, text: str) -> str | None:
    """Return the node's VPN address in canonical form, or None when not given."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(
            f"PALAIS_NODES: invalid IP address {text!r} for node {name!r}; "
            "accepted: an IPv4 or IPv6 address such as 100.64.0.2"
        ) from None


def sqlalchemy_url(url: str) -> str:
    """Map a user-facing database URL to the async driver Palais uses."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"PALAIS_DATABASE_URL: invalid URL {url!r}; accepted: "
            "sqlite:///PATH or postgresql://user[:password]@host[:port]/db"
        )
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ConfigError(
        f"PALAIS_DATABASE_URL: unsupported scheme {scheme!r}; accepted: sqlite, "
        "postgresql"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PALAIS_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    api_token: SecretStr | None = None
    admin_password: SecretStr | None = None
    session_secret: SecretStr | None = None
    # Kept as text: the format is `name[=ip],...`, which is not JSON.
    nodes: str = "sese-ai,rpi5,seko-vpn"
    self_node: str = "sese-ai"
    self_agent: bool = True
    self_agent_interval: float = Field(default=30.0, gt=0)
    offline_after_seconds: int = Field(default=180, gt=0)
    auto_register_nodes: bool = False
    history_retention_days: float = Field(default=30, gt=0)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    backup_stale_hours: float = Field(default=24, gt=0)
    headscale_url: str | None = None
    headscale_api_key: SecretStr | None = None
    headscale_poll_seconds: float = Field(default=60, gt=0)
    comfyui_url: str | None = None
    comfyui_templates_dir: Path | None = None

    @field_validator("self_node")
    @classmethod
    def _check_self_node(cls, value: str) -> str:
        if not NODE_NAME_PATTERN.match(value):
            raise ValueError(
                f"invalid node name {value!r}; accepted: {NODE_NAME_ACCEPTED}"
            )
        return value

    @field_validator("headscale_url", "comfyui_url", "database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @cached_property
    def seed_nodes(self) -> list[SeedNode]:
        nodes = parse_nodes(self.nodes)
        if self.self_node not in {node.name for node in nodes}:
            nodes.append(SeedNode(name=self.self_node, tailscale_ip=None))
        return nodes

    @property
    def database_file_default(self) -> Path:
        return self.data_dir / "palais.db"

    @cached_property
    def sqlalchemy_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.database_file_default.resolve()}"
        return sqlalchemy_url(url)

    @property
    def templates_dir(self) -> Path:
        return self.comfyui_templates_dir or PACKAGE_DIR / "creative" / "templates"

    def ensure_data_dir(self) -> None:
        # The folder contains the secrets and the database: owner access only.
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkdir leaves an existing folder as it was, and SQLite creates its
        # files 0644, so the folder's mode is what keeps them private.
        self.data_dir.chmod(0o700)

    def secret(self, name: str) -> str:
        """Return the secret ``name`` from the environment or its file."""
        configured: SecretStr | None = getattr(self, name)
        env_name = f"PALAIS_{name.upper()}"
        # A blank value is a mistake in an env file, not a secret.
        value = configured.get_secret_value().strip() if configured else ""
        if not value:
            return read_or_create_secret(self.data_dir / name, env_name)
        if len(value) < MIN_SECRET_LENGTH:
            log.warning(
                "%s is shorter than %d characters; use a longer random value",
                env_name,
                MIN_SECRET_LENGTH,
            )
        return value


def read_or_create_secret(path: Path, env_name: str) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    if value:
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    # O_EXCL so that two processes starting together cannot both write it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(value + "\n")
    log.warning("%s is not set: generated one into %s (mode 0600)", env_name, path)
    return value
