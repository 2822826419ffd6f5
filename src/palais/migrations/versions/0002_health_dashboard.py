"""Add the dashboard's tables: admin login, VPN snapshot and minute rollup.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from palais.db.types import JSONValue, UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_credentials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "vpn_snapshots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("nodes", JSONValue, nullable=False),
        sa.Column("api_path", sa.String(50)),
        sa.Column("fetched_at", UTCDateTime()),
        sa.Column("attempted_at", UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_since", UTCDateTime()),
    )
    op.create_table(
        "health_minutes",
        sa.Column("minute", UTCDateTime(), primary_key=True),
        sa.Column(
            "node_id",
            sa.Integer,
            sa.ForeignKey("nodes.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("worst", sa.Integer, nullable=False),
    )
    op.create_table(
        "history_rollup_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_check_id", sa.BigInteger, nullable=False),
        sa.Column("previous_check_id", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("history_rollup_state")
    op.drop_table("health_minutes")
    op.drop_table("vpn_snapshots")
    op.drop_table("admin_credentials")
