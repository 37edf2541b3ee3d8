"""Issue 14, class 2: sessions cannot be borrowed.

Against the real app on 127.0.0.1, with raw HTTP as a hostile page would send it: another
port's (or site's) page holding an admin's cookie is refused before Gradio runs anything;
CORS preflights from it get no credentials; sessions expire and end when the users file
drops or changes their user; deep links and the browser's run history are off with auth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.ui.web_guard import normalise_origin, parse_allowed_origins, same_origin
from data.errors import ConfigError
from tests.fakes.served_app import Served, free_port, stop
from tests.reliability.served_guarded import (
    guard_of,
    login,
    run,
    serve_guarded,
    session,
    with_users,
)

OTHER_PORT = free_port()
# Pages that are not the app: another port on the same host (the reported attack), the
# other loopback names, the opaque origin of a sandboxed frame or file://, other sites.
FOREIGN_ORIGINS = [
    f"http://127.0.0.1:{OTHER_PORT}",
    f"http://localhost:{OTHER_PORT}",
    "http://localhost",
    "http://0.0.0.0:7860",
    "null",
    "https://evil.example",
    "http://127.0.0.1.evil.example",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_guarded(tmp_path_factory.mktemp("sessions"))
    yield running
    stop(running)


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every export the app runs (the server runs in this process)."""
    from app.ui import data_io

    calls: list[str] = []
    real = data_io.export_dataset

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(data_io, "export_dataset", counted)
    return calls


def own_origin(served: Served) -> str:
    return served.url.rstrip("/")


def fn_index(served: Served, api_name: str) -> int:
    return next(i for i, fn in served.blocks.fns.items() if fn.api_name == api_name)


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_origin_with_admin_cookie_cannot_export_or_judge(
    served: Served, exports: list[str], origin: str
) -> None:
    admin = session(served, "boss")
    hostile = {"Origin": origin}
    calls = [
        admin.post("gradio_api/call/export", json={"data": ["trl", 0.0]}, headers=hostile),
        run(admin, "export", "trl", 0.0, **hostile),
        admin.post(
            "gradio_api/queue/join",
            json={
                "data": ["trl", 0.0],
                "fn_index": fn_index(served, "export"),
                "session_hash": "attacker1",
                "event_data": None,
                "trigger_id": None,
            },
            headers=hostile,
        ),
        run(admin, "judge_start", "http://127.0.0.1:9/v1", "m", "", 1, 0, False, 0, 0, **hostile),
        admin.get("gradio_api/queue/data?session_hash=attacker1", headers=hostile),
        admin.get("config", headers=hostile),
        admin.post("gradio_api/upload", files={"files": ("x.jsonl", b"{}")}, headers=hostile),
    ]
    for response in calls:
        assert response.status_code == 403, (response.request.url, response.text)
        assert "--allowed-origin" in response.json()["detail"]
        assert "access-control-allow-credentials" not in response.headers
        assert "access-control-allow-origin" not in response.headers
    assert exports == [] and served.ctx.judge_task is None


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_cors_preflight_from_a_foreign_origin_gets_no_credentials(
    served: Served, origin: str
) -> None:
    for path in ("gradio_api/queue/join", "gradio_api/call/export", "login"):
        response = httpx.options(
            served.url + path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert response.status_code == 403
        assert not any(h.startswith("access-control-") for h in response.headers)


def test_the_apps_own_pages_and_api_clients_still_work(served: Served, exports: list[str]) -> None:
    admin = session(served, "boss")
    same = {"Origin": own_origin(served), "Sec-Fetch-Site": "same-origin"}
    response = run(admin, "export", "trl", 0.0, **same)
    assert response.status_code == 200, response.text
    assert exports == ["trl"]
    # The page's own reads carry no Origin, only Sec-Fetch-Site: same-origin.
    assert admin.get("config", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    # A top-level navigation from elsewhere (a link) opens the app; nothing else from there.
    navigate = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert admin.get("/", headers={**navigate, "Sec-Fetch-Dest": "document"}).status_code == 200
    assert admin.get("/", headers={**navigate, "Sec-Fetch-Dest": "iframe"}).status_code == 403
    assert admin.get("logout", headers=navigate).status_code == 403
    for site in ("same-site", "cross-site"):  # <img src>, <script src>, a form POST
        assert admin.get("config", headers={"Sec-Fetch-Site": site}).status_code == 403
        assert run(admin, "whoami", **{"Sec-Fetch-Site": site}).status_code == 403
    # gradio_client sends neither header: an API client, not a page.
    assert served.client("ann1").predict(api_name="/whoami")[0]["user"] == "ann1"
    assert "frame-ancestors 'self'" in admin.get("/").headers["content-security-policy"]


def test_a_rebound_host_name_is_refused_on_loopback(served: Served) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 sends its own name as Host."""
    for host in ("evil.example", f"evil.example:{served.url.rsplit(':', 1)[1].rstrip('/')}"):
        response = httpx.get(served.url, headers={"Host": host, "Origin": f"http://{host}"})
        assert response.status_code == 403 and "loopback" in response.text
    port = served.url.rsplit(":", 1)[1].rstrip("/")
    assert httpx.get(f"http://localhost:{port}/").status_code == 200


def test_login_cookies_expire_and_sessions_end_after_session_hours(served: Served) -> None:
    response = login(served, "ann2")
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2
    for cookie in cookies:
        assert "Max-Age=43200" in cookie and "SameSite=lax" in cookie
        assert "samesite=none" not in cookie.lower()
    client = httpx.Client(base_url=served.url, cookies=response.cookies)
    assert run(client, "whoami").status_code == 200
    sessions = guard_of(served).sessions
    real_clock = sessions.clock
    sessions.clock = lambda: real_clock() + 12 * 3600 + 1
    try:
        assert run(client, "whoami").status_code == 401
        assert client.get("config").status_code == 401
    finally:
        sessions.clock = real_clock
    assert run(client, "whoami").status_code == 401  # the token is gone for good
    assert run(session(served, "ann2"), "whoami").status_code == 200


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Served]:
    running = serve_guarded(tmp_path, n=6)
    yield running
    stop(running)


def test_removing_demoting_or_repassing_a_user_ends_their_sessions_at_once(
    fresh: Served, tmp_path: Path
) -> None:
    from app.ui.auth import hash_password

    users = tmp_path / "users.json"
    boss, ann1, ann2 = session(fresh, "boss"), session(fresh, "ann1"), session(fresh, "ann2")
    api_ann1 = fresh.client("ann1")
    for client in (boss, ann1, ann2):
        assert run(client, "whoami").status_code == 200

    with_users(users, ann1=None)  # removed
    assert run(ann1, "whoami").status_code == 401
    with pytest.raises(Exception, match="not logged in|401|Unauthorized"):  # noqa: B017
        api_ann1.predict(api_name="/whoami")
    assert login(fresh, "ann1").status_code == 400

    with_users(users, boss={"role": "annotator"})  # demoted
    assert run(boss, "export", "trl", 0.0).status_code == 401
    demoted = session(fresh, "boss")
    answer = run(demoted, "export", "trl", 0.0).json()
    assert "needs an admin" in json.dumps(answer)

    with_users(users, ann2={"password": hash_password("new-pw")})  # new password
    assert run(ann2, "whoami").status_code == 401
    assert login(fresh, "ann2").status_code == 400
    assert login(fresh, "ann2", "new-pw").status_code == 200


def test_a_broken_users_file_refuses_everyone_until_fixed(fresh: Served, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    good = users.read_text()
    ann1 = session(fresh, "ann1")
    users.write_text("{not json")
    answer = json.dumps(run(ann1, "whoami").json())
    assert "nobody can log in now" in answer and "users.json" in answer
    assert login(fresh, "ann2").status_code == 400
    users.write_text(good)
    assert run(ann1, "whoami").status_code == 200  # the session survived the bad edit


def test_deep_links_and_run_history_are_off(served: Served) -> None:
    admin = session(served, "boss")
    assert admin.get("gradio_api/deep_link", params={"session_hash": "x"}).status_code == 403
    assert admin.get("/", params={"deep_link": "abc"}).status_code == 403
    assert admin.get("config", params={"deep_link": "abc"}).status_code == 403
    config = admin.get("config").json()
    assert config["run_history"] is False
    assert admin.get("gradio_api/runs").status_code == 404


def test_allowed_origin_may_call_with_credentials(tmp_path: Path) -> None:
    origin = f"http://127.0.0.1:{OTHER_PORT}"
    running = serve_guarded(tmp_path, n=4, allowed_origins=(origin, "https://labels.example"))
    try:
        preflight = httpx.options(
            running.url + "gradio_api/run/whoami",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert preflight.headers["access-control-allow-credentials"] == "true"
        client = session(running, "ann1")
        response = run(client, "whoami", Origin=origin)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert run(client, "whoami", Origin="http://127.0.0.1:1").status_code == 403
        csp = response.headers["content-security-policy"]
        assert origin in csp and "https://labels.example" in csp
    finally:
        stop(running)


def test_origin_rules() -> None:
    assert normalise_origin("HTTP://LocalHost:80") == "http://localhost"
    assert normalise_origin("https://x.org:443/") == "https://x.org"
    assert normalise_origin("http://[::1]:7860") == "http://[::1]:7860"
    for bad in ("null", "file://", "ftp://x", "http://x/path", "x.org", "http://u@x", ""):
        assert normalise_origin(bad) is None, bad
    assert same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert same_origin("http://x.org", "x.org") and same_origin("https://x.org", "x.org")
    assert not same_origin("http://127.0.0.1:7861", "127.0.0.1:7860")
    assert not same_origin("http://localhost:7860", "127.0.0.1:7860")
    assert not same_origin("http://x.org:8080", "x.org")
    assert not same_origin("http://x.org", None)
    assert parse_allowed_origins(["https://A.org/", "https://a.org"]) == ("https://a.org",)
    with pytest.raises(ConfigError, match="--allowed-origin 'a.org' is not an origin"):
        parse_allowed_origins(["a.org"])


def test_serve_flags(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    runner = CliRunner()
    for command in ("serve", "demo"):
        out = runner.invoke(cli, [command, "--help"]).output
        assert "--allowed-origin URL" in out and "--session-hours" in out
    bad = runner.invoke(cli, ["serve", "--db", str(tmp_path / "x"), "--allowed-origin", "x"])
    assert bad.exit_code != 0 and "is not an origin" in f"{bad.output}{bad.exception}"
    bad = runner.invoke(cli, ["serve", "--db", str(tmp_path / "x"), "--session-hours", "0"])
    assert bad.exit_code != 0 and "must be more than 0" in f"{bad.output}{bad.exception}"


def test_expiry_is_checked_on_the_server_not_only_by_the_cookie(served: Served) -> None:
    """A client that ignores Max-Age (keeps the cookie) is still logged out."""
    client = session(served, "ann1")
    sessions = guard_of(served).sessions
    real_clock = sessions.clock
    sessions.clock = lambda: real_clock() + 12 * 3600 - 5
    try:
        assert run(client, "whoami").status_code == 200  # not yet
        sessions.clock = lambda: real_clock() + 12 * 3600 + 5
        assert run(client, "whoami").status_code == 401
    finally:
        sessions.clock = real_clock
