"""Resource limits: every size a diagram may reach, checked before anything is allocated.

A diagram beyond a limit gets a diagnostic (E501) at the span that makes it too large, never an
out-of-memory error or a hang. The defaults bound compile time to seconds and a built module's
buffers to about a gigabyte; a user who needs more raises them explicitly
(``fusionlang.compile(text, limits=Limits(max_l=40))``, ``fusionc compile --limit max_l=40``).

>>> Limits().max_leaves
9
>>> Limits.parse_overrides(["max_l=40"]).max_l
40
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

__all__ = ["CEILINGS", "DEFAULT", "Limits"]

# Limits that cannot be raised: the planner names the channel axes of a fusion's leaves with
# nine letters of its einsum alphabet.
CEILINGS = {"max_leaves": 9}


@dataclass(frozen=True)
class Limits:
    """The limits of one compilation; each field is documented in docs/language.md (Limits)."""

    max_statements: int = 10_000        # statements in one diagram
    max_legs: int = 10_000              # declared legs in one diagram
    max_leaves: int = 9                 # leaves of one fusion (the planner's index alphabet)
    max_multiplicity: int = 1_000_000   # one entry's multiplicity, nested factors multiplied out
    max_l: int = 64                     # the largest spin (l, or j for SU(2)) on any edge
    max_entries: int = 4_096            # entries (mul x irrep terms) of one edge
    max_dim: int = 10_000_000           # the total dimension of one edge
    max_paths: int = 100_000            # coupling paths of one statement
    max_table_numbers: int = 50_000_000  # numbers in the coupling tables of one statement
    max_weights: int = 100_000_000      # weights of one statement
    max_classes: int = 100_000          # classes of an `index` leg

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def with_overrides(self, overrides: dict[str, int]) -> Limits:
        unknown = sorted(set(overrides) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown limit {', '.join(unknown)}; the limits are {', '.join(self.names())}")
        bad = sorted(name for name, value in overrides.items() if not isinstance(value, int) or value < 1)
        if bad:
            raise ValueError(f"limits must be positive integers: {', '.join(bad)}")
        over = sorted(name for name, value in overrides.items() if value > CEILINGS.get(name, value))
        if over:
            raise ValueError(", ".join(f"{name} is at most {CEILINGS[name]}" for name in over))
        return replace(self, **overrides)

    @classmethod
    def parse_overrides(cls, items: Iterable[str], base: Limits | None = None) -> Limits:
        """Limits from ``NAME=VALUE`` strings (the CLI's ``--limit``)."""
        overrides = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or not value.strip().isdigit():
                raise ValueError(f"`{item}`: write a limit as NAME=INTEGER, e.g. max_l=40")
            overrides[name.strip()] = int(value)
        return (base or DEFAULT).with_overrides(overrides)


DEFAULT = Limits()
