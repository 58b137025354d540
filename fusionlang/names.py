"""Identifiers: what a generated name may be, which names are reserved, unique names.

Every name the code generator writes (classes, attributes, variables of ``forward``) comes from
here, so that the planner, the graph orchestrator and the code generator agree on the rules.

>>> taken = {"x"}
>>> unique_name(identifier("x"), taken), unique_name(identifier("class"), taken)
('x_1', 'class_')
"""

from __future__ import annotations

import keyword

__all__ = ["RESERVED", "class_name", "identifier", "unique_name"]

RESERVED = frozenset({"self", "torch", "runtime", "batch", "cdtype", "Tensor", "chunks", "parts", "part"})
"""Names the generated ``forward`` uses itself: a variable never takes one of them."""


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first not in ``taken``, which it joins.

    >>> unique_name("w", {"w"})
    'w_1'
    """
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


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
