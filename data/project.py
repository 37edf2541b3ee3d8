"""Project settings: what an annotation lead sets up once, kept in the store's `meta` table.

One frozen dataclass, read and written here only, so the CLI (`prefloop guidelines`,
`prefloop project`, `prefloop route`, `prefloop serve`) and the app's Project tab agree:

* `guidelines`: Markdown shown to annotators (None: `DEFAULT_GUIDELINES`);
* `overlap`: human labels wanted per routed pair (`prefloop route` without `--overlap`);
* `lease_seconds`: how long a pair stays with one annotator (`prefloop serve` without
  `--lease-seconds`);
* `strength`: annotators also say how much better (A much better ... B much better).

Strength of preference is stored as the label's `confidence`: the probability that the
chosen response is the better one. `STRENGTH_CONFIDENCE` fixes the two levels; a tie or
"both bad" has none. `data.export` turns it into TRL's reward-margin column.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from data.errors import ConfigError
from data.store import PreferenceStore

DEFAULT_GUIDELINES = """\
**Which response is better for the user?** Judge helpfulness first, then honesty and harmlessness.

- **A better / B better** (keys **1** / **2**): one response is clearly more useful, correct or safe.
- **Tie** (**3**): both are about equally good.
- **Both bad** (**4**): neither is acceptable (wrong, harmful, off-topic, empty).
- **Skip** (**s**): you cannot judge this one; it goes back to the queue for someone else.
- **Undo** (**u**): take back your last label and see that pair again.

Ignore length and style unless they change how useful the answer is. Code: would it run and do
what was asked? You never see other people's labels or the model's scores: judge on your own.
"""

STRENGTH_GUIDELINES = """
**How much better** (this project asks): **A much better** / **B much better** (**Shift+1** /
**Shift+2**) when one response is clearly and substantially better; **A better** / **B better**
(**1** / **2**) when it is only slightly better.
"""

# Stored confidence per strength: P(the chosen response is better) as the annotator means it.
STRENGTH_CONFIDENCE: dict[str, float] = {"much": 0.9, "slightly": 0.7}
MAX_GUIDELINES_CHARS = 100_000
MAX_OVERLAP = 20
MIN_LEASE_SECONDS = 10.0
MAX_LEASE_SECONDS = 7 * 24 * 3600.0


def _setting(default: Any, key: str, help: str) -> Any:
    """A field with its `meta` key and help text (the CLI and the Project tab show it)."""
    return field(default=default, metadata={"key": key, "help": help})


@dataclass(frozen=True)
class ProjectSettings:
    """How this store's annotation project runs."""

    guidelines: str | None = _setting(
        None, "guidelines", "Markdown guidelines shown to annotators (unset: the default)."
    )
    overlap: int = _setting(
        1, "project.overlap", "Human labels wanted per pair that `route` sends to humans."
    )
    lease_seconds: float = _setting(
        600.0,
        "project.lease_seconds",
        "How long a pair stays with one annotator before it returns to the queue.",
    )
    strength: bool = _setting(
        False,
        "project.strength",
        "Annotators also say how much better: A much better ... B much better.",
    )

    def check(self) -> ProjectSettings:
        """Self, or a ConfigError that names the setting and what it accepts."""
        if self.guidelines is not None:
            check_guidelines(self.guidelines)
        check_overlap(self.overlap)
        check_lease_seconds(self.lease_seconds)
        if not isinstance(self.strength, bool):
            raise ConfigError(f"strength {self.strength!r} must be true or false")
        return self

    @property
    def shown_guidelines(self) -> str:
        """The guidelines annotators see: the project's own, or the default ones."""
        if self.guidelines is not None:
            return self.guidelines
        return DEFAULT_GUIDELINES + (STRENGTH_GUIDELINES if self.strength else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "guidelines": self.shown_guidelines,
            "default_guidelines": self.guidelines is None,
            "overlap": self.overlap,
            "lease_seconds": self.lease_seconds,
            "strength": self.strength,
        }


def check_guidelines(text: str) -> str:
    if not text.strip():
        raise ConfigError(
            "the guidelines are empty; write some Markdown, or reset to the default ones"
        )
    if len(text) > MAX_GUIDELINES_CHARS:
        raise ConfigError(
            f"the guidelines are {len(text):,} characters; keep them under "
            f"{MAX_GUIDELINES_CHARS:,} (link to a longer document instead)"
        )
    return text


def custom_guidelines(text: str) -> str | None:
    """What to store for guidelines edited from the shown ones: None for the default text."""
    defaults = {DEFAULT_GUIDELINES.strip(), (DEFAULT_GUIDELINES + STRENGTH_GUIDELINES).strip()}
    return None if text.strip() in defaults else text


def check_overlap(overlap: int, name: str = "overlap") -> int:
    if isinstance(overlap, bool) or not isinstance(overlap, int):
        raise ConfigError(f"{name} {overlap!r} must be a whole number of annotators")
    if not 1 <= overlap <= MAX_OVERLAP:
        raise ConfigError(
            f"{name} {overlap} must be between 1 and {MAX_OVERLAP} (human labels per pair)"
        )
    return overlap


def check_lease_seconds(seconds: float, name: str = "lease seconds") -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigError(f"{name} {seconds!r} must be a number of seconds")
    if not MIN_LEASE_SECONDS <= seconds <= MAX_LEASE_SECONDS:
        raise ConfigError(
            f"{name} {seconds:g} must be between {MIN_LEASE_SECONDS:g} and "
            f"{MAX_LEASE_SECONDS:g} (a week)"
        )
    return float(seconds)


def strength_confidence(strength: str | None) -> float | None:
    """The confidence stored for a strength ("much" or "slightly"); None for no strength."""
    if strength is None:
        return None
    if strength not in STRENGTH_CONFIDENCE:
        raise ConfigError(
            f"strength {strength!r} is not one of {', '.join(STRENGTH_CONFIDENCE)} (or none)"
        )
    return STRENGTH_CONFIDENCE[strength]


def help_of(name: str) -> str:
    """The help text of one setting (CLI flags and Project tab fields use it)."""
    return next(f.metadata["help"] for f in fields(ProjectSettings) if f.name == name)


# -- meta ---------------------------------------------------------------------------

_DECODE = {
    "guidelines": str,
    "overlap": int,
    "lease_seconds": float,
    "strength": lambda value: value == "true",
}


def read_project(store: PreferenceStore) -> ProjectSettings:
    """The store's settings; unset ones have their defaults. A bad stored value is an error."""
    values: dict[str, Any] = {}
    for f in fields(ProjectSettings):
        raw = store.get_meta(f.metadata["key"])
        if raw is None:
            continue
        try:
            values[f.name] = _DECODE[f.name](raw)
        except ValueError:
            raise ConfigError(
                f"{store.path}: project setting {f.name} is {raw!r} in the meta table; "
                f"set it again with `prefloop project set`"
            ) from None
    return ProjectSettings(**values).check()


def write_project(store: PreferenceStore, settings: ProjectSettings) -> ProjectSettings:
    """Check and store every setting in one transaction; returns what was stored."""
    settings.check()
    if store.read_only:
        raise ConfigError(f"{store.path} is open read-only; project settings cannot change")
    with store.transaction() as cur:
        for f in fields(ProjectSettings):
            value = getattr(settings, f.name)
            key = f.metadata["key"]
            if value is None:
                cur.execute("DELETE FROM meta WHERE key = ?", [key]).fetchall()
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, text]).fetchall()
    return settings


def update_project(store: PreferenceStore, **changes: Any) -> ProjectSettings:
    """Change some settings, keep the others; `guidelines=None` resets to the default."""
    unknown = set(changes) - {f.name for f in fields(ProjectSettings)}
    if unknown:
        raise ConfigError(
            f"unknown project setting(s) {sorted(unknown)}; known: "
            f"{', '.join(f.name for f in fields(ProjectSettings))}"
        )
    return write_project(store, replace(read_project(store), **changes))
