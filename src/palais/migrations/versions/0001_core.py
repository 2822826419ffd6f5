"""Create the core tables: nodes, health history, backups, tasks, insights.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from palais.db.types import BigId, JSONValue, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _node_fk(**kwargs) -> sa.ForeignKey:
    return sa.ForeignKey("nodes.id", ondelete="CASCADE", **kwargs)


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("tailscale_ip", sa.String(45)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_seen_at", UTCDateTime()),
        sa.Column("cpu_percent", sa.Float),
        sa.Column("ram_percent", sa.Float),
        sa.Column("disk_percent", sa.Float),
        sa.Column("temperature", sa.Float),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "health_checks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.Integer, _node_fk(), nullable=False),
        sa.Column("service_name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_time_ms", sa.Float),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("details", JSONValue),
    )
    op.create_index(
        "ix_health_checks_node_time", "health_checks", ["node_id", "checked_at"]
    )
    op.create_index("ix_health_checks_checked_at", "health_checks", ["checked_at"])
    op.create_table(
        "service_states",
        sa.Column("node_id", sa.Integer, _node_fk(), primary_key=True),
        sa.Column("service_name", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_time_ms", sa.Float),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("details", JSONValue),
    )
    op.create_table(
        "peer_links",
        sa.Column("node_id", sa.Integer, _node_fk(), primary_key=True),
        sa.Column("peer_name", sa.String(63), primary_key=True),
        sa.Column("latency_ms", sa.Float),
        sa.Column("measured_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("node_id", sa.Integer, _node_fk()),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])
    op.create_table(
        "backup_status",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("node_id", sa.Integer, _node_fk(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("last_backup_at", UTCDateTime()),
        sa.Column("last_success_at", UTCDateTime()),
        sa.Column("next_backup_at", UTCDateTime()),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("details", JSONValue),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("node_id", "source", name="uq_backup_status_node_id"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "deliverables",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "task_id",
            sa.Integer,
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("download_token", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("asset_id", sa.Integer),
        sa.Column("provenance", JSONValue),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_deliverables_task_id", "deliverables", ["task_id"])
    op.create_table(
        "insights",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime()),
    )
    op.create_index(
        "uq_insights_open_dedupe_key",
        "insights",
        ["dedupe_key"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    for table in (
        "insights",
        "deliverables",
        "tasks",
        "backup_status",
        "webhook_events",
        "peer_links",
        "service_states",
        "health_checks",
        "nodes",
    ):
        op.drop_table(table)
