"""Verdict parsing and logprob confidence: the forms judges write, and what must not parse."""

from __future__ import annotations

import math

import pytest

from judges.parsing import Verdict, p_a_from_logprobs, parse_verdict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A", "a"),
        ("B", "b"),
        ("tie", "tie"),
        (" b\n", "b"),
        ("**A**", "a"),
        ("A.", "a"),
        ("[[A]]", "a"),
        ("After weighing both... [[B]]", "b"),
        ("[[C]]", "tie"),
        ('{"winner": "A"}', "a"),
        ('```json\n{"winner": "Response B", "why": "x"}\n```', "b"),
        ('{"verdict": "tie"}', "tie"),
        ("Output (a)", "a"),
        ("Output (b) is better.", "b"),
        ("Verdict: A", "a"),
        ("Final verdict: tie", "tie"),
        ("verdict: b", "b"),
        ("The verdict is B", "b"),
        ("Final Verdict: **B**", "b"),
        ("Winner: Response A", "a"),
        ("Response A is better", "a"),
        ("Assistant B is clearly better than A.", "b"),
    ],
)
def test_accepted_forms(text: str, expected: str) -> None:
    verdict = parse_verdict(text)
    assert verdict is not None and verdict.shown == expected
    # the decisive character is where the parser says it is (logprobs are read there)
    assert text[verdict.start].lower() in ("a", "b", "c", "t")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        "I cannot decide.",
        "Both responses are fine",
        "[[A]] or maybe [[B]]",
        "The answer is a matter of taste",
        "Absolutely",
        "Best",
        "A and B are both good",
        '{"winner": "unclear"}',
        '{"winner": "A"',
    ],
)
def test_no_verdict(text: str | None) -> None:
    assert parse_verdict(text) is None


def _token(token: str, alternatives: dict[str, float]) -> dict:
    return {
        "token": token,
        "logprob": math.log(alternatives.get(token.strip(), 0.5)),
        "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alternatives.items()],
    }


def test_p_a_reads_the_verdict_token_not_the_first_letter() -> None:
    # "Response B is weak. [[A]]": the first A/B token is B, the verdict token is A
    text = "Response B is weak. [[A]]"
    content = [
        {"token": t, "logprob": -0.1, "top_logprobs": []}
        for t in ["Response", " B", " is", " weak", ".", " [["]
    ]
    content.append(_token("A", {"A": 0.6, "B": 0.3, "C": 0.1}))
    content.append({"token": "]]", "logprob": 0.0, "top_logprobs": []})
    assert "".join(c["token"] for c in content) == text
    verdict = parse_verdict(text)
    assert verdict == Verdict("a", text.index("[[A") + 2, "mtbench")
    assert p_a_from_logprobs(content, verdict) == pytest.approx(0.6 / 0.9)


def test_p_a_pools_spellings_and_bounds_a_missing_letter() -> None:
    verdict = parse_verdict("B")
    pooled = [_token("B", {"B": 0.5, " B": 0.2, "A": 0.1, " a": 0.1})]
    assert p_a_from_logprobs(pooled, verdict) == pytest.approx(0.2 / 0.9)
    only_b = [_token("B", {"B": 0.9, "Sure": 0.05})]
    p_a = p_a_from_logprobs(only_b, verdict)
    assert 0 < p_a < 0.1  # bounded by the smallest listed probability, not zero


def test_p_a_absent_without_logprobs_or_for_ties() -> None:
    assert p_a_from_logprobs(None, parse_verdict("A")) is None
    assert p_a_from_logprobs([], parse_verdict("A")) is None
    assert p_a_from_logprobs([_token("tie", {"tie": 0.9})], parse_verdict("tie")) is None
