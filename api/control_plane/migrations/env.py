"""Alembic's environment: runs on the connection `migrate()` hands over (advisory lock held), or on
the URL in the config when a developer runs Alembic directly (`drippulse db revision`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from api.control_plane.tables import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
