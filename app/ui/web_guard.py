"""The web guard: same-origin requests only, expiring and revocable sessions, no deep links.

An ASGI wrapper around the whole FastAPI app Gradio builds, outside Gradio's own CORS
middleware (which accepts any localhost origin, with credentials, and reflects any origin
on a network host). Installed through `app_kwargs={"lifespan": guard.lifespan}`, so it is
in place before the server takes its first connection. For every request:

1. **Origin.** A request with an `Origin` header is served only when that origin is the
   app's own (scheme-less host and port equal to `Host`) or one of `--allowed-origin`.
   Without `Origin`, a browser's `Sec-Fetch-Site` must be `same-origin` or `none`; from
   another site (another port of the same host is "same-site") only a top-level
   navigation to `/` is served. Everything else is refused with 403 before Gradio sees
   it: CORS preflights from other origins get no `Access-Control-Allow-*` headers at all.
   This is also the CSRF defence for every state-changing call (all of Gradio's are
   POSTs, and browsers send `Origin` and `Sec-Fetch-Site` on those).
   **API clients** (gradio_client, httpx, curl) send neither header and are served: a
   web page cannot send a request without them, so such a request is not CSRF.
2. **Host.** Served on loopback, the `Host` header must name a loopback address (or an
   allowed origin's host), so a DNS-rebinding page cannot reach the app under its name.
3. **Sessions** (with `--auth`). Gradio's login token gets an issue time and the
   users-file entry it was issued for. A token past `--session-hours`, or whose user was
   removed, demoted, promoted or given a new password, is dropped from Gradio's token table
   before the request runs, so the request is anonymous (401 / the login page). The login
   cookies get `Max-Age` and `SameSite=Lax`.
4. **Deep links** (`/gradio_api/deep_link` and `?deep_link=`) are refused: they hand one
   session's state to anyone holding its hash.
5. Responses say `Content-Security-Policy: frame-ancestors 'self' <allowed origins>`, so
   another site cannot frame the app and steer clicks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from app.ui.auth import Access, User
from app.ui.login_guard import CLIENT_ADDRESS
from data.errors import ConfigError

log = logging.getLogger("prefloop.app")

ASGIApp = Callable[..., Any]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def normalise_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case with the default port left out; None if not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def parse_allowed_origins(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check `--allowed-origin` values; each problem names the value and the form wanted."""
    out = []
    for value in values:
        norm = normalise_origin(value)
        if norm is None:
            raise ConfigError(
                f"--allowed-origin {value!r} is not an origin; give scheme, host and port only, "
                "such as https://labels.example.org or http://127.0.0.1:8080"
            )
        out.append(norm)
    return tuple(dict.fromkeys(out))


def _host_port(netloc: str, default: int | None) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else default


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether a normalised origin names the host and port the request was sent to."""
    if not host_header:
        return False
    scheme = origin.split("://", 1)[0]
    mine = _host_port(origin.split("://", 1)[1], _DEFAULT_PORTS[scheme])
    theirs = _host_port(host_header, None)
    if mine is None or theirs is None or mine[0] != theirs[0]:
        return False
    # Host without a port: the client used the scheme's default port.
    return theirs[1] is None and mine[1] in _DEFAULT_PORTS.values() or theirs[1] == mine[1]


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class GuardConfig:
    """What the web guard allows."""

    allowed_origins: tuple[str, ...] = ()  # normalised origins served besides the app's own
    session_seconds: float = 12 * 3600.0  # a login lasts this long (cookie Max-Age too)
    loopback: bool = True  # served on loopback: Host must name a loopback address


class SessionBook:
    """Gradio's login tokens with when each was issued and for which users-file entry."""

    def __init__(
        self, access: Access, session_seconds: float, clock: Callable[[], float] = time.time
    ):
        self.access = access
        self.session_seconds = session_seconds
        self.clock = clock
        self._issued: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def record(self, token: str, username: str) -> None:
        with self._lock:
            self._issued[token] = (self.clock(), self.access.user(username))

    def why_ended(self, token: str) -> str | None:
        """Why this token's session is over (None: it is still good)."""
        issued = self._issued.get(token)
        if issued is None:
            return "not issued by this server"
        at, entry = issued
        if self.clock() - at > self.session_seconds:
            return "expired"
        if self.access.broken is not None:
            return None  # the users file is mid-edit or broken: `require` refuses everything
        if entry is None or self.access.user(entry.name) != entry:
            return "user removed or changed in the users file"
        return None

    def end(self, token: str, tokens: dict[str, str]) -> None:
        with self._lock:
            self._issued.pop(token, None)
        tokens.pop(token, None)

    def sweep(self, tokens: dict[str, str]) -> None:
        """Drop ended sessions (keeps both tables bounded by the live sessions)."""
        for token in list(tokens):
            if self.why_ended(token) is not None:
                self.end(token, tokens)
        with self._lock:
            for token in [t for t in self._issued if t not in tokens]:
                del self._issued[token]


class WebGuard:
    """The ASGI wrapper (see the module docstring)."""

    def __init__(self, app: ASGIApp, config: GuardConfig, sessions: SessionBook | None):
        self.app = app
        self.config = config
        self.sessions = sessions
        self.allowed = frozenset(config.allowed_origins)
        self.allowed_hosts = frozenset(
            h for h in (_host_port(o.split("://", 1)[1], None) for o in self.allowed) if h
        )
        ancestors = " ".join(["'self'", *config.allowed_origins])
        self.csp = f"frame-ancestors {ancestors}".encode()

    # -- the checks -------------------------------------------------------------------
    def refusal(self, scope: dict[str, Any], headers: dict[str, str]) -> str | None:
        """Why this request is refused (None: serve it)."""
        host = headers.get("host")
        if self.config.loopback:
            named = _host_port(host or "", None)
            if named is None or not (
                _is_loopback_name(named[0]) or any(named[0] == h for h, _ in self.allowed_hosts)
            ):
                return (
                    f"Host {host!r} is not a loopback name; open the app at http://127.0.0.1 "
                    "or http://localhost (or pass --allowed-origin)"
                )
        origin = headers.get("origin")
        if origin is not None:
            norm = normalise_origin(origin)
            if norm is None or not (norm in self.allowed or same_origin(norm, host)):
                return (
                    f"requests from origin {origin!r} are refused (only the app's own origin is "
                    f"served); to allow it, start the server with --allowed-origin {origin}"
                )
        else:
            site = headers.get("sec-fetch-site")
            if site in ("cross-site", "same-site"):
                navigation = (
                    scope.get("method") in ("GET", "HEAD")
                    and headers.get("sec-fetch-mode") == "navigate"
                    and headers.get("sec-fetch-dest", "document") == "document"
                    and scope.get("path") == "/"
                )
                if not navigation:
                    return (
                        f"a {site} request without an Origin is refused; open the app itself "
                        "(or pass --allowed-origin for a page that calls it)"
                    )
            elif site not in (None, "same-origin", "none"):
                return f"Sec-Fetch-Site {site!r} is not understood"
        path = scope.get("path", "")
        if path.rstrip("/").endswith("/deep_link") or "deep_link" in parse_qs(
            scope.get("query_string", b"").decode("latin-1")
        ):
            return "deep links are turned off: they would show one session's state to another"
        return None

    def end_sessions(self, scope: dict[str, Any], headers: dict[str, str]) -> None:
        """Drop this request's token from Gradio's table if its session is over."""
        app = scope.get("app")
        tokens = getattr(app, "tokens", None)
        cookie_id = getattr(app, "cookie_id", None)
        if self.sessions is None or tokens is None or "cookie" not in headers:
            return
        from starlette.requests import cookie_parser

        cookies = cookie_parser(headers["cookie"])
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            token = cookies.get(name)
            if token and token in tokens:
                why = self.sessions.why_ended(token)
                if why is not None:
                    log.info("session of %r ended: %s", tokens.get(token), why)
                    self.sessions.end(token, tokens)

    # -- ASGI -------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        why = self.refusal(scope, headers)
        if why is not None:
            log.warning(
                "refused %s %s from %s: %s",
                scope.get("method", "WS"),
                scope.get("path"),
                (scope.get("client") or ("?",))[0],
                why,
            )
            await self._refuse(scope, receive, send, why)
            return
        self.end_sessions(scope, headers)
        CLIENT_ADDRESS.set((scope.get("client") or ("unknown",))[0])
        origin = headers.get("origin")
        listed = origin is not None and normalise_origin(origin) in self.allowed
        is_login = scope.get("path", "").rstrip("/") == "/login" and scope.get("method") == "POST"

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._response_headers(
                    scope, list(message.get("headers", [])), origin if listed else None, is_login
                )
            await send(message)

        await self.app(scope, receive, guarded_send)

    def _response_headers(
        self,
        scope: dict[str, Any],
        raw: list[tuple[bytes, bytes]],
        listed_origin: str | None,
        is_login: bool,
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        names = {k.lower() for k, _ in raw}
        for key, value in raw:
            if is_login and key.lower() == b"set-cookie":
                value = self._login_cookie(scope, value)
            out.append((key, value))
        out.append((b"content-security-policy", self.csp))
        if listed_origin is not None and b"access-control-allow-origin" not in names:
            # Gradio's CORS reflects only localhost origins to a localhost Host.
            out.append((b"access-control-allow-origin", listed_origin.encode("latin-1")))
            out.append((b"access-control-allow-credentials", b"true"))
            out.append((b"vary", b"Origin"))
        return out

    def _login_cookie(self, scope: dict[str, Any], value: bytes) -> bytes:
        """Record the new session and give its cookie a lifetime and SameSite=Lax."""
        text = value.decode("latin-1")
        name, _, rest = text.partition("=")
        token = rest.split(";", 1)[0]
        app = scope.get("app")
        tokens = getattr(app, "tokens", {})
        if not name.startswith("access-token-") or token not in tokens:
            return value
        if self.sessions is not None:
            self.sessions.record(token, tokens[token])
            self.sessions.sweep(tokens)
        kept = [
            part.strip()
            for part in text.split(";")[1:]
            if part.strip().split("=", 1)[0].lower() not in ("samesite", "max-age", "expires")
        ]
        max_age = int(self.config.session_seconds)
        return "; ".join([f"{name}={token}", *kept, f"Max-Age={max_age}", "SameSite=lax"]).encode(
            "latin-1"
        )

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, why: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
            return
        from starlette.responses import JSONResponse

        await JSONResponse({"detail": f"prefloop: {why}"}, status_code=403)(scope, receive, send)

    # -- installing -------------------------------------------------------------------
    def lifespan_for(self) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
        """A FastAPI lifespan that wraps the app's middleware stack in this guard.

        It runs before the server accepts connections; `installed` checks it did.
        """

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            inner = app.middleware_stack or app.build_middleware_stack()
            self.app = inner
            app.middleware_stack = self
            yield

        return lifespan

    @staticmethod
    def installed(app: Any) -> bool:
        return isinstance(getattr(app, "middleware_stack", None), WebGuard)


def make_guard(access: Access, config: GuardConfig) -> WebGuard:
    """A guard not yet wrapped around an app (`lifespan_for` does that at start-up)."""
    sessions = SessionBook(access, config.session_seconds) if access.enabled else None
    return WebGuard(_not_started, config, sessions)


async def _not_started(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("the web guard was called before the app started")
