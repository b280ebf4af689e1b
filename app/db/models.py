"""The tables of Devbox, as SQLAlchemy 2 declarative models.

Types are portable: the same models (and the same migrations) run on PostgreSQL through
asyncpg and on SQLite through aiosqlite.  Times are always timezone-aware UTC in Python
(:class:`UtcDateTime` restores the zone SQLite does not store).  Constraint names come from
the naming convention on :data:`Base.metadata`, so migrations can name what they drop.

Relationships load with ``lazy="raise_on_sql"``: a query must say what it loads
(``selectinload``), attribute access never does hidden IO.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from app.db.roles import Role as Role  # re-exported: models name the roles they store

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Names of indexes and constraints; the migrations use the same names."""

NAME_LENGTH = 63
"""Longest user or namespace name: a Kubernetes DNS label."""

OBJECT_NAME_LENGTH = 253
"""Longest Kubernetes object name (a DNS subdomain)."""

JsonType = JSON().with_variant(JSONB(), "postgresql")
"""JSON column type: ``jsonb`` on PostgreSQL, JSON text on SQLite."""


class Outcome(StrEnum):
    """How an audited action ended."""

    SUCCESS = "success"
    FAILURE = "failure"


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new random UUID as a string: the primary key of users and tokens."""
    return str(uuid.uuid4())


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only accepts aware times and always returns UTC ones.

    PostgreSQL stores ``timestamptz``; SQLite stores text without zone, which this type
    writes as UTC and reads back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give times with a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of all tables, carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A person or integration that holds API tokens and works in one namespace."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="role"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    """The Kubernetes namespace the user's objects live in."""
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, server_default=func.now()
    )
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """When set, the user's tokens no longer authenticate."""

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise_on_sql",
    )


class ApiToken(Base):
    """An API token of a user.  Only its SHA-256 hash is stored, never the token itself."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    """A label chosen by the user ("laptop", "ci")."""
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """Hex SHA-256 of the token (:func:`app.db.tokens.hash_token`)."""
    prefix: Mapped[str] = mapped_column(String(8))
    """The token's first characters, to recognise it in listings."""
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, server_default=func.now()
    )
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    user: Mapped[User] = relationship(back_populates="tokens", lazy="raise_on_sql")


class AuditEvent(Base):
    """One audited action (every mutation, success or failure).  Append-only.

    Actor and target are copied as text, not referenced: the record outlives users and
    tokens.  The migration installs triggers that refuse ``UPDATE`` and ``DELETE``.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'failure')", name="outcome"),
        Index("ix_audit_events_namespace_time", "namespace", "time"),
        Index("ix_audit_events_target_kind_target_name", "target_kind", "target_name"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, server_default=func.now())
    actor_user: Mapped[str] = mapped_column(String(NAME_LENGTH))
    """Name of the user who acted."""
    actor_token_id: Mapped[str | None] = mapped_column(String(36))
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    """The mutation name, e.g. ``devboxCreate``."""
    target_kind: Mapped[str] = mapped_column(String(64))
    target_name: Mapped[str] = mapped_column(String(OBJECT_NAME_LENGTH))
    request_id: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    input: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    """The mutation input with secrets already redacted by the caller."""
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))


class IdempotencyKey(Base):
    """The first result of a mutation sent with an idempotency key, replayed on retries.

    Keys are scoped to a token; a retry with the same key (within 24 h) and the same request
    gets ``response`` back, a different request under the same key is refused.
    """

    __tablename__ = "idempotency_keys"

    token_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    """Hex SHA-256 of the canonical request, to detect a key reused for another request."""
    response: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, server_default=func.now(), index=True
    )
