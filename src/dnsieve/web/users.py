"""Web users, roles and API tokens, stored beside the alerts (migration ``0002``).

Passwords are hashed with Argon2id (:mod:`argon2`); API tokens are random
256-bit strings shown once and stored only as their SHA-256 (a token has
full entropy, so a fast hash is enough and lookups stay O(1)).  There are no
default credentials: the first admin is created by ``dnsieve users add``.

The user behind a token (:meth:`UserStore.user_for_token`) or a session
(:meth:`UserStore.user_for_session`) is reused for :attr:`UserStore.auth_cache_ttl`
seconds (2): every write through the same :class:`UserStore` clears it at once,
so a token revoked, a role changed or an account disabled by another process
(``dnsieve users ...``) takes effect within that time.  Only successful
lookups are kept; an unknown or revoked token is looked up every time.

>>> import tempfile, os
>>> from dnsieve.alerts.store import AlertStore
>>> with tempfile.TemporaryDirectory() as d:
...     with AlertStore.open(os.path.join(d, "a.db")) as s:
...         users = UserStore(s.engine)
...         u = users.add_user("alice", "analyst", "correct horse battery")
...         token = users.new_token("alice")
...         (users.authenticate("alice", "correct horse battery").role,
...          users.authenticate("alice", "wrong") is None,
...          users.user_for_token(token).name)
('analyst', True, 'alice')
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection, Engine

from dnsieve.alerts.store import UTCDateTime

__all__ = [
    "MIN_PASSWORD",
    "ROLES",
    "Role",
    "TokenInfo",
    "User",
    "UserError",
    "UserStore",
    "role_at_least",
]

Role = Literal["viewer", "analyst", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
MIN_PASSWORD = 12
TOKEN_PREFIX = "dnsv_"
LAST_USED_EVERY = timedelta(minutes=1)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

_meta = sa.MetaData()
users_table = sa.Table(
    "web_users",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
)
tokens_table = sa.Table(
    "web_tokens",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("web_users.id"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
)


class UserError(ValueError):
    """A bad user name, role or password, or an unknown user."""


@dataclass(frozen=True)
class User:
    """A web user (never carries the password hash)."""

    id: int
    name: str
    role: str
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True)
class TokenInfo:
    """An API token's metadata (the token itself is never stored)."""

    id: int
    user: str
    prefix: str
    created_at: datetime
    last_used: datetime | None
    revoked_at: datetime | None


def role_at_least(role: str, needed: str) -> bool:
    """Whether ``role`` has the rights of ``needed`` (viewer < analyst < admin).

    >>> role_at_least("admin", "analyst"), role_at_least("viewer", "analyst")
    (True, False)
    """
    if role not in ROLES or needed not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _user(row: sa.RowMapping) -> User:
    return User(
        id=int(row["id"]),
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
        disabled=bool(row["disabled"]),
    )


class UserStore:
    """Users and tokens on the alert store's engine (SQLite or PostgreSQL)."""

    #: Seconds a token's or a session's user is reused without reading the database
    #: (0: never); writes through this store clear it, other processes' show after this long.
    auth_cache_ttl: float = 2.0
    #: Most users kept (the whole cache is dropped when full).
    auth_cache_size: int = 1024

    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        # verified against when the user does not exist, so a wrong name costs as much time
        self._dummy = self.hasher.hash(secrets.token_hex(16))
        self._auth: dict[tuple[str, str], tuple[float, User]] = {}
        self._auth_lock = threading.Lock()
        self._auth_gen = 0  # bumped by every clear: a lookup older than a write is not kept
        #: The clock of the cache's TTL (seconds; injectable for tests).
        self.clock: Callable[[], float] = time.monotonic

    @contextmanager
    def _write(self, clear: bool = True) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(dnsieve_write=True)  # BEGIN IMMEDIATE on SQLite
                with conn.begin():
                    yield conn
        finally:
            if clear:
                self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the cached users of tokens and sessions (done by every write here)."""
        with self._auth_lock:
            self._auth.clear()
            self._auth_gen += 1

    def _cache_get(self, key: tuple[str, str]) -> tuple[User | None, float, int]:
        """The cached user (else ``None``), the time now and the cache generation."""
        with self._auth_lock:
            hit, gen = self._auth.get(key), self._auth_gen
        t = self.clock()
        if hit is None or not 0 <= t - hit[0] < self.auth_cache_ttl:
            return None, t, gen
        return hit[1], t, gen

    def _cache_put(self, key: tuple[str, str], user: User, t: float, gen: int) -> None:
        """Keep ``user``, looked up at ``t`` in generation ``gen`` (dropped if a write came
        in between)."""
        if self.auth_cache_ttl <= 0:
            return
        with self._auth_lock:
            if gen != self._auth_gen:
                return
            if len(self._auth) >= self.auth_cache_size:
                self._auth.clear()
            self._auth[key] = (t, user)

    # ------------------------------------------------------------------ validation

    @staticmethod
    def check_name(name: str) -> str:
        """A user name: 1–64 of letters, digits and ``._@-``, starting with a letter or digit."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UserError(
                "a user name is 1-64 letters, digits or . _ @ -, starting with a letter or digit"
            )
        return name

    @staticmethod
    def check_role(role: str) -> str:
        r = role.strip().lower()
        if r not in ROLES:
            raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        return r

    @staticmethod
    def check_password(password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
        if "\x00" in password:
            raise UserError("a password cannot contain NUL characters")
        return password

    # ------------------------------------------------------------------ users

    def add_user(self, name: str, role: str, password: str, now: datetime | None = None) -> User:
        """Create a user; raises :class:`UserError` if the name is taken or anything is invalid."""
        name, role = self.check_name(name), self.check_role(role)
        digest = self.hasher.hash(self.check_password(password))
        with self._write() as conn:
            if conn.execute(sa.select(users_table.c.id).where(users_table.c.name == name)).first():
                raise UserError(f"user {name!r} already exists")
            row = (
                conn.execute(
                    sa.insert(users_table)
                    .values(
                        name=name,
                        role=role,
                        password_hash=digest,
                        created_at=now or datetime.now(UTC),
                        disabled=False,
                    )
                    .returning(*users_table.c)
                )
                .mappings()
                .one()
            )
        return _user(row)

    def get_user(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(users_table).where(users_table.c.name == name))
                .mappings()
                .first()
            )
        return _user(row) if row is not None else None

    def cached_session_user(self, uid: int, name: str) -> User | None:
        """The session's user if :meth:`user_for_session` looked it up less than
        :attr:`auth_cache_ttl` seconds ago, else ``None`` (no database access: an async
        caller can use it on its event loop and go to a thread only when it misses)."""
        return self._cache_get(("session", f"{uid}:{name}"))[0]

    def cached_token_user(self, token: str) -> User | None:
        """Like :meth:`cached_session_user`, for :meth:`user_for_token`."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self._cache_get(("token", _token_hash(token)))[0]

    def user_for_session(self, uid: int, name: str) -> User | None:
        """The enabled user ``name`` if its id is still ``uid`` (a session's user), else
        ``None``; reused for :attr:`auth_cache_ttl` seconds."""
        key = ("session", f"{uid}:{name}")
        user, t, gen = self._cache_get(key)
        if user is not None:
            return user
        user = self.get_user(name)
        if user is None or user.id != uid or user.disabled:
            return None
        self._cache_put(key, user, t, gen)
        return user

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users_table).order_by(users_table.c.name)).mappings()
            return [_user(r) for r in rows]

    def set_password(self, name: str, password: str) -> None:
        digest = self.hasher.hash(self.check_password(password))
        with self._write() as conn:
            res = conn.execute(
                sa.update(users_table)
                .where(users_table.c.name == name)
                .values(password_hash=digest)
            )
        if res.rowcount == 0:
            raise UserError(f"no user {name!r}")

    def set_role(self, name: str, role: str) -> None:
        role = self.check_role(role)
        with self._write() as conn:
            res = conn.execute(
                sa.update(users_table).where(users_table.c.name == name).values(role=role)
            )
        if res.rowcount == 0:
            raise UserError(f"no user {name!r}")

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is right (and the user enabled), else ``None``.

        Unknown names cost one Argon2 verification too, so timing does not
        reveal which names exist.  Hashes made with older parameters are
        re-hashed on success.
        """
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(users_table).where(users_table.c.name == name))
                .mappings()
                .first()
            )
        digest = row["password_hash"] if row is not None else self._dummy
        try:
            self.hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled"]:
            return None
        if self.hasher.check_needs_rehash(digest):
            with self._write() as conn:
                conn.execute(
                    sa.update(users_table)
                    .where(users_table.c.id == row["id"])
                    .values(password_hash=self.hasher.hash(password))
                )
        return _user(row)

    # ------------------------------------------------------------------ tokens

    def new_token(self, name: str, now: datetime | None = None) -> str:
        """A new API token for ``name`` (printed once; only its SHA-256 is stored)."""
        user = self.get_user(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute(
                sa.insert(tokens_table).values(
                    user_id=user.id,
                    token_hash=_token_hash(token),
                    prefix=token[: len(TOKEN_PREFIX) + 6],
                    created_at=now or datetime.now(UTC),
                )
            )
        return token

    def user_for_token(self, token: str, now: datetime | None = None) -> User | None:
        """The (enabled) user owning an unrevoked ``token``, else ``None``; reused for
        :attr:`auth_cache_ttl` seconds (``last_used`` is then updated at the next lookup)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        h = _token_hash(token)
        cached, t, gen = self._cache_get(("token", h))
        if cached is not None:
            return cached
        j = tokens_table.join(users_table, users_table.c.id == tokens_table.c.user_id)
        q = (
            sa.select(
                users_table,
                tokens_table.c.id.label("token_id"),
                tokens_table.c.last_used.label("last_used"),
            )
            .select_from(j)
            .where(tokens_table.c.token_hash == h, tokens_table.c.revoked_at.is_(None))
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None or row["disabled"]:
            return None
        now = now or datetime.now(UTC)
        last = row["last_used"]
        if last is None or now - last > LAST_USED_EVERY:  # a write per minute, not per request
            with self._write(clear=False) as conn:
                conn.execute(
                    sa.update(tokens_table)
                    .where(tokens_table.c.id == row["token_id"])
                    .values(last_used=now)
                )
        user = _user(row)
        self._cache_put(("token", h), user, t, gen)
        return user

    def list_tokens(self, name: str | None = None) -> list[TokenInfo]:
        j = tokens_table.join(users_table, users_table.c.id == tokens_table.c.user_id)
        q = sa.select(tokens_table, users_table.c.name).select_from(j).order_by(tokens_table.c.id)
        if name is not None:
            q = q.where(users_table.c.name == name)
        with self.engine.connect() as conn:
            return [
                TokenInfo(
                    int(r["id"]),
                    r["name"],
                    r["prefix"],
                    r["created_at"],
                    r["last_used"],
                    r["revoked_at"],
                )
                for r in conn.execute(q).mappings()
            ]

    def revoke_token(self, token_id: int, now: datetime | None = None) -> None:
        with self._write() as conn:
            res = conn.execute(
                sa.update(tokens_table)
                .where(tokens_table.c.id == token_id, tokens_table.c.revoked_at.is_(None))
                .values(revoked_at=now or datetime.now(UTC))
            )
        if res.rowcount == 0:
            raise UserError(f"no active token {token_id}")
