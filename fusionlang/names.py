"""Identifiers: what a generated name may be, which names are reserved, unique names.

Every name the code generator writes (classes, attributes, variables of ``forward``) comes from
here, so that the planner, the graph orchestrator and the code generator agree on the rules.

>>> taken = {"x"}
>>> unique_name(identifier("x"), taken), unique_name(identifier("class"), taken)
('x_1', 'class_')
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable

__all__ = ["RESERVED", "Names", "class_name", "identifier", "unique_name"]

RESERVED = frozenset({"self", "torch", "runtime", "batch", "cdtype", "Tensor", "chunks", "parts", "part"})
"""Names the generated ``forward`` uses itself: a variable never takes one of them."""


class Names(set[str]):
    """A set of taken names that remembers, per base, the first suffix that may still be free:
    :func:`unique_name` stays linear over thousands of names of one base (``w_1`` ... ``w_5000``)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__(names)
        self.next_suffix: dict[str, int] = {}

    def copy(self) -> Names:
        copied = Names(self)
        copied.next_suffix = dict(self.next_suffix)
        return copied


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first not in ``taken``, which it joins.

    >>> unique_name("w", {"w"})
    'w_1'
    """
    if base not in taken:
        taken.add(base)
        return base
    # Names are never removed, so every suffix below the remembered one is taken already.
    suffixes = taken.next_suffix if isinstance(taken, Names) else {}
    k = suffixes.get(base, 1)
    while f"{base}_{k}" in taken:
        k += 1
    suffixes[base] = k + 1
    taken.add(f"{base}_{k}")
    return f"{base}_{k}"


def identifier(hint: str) -> str:
    """A variable name for ``hint``: other characters become ``_``, keywords and reserved names
    get a trailing ``_``.

    >>> identifier("x[1o]"), identifier("self"), identifier("2x")
    ('x_1o_', 'self_', '_2x')
    """
    text = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in hint) or "t"
    if text[0].isdigit():
        text = "_" + text
    return text + "_" if keyword.iskeyword(text) or text in RESERVED else text


def class_name(diagram: str) -> str:
    """The class of a diagram: its name, made a valid identifier deterministically.

    >>> class_name("fc_tp"), class_name("2body-x"), class_name("class")
    ('fc_tp', '_2body_x', 'class_')
    """
    text = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in diagram) or "_"
    if not text.isidentifier():
        text = "_" + text
    if keyword.iskeyword(text) or text in ("torch", "runtime"):
        text += "_"
    return text
