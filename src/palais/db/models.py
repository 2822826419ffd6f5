"""SQLAlchemy models. Alembic migrations in ``palais/migrations`` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from palais.db.types import BigId, JSONValue, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    tailscale_ip: Mapped[str | None] = mapped_column(String(45))
    # Last status written by ingest or the offline sweep; readers still compare
    # last_seen_at with the offline window, so a stale value here is harmless.
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    ram_percent: Mapped[float | None] = mapped_column(Float)
    disk_percent: Mapped[float | None] = mapped_column(Float)
    temperature: Mapped[float | None] = mapped_column(Float)
    # Raised by every report that moves the node's current state, so that a
    # reader can tell whether what it built from that state is still current.
    state_version: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class HealthCheck(Base):
    """Append-only history of service checks, pruned by the retention setting."""

    __tablename__ = "health_checks"
    __table_args__ = (
        Index("ix_health_checks_node_time", "node_id", "checked_at"),
        Index("ix_health_checks_checked_at", "checked_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), index=False
    )
    service_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    response_time_ms: Mapped[float | None] = mapped_column(Float)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)


class ServiceState(Base):
    """Latest check per node and service, so pages never scan the history."""

    __tablename__ = "service_states"

    node_id: Mapped[int] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    service_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    response_time_ms: Mapped[float | None] = mapped_column(Float)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)


class PeerLink(Base):
    """Latest latency a node measured to a peer (null when unreachable)."""

    __tablename__ = "peer_links"

    node_id: Mapped[int] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    peer_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookEvent(Base):
    """Event ids already stored, so that a retried delivery is stored once."""

    __tablename__ = "webhook_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE")
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class BackupStatus(Base):
    __tablename__ = "backup_status"
    __table_args__ = (UniqueConstraint("node_id", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(200), default="default")
    last_backup_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_backup_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    # When Palais first heard of this backup: a source that has never
    # succeeded is stale only once it is older than the stale window.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Deliverable(Base):
    __tablename__ = "deliverables"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    # Path relative to the data directory; never shown to users.
    file: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    mime: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    download_token: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(50))
    asset_id: Mapped[int | None] = mapped_column(Integer)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Insight(Base):
    __tablename__ = "insights"
    __table_args__ = (
        # One open insight per condition; resolved ones keep their key.
        Index(
            "uq_insights_open_dedupe_key",
            "dedupe_key",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    severity: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    dedupe_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Creative studio. The ComfyUI server keeps its history only in memory, so
# Palais stores every job it submits or adopts, and copies each output file.


class CreativeJob(Base):
    __tablename__ = "creative_jobs"
    __table_args__ = (
        Index("ix_creative_jobs_status", "status"),
        Index("ix_creative_jobs_submitted_at", "submitted_at"),
        Index("ix_creative_jobs_finished_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # ComfyUI accepts any string as a prompt id, so the length is generous.
    prompt_id: Mapped[str] = mapped_column(String(200), unique=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    # "palais" for jobs submitted here, "external" for adopted ones.
    origin: Mapped[str] = mapped_column(String(16), default="palais")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    text: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    template: Mapped[str | None] = mapped_column(String(64))
    workflow: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    # No foreign key: an adopted job may name a task that does not exist here.
    task_id: Mapped[int | None] = mapped_column(Integer, index=True)
    number: Mapped[float | None] = mapped_column(Float)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    error: Mapped[str | None] = mapped_column(Text)
    # Output references as ComfyUI reports them: node_id, filename, subfolder, type.
    outputs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONValue)
    # False until every output has been copied (retried after a failed download).
    outputs_stored: Mapped[bool] = mapped_column(Boolean, default=False)


class CreativeAsset(Base):
    """One output image of a job, copied into the data directory."""

    __tablename__ = "creative_assets"
    __table_args__ = (
        UniqueConstraint("job_id", "output_key"),
        Index("ix_creative_assets_created_at", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("creative_jobs.id", ondelete="CASCADE")
    )
    # SHA-256 of (node, type, subfolder, filename): names may be too long to index.
    output_key: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[str] = mapped_column(String(64))
    comfy_filename: Mapped[str] = mapped_column(Text)
    comfy_subfolder: Mapped[str] = mapped_column(Text, default="")
    comfy_type: Mapped[str] = mapped_column(String(16), default="output")
    # Path relative to the data directory; never shown to users.
    file: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    mime: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    thumbnail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreativeRender(Base):
    """Latest status of a Remotion render, as the n8n pipeline reports it."""

    __tablename__ = "creative_renders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    render_id: Mapped[str] = mapped_column(String(200), unique=True)
    composition: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float | None] = mapped_column(Float)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# An asset is attached to a task at most once; NULL asset ids (files that do
# not come from the gallery) are not constrained.
Index(
    "uq_deliverables_task_asset",
    Deliverable.task_id,
    Deliverable.asset_id,
    unique=True,
)


class AdminCredential(Base):
    """The dashboard's one admin password, stored as a salted scrypt hash."""

    __tablename__ = "admin_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LoginFailure(Base):
    """A failed or ongoing dashboard login, kept for the throttle's window.

    In the database rather than in memory, so that every ``--workers``
    process and a restart see the same count.
    """

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_client_failed_at", "client", "failed_at"),
        Index("ix_login_failures_failed_at", "failed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VpnSnapshot(Base):
    """The last topology read from Headscale (one row, id 1) and the last error.

    ``nodes`` keeps the last successful response, so that a failed poll marks
    it stale instead of erasing it.
    """

    __tablename__ = "vpn_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nodes: Mapped[list[dict[str, Any]]] = mapped_column(JSONValue)
    api_path: Mapped[str | None] = mapped_column(String(50))
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    error_since: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HealthMinute(Base):
    """Worst check status per node and minute, for the last two hours only.

    Rolled up from ``health_checks`` in the background, so that the hour-long
    timeline of every node reads 60 rows per node instead of every check.
    """

    __tablename__ = "health_minutes"

    minute: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    node_id: Mapped[int] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    # 1 healthy, 2 unknown, 3 unhealthy: the worst check of the minute.
    worst: Mapped[int] = mapped_column(Integer)


class HistoryRollupState(Base):
    """Ids of health_checks already rolled up into health_minutes (one row)."""

    __tablename__ = "history_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_check_id: Mapped[int] = mapped_column(BigInteger)
    previous_check_id: Mapped[int] = mapped_column(BigInteger)
