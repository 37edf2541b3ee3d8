"""Users, roles and hashed passwords for `prefloop serve --auth USERS_FILE`.

The users file is JSON written by `prefloop users add`::

    {"users": {"alice": {"role": "admin", "password": "scrypt$16384$8$1$<salt hex>$<hash hex>"}}}

Passwords are never stored: only a salted scrypt hash. Roles:

* ``annotator``: the Annotate tab and the read-only Dashboard.
* ``adjudicator``: what an annotator may do, and the Adjudicate tab: the pairs whose human
  votes split, with the votes unblinded, to give the final verdict.
* ``admin``: everything (annotate, adjudicate, judge, train, data).

Roles are checked on the server in every handler (`Access.require`), so calling an
admin (or adjudicator) endpoint through the API as an annotator fails just like the
hidden button would.

`Access` re-reads the users file when it changes (its mtime, size or inode), so removing
or demoting a user, or changing a password, takes effect on the next request; the web
guard (`app.ui.web_guard`) then ends that user's sessions. A users file that becomes
unreadable locks everyone out (nothing is guessed) until it is fixed, and says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import ConfigError, PrefloopError

ROLES = ("annotator", "adjudicator", "admin")
# Who may act as each role: an admin may do everything, an adjudicator what annotators do.
ALLOWED = {
    "annotator": frozenset(ROLES),
    "adjudicator": frozenset({"adjudicator", "admin"}),
    "admin": frozenset({"admin"}),
}
LOCAL_USER = "local"  # who you are when the app runs on loopback without --auth
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

log = logging.getLogger("prefloop.app")


class AccessDenied(PrefloopError):
    """The logged-in user's role does not allow this action."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash in one self-describing string."""
    if not password:
        raise ConfigError("empty password; choose a non-empty one")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of `password` against a `hash_password` string."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(bytes.fromhex(digest)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str  # the scrypt hash string, never the password


def load_users(path: str | os.PathLike[str]) -> dict[str, User]:
    """Read a users file; every problem names the file and the fix."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(
            f"{file}: no such users file; create it with `prefloop users add --file {file} NAME`"
        )
    try:
        raw: Any = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: not a readable JSON users file ({exc})") from None
    entries = raw.get("users") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise ConfigError(
            f'{file}: expected {{"users": {{NAME: {{"role": ..., "password": ...}}}}}}'
        )
    users: dict[str, User] = {}
    for name, entry in entries.items():
        if (
            not isinstance(entry, dict)
            or entry.get("role") not in ROLES
            or not isinstance(entry.get("password"), str)
        ):
            raise ConfigError(
                f"{file}: user {name!r} needs a role ({' or '.join(ROLES)}) and a password hash; "
                f"re-add it with `prefloop users add --file {file} {name}`"
            )
        if not entry["password"].startswith("scrypt$"):
            raise ConfigError(
                f"{file}: user {name!r} has a password that is not a scrypt hash; plain-text "
                f"passwords are refused; re-add it with `prefloop users add --file {file} {name}`"
            )
        users[name] = User(name, entry["role"], entry["password"])
    if not users:
        raise ConfigError(f"{file}: no users; add one with `prefloop users add --file {file} NAME`")
    return users


def add_user(path: str | os.PathLike[str], name: str, password: str, role: str) -> None:
    """Add or replace a user in the users file (created if missing), storing only a hash."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"user name {name!r}: use letters, digits, '-', '_' or '.'")
    file = Path(path)
    data: dict[str, Any] = {"users": {}}
    if file.exists():
        data = json.loads(file.read_text(encoding="utf-8") or '{"users": {}}')
        data.setdefault("users", {})
    data["users"][name] = {"role": role, "password": hash_password(password)}
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(file.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(file)


def _stamp(file: Path) -> tuple[int, int, int] | None:
    """What changes when the users file is rewritten (None: it is gone)."""
    try:
        st = file.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Access:
    """Who may do what. `users=None` means no login (loopback only): everyone is an admin.

    With `path`, the users file is read again whenever it changes, so every check below
    sees the file as it is now.
    """

    def __init__(
        self, users: dict[str, User] | None, *, path: str | os.PathLike[str] | None = None
    ):
        self._users = users
        self._path = Path(path) if path is not None else None
        self._stamp = _stamp(self._path) if self._path is not None else None
        self._broken: str | None = None  # why the users file could not be read again
        self._lock = threading.Lock()
        # Unknown users are checked against this hash, so that they take as long as real ones.
        self._dummy = hash_password(secrets.token_hex(16))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Access:
        """Access for a users file, re-read when it changes (raises ConfigError if bad now)."""
        return cls(load_users(path), path=path)

    @property
    def enabled(self) -> bool:
        return self._users is not None

    @property
    def users(self) -> dict[str, User] | None:
        """The users as the file holds them now ({} while it is unreadable)."""
        self._refresh()
        return self._users

    @property
    def broken(self) -> str | None:
        """Why the users file cannot be read now (None when it is fine)."""
        self._refresh()
        return self._broken

    def _refresh(self) -> None:
        if self._path is None:
            return
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                users = load_users(self._path)
            except ConfigError as exc:
                self._users, self._broken = {}, str(exc)
                log.error("users file unreadable, nobody can log in until it is fixed: %s", exc)
            else:
                self._users, self._broken = users, None
                log.info("users file %s re-read: %d user(s)", self._path, len(users))
            self._stamp = stamp

    def user(self, username: str | None) -> User | None:
        """The users-file entry for `username` now (None: no such user, or no login)."""
        users = self.users
        return None if users is None else users.get(username or "")

    def check_login(self, username: str, password: str) -> bool:
        """Whether the password is right; as slow for unknown users as for real ones.

        This runs scrypt (tens of ms): call it off the event loop (`app.ui.login_guard`).
        """
        if self.users is None:
            return True
        user = self.user(username)
        ok = verify_password(password, user.password if user is not None else self._dummy)
        return ok and user is not None

    def role_of(self, username: str | None) -> str | None:
        if self.users is None:
            return "admin"
        user = self.user(username)
        return None if user is None else user.role

    def require(self, username: str | None, role: str = "annotator") -> str:
        """The user's name when their role (in the users file now) allows `role`."""
        if self.users is None:
            return username or LOCAL_USER
        if self.broken is not None:
            raise AccessDenied(f"nobody can log in now: {self.broken}")
        have = self.role_of(username)
        if have is None:
            raise AccessDenied("not logged in; log in with a user from the --auth users file")
        if have not in ALLOWED[role]:
            raise AccessDenied(
                f"{username} is an {have}; this action needs an {role} "
                f"(an admin can change roles with `prefloop users add --role {role}`)"
            )
        return str(username)
