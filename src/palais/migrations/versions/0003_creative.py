"""Add the creative studio's tables: ComfyUI jobs, their assets, renders.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from palais.db.types import JSONValue, UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _create_jobs()
    _create_assets()
    _create_renders()
    op.create_index(
        "uq_deliverables_task_asset",
        "deliverables",
        ["task_id", "asset_id"],
        unique=True,
    )


def _create_jobs() -> None:
    op.create_table(
        "creative_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(64)),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("seed", sa.BigInteger),
        sa.Column("template", sa.String(64)),
        sa.Column("workflow", JSONValue, nullable=False),
        sa.Column("task_id", sa.Integer),
        sa.Column("number", sa.Float),
        sa.Column("submitted_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("outputs", JSONValue),
        sa.Column("outputs_stored", sa.Boolean, nullable=False),
        sa.UniqueConstraint("prompt_id", name="uq_creative_jobs_prompt_id"),
    )
    op.create_index("ix_creative_jobs_status", "creative_jobs", ["status"])
    op.create_index("ix_creative_jobs_submitted_at", "creative_jobs", ["submitted_at"])
    op.create_index("ix_creative_jobs_finished_at", "creative_jobs", ["finished_at"])
    op.create_index("ix_creative_jobs_task_id", "creative_jobs", ["task_id"])


def _create_assets() -> None:
    op.create_table(
        "creative_assets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey(
                "creative_jobs.id",
                ondelete="CASCADE",
                name="fk_creative_assets_job_id_creative_jobs",
            ),
            nullable=False,
        ),
        sa.Column("output_key", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("comfy_filename", sa.Text, nullable=False),
        sa.Column("comfy_subfolder", sa.Text, nullable=False),
        sa.Column("comfy_type", sa.String(16), nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("thumbnail", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("job_id", "output_key", name="uq_creative_assets_job_id"),
    )
    op.create_index(
        "ix_creative_assets_created_at", "creative_assets", ["created_at", "id"]
    )


def _create_renders() -> None:
    op.create_table(
        "creative_renders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("render_id", sa.String(200), nullable=False),
        sa.Column("composition", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("task_id", sa.Integer),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("render_id", name="uq_creative_renders_render_id"),
    )


def downgrade() -> None:
    op.drop_index("uq_deliverables_task_asset", table_name="deliverables")
    op.drop_table("creative_renders")
    op.drop_table("creative_assets")
    op.drop_table("creative_jobs")
