"""Login that cannot be flooded or probed: backoff per user and per address, scrypt off the loop.

Gradio's `/login` route awaits the `auth=` callable on the event loop when it is a
coroutine function, and calls it right there when it is not. `gradio_auth` returns a
coroutine function that:

1. refuses at once with 429 (and `Retry-After`) while the user name or the client address
   is locked (`LoginThrottle`), before any hashing;
2. runs the scrypt check (`Access.check_login`) on a worker thread of its own small pool,
   so a flood of logins never stalls other annotators' clicks, nor takes every worker;
3. records the failure or success.

Unknown user names are checked against a dummy hash (`Access.check_login`), and are
counted and locked like real ones, so neither timing nor a lock tells a name away.

The client address comes from `CLIENT_ADDRESS`, set for each request by the web guard
(`app.ui.web_guard`). Behind a reverse proxy on the same host, uvicorn takes it from
`X-Forwarded-For` (it trusts that header from 127.0.0.1 only).
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.ui.auth import Access
from data.errors import PrefloopError

log = logging.getLogger("prefloop.app")

CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar(
    "prefloop_client_address", default="unknown"
)


@dataclass(frozen=True)
class LoginPolicy:
    """When wrong passwords lock a user name or a client address, and for how long."""

    user_free_failures: int = 5  # wrong passwords for one user name before it is locked
    address_free_failures: int = 20  # wrong passwords from one client address before it is locked
    lock_seconds: float = 1.0  # the first lock; it doubles with every further failure
    max_lock_seconds: float = 900.0  # the longest lock (15 minutes)
    forget_seconds: float = 3600.0  # failures are forgotten this long after the last one
    max_tracked: int = 10_000  # user names and addresses remembered each (oldest dropped first)
    hash_threads: int = 2  # password checks running at once, on threads off the event loop


class LoginLocked(PrefloopError):
    """Too many wrong passwords for this user name or from this address; try again later."""

    def __init__(self, what: str, retry_after: float):
        self.retry_after = retry_after
        super().__init__(
            f"too many wrong passwords for this {what}; try again in {math.ceil(retry_after)} s"
        )


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class _Table:
    """Failure counts by key, at most `size` keys (least recently touched dropped first)."""

    def __init__(self, size: int):
        self.size = size
        self.rows: OrderedDict[str, _Failures] = OrderedDict()

    def get(self, key: str, now: float, forget: float) -> _Failures | None:
        row = self.rows.get(key)
        if row is not None and now - row.last > forget:
            del self.rows[key]
            return None
        return row

    def touch(self, key: str, now: float, forget: float) -> _Failures:
        row = self.get(key, now, forget) or _Failures()
        self.rows[key] = row
        self.rows.move_to_end(key)
        while len(self.rows) > self.size:
            self.rows.popitem(last=False)
        return row


class LoginThrottle:
    """Exponential backoff after `free` wrong passwords, per user name and per address.

    While locked, attempts are refused without being checked or counted. A right password
    clears its user name's count; an address's count only fades (`forget_seconds`), so
    logging in as yourself does not reset a spray over other names from the same place.
    """

    def __init__(self, policy: LoginPolicy, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.clock = clock
        self._users = _Table(policy.max_tracked)
        self._addresses = _Table(policy.max_tracked)
        self._lock = threading.Lock()

    def check(self, username: str, address: str) -> None:
        """Raise LoginLocked while the user name or the address is locked."""
        now, forget = self.clock(), self.policy.forget_seconds
        with self._lock:
            for what, table, key in (
                ("user name", self._users, username),
                ("address", self._addresses, address),
            ):
                row = table.get(key, now, forget)
                if row is not None and row.locked_until > now:
                    raise LoginLocked(what, row.locked_until - now)

    def failed(self, username: str, address: str) -> None:
        now, policy = self.clock(), self.policy
        with self._lock:
            for table, key, free in (
                (self._users, username, policy.user_free_failures),
                (self._addresses, address, policy.address_free_failures),
            ):
                row = table.touch(key, now, policy.forget_seconds)
                row.count += 1
                row.last = now
                if row.count >= free:
                    lock = policy.lock_seconds * 2.0 ** min(row.count - free, 30)
                    row.locked_until = now + min(lock, policy.max_lock_seconds)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._users.rows.pop(username, None)


def gradio_auth(access: Access, throttle: LoginThrottle) -> Callable[[str, str], Awaitable[bool]]:
    """The `auth=` coroutine function for `Blocks.launch`."""
    import anyio
    from fastapi import HTTPException

    limiter = anyio.CapacityLimiter(throttle.policy.hash_threads)

    async def check_login(username: str, password: str) -> bool:
        address = CLIENT_ADDRESS.get()
        try:
            throttle.check(username, address)
        except LoginLocked as exc:
            log.warning("login refused for %r from %s: %s", username, address, exc)
            raise HTTPException(
                status_code=429,
                detail=str(exc),
                headers={"Retry-After": str(math.ceil(exc.retry_after))},
            ) from None
        ok = await anyio.to_thread.run_sync(access.check_login, username, password, limiter=limiter)
        if ok:
            throttle.succeeded(username)
        else:
            throttle.failed(username, address)
            log.info("wrong password for %r from %s", username, address)
        return ok

    return check_login
