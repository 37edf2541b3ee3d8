"""Starting the app: the host check, auth, the web guard, and `launch` (`prefloop serve`/`demo`, tests)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from app.ui.annotate import AnnotateConfig
from app.ui.auth import Access
from app.ui.context import AppContext
from app.ui.login_guard import LoginPolicy
from app.ui.train_jobs import TRAIN_STAGES
from data.errors import ConfigError
from data.store import PreferenceStore

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServeConfig:
    """How `prefloop serve` runs."""

    host: str = "127.0.0.1"  # interface to listen on; non-loopback needs --auth or --insecure
    port: int = 7860  # TCP port
    auth: str | None = None  # users file (JSON, hashed passwords) from `prefloop users add`
    insecure: bool = (
        False  # allow a non-loopback host without --auth (anyone on the network is admin)
    )
    lease_seconds: float | None = None  # how long a pair stays with one annotator (None: project's)
    rescore_budget: int = 50  # pairs the re-score after a training run sends to humans
    max_threads: int = 64  # Gradio worker threads (concurrent requests)
    train_max_steps: int | None = None  # cap on optimizer steps of runs started from the Train tab
    allowed_origins: tuple[str, ...] = ()  # origins besides the app's own that may call it
    session_hours: float = 12.0  # a login lasts this long, then the user logs in again
    login: LoginPolicy = field(default_factory=LoginPolicy)  # backoff after wrong passwords


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(config: ServeConfig) -> None:
    """Refuse settings that would expose the app; each message names the fix."""
    from app.ui.web_guard import parse_allowed_origins

    parse_allowed_origins(config.allowed_origins)
    if not config.session_hours > 0:
        raise ConfigError(f"--session-hours {config.session_hours} must be more than 0")
    if not is_loopback(config.host) and config.auth is None and not config.insecure:
        raise ConfigError(
            f"--host {config.host} is reachable from the network and there is no --auth users file: "
            "anyone could label and train. Create users with `prefloop users add --file users.json NAME` "
            "and pass --auth users.json, or pass --insecure if the network is trusted."
        )


def make_app(store: PreferenceStore, config: ServeConfig) -> tuple[AppContext, Any]:
    """The context and the Blocks for one store (not launched)."""
    from app.ui.blocks import build_blocks

    check_host(config)
    access = Access.from_file(config.auth) if config.auth else Access(None)
    lease = None if config.lease_seconds is None else AnnotateConfig(config.lease_seconds)
    ctx = AppContext.create(store, access, lease)
    ctx.rescore_budget = config.rescore_budget
    if config.train_max_steps is not None:
        ctx.train_overrides = {
            stage: {"max_steps": config.train_max_steps} for stage in TRAIN_STAGES
        }
    blocks = build_blocks(ctx)
    blocks.queue(default_concurrency_limit=None)
    return ctx, blocks


def launch(ctx: AppContext, blocks: Any, config: ServeConfig, *, block: bool = True) -> Any:
    """Serve behind the web guard; with block=False return at once (tests), else until Ctrl-C."""
    from app.ui import data_io, upload_guard
    from app.ui.blocks import CSS, KEYBOARD_JS
    from app.ui.login_guard import LoginThrottle, gradio_auth
    from app.ui.web_guard import GuardConfig, WebGuard, make_guard, parse_allowed_origins

    ctx.start_background()
    guard = make_guard(
        ctx.access,
        GuardConfig(
            allowed_origins=parse_allowed_origins(config.allowed_origins),
            session_seconds=config.session_hours * 3600.0,
            loopback=is_loopback(config.host),
        ),
    )
    auth = gradio_auth(ctx.access, LoginThrottle(config.login)) if ctx.access.enabled else None
    result = blocks.launch(
        server_name=config.host,
        server_port=config.port,
        auth=auth,
        auth_message="prefloop: log in with a user from the --auth users file",
        prevent_thread_lock=True,
        show_error=True,
        quiet=not block,
        head=KEYBOARD_JS,
        css=CSS,
        max_threads=config.max_threads,
        footer_links=["api"],
        ssr_mode=False,
        max_file_size=data_io.MAX_UPLOAD_BYTES,
        # With logins, the browser must not keep one user's calls for the next one.
        run_history=not ctx.access.enabled,
        app_kwargs={"lifespan": guard.lifespan_for(), **upload_guard.install(ctx)},
    )
    if not WebGuard.installed(blocks.app):
        blocks.close()
        raise ConfigError(
            "the web guard did not start, so the app was stopped; this Gradio version "
            "may not run FastAPI lifespans (install the pinned gradio version)"
        )
    if block:
        blocks.block_thread()
    return result
