"""Alembic environment. Palais passes an open connection in ``attributes``."""

from alembic import context

from palais.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with `palais migrate`, which opens the configured database"
    )

# NOTE: batch operations on SQLite copy and drop the table. With foreign keys
# on (db/engine.py turns them on), dropping nodes or any other parent table
# deletes its child rows through ON DELETE CASCADE. Prefer plain add_column
# and drop_column, which SQLite 3.35 and later run in place.
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
