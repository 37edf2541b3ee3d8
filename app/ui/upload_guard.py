"""Uploads to the app: admins only, within a quota, and never left behind.

Gradio's own upload route (`POST /gradio_api/upload`) takes files from any logged-in
user before any prefloop handler runs, so the checks sit in front of it, as ASGI
middleware (`install`, passed to `launch` as `app_kwargs`):

* Only admins may upload (the Data tab is the only file input). The user is read from
  Gradio's session cookie the way Gradio's `/user` route reads it; with auth off,
  everyone is the local admin.
* One upload request may carry at most `max_request_bytes` (its Content-Length; a
  request without one is refused), and each user at most `quota_bytes_per_hour`.
* Every other request body is capped at `max_body_bytes` (a label's rationale, a
  project's guidelines and every other event payload are far smaller), and Gradio's
  `process_recording` route, which also writes files, is closed (no audio inputs here).
* Cleanup: `release` deletes an uploaded file once `import_upload` has finished with
  it, success or failure; an upload not imported within `stale_seconds` is deleted at
  the next upload; the uploads a previous server recorded are deleted at start. The
  record is a small JSON file next to the store (`<store>.uploads.json`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.ui.auth import LOCAL_USER
from app.ui.context import AppContext
from app.ui.data_io import MAX_UPLOAD_BYTES

log = logging.getLogger("prefloop.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPLOAD_PATHS = ("/gradio_api/upload",)
CLOSED_PATHS = ("/gradio_api/process_recording",)
_BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass(frozen=True)
class UploadLimits:
    """What one user may upload, and how long an upload may wait for its import."""

    max_request_bytes: int = MAX_UPLOAD_BYTES + 2**20  # one upload request: a file + its form
    quota_bytes_per_hour: int = 4 * MAX_UPLOAD_BYTES  # per user, over the last hour
    max_body_bytes: int = 2**20  # any other request body (event payloads)
    stale_seconds: float = 3600.0  # an upload not imported by then is deleted


@dataclass
class _Upload:
    user: str
    bytes: int
    at: float


@dataclass
class UploadGuard:
    """The live uploads of one app (persisted) and each user's recent upload bytes."""

    ctx: AppContext
    ledger_path: Path
    limits: UploadLimits = field(default_factory=UploadLimits)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    recent: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- who ---------------------------------------------------------------------------

    async def user_of(self, scope: Scope) -> str | None:
        """The logged-in user, found as Gradio's `get_current_user` finds it."""
        if not self.ctx.access.enabled:
            return LOCAL_USER
        from starlette.requests import Request

        app = scope.get("app")
        if app is None:
            return None
        request = Request(scope)
        if getattr(app, "auth_dependency", None) is not None:
            user = app.auth_dependency(request)
            return await user if inspect.isawaitable(user) else user
        cookie_id = getattr(app, "cookie_id", "")
        token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
            f"access-token-unsecure-{cookie_id}"
        )
        return getattr(app, "tokens", {}).get(token)

    # -- quota -------------------------------------------------------------------------

    def reserve(self, user: str, nbytes: int, now: float | None = None) -> str | None:
        """Charge `nbytes` to `user`'s hour; the refusal message when it does not fit."""
        now = time.time() if now is None else now
        with self.lock:
            window = self.recent.setdefault(user, deque())
            while window and window[0][0] <= now - 3600:
                window.popleft()
            used = sum(n for _, n in window)
            quota = self.limits.quota_bytes_per_hour
            if used + nbytes > quota:
                wait = int(window[0][0] + 3600 - now) + 1 if window else 3600
                return (
                    f"upload quota reached: {user} uploaded {used // 2**20} MiB in the last hour "
                    f"and this upload is {nbytes // 2**20} MiB; the limit is {quota // 2**20} MiB "
                    f"an hour. Try again in {wait // 60 + 1} minutes, or import large files with "
                    "`prefloop import`"
                )
            window.append((now, nbytes))
            return None

    # -- files -------------------------------------------------------------------------

    def record(self, user: str, paths: list[str], nbytes: int) -> None:
        now = time.time()
        with self.lock:
            for path in paths:
                self.uploads[str(Path(path).resolve())] = _Upload(user, nbytes, now)
            self._save()
        self.expire(now)

    def release(self, path: str | None) -> bool:
        """Delete an uploaded file (and its folder, when empty); True if it was ours."""
        if not path:
            return False
        key = str(Path(path).resolve())
        with self.lock:
            if self.uploads.pop(key, None) is None:
                return False
            self._save()
        _delete(Path(key))
        return True

    def expire(self, now: float | None = None) -> int:
        """Delete uploads older than `stale_seconds`; how many went."""
        now = time.time() if now is None else now
        with self.lock:
            old = [p for p, u in self.uploads.items() if u.at < now - self.limits.stale_seconds]
            for path in old:
                del self.uploads[path]
            if old:
                self._save()
        for path in old:
            _delete(Path(path))
        return len(old)

    def sweep(self) -> int:
        """At start: delete every upload a previous server recorded (none is in use now)."""
        try:
            listed = json.loads(self.ledger_path.read_text(encoding="utf-8")).get("files", {})
        except (OSError, ValueError, AttributeError):
            listed = {}
        for path in listed:
            _delete(Path(path))
        with self.lock:
            self.uploads.clear()
            self._save()
        if listed:
            log.info("deleted %d upload(s) left by a previous server", len(listed))
        return len(listed)

    def _save(self) -> None:
        data = {"files": {p: vars(u) for p, u in self.uploads.items()}}
        tmp = self.ledger_path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.replace(self.ledger_path)


def _delete(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # Gradio keeps each upload in a folder named by its hash


# -- the middleware --------------------------------------------------------------------


class UploadGuardMiddleware:
    """ASGI middleware: refuses what `UploadGuard` does not allow, records what it does."""

    def __init__(self, app: Callable[..., Awaitable[None]], guard: UploadGuard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").rstrip("/")
        if path.endswith(CLOSED_PATHS):
            await _refuse(send, 403, "this app takes no recordings")
        elif path.endswith(UPLOAD_PATHS):
            await self._upload(scope, receive, send)
        else:
            await self._capped(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.guard
        user = await guard.user_of(scope)
        if user is None:
            await _refuse(send, 401, "not logged in; log in before uploading")
            return
        if guard.ctx.access.role_of(user) != "admin":
            log.warning("upload refused: %s is not an admin", user)
            role = guard.ctx.access.role_of(user)
            await _refuse(send, 403, f"{user} is an {role}; only admins may upload files")
            return
        length = _content_length(scope)
        if length is None:
            await _refuse(send, 411, "an upload needs a Content-Length header")
            return
        if length > guard.limits.max_request_bytes:
            await _refuse(
                send,
                413,
                f"upload of {length // 2**20} MiB is over the "
                f"{guard.limits.max_request_bytes // 2**20} MiB limit; "
                "import large files with `prefloop import`",
            )
            return
        refusal = guard.reserve(user, length)
        if refusal:
            log.warning("upload refused: %s", refusal)
            await _refuse(send, 429, refusal)
            return
        status, body = 0, bytearray()

        async def capture(message: Message) -> None:
            # record the files before the client hears of them, so a quick import finds them
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    self._record(user, bytes(body), length)
            await send(message)

        await self.app(scope, receive, capture)

    def _record(self, user: str, body: bytes, length: int) -> None:
        with contextlib.suppress(ValueError):
            paths = json.loads(body)
            if isinstance(paths, list):
                self.guard.record(user, [p for p in paths if isinstance(p, str)], length)

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.guard.limits.max_body_bytes
        length = _content_length(scope)
        if length is not None:
            if length > limit:
                await _refuse(send, 413, f"request body of {length} bytes is over {limit} bytes")
                return
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read it here, up to the cap, then hand it on
        chunks: list[Message] = []
        total = 0
        while True:
            message = await receive()
            chunks.append(message)
            total += len(message.get("body", b""))
            if total > limit:
                await _refuse(send, 413, f"request body is over {limit} bytes")
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- wiring ----------------------------------------------------------------------------

_GUARDS: dict[int, UploadGuard] = {}


def ledger_path_for(ctx: AppContext) -> Path:
    return Path(os.fspath(ctx.store.path)).with_suffix(".uploads.json")


def install(ctx: AppContext, limits: UploadLimits | None = None) -> dict[str, Any]:
    """The guard for `ctx`'s app, as `app_kwargs` for `Blocks.launch`; sweeps old uploads."""
    from starlette.middleware import Middleware

    guard = UploadGuard(ctx, ledger_path_for(ctx), limits or UploadLimits())
    guard.sweep()
    _GUARDS[id(ctx)] = guard
    return {"middleware": [Middleware(UploadGuardMiddleware, guard=guard)]}


def guard_for(ctx: AppContext) -> UploadGuard | None:
    """The installed guard of `ctx`'s app (None when the app was launched without one)."""
    return _GUARDS.get(id(ctx))


def release(ctx: AppContext, path: str | None) -> bool:
    """Delete an upload `import_upload` has finished with (no-op without a guard)."""
    guard = guard_for(ctx)
    return guard.release(path) if guard is not None else False
