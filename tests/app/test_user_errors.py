"""A user error in the app is one message for the user and one log line, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.fakes.served_app import Served, serve_store, stop


@pytest.fixture(scope="module")
def app_for_errors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("errors"), n=4)
    yield running
    stop(running)


@pytest.mark.parametrize(
    ("user", "api_name", "args", "message"),
    [
        ("ann1", "/label_a", ("no-such-pair", ""), "not the one shown to you"),  # a bad request
        ("ann1", "/train_start", ("dpo",), "admin"),  # a role refused on the server
    ],
)
def test_a_user_error_logs_one_line_and_no_traceback(
    app_for_errors: Served,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    user: str,
    api_name: str,
    args: tuple[object, ...],
    message: str,
) -> None:
    from gradio_client.exceptions import AppError

    client = app_for_errors.client(user)
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="prefloop.app"), pytest.raises(AppError) as err:
        client.predict(*args, api_name=api_name)
    assert message in str(err.value)
    out, err_text = capfd.readouterr()
    assert "Traceback" not in out + err_text
    lines = [r for r in caplog.records if r.name == "prefloop.app"]
    assert len(lines) == 1 and message in lines[0].getMessage()
    assert "\n" not in lines[0].getMessage()
