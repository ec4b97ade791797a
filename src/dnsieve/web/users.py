"""Web users, roles and API tokens, stored beside the alerts (migration ``0002``).

Passwords are hashed with Argon2id (:mod:`argon2`); API tokens are random
256-bit strings shown once and stored only as their SHA-256 (a token has
full entropy, so a fast hash is enough and lookups stay O(1)).  There are no
default credentials: the first admin is created by ``dnsieve users add``.

Sessions live on the server (migration ``0007``): the session cookie carries
only a random 256-bit session id, stored as its SHA-256 beside the user.
Logging out ends that session; a password change, a role change or disabling
the account ends every session of the user, and a password change also
revokes the user's API tokens (whoever learnt the old password may have made
one).  Login failures are counted per (account, address) in the database, so
every server process throttles alike (:meth:`UserStore.login_wait`), and
logins, failures, throttled attempts and account changes are kept in an audit
log (:meth:`UserStore.auth_events`).

The user behind a token (:meth:`UserStore.user_for_token`) or a session
(:meth:`UserStore.user_for_session`) is reused for :attr:`UserStore.auth_cache_ttl`
seconds (2): every write through the same :class:`UserStore` clears it at once,
so a session ended, a token revoked, a role changed or an account disabled by
another process (``dnsieve users ...``, another server worker) takes effect
within that time.  Only successful lookups are kept; an unknown, ended or
revoked session or token is looked up every time.

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
...         sid = users.start_session(u, "10.0.0.1")
...         before = users.user_for_session(sid).name
...         ended, revoked = users.set_password("alice", "another long passphrase")
...         (before, ended, revoked, users.user_for_session(sid), users.user_for_token(token))
('analyst', True, 'alice')
('alice', 1, 1, None, None)
"""

from __future__ import annotations

import hashlib
import logging
import math
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
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "ROLES",
    "AuthEvent",
    "Role",
    "SessionInfo",
    "ThrottlePolicy",
    "TokenInfo",
    "UnknownToken",
    "UnknownUser",
    "User",
    "UserError",
    "UserStore",
    "role_at_least",
]

#: The audit log's logger: one line per login, failure, throttled attempt, logout and
#: account change (also kept in ``web_auth_events``).
audit_log = logging.getLogger("dnsieve.web.audit")

Role = Literal["viewer", "analyst", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
MIN_PASSWORD = 12
#: The longest password: the login form reads no more (a longer one could never log in).
MAX_PASSWORD = 1024
TOKEN_PREFIX = "dnsv_"
LAST_USED_EVERY = timedelta(minutes=1)
#: Ended or expired sessions are deleted this long after they began (the longest
#: ``session_max_age`` is 30 days).
SESSION_KEEP = timedelta(days=31)
#: Audit events older than this are deleted (when new ones are written), and at most
#: :data:`AUTH_EVENTS_MAX` are kept, so a flood of throttled attempts cannot fill the disk.
AUTH_EVENTS_KEEP = timedelta(days=90)
AUTH_EVENTS_MAX = 100_000
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
sessions_table = sa.Table(
    "web_sessions",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("web_users.id"), nullable=False),
    sa.Column("sid_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("address", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("end_reason", sa.String(32)),
)
throttle_table = sa.Table(
    "web_login_throttle",
    _meta,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("address", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure", UTCDateTime, nullable=False),
)
auth_events_table = sa.Table(
    "web_auth_events",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64)),
    sa.Column("actor", sa.String(64)),
    sa.Column("detail", sa.String(200)),
)


class UserError(ValueError):
    """A bad user name, role or password, or an unknown user."""


class UnknownUser(UserError):
    """No user of that name (404 in the API)."""


class UnknownToken(UserError):
    """No token of that id, or no unrevoked one (404 in the API)."""


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


@dataclass(frozen=True)
class SessionInfo:
    """A web session's metadata (the session id itself is never stored)."""

    id: int
    user: str
    address: str | None
    created_at: datetime
    last_seen: datetime
    ended_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True)
class AuthEvent:
    """One line of the authentication audit log."""

    id: int
    at: datetime
    event: str
    account: str
    address: str | None
    actor: str | None
    detail: str | None


@dataclass(frozen=True)
class ThrottlePolicy:
    """Exponential back-off of failed logins (OWASP ASVS 2.2.1, "ever increasing delays").

    Failures are counted per (account, address): the first ``free`` cost nothing,
    then each one doubles the wait before the next attempt from that address for
    that account (``base_s``, ``2·base_s``, … up to ``max_s``).  A second count
    over all accounts from one address (``free_address`` free failures) slows a
    password spray.  An attempt during the wait is refused without checking the
    password and not counted, so an attacker cannot push the wait past ``max_s``,
    and the account stays open from every other address.  Failures are forgotten
    ``window_s`` seconds after the last one, and a good login forgets its pair.

    >>> p = ThrottlePolicy(free=5, free_address=50, base_s=1, max_s=300, window_s=900)
    >>> [p.delay(n, p.free) for n in (4, 5, 6, 9, 30)]
    [0.0, 1.0, 2.0, 16.0, 300.0]
    """

    free: int = 5
    free_address: int = 50
    base_s: float = 1.0
    max_s: float = 300.0
    window_s: float = 900.0

    def delay(self, failures: int, free: int) -> float:
        """Seconds to wait after the last of ``failures`` failures (0: none)."""
        if failures < free:
            return 0.0
        return float(min(self.max_s, self.base_s * 2.0 ** min(failures - free, 64)))


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


def _key(value: str | None, size: int = 64) -> str:
    """An account name or address as stored by the throttle and the audit log."""
    return (value or "")[:size]


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
        #: The wall clock of the login throttle (injectable for tests).
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

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
        if len(password) > MAX_PASSWORD:  # the login form reads no more than this
            raise UserError(f"a password has at most {MAX_PASSWORD} characters")
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

    def cached_session_user(self, sid: str) -> User | None:
        """The session's user if :meth:`user_for_session` looked it up less than
        :attr:`auth_cache_ttl` seconds ago, else ``None`` (no database access: an async
        caller can use it on its event loop and go to a thread only when it misses)."""
        if not _plausible_sid(sid):
            return None
        return self._cache_get(("session", _token_hash(sid)))[0]

    def cached_token_user(self, token: str) -> User | None:
        """Like :meth:`cached_session_user`, for :meth:`user_for_token`."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self._cache_get(("token", _token_hash(token)))[0]

    def user_for_session(
        self, sid: str, max_age_s: float | None = None, now: datetime | None = None
    ) -> User | None:
        """The enabled user of the session ``sid`` if it has not ended (logout, password,
        role or account change) and began less than ``max_age_s`` seconds ago, else
        ``None``; reused for :attr:`auth_cache_ttl` seconds."""
        if not _plausible_sid(sid):
            return None
        h = _token_hash(sid)
        cached, t, gen = self._cache_get(("session", h))
        if cached is not None:
            return cached
        j = sessions_table.join(users_table, users_table.c.id == sessions_table.c.user_id)
        q = (
            sa.select(
                users_table,
                sessions_table.c.id.label("session_id"),
                sessions_table.c.created_at.label("session_created"),
                sessions_table.c.last_seen.label("last_seen"),
            )
            .select_from(j)
            .where(sessions_table.c.sid_hash == h, sessions_table.c.ended_at.is_(None))
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None or row["disabled"]:
            return None
        now = now or datetime.now(UTC)
        if max_age_s is not None and now - row["session_created"] > timedelta(seconds=max_age_s):
            return None
        if now - row["last_seen"] > LAST_USED_EVERY:  # a write per minute, not per request
            with self._write(clear=False) as conn:
                conn.execute(
                    sa.update(sessions_table)
                    .where(sessions_table.c.id == row["session_id"])
                    .values(last_seen=now)
                )
        user = _user(row)
        self._cache_put(("session", h), user, t, gen)
        return user

    def start_session(
        self, user: User, address: str | None = None, now: datetime | None = None
    ) -> str:
        """A new session of ``user`` (after a good login): its id, to put in the cookie.

        Only the id's SHA-256 is stored.  Sessions that began more than
        :data:`SESSION_KEEP` ago are deleted on the way."""
        now = now or datetime.now(UTC)
        sid = secrets.token_urlsafe(32)
        with self._write(clear=False) as conn:
            conn.execute(
                sa.delete(sessions_table).where(sessions_table.c.created_at < now - SESSION_KEEP)
            )
            conn.execute(
                sa.insert(sessions_table).values(
                    user_id=user.id,
                    sid_hash=_token_hash(sid),
                    address=_key(address) or None,
                    created_at=now,
                    last_seen=now,
                )
            )
            self._event(conn, "login", user.name, address, None, None, now)
        return sid

    def end_session(
        self,
        sid: str,
        reason: str = "logout",
        address: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """End the session ``sid`` (logout): a cookie that carries it is refused from now
        on.  Whether a session was running."""
        if not _plausible_sid(sid):
            return False
        now = now or datetime.now(UTC)
        h = _token_hash(sid)
        with self._write() as conn:
            row = conn.execute(
                sa.select(sessions_table.c.id, users_table.c.name)
                .select_from(
                    sessions_table.join(users_table, users_table.c.id == sessions_table.c.user_id)
                )
                .where(sessions_table.c.sid_hash == h, sessions_table.c.ended_at.is_(None))
            ).first()
            if row is None:
                return False
            conn.execute(
                sa.update(sessions_table)
                .where(sessions_table.c.id == row.id)
                .values(ended_at=now, end_reason=reason)
            )
            self._event(conn, reason, row.name, address, None, None, now)
        return True

    def _end_user_sessions(self, conn: Connection, user_id: int, reason: str, now: datetime) -> int:
        res = conn.execute(
            sa.update(sessions_table)
            .where(sessions_table.c.user_id == user_id, sessions_table.c.ended_at.is_(None))
            .values(ended_at=now, end_reason=reason)
        )
        return int(res.rowcount or 0)

    def end_sessions(self, name: str, reason: str = "ended", actor: str | None = None) -> int:
        """End every session of ``name`` (e.g. a stolen laptop); how many were running."""
        now = datetime.now(UTC)
        with self._write() as conn:
            uid = self._user_id(conn, name)
            n = self._end_user_sessions(conn, uid, reason, now)
            self._event(conn, "sessions_ended", name, None, actor, f"{n} sessions", now)
        return n

    def list_sessions(self, name: str | None = None, active: bool = True) -> list[SessionInfo]:
        """Sessions (only those running, unless ``active`` is false), newest first."""
        j = sessions_table.join(users_table, users_table.c.id == sessions_table.c.user_id)
        q = (
            sa.select(sessions_table, users_table.c.name)
            .select_from(j)
            .order_by(sessions_table.c.id.desc())
        )
        if name is not None:
            q = q.where(users_table.c.name == name)
        if active:
            q = q.where(sessions_table.c.ended_at.is_(None))
        with self.engine.connect() as conn:
            return [
                SessionInfo(
                    int(r["id"]),
                    r["name"],
                    r["address"],
                    r["created_at"],
                    r["last_seen"],
                    r["ended_at"],
                    r["end_reason"],
                )
                for r in conn.execute(q).mappings()
            ]

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users_table).order_by(users_table.c.name)).mappings()
            return [_user(r) for r in rows]

    @staticmethod
    def _user_id(conn: Connection, name: str) -> int:
        uid = conn.execute(sa.select(users_table.c.id).where(users_table.c.name == name)).scalar()
        if uid is None:
            raise UnknownUser(f"no user {name!r}")
        return int(uid)

    def set_password(
        self, name: str, password: str, actor: str | None = None, revoke_tokens: bool = True
    ) -> tuple[int, int]:
        """Set ``name``'s password; end their sessions and (unless ``revoke_tokens`` is
        false) revoke their API tokens.  ``(sessions ended, tokens revoked)``.

        A password is changed because it may be known to someone else, who could have
        logged in or made a token with it: both must stop working."""
        digest = self.hasher.hash(self.check_password(password))
        now = datetime.now(UTC)
        with self._write() as conn:
            uid = self._user_id(conn, name)
            conn.execute(
                sa.update(users_table).where(users_table.c.id == uid).values(password_hash=digest)
            )
            ended = self._end_user_sessions(conn, uid, "password", now)
            revoked = self._revoke_user_tokens(conn, uid, now) if revoke_tokens else 0
            detail = f"{ended} sessions ended, {revoked} tokens revoked"
            self._event(conn, "password_changed", name, None, actor, detail, now)
        return ended, revoked

    def set_role(self, name: str, role: str, actor: str | None = None) -> int:
        """Give ``name`` another role and end their sessions (the user logs in again
        under the new role).  How many sessions were ended (0 if the role was the same)."""
        role = self.check_role(role)
        now = datetime.now(UTC)
        with self._write() as conn:
            uid = self._user_id(conn, name)
            res = conn.execute(
                sa.update(users_table)
                .where(users_table.c.id == uid, users_table.c.role != role)
                .values(role=role)
            )
            if not res.rowcount:
                return 0
            ended = self._end_user_sessions(conn, uid, "role", now)
            self._event(conn, "role_changed", name, None, actor, f"now {role}", now)
        return ended

    def set_disabled(self, name: str, disabled: bool = True, actor: str | None = None) -> int:
        """Disable (or enable again) ``name``: a disabled user cannot log in, their
        sessions end and their tokens stop working (they are kept, and work again if
        the user is enabled).  How many sessions were ended."""
        now = datetime.now(UTC)
        with self._write() as conn:
            uid = self._user_id(conn, name)
            conn.execute(
                sa.update(users_table).where(users_table.c.id == uid).values(disabled=disabled)
            )
            ended = self._end_user_sessions(conn, uid, "disabled", now) if disabled else 0
            event = "disabled" if disabled else "enabled"
            self._event(conn, event, name, None, actor, None, now)
        return ended

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

    def new_token(self, name: str, now: datetime | None = None, actor: str | None = None) -> str:
        """A new API token for ``name`` (printed once; only its SHA-256 is stored)."""
        user = self.get_user(name)
        if user is None:
            raise UnknownUser(f"no user {name!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = now or datetime.now(UTC)
        with self._write() as conn:
            tid = conn.execute(
                sa.insert(tokens_table)
                .values(
                    user_id=user.id,
                    token_hash=_token_hash(token),
                    prefix=token[: len(TOKEN_PREFIX) + 6],
                    created_at=now,
                )
                .returning(tokens_table.c.id)
            ).scalar_one()
            self._event(conn, "token_created", name, None, actor, f"token {tid}", now)
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

    def list_tokens(
        self, name: str | None = None, token_id: int | None = None, active: bool = False
    ) -> list[TokenInfo]:
        """Tokens' metadata (of one user; only unrevoked ones if ``active``), oldest first:
        id, owner, the first characters, created, last used, revoked (never the token)."""
        j = tokens_table.join(users_table, users_table.c.id == tokens_table.c.user_id)
        q = sa.select(tokens_table, users_table.c.name).select_from(j).order_by(tokens_table.c.id)
        if name is not None:
            q = q.where(users_table.c.name == name)
        if token_id is not None:
            q = q.where(tokens_table.c.id == token_id)
        if active:
            q = q.where(tokens_table.c.revoked_at.is_(None))
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

    def _revoke_user_tokens(self, conn: Connection, user_id: int, now: datetime) -> int:
        res = conn.execute(
            sa.update(tokens_table)
            .where(tokens_table.c.user_id == user_id, tokens_table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(res.rowcount or 0)

    def get_token(self, token_id: int) -> TokenInfo | None:
        """One token's metadata by id (``None``: no such token)."""
        found = self.list_tokens(token_id=token_id)
        return found[0] if found else None

    def revoke_token(
        self, token_id: int, now: datetime | None = None, actor: str | None = None
    ) -> TokenInfo:
        """Revoke the token ``token_id``: it is refused from now on (other server
        processes: within :attr:`auth_cache_ttl` s).  Raises :class:`UserError` if there
        is no such token or it was revoked already."""
        now = now or datetime.now(UTC)
        with self._write() as conn:
            res = conn.execute(
                sa.update(tokens_table)
                .where(tokens_table.c.id == token_id, tokens_table.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if res.rowcount == 0:
                raise UnknownToken(f"no active token {token_id}")
            owner = conn.execute(
                sa.select(users_table.c.name)
                .select_from(
                    tokens_table.join(users_table, users_table.c.id == tokens_table.c.user_id)
                )
                .where(tokens_table.c.id == token_id)
            ).scalar_one()
            self._event(conn, "token_revoked", owner, None, actor, f"token {token_id}", now)
        info = self.get_token(token_id)
        assert info is not None
        return info

    # ------------------------------------------------------------------ login throttle

    def login_wait(
        self, account: str, address: str, policy: ThrottlePolicy, now: datetime | None = None
    ) -> int:
        """Whole seconds before ``account`` may try to log in from ``address`` again
        (0: now), by ``policy``'s back-off over the failures in the database."""
        now = now or self.now()
        since = now - timedelta(seconds=policy.window_s)
        acct, addr = _key(account.lower()), _key(address)
        t = throttle_table.c
        with self.engine.connect() as conn:
            pair = conn.execute(
                sa.select(t.failures, t.last_failure).where(
                    t.account == acct, t.address == addr, t.last_failure > since
                )
            ).first()
            total, last = conn.execute(
                sa.select(sa.func.sum(t.failures), sa.func.max(t.last_failure)).where(
                    t.address == addr, t.last_failure > since
                )
            ).one()
        ends = [now]
        if pair is not None:
            ends.append(
                pair.last_failure + timedelta(seconds=policy.delay(pair.failures, policy.free))
            )
        if total:
            delay = policy.delay(int(total), policy.free_address)
            ends.append(_as_utc(last) + timedelta(seconds=delay))
        return math.ceil(max(0.0, (max(ends) - now).total_seconds()))

    def login_failed(
        self, account: str, address: str, policy: ThrottlePolicy, now: datetime | None = None
    ) -> None:
        """Count a failed login of ``account`` from ``address`` (and audit it)."""
        now = now or self.now()
        since = now - timedelta(seconds=policy.window_s)
        acct, addr = _key(account.lower()), _key(address)
        t = throttle_table.c
        for attempt in range(2):  # a concurrent first failure may insert the row first
            try:
                with self._write(clear=False) as conn:
                    conn.execute(sa.delete(throttle_table).where(t.last_failure <= since))
                    res = conn.execute(
                        sa.update(throttle_table)
                        .where(t.account == acct, t.address == addr)
                        .values(failures=t.failures + 1, last_failure=now)
                    )
                    if not res.rowcount:
                        conn.execute(
                            sa.insert(throttle_table).values(
                                account=acct, address=addr, failures=1, last_failure=now
                            )
                        )
                    self._event(conn, "login_failed", account, address, None, None, now)
                return
            except sa.exc.IntegrityError:
                if attempt:
                    raise

    def login_succeeded(self, account: str, address: str) -> None:
        """Forget the failures of ``account`` from ``address`` after a good login."""
        t = throttle_table.c
        with self._write(clear=False) as conn:
            conn.execute(
                sa.delete(throttle_table).where(
                    t.account == _key(account.lower()), t.address == _key(address)
                )
            )

    # ------------------------------------------------------------------ audit log

    def _event(
        self,
        conn: Connection,
        event: str,
        account: str,
        address: str | None,
        actor: str | None,
        detail: str | None,
        now: datetime,
    ) -> None:
        audit_log.info(
            "%s account=%r address=%s actor=%s %s",
            event,
            _key(account),
            address or "-",
            actor or "-",
            detail or "",
        )
        conn.execute(
            sa.insert(auth_events_table).values(
                at=now,
                event=event,
                account=_key(account),
                address=_key(address) or None,
                actor=_key(actor) or None,
                detail=_key(detail, 200) or None,
            )
        )
        if secrets.randbelow(64) == 0:  # now and then: old events, then the excess
            a = auth_events_table.c
            conn.execute(sa.delete(auth_events_table).where(a.at < now - AUTH_EVENTS_KEEP))
            top = conn.execute(sa.select(sa.func.max(a.id))).scalar() or 0
            conn.execute(sa.delete(auth_events_table).where(a.id <= top - AUTH_EVENTS_MAX))

    def record_event(
        self,
        event: str,
        account: str,
        address: str | None = None,
        actor: str | None = None,
        detail: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Add a line to the audit log (also written to the ``dnsieve.web.audit`` logger)."""
        with self._write(clear=False) as conn:
            self._event(conn, event, account, address, actor, detail, now or self.now())

    def auth_events(
        self, limit: int = 100, account: str | None = None, event: str | None = None
    ) -> list[AuthEvent]:
        """The newest ``limit`` audit-log lines (of one account, one kind), newest first."""
        a = auth_events_table.c
        q = sa.select(auth_events_table).order_by(a.id.desc()).limit(limit)
        if account is not None:
            q = q.where(a.account == _key(account))
        if event is not None:
            q = q.where(a.event == event)
        with self.engine.connect() as conn:
            return [
                AuthEvent(
                    int(r["id"]),
                    r["at"],
                    r["event"],
                    r["account"],
                    r["address"],
                    r["actor"],
                    r["detail"],
                )
                for r in conn.execute(q).mappings()
            ]


def _plausible_sid(sid: object) -> bool:
    """Whether ``sid`` could be a session id (a string of 20-100 characters)."""
    return isinstance(sid, str) and 20 <= len(sid) <= 100


def _as_utc(value: datetime) -> datetime:
    """An aggregate's time: SQLite's ``max()`` returns it without the column's type."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
