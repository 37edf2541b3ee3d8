"""Keeping the judge's API key out of what prefloop stores, shows and logs.

An endpoint may echo what it was sent: its reply, an error body or a 401 message can hold
the bearer token. `scrub` removes a key, and the obvious ways of writing it, from a text;
`judges.client.scrub_completion` and `scrub_exception` apply it to what comes back from a client, so
`judgements.raw_text`, `judgements.error`, `judge_calls.response_text`, the CLI's error
line and the Judge tab all see the text without it.

    secrets = secret_forms(api_key)
    text = scrub(text, secrets)

A key shorter than `MIN_SECRET_LENGTH` characters (such as vLLM's "EMPTY") is not scrubbed:
it would match ordinary words of the reply, and a key that short protects nothing.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

MIN_SECRET_LENGTH = 8
REDACTED = "[redacted API key]"


def secret_forms(*keys: str | None) -> tuple[str, ...]:
    """Every form of `keys` that `scrub` removes: as is, URL-quoted, JSON-escaped, hex, and
    base64 at each of the three byte alignments (so `Bearer KEY` or `user:KEY` encoded whole,
    as in Basic auth, is caught too); longest first."""
    forms: set[str] = set()
    for key in keys:
        if not key or len(key) < MIN_SECRET_LENGTH:
            continue
        forms |= {key, quote(key, safe=""), json.dumps(key)[1:-1], key.encode().hex()}
        forms |= {form for shift in range(3) for form in _base64_cores(key.encode(), shift)}
    return tuple(sorted(forms, key=len, reverse=True))


def _base64_cores(raw: bytes, shift: int) -> tuple[str, str]:
    """The base64 characters (standard and URL-safe) that encode only bytes of `raw` when
    `raw` starts `shift` bytes into a 3-byte group: what any text containing it shows."""
    padded = b"\0" * shift + raw
    start = 4 if shift else 0  # the group holding the stand-in bytes
    whole = len(padded) - len(padded) % 3  # a last partial group depends on what follows
    cores = []
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        cores.append(encode(padded[:whole]).decode()[start:])
    return cores[0], cores[1]


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every form in `secrets` replaced by `REDACTED`."""
    for form in secrets:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def scrub_optional(text: str | None, secrets: tuple[str, ...]) -> str | None:
    return None if text is None else scrub(text, secrets)


def scrub_exception(exc: BaseException, secrets: tuple[str, ...]) -> BaseException:
    """`exc` with the key removed from its text arguments (in place, so it can be re-raised)."""
    if secrets and exc.args:
        exc.args = tuple(scrub(arg, secrets) if isinstance(arg, str) else arg for arg in exc.args)
    return exc
