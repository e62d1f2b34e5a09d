"""The reader of raw config values, and the one error that names every bad key.

A :class:`Reader` never raises: each value it cannot take becomes a problem
(key, reason) and the key's default stands in, so that every section is read
and every problem found before :class:`ConfigError` stops the run.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Optional

import pulumi

from components.config.keys import DEFAULTS
from components.config.rules import canonical_quantity, storage_size_problem
from components.label_schema import load_json

_INTEGER_RE = re.compile(r"-?[0-9]{1,18}")


class ConfigError(pulumi.RunError):
    """Bad stack configuration: one message listing every problem, by key."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  - {key}: {reason}" for key, reason in problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"Invalid stack configuration ({count}); nothing was changed.\n" + "\n".join(lines)
        )


class Reader:
    """Reads raw config values and collects problems instead of raising."""

    def __init__(self, config: pulumi.Config):
        self.config = config
        self.problems: list[tuple[str, str]] = []

    def problem(self, key: str, reason: str) -> None:
        """Records why `key` is refused."""
        self.problems.append((key, reason))

    def has_problem(self, key: str) -> bool:
        """Whether a problem was recorded for `key`."""
        return any(problem_key == key for problem_key, _ in self.problems)

    def check(self, key: str, value: str, rule: Callable[[str], Optional[str]]) -> None:
        """Records the problem `rule` finds with `value`, if any."""
        reason = rule(value)
        if reason:
            self.problem(key, reason)

    def is_set(self, key: str) -> bool:
        """Whether the stack sets `key` at all (Pulumi.yaml declares some keys without a default)."""
        return self.config.get(key) is not None

    def raw(self, key: str) -> Optional[str]:
        """The value as the stack holds it (JSON text for lists and objects), or None."""
        return self.config.get(key)

    def require(self, keys: Iterable[str]) -> None:
        """Records a problem for each of `keys` that is unset or empty."""
        for key in keys:
            if not self.string(key):
                self.problem(key, f"is required: pulumi config set {key} <value>")

    def string(self, key: str) -> str:
        """A string without surrounding whitespace; the default when unset."""
        value = self.config.get(key)
        if value is None:
            return DEFAULTS.get(key, "")
        return value.strip()

    def boolean(self, key: str) -> bool:
        """true or false (any case); the default when unset or not a boolean."""
        value = self.config.get(key)
        if value is None:
            return DEFAULTS[key]
        text = value.strip().lower()
        if text not in ("true", "false"):
            self.problem(key, f"{value!r} is not a boolean (true or false)")
            return DEFAULTS[key]
        return text == "true"

    def integer(self, key: str, minimum: int, maximum: Optional[int] = None) -> int:
        """A whole number within bounds (ASCII digits only); the default when unset or not a number."""
        value = self.config.get(key)
        if value is None:
            return DEFAULTS[key]
        if not _INTEGER_RE.fullmatch(value.strip()):
            self.problem(key, f"{value!r} is not a whole number")
            return DEFAULTS[key]
        number = int(value.strip())
        if number < minimum:
            self.problem(key, f"must be at least {minimum}, got {number}")
        elif maximum is not None and number > maximum:
            self.problem(key, f"must be at most {maximum}, got {number}")
        return number

    def string_list(self, key: str) -> list[str]:
        """A list of strings, each without surrounding whitespace; the default when unset."""
        value = self.config.get(key)
        if value is None:
            return list(DEFAULTS[key])
        items, reason = load_json(value)
        if reason:
            self.problem(key, f"{reason}: give a list of strings (pulumi config set --path '{key}[0]' VALUE)")
            return []
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            self.problem(key, f"must be a list of strings (pulumi config set --path '{key}[0]' VALUE)")
            return []
        return [item.strip() for item in items]

    def secret(self, key: str) -> Optional[pulumi.Output[str]]:
        """A secret value as a secret Output, or None when unset or empty."""
        plain = self.config.get(key)
        if plain is None or plain == "":
            return None
        if not pulumi.runtime.is_config_secret(self.config.full_key(key)):
            self.problem(key, f"must be stored encrypted: pulumi config set --secret {key} <value>")
        if "\x00" in plain:
            # No environment variable, command line or C string carries it: the Jobs would fail.
            self.problem(key, "contains a NUL character, which no environment variable can hold")
        return pulumi.Output.secret(plain)

    def plain(self, key: str) -> str:
        """A secret's plain text, as set ("" when unset), for the checks the program makes itself."""
        return self.config.get(key) or ""

    def size(self, key: str, minimum_gib: float) -> str:
        """A storage size in the canonical form the API server stores (so no diff at every up)."""
        value = self.string(key)
        reason = storage_size_problem(value, minimum_gib)
        if reason:
            self.problem(key, reason)
            return value
        canonical = canonical_quantity(value)
        if canonical is None:
            self.problem(key, f"{value!r} is not a whole number of bytes (e.g. 10Gi, 1536Mi)")
            return value
        return canonical
