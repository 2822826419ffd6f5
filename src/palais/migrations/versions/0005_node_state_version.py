"""Add nodes.state_version, raised by each report that moves a node's state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both backends, never a batch operation: on SQLite a
# batch operation copies and drops the nodes table, and with foreign keys on,
# dropping it deletes every row that refers to a node (history, services,
# backups) through their ON DELETE CASCADE keys.
def upgrade() -> None:
    op.add_column(
        "nodes",
        sa.Column(
            "state_version", sa.Integer, nullable=False, server_default=sa.text("0")
        ),
    )


def downgrade() -> None:
    op.drop_column("nodes", "state_version")
