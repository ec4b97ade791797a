"""User administration shared by the Users page and the admin API (admins only).

One function per action, so that the page and the API cannot drift apart.  The
last enabled admin cannot be disabled or demoted from the web (the CLI, run by
whoever owns the database, still can): an Alert Manager nobody can administer
would need the CLI to recover anyway.
"""

from __future__ import annotations

from dnsieve.web.schemas import SessionsEnded, TokenPublic, UserAdminPublic
from dnsieve.web.users import TokenInfo, UnknownUser, User, UserError, UserStore

__all__ = ["LastAdmin", "end_user_sessions", "revoke", "update_user", "user_overview"]


class LastAdmin(UserError):
    """The change would leave no enabled admin (409 in the API)."""


def token_public(t: TokenInfo) -> TokenPublic:
    return TokenPublic.model_validate(t)


def user_overview(users: UserStore) -> list[UserAdminPublic]:
    """Every user with the sessions running and the tokens not revoked."""
    sessions = users.list_sessions()
    tokens = users.list_tokens(active=True)
    out = []
    for u in users.list_users():
        mine = [s for s in sessions if s.user == u.name]
        out.append(
            UserAdminPublic(
                name=u.name,
                role=u.role,
                disabled=u.disabled,
                created_at=u.created_at,
                sessions=len(mine),
                tokens=sum(t.user == u.name for t in tokens),
                last_seen=max((s.last_seen for s in mine), default=None),
            )
        )
    return out


def _enabled_admins(users: UserStore) -> set[str]:
    return {u.name for u in users.list_users() if u.role == "admin" and not u.disabled}


def update_user(
    users: UserStore, name: str, actor: User, role: str | None, disabled: bool | None
) -> UserAdminPublic:
    """Change ``name``'s role and/or state (ending their sessions), as ``actor``."""
    target = users.get_user(name)
    if target is None:
        raise UnknownUser(f"no user {name!r}")
    admins = _enabled_admins(users)
    loses_admin = (role is not None and role != "admin") or disabled is True
    if loses_admin and admins == {name}:
        raise LastAdmin(f"{name} is the last enabled admin; make another admin first")
    if role is not None:
        users.set_role(name, role, actor=actor.name)
    if disabled is not None and disabled != target.disabled:
        users.set_disabled(name, disabled, actor=actor.name)
    return next(u for u in user_overview(users) if u.name == name)


def end_user_sessions(users: UserStore, name: str, actor: User) -> SessionsEnded:
    """End every session of ``name`` (e.g. a lost laptop)."""
    return SessionsEnded(user=name, ended=users.end_sessions(name, "ended", actor=actor.name))


def revoke(users: UserStore, token_id: int, actor: User) -> TokenPublic:
    """Revoke an API token by id."""
    return token_public(users.revoke_token(token_id, actor=actor.name))
