"""Batched products that sum many terms per output number, written so that inductor unrolls their
sums (part of the runtime: re-exported by :mod:`fusionlang.runtime`, and inlined with it into
standalone modules).

Inductor (PyTorch 2.13, ``_inductor/kernel/bmm.py``) lowers a CPU ``bmm`` with one row or one
column to a multiply and a sum. A sum of fewer than 8 terms it unrolls (its
``unroll_reductions_threshold``); a longer one becomes a loop nest whose innermost output axis is
vectorised. When that axis holds fewer numbers than one vector (2 to 7 float32 on AVX2), inductor
counts the outer loops' steps as zero and opens its parallel region around the short sum instead:
one OpenMP region per output vector. With two threads the MACE product basis's per-species weighting
(``[65 536, 1, 12] @ [65 536, 12, 3]``) took 81–93 ms so, against 2.5–3.7 ms eagerly; cut into two
sums of 6 terms it took 1.5 ms (one thread: 2.5 against 2.7 ms, and with gradients 9.1 against 9.7).
"""

from __future__ import annotations

import math

import torch

SHORT_SUM = 7
"""The longest sum that inductor unrolls (its ``unroll_reductions_threshold`` is 8: fewer than 8)."""


def einsum_short_sums(equation: str, operands: list[torch.Tensor]) -> torch.Tensor:
    """``torch.einsum(equation, operands)`` for two operands; while ``torch.compile`` or
    ``torch.export`` traces it for the CPU, the same numbers with the summed index cut into pieces
    that each sum at most :data:`SHORT_SUM` terms, added up (:func:`_in_short_sums`).

    The planner writes it for the batched products that ``torch.einsum`` runs as a ``bmm`` with one
    row or one column and that sum 8 terms or more (:func:`fusionlang.plan.networks.contract`).
    Eagerly one ``bmm`` is faster: the cut form costs 1.3–1.6x there.

    >>> a, b = torch.randn(4, 5, 12), torch.randn(4, 12, 5, 3)
    >>> torch.equal(einsum_short_sums("nup,npuk->nuk", [a, b]), torch.einsum("nup,npuk->nuk", [a, b]))
    True
    """
    if not torch.jit.is_scripting():  # noqa: SIM102 (TorchScript skips only a block of its own)
        if torch.compiler.is_compiling() and operands[0].is_cpu:
            return _in_short_sums(equation, operands[0], operands[1])
    return torch.einsum(equation, operands)


def _in_short_sums(equation: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.einsum(equation, [a, b])`` as a sum of einsums over slices of the largest summed
    index, each summing at most :data:`SHORT_SUM` terms, the slices as even as their count allows.
    When the other summed indices alone sum more than that, the einsum stays whole.

    >>> a, b = torch.randn(3, 4, 5, 12, dtype=torch.float64), torch.randn(3, 4, 12, 2, dtype=torch.float64)
    >>> bool(torch.allclose(_in_short_sums("nuij,nujk->nuik", a, b), torch.einsum("nuij,nujk->nuik", a, b)))
    True
    """
    inputs, result = equation.split("->")
    left, right = inputs.split(",")
    sizes = {index: a.shape[axis] for axis, index in enumerate(left)}
    summed = [index for index in left if index in right and index not in result]
    terms = math.prod([sizes[index] for index in summed])  # a list: dynamo cannot trace prod of a generator
    if terms <= SHORT_SUM:
        return torch.einsum(equation, [a, b])
    cut = summed[0]
    for index in summed:  # the largest (dynamo traces `max` with a key only by falling back)
        if sizes[index] > sizes[cut]:
            cut = index
    rest = terms // sizes[cut]
    if rest > SHORT_SUM:
        return torch.einsum(equation, [a, b])
    size, axis_a, axis_b = sizes[cut], left.index(cut), right.index(cut)
    pieces = -(-size // (SHORT_SUM // rest))  # the fewest slices of at most SHORT_SUM terms
    width = -(-size // pieces)  # as even as that count allows
    parts = [torch.einsum(equation, [a.narrow(axis_a, start, min(width, size - start)),
                                     b.narrow(axis_b, start, min(width, size - start))])
             for start in range(0, size, width)]
    total = parts[0]
    for part in parts[1:]:  # added in order, as the graph measured in the module docstring did
        total = total + part
    return total
