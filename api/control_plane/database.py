"""Connections to the control plane's PostgreSQL, and its migrations.

The API uses SQLAlchemy's async engine; every store operation is one unit of work
(`Database.transaction()`): the change, its audit entry and the organization's revision commit
together or not at all. Migrations are Alembic's, applied at start-up by every process under an
advisory lock, so several processes starting at once apply each migration once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

_MIGRATION_LOCK = 0x44524950  # "DRIP": the advisory lock held while migrating


class Database:
    def __init__(self, url: str, pool_size: int = 10, overflow: int = 10, pool_timeout_s: float = 30.0) -> None:
        """At most `pool_size + overflow` connections; a unit of work waits `pool_timeout_s` for one,
        then gets SQLAlchemy's pool TimeoutError (a 503 in the API)."""
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=overflow,
            pool_timeout=pool_timeout_s,
            pool_pre_ping=True,
            hide_parameters=True,
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("api.control_plane") / "migrations"))
    return config


def migrate(url: str) -> None:
    """Brings the schema to the latest migration; idempotent, safe to run from several processes."""
    engine = create_engine(url, poolclass=None, hide_parameters=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            try:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
                connection.commit()
    finally:
        engine.dispose()
