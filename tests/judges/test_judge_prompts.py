"""Templates: placeholders, system/user split, replaceable rubric, hash stored with judgements."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.errors import ConfigError
from judges.prompts import DEFAULT_TEMPLATE, load_template, parse_template, repair_messages


def test_default_template_shows_first_response_as_a() -> None:
    template = load_template(None)
    messages = template.messages("What is 2+2?", "four", "five")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Rubric" in messages[0]["content"]
    user = messages[1]["content"]
    assert user.index("four") < user.index("[Response B]") < user.index("five")
    assert template.hash == parse_template(DEFAULT_TEMPLATE).hash


def test_placeholders_inside_texts_are_not_substituted_again() -> None:
    template = load_template(None)
    user = template.messages("say {{response_b}}", "{{prompt}}", "x")[1]["content"]
    assert "say {{response_b}}" in user and "[Response A]\n{{prompt}}" in user


def test_custom_template_file(tmp_path: Path) -> None:
    path = tmp_path / "strict.txt"
    path.write_text(
        "Be strict.\n=== user ===\nQ: {{prompt}}\n1: {{response_a}}\n2: {{response_b}}\nVerdict:"
    )
    template = load_template(str(path))
    assert template.system == "Be strict."
    assert template.messages("q", "x", "y")[1]["content"] == "Q: q\n1: x\n2: y\nVerdict:"
    assert template.hash != load_template(None).hash
    typed = load_template(None, path.read_text())  # the Judge tab's text, no file written
    assert (typed.system, typed.hash) == (template.system, template.hash)


def test_template_without_placeholders_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("Which is better, {{response_a}} or the other?")
    with pytest.raises(
        ConfigError, match=r"missing placeholder\(s\) \{\{prompt\}\}, \{\{response_b\}\}"
    ):
        load_template(str(path))
    with pytest.raises(ConfigError, match="no such file"):
        load_template(str(tmp_path / "missing.txt"))


def test_repair_keeps_the_conversation_and_asks_again() -> None:
    messages = load_template(None).messages("q", "x", "y")
    repaired = repair_messages(messages, "hmm")
    assert repaired[:2] == messages and repaired[2] == {"role": "assistant", "content": "hmm"}
    assert "A or B" in repaired[3]["content"]
