"""The real app on 127.0.0.1 with chosen web-guard and login settings, and raw-HTTP helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from app.ui.login_guard import LoginPolicy
from app.ui.server import ServeConfig
from tests.fakes.served_app import PASSWORDS, Served, free_port, make_store, make_users


def serve_guarded(
    tmp: Path,
    n: int = 20,
    *,
    login: LoginPolicy | None = None,
    allowed_origins: tuple[str, ...] = (),
    session_hours: float = 12.0,
) -> Served:
    """`tests.app.conftest.serve_store`, with the guard's settings as arguments."""
    from app.ui.server import launch, make_app
    from data.store import PreferenceStore

    pair_ids = make_store(tmp / "store.duckdb", n)
    users = make_users(tmp / "users.json")
    config = ServeConfig(
        port=free_port(),
        auth=str(users),
        allowed_origins=allowed_origins,
        session_hours=session_hours,
        login=login or LoginPolicy(),
    )
    store = PreferenceStore(tmp / "store.duckdb")
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp / "runs")
    launch(ctx, blocks, config, block=False)
    return Served(f"http://127.0.0.1:{config.port}/", store, ctx, blocks, pair_ids)


def guard_of(served: Served) -> Any:
    """The running app's WebGuard (it wraps the FastAPI app's middleware stack)."""
    return served.blocks.app.middleware_stack


def login(served: Served, user: str, password: str | None = None, **headers: str) -> httpx.Response:
    return httpx.post(
        served.url + "login",
        data={"username": user, "password": PASSWORDS[user] if password is None else password},
        headers=headers,
        timeout=30,
    )


def session(served: Served, user: str) -> httpx.Client:
    """An httpx client holding `user`'s login cookies, as a browser would."""
    response = login(served, user)
    assert response.status_code == 200, response.text
    return httpx.Client(base_url=served.url, cookies=response.cookies, timeout=30)


def run(client: httpx.Client, api_name: str, *data: Any, **headers: str) -> httpx.Response:
    """POST /gradio_api/run/API_NAME (one request, the answer in the body)."""
    return client.post(f"gradio_api/run/{api_name}", json={"data": list(data)}, headers=headers)


def with_users(path: Path, **changes: dict[str, Any] | None) -> None:
    """Rewrite the users file as an admin would: NAME=None removes, NAME={...} updates."""
    import json

    data = json.loads(path.read_text())
    for name, change in changes.items():
        if change is None:
            data["users"].pop(name)
        else:
            data["users"][name] = {**data["users"][name], **change}
    tmp = path.with_suffix(".edit")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
