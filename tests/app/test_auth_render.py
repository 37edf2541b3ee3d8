"""Users file, password hashing, roles, the host check, and safe Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.ui.auth import Access, AccessDenied, add_user, hash_password, load_users, verify_password
from app.ui.render import conversation, plain, safe_html, safe_markdown
from app.ui.server import ServeConfig, check_host, is_loopback
from data.errors import ConfigError


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second  # salted
    assert "s3cret" not in first
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("wrong", first)
    assert not verify_password("s3cret", "garbage")


def test_users_file_stores_only_hashes_and_roles(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    add_user(path, "alice", "pw-alice", "admin")
    add_user(path, "bob", "pw-bob", "annotator")
    text = path.read_text()
    assert "pw-alice" not in text and "pw-bob" not in text
    users = load_users(path)
    assert {u.name: u.role for u in users.values()} == {"alice": "admin", "bob": "annotator"}
    access = Access(users)
    assert access.check_login("alice", "pw-alice")
    assert not access.check_login("alice", "pw-bob")
    assert not access.check_login("mallory", "pw-alice")
    assert access.require("bob") == "bob"
    assert access.require("alice", "admin") == "alice"
    with pytest.raises(AccessDenied, match="needs an admin"):
        access.require("bob", "admin")
    with pytest.raises(AccessDenied, match="not logged in"):
        access.require(None)


def test_users_file_problems_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prefloop users add"):
        load_users(tmp_path / "missing.json")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"users": {"eve": {"role": "admin", "password": "hunter2"}}}))
    with pytest.raises(ConfigError, match="plain-text passwords are refused"):
        load_users(plain)
    with pytest.raises(ConfigError, match="role"):
        add_user(tmp_path / "u.json", "x", "pw", "root")


def test_non_loopback_host_needs_auth_or_insecure() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    check_host(ServeConfig(host="127.0.0.1"))
    with pytest.raises(ConfigError, match="--auth"):
        check_host(ServeConfig(host="0.0.0.0"))
    check_host(ServeConfig(host="0.0.0.0", auth="users.json"))
    check_host(ServeConfig(host="0.0.0.0", insecure=True))


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "<svg onload=alert(1)>",
        "<iframe src=//evil></iframe>",
    ],
)
def test_safe_html_escapes_raw_html(payload: str) -> None:
    out = safe_html(f"before {payload} after")
    inner = out.removeprefix('<div class="pl-content">').removesuffix("</div>")
    assert inner.startswith("<p>") and inner.endswith("</p>")
    assert "<" not in inner.removeprefix("<p>").removesuffix("</p>").replace("&lt;", "")
    assert "<a " not in out  # the tag is text: &lt;a ...


def test_safe_html_keeps_code_and_disarms_links() -> None:
    text = (
        "Use `<b>` tags:\n\n```html\n<b>bold</b>\n```\n\n"
        "[x](javascript:alert(1)) and [ok](https://example.org) and [own](/logout)"
    )
    out = safe_html(text)
    assert "<code>&lt;b&gt;</code>" in out
    assert "<pre><code>&lt;b&gt;bold&lt;/b&gt;&#10;</code></pre>" in out  # no class kept
    assert "javascript" in out and 'href="javascript' not in out  # shown as text
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">ok</a>' in out
    assert "/logout" not in out  # relative links lose their target
    assert "\n" not in out and safe_markdown(text) == out


def test_images_are_links_never_fetched() -> None:
    out = safe_html('![cat](https://example.org/cat.png "t") ![me](/logout) <img src="/logout">')
    assert "<img" not in out
    assert '<a href="https://example.org/cat.png" rel="noopener noreferrer nofollow">' in out
    assert "[image: cat]" in out and "[image: me]" in out


def test_plain_is_inert_in_markdown_and_html() -> None:
    shown = plain("ann <b>*x*</b> [a](b) `c` $$d$$ ~~e~~ | f \\g\nnext")
    for char in "<>*[]`$~|\\\n":
        assert char not in shown
    assert shown.startswith("ann &#60;b&#62;") and "(b)" in shown


def test_conversation_keeps_turns_and_escapes() -> None:
    shown = conversation(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi <script>x</script>"},
            {"role": "assistant", "content": "hello"},
        ]
    )
    assert [m["role"] for m in shown] == ["user", "user", "assistant"]
    assert "<em>System:</em>" in shown[0]["content"]
    assert "<script>" not in shown[1]["content"]
