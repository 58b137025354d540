"""Tests for fusionlang.testing: group representations, the equivariance assertion, the naive
reference contraction (against e3nn and sympy) and the random diagram generator; and for
fusionlang.importers against e3nn through the reference contraction (no compiler involved)."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import pytest
import sympy
import torch
from sympy.physics.wigner import clebsch_gordan

from fusionlang import testing
from fusionlang.frontend import check_source
from fusionlang.groups import O3, SO3, SU2, Irrep, Irreps, MulIrrep, coupling
from fusionlang.testing import GroupElement, random_rotation, reference_forward, representation

GROUP_IRREPS = {"SU2": "0 + 2x1/2 + 1 + 3/2 + 2", "SO3": "0 + 2x1 + 2 + 3", "O3": "0e + 2x1o + 1e + 2e + 3o"}


def _close(actual: object, expected: torch.Tensor, tol: float) -> bool:
    """Largest difference, relative to max(1, largest expected value), at most ``tol``."""
    assert isinstance(actual, torch.Tensor), type(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    actual, expected = actual.detach(), expected.detach()
    error = float((actual - expected).abs().max()) / max(1.0, float(expected.abs().max()))
    assert error <= tol, f"error {error:.3g} > {tol:.3g}"
    return True





_RANDOM = torch.Generator().manual_seed(1234)


def _randn(*shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Seeded float64 noise (from a module-wide generator unless one is given)."""
    return torch.randn(*shape, generator=generator or _RANDOM, dtype=torch.float64)


def _one(output: object) -> torch.Tensor:
    assert isinstance(output, torch.Tensor), type(output)
    return output


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _diagram(text: str):
    result = check_source(text)
    assert result.ok, result.render()
    return result.diagram()


# -- representations ------------------------------------------------------------------------------

@pytest.mark.parametrize("group", sorted(GROUP_IRREPS))
def test_representation_is_unitary_and_block_diagonal(group: str) -> None:
    irreps = Irreps(GROUP_IRREPS[group], group)
    D = representation(irreps, random_rotation(group, _generator(1)))
    assert D.shape == (irreps.dim, irreps.dim)
    assert _close(D @ D.conj().T, torch.eye(irreps.dim, dtype=D.dtype), 1e-12)
    assert D.dtype == (torch.complex128 if group == "SU2" else torch.float64)
    slices = irreps.slices()
    # The two copies of the multiplicity-2 entry get the same block, and nothing couples entries.
    one = slices[1].start
    dim = irreps[1].irrep.dim
    assert torch.equal(D[one:one + dim, one:one + dim], D[one + dim:one + 2 * dim, one + dim:one + 2 * dim])
    mask = torch.block_diag(*[torch.ones(e.irrep.dim, e.irrep.dim) for e in irreps for _ in range(e.mul)])
    assert float(D[mask == 0].abs().max()) == 0.0


def _su2_angles(U: torch.Tensor) -> tuple[float, float, float]:
    """Euler angles of a spin-1/2 matrix ``D[m', m] = exp(-i m' a) d[m', m](b) exp(-i m g)``."""
    p, q = float(torch.angle(U[0, 0])), float(torch.angle(-U[1, 0]))  # d[1/2, -1/2] = -sin(b/2)
    beta = 2 * math.atan2(float(U[1, 0].abs()), float(U[0, 0].abs()))
    return p - q, beta, p + q


def test_su2_representation_is_a_homomorphism() -> None:
    g = _generator(2)
    for _ in range(5):
        a, b = random_rotation(SU2, g), random_rotation(SU2, g)
        half = Irreps("1/2", SU2)
        product = GroupElement(SU2, *_su2_angles(representation(half, a) @ representation(half, b)))
        for two_j in range(7):
            irreps = Irreps([MulIrrep(1, Irrep(two_j=two_j, parity=0, group=SU2))], SU2)
            lhs = representation(irreps, a) @ representation(irreps, b)
            assert _close(lhs, representation(irreps, product), 1e-10), two_j


def test_su2_double_cover_sign() -> None:
    """gamma + 2 pi is the other preimage of the same rotation: -1 on half-integer spins only."""
    a = random_rotation(SU2, _generator(3))
    b = GroupElement(SU2, a.alpha, a.beta, a.gamma + 2 * math.pi)
    for text, sign in (("1/2", -1), ("1", 1), ("3/2", -1), ("2", 1)):
        assert _close(representation(text, b), sign * representation(Irreps(text, SU2), a), 1e-12)


def test_random_rotation_covers_both_sheets_and_inversions() -> None:
    g = _generator(4)
    su2 = [random_rotation(SU2, g) for _ in range(40)]
    assert any(e.gamma > 2 * math.pi for e in su2) and any(e.gamma < 2 * math.pi for e in su2)
    o3 = [random_rotation(O3, g) for _ in range(40)]
    assert any(e.inversion for e in o3) and not all(e.inversion for e in o3)
    assert not any(random_rotation(O3, g, parity=False).inversion for _ in range(20))
    assert not any(random_rotation(SO3, g).inversion for _ in range(20))
    with pytest.raises(ValueError):
        GroupElement(SO3, 0.0, 0.0, 0.0, True)


def test_o3_representation_matches_e3nn_and_is_a_homomorphism() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    g = _generator(5)
    text = "0e + 0o + 2x1o + 1e + 2e + 2o + 3o"
    for _ in range(4):
        a, b = random_rotation(O3, g), random_rotation(O3, g)
        ours = representation(text, a)
        theirs = o3.Irreps(text.replace(" ", "")).D_from_angles(
            *(torch.tensor(x, dtype=torch.float64) for x in (a.alpha, a.beta, a.gamma)),
            torch.tensor(float(a.inversion), dtype=torch.float64))
        assert _close(ours, theirs.to(torch.float64), 1e-5)  # e3nn's J matrices are float32
        rotation = o3.angles_to_matrix(*(torch.tensor(x, dtype=torch.float64) for x in (a.alpha, a.beta, a.gamma)))
        sign = -1.0 if a.inversion else 1.0  # 1o is the Cartesian vector (x, y, z) in e3nn >= 0.5
        assert _close(representation("1o", a), sign * rotation, 1e-12)
        rotation = rotation @ o3.angles_to_matrix(*(torch.tensor(x, dtype=torch.float64)
                                                    for x in (b.alpha, b.beta, b.gamma)))
        angles = [float(x) for x in o3.matrix_to_angles(rotation)]
        product = GroupElement(O3, angles[0], angles[1], angles[2], a.inversion != b.inversion)
        assert _close(representation(text, a) @ representation(text, b), representation(text, product), 1e-10)


@pytest.mark.parametrize("group,a,b,c", [("SU2", "1/2", "1", "3/2"), ("SU2", "3/2", "3/2", "1"),
                                          ("SO3", "1", "2", "2"), ("O3", "1o", "2e", "3o"),
                                          ("O3", "2o", "1o", "2e")])
def test_couplings_are_equivariant_under_the_representation(group: str, a: str, b: str, c: str) -> None:
    """The representation follows the same conventions as fusionlang.coupling."""
    C = coupling(group, a, b, c)

    def couple(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...i,...j,ijk->...k", x, y, C.to(x.dtype))

    assert testing.assert_equivariant(couple, [a, b], c, group=group) < 1e-12


# -- the equivariance assertion -------------------------------------------------------------------

def test_assert_equivariant_catches_anisotropic_scaling() -> None:
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant under O3: relative error"):
        testing.assert_equivariant(lambda x: x * scale, ["1o"], "1o", group="O3")


def test_assert_equivariant_catches_wrong_parity_only_in_o3() -> None:
    with pytest.raises(AssertionError, match="not equivariant"):
        testing.assert_equivariant(lambda x: x, ["1o"], "1e", group="O3")
    assert testing.assert_equivariant(lambda x: x, ["1o"], "1o", group="O3") < 1e-12
    assert testing.assert_equivariant(lambda x: x, ["1"], "1", group="SO3") < 1e-12


def test_assert_equivariant_catches_complex_conjugation_in_su2() -> None:
    with pytest.raises(AssertionError):
        testing.assert_equivariant(lambda x: x.conj(), ["1/2"], "1/2", group="SU2")
    assert testing.assert_equivariant(lambda x: 2 * x, "1/2", "1/2", group="SU2") < 1e-12


def test_assert_equivariant_reports_size_and_respects_atol() -> None:
    def nearly(x: torch.Tensor) -> torch.Tensor:
        return x + 1e-7 * x[..., :1]  # a tiny leak from one component into all

    error = testing.assert_equivariant(nearly, ["1o"], "1o", group="O3", atol=1e-5)
    assert 1e-9 < error < 1e-5
    with pytest.raises(AssertionError, match=r"relative error \d"):
        testing.assert_equivariant(nearly, ["1o"], "1o", group="O3")


def test_assert_equivariant_several_outputs_and_extra_args() -> None:
    def split(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return w * x[..., :1], x[..., 1:]

    w = _randn(4, 1)
    assert testing.assert_equivariant(split, ["0e + 1o"], ["0e", "1o"], group="O3", extra_args=(w,)) < 1e-12
    with pytest.raises(AssertionError, match="expected 1 outputs, got 2"):
        testing.assert_equivariant(split, ["0e + 1o"], ["0e"], group="O3", extra_args=(w,))


def test_float32_tolerance() -> None:
    C = coupling("O3", "2e", "2e", "2e").to(torch.float32)

    def couple(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...i,...j,ijk->...k", x, y, C)

    error = testing.assert_equivariant(couple, ["2e", "2e"], "2e", group="O3", dtype=torch.float32)
    assert 0 < error <= 1e-5
    assert testing.default_tolerance(torch.float64) == 1e-10


# -- the reference contraction ----------------------------------------------------------------------

FULL_TP = """
diagram full {
    group O3
    input x : 2x0e + 2x1o
    input y : 3x1o
    output z : 6x0e + 6x1o + 6x1e + 6x2e
    x, y -> z
}
"""


def _wigner_3j_full_tp(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """e3nn's FullTensorProduct written out with e3nn.o3.wigner_3j (component normalisation)."""
    o3 = pytest.importorskip("e3nn.o3")
    xs = {0: x[:, :2].reshape(-1, 2, 1), 1: x[:, 2:].reshape(-1, 2, 3)}
    yv = y.reshape(-1, 3, 3)

    def path(l1: int, l3: int) -> torch.Tensor:
        w3j = o3.wigner_3j(l1, 1, l3, dtype=torch.float64) * math.sqrt(2 * l3 + 1)
        return torch.einsum("zui,zvj,ijk->zuvk", xs[l1], yv, w3j).reshape(x.shape[0], 6, 2 * l3 + 1)

    pieces = [path(1, 0), path(0, 1), path(1, 1), path(1, 2)]  # 1o1o -> 0e, 0e1o -> 1o, 1o1o -> 1e, 2e
    return torch.cat([p.reshape(x.shape[0], -1) for p in pieces], dim=-1)


def test_reference_single_o3_coupling_equals_wigner_3j_and_e3nn() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    diagram = _diagram(FULL_TP)
    g = _generator(6)
    x, y = _randn(5, 8, generator=g), _randn(5, 9, generator=g)
    ours = reference_forward(diagram, [x, y], {})
    assert _close(ours, _wigner_3j_full_tp(x, y), 1e-12)
    with testing.default_dtype(torch.float64):
        e3nn_tp = o3.FullTensorProduct("2x0e + 2x1o", "3x1o")
    assert str(e3nn_tp.irreps_out) == "6x0e+6x1o+6x1e+6x2e"
    assert _close(ours, e3nn_tp(x, y), 1e-10)


SPINS = """
diagram spins {
    group SU2
    input  s1, s2, s3 : 1/2
    output total : 1/2 + 3/2
    s1, s2 -> s12
    s12, s3 -> total
}
"""


def _spin_states(j: sympy.Rational) -> list[sympy.Rational]:
    return [-j + k for k in range(int(2 * j) + 1)]


def _sympy_spins(x1: list[complex], x2: list[complex], x3: list[complex]) -> list[complex]:
    """total[J, M] with exact Clebsch–Gordan coefficients, normalised by the fan-in of each J."""
    half = sympy.Rational(1, 2)
    out: list[complex] = []
    for J, fan_in in ((half, 2), (3 * half, 1)):
        for M in _spin_states(J):
            total = 0j
            for j12 in (0, 1):
                for (a, m1), (b, m2), (c, m3) in itertools.product(list(enumerate((-half, half))), repeat=3):
                    m12 = m1 + m2
                    if abs(m12) > j12 or m12 + m3 != M:
                        continue
                    cg = clebsch_gordan(half, half, j12, m1, m2, m12) * clebsch_gordan(j12, half, J, m12, m3, M)
                    total += complex(sympy.N(cg, 30)) * x1[a] * x2[b] * x3[c]
            out.append(total / math.sqrt(fan_in))
    return out


def test_reference_su2_spins_equals_sympy_clebsch_gordan_sums() -> None:
    diagram = _diagram(SPINS)
    g = _generator(7)
    xs = [torch.randn(2, generator=g, dtype=torch.complex128) for _ in range(3)]
    ours = reference_forward(diagram, xs, {})
    expected = _sympy_spins(*([complex(v) for v in x] for x in xs))
    assert _close(ours, torch.tensor(expected, dtype=torch.complex128), 1e-12)


LINEAR = """
diagram lin {
    group O3
    input x : 2x0e + 3x1o
    output y : 4x0e + 3x1o
    output u : 2x0e + 3x1o
    x -> y  [channels = uvw, weights = path]
    x -> u  [channels = uuu, weights = channel]
}
"""


def test_reference_linear_maps_by_hand() -> None:
    diagram = _diagram(LINEAR)
    g = _generator(8)
    x = _randn(3, 11, generator=g)
    w = testing.random_weights(diagram, generator=g)
    y, u = reference_forward(diagram, [x], w)
    scalars, vectors = x[:, :2], x[:, 2:].reshape(3, 3, 3)
    w_s, w_v = w[0][:8].reshape(2, 4), w[0][8:].reshape(3, 3)
    expected_y = torch.cat([scalars @ w_s / math.sqrt(2),
                            torch.einsum("zui,uw->zwi", vectors, w_v).reshape(3, 9) / math.sqrt(3)], dim=-1)
    assert _close(y, expected_y, 1e-12)
    c_s, c_v = w[1][:2], w[1][2:]
    expected_u = torch.cat([scalars * c_s, (vectors * c_v[:, None]).reshape(3, 9)], dim=-1)
    assert _close(u, expected_u, 1e-12)


TWO_WRITERS = """
diagram two {
    group SO3
    input x : 2x1
    input y : 1
    output z : 2x1
    x, y -> z  [channels = uvu, weights = path]
    x -> z     [channels = uvw, weights = path]
}
"""


def test_reference_fan_in_counts_every_writer() -> None:
    """fan_in of z is m_2 (uvu: 1) + m_in (linear uvw: 2) = 3 for both statements."""
    diagram = _diagram(TWO_WRITERS)
    x = _randn(4, 6)
    y = _randn(4, 3)
    w = {0: torch.tensor([1.5], dtype=torch.float64), 1: torch.eye(2, dtype=torch.float64).flatten()}
    C = coupling("SO3", "1", "1", "1") * math.sqrt(3)
    cross = torch.einsum("zui,zj,ijk->zuk", x.reshape(4, 2, 3), y, C)
    expected = (1.5 * cross + x.reshape(4, 2, 3)) / math.sqrt(3)
    assert _close(reference_forward(diagram, [x, y], w), expected.reshape(4, 6), 1e-12)


EXTERNAL = """
diagram ext {
    group O3
    input x : 2x0e + 2x1o
    input y : 0e + 1o
    output z : 2x0e + 2x1o
    x, y -> z  [channels = uvu, weights = external]
}
"""


def test_reference_external_weights_are_per_sample() -> None:
    diagram = _diagram(EXTERNAL)
    g = _generator(9)
    x, y = _randn(3, 8, generator=g), _randn(3, 4, generator=g)
    w = testing.random_weights(diagram, batch=(3,), generator=g)[0]
    assert w.shape == (3, testing.weight_numel(diagram, diagram.statements[0]))
    batched = reference_forward(diagram, [x, y], {0: w})
    one_by_one = torch.stack([_one(reference_forward(diagram, [x[i], y[i]], {0: w[i]})) for i in range(3)])
    assert _close(batched, one_by_one, 1e-12)


def test_weight_shapes_follow_the_semantics_table() -> None:
    text = """
    diagram shapes {
        group O3
        input a : 2x1o
        input b : 3x1o
        input c : 2x1o
        output p : 4x0e
        output q : 2x0e
        output r : 2x0e
        output s : 2x0e
        a, b -> p  [channels = uvw, weights = path]
        a, b -> q  [channels = uvu, weights = path]
        a, b -> r  [channels = uvu, weights = channel]
        a, c -> s  [channels = uuu, weights = channel]
    }
    """
    diagram = _diagram(text)
    shapes = [testing.path_weight_shape(diagram, s, s.paths[0]) for s in diagram.statements]
    assert shapes == [(2, 3, 4), (3,), (2, 3), (2,)]
    assert [testing.weight_numel(diagram, s) for s in diagram.statements] == [24, 3, 6, 2]


def test_reference_weights_must_have_the_right_size() -> None:
    diagram = _diagram(LINEAR)
    with pytest.raises(ValueError, match=r"statement 0 needs weights \[\.\.\., 17\]"):
        reference_forward(diagram, [torch.zeros(11, dtype=torch.float64)], {0: torch.zeros(3)})


# -- the reference against e3nn, weights through fusionlang.importers -----------------------------

def _examples_fc_tp():
    from pathlib import Path

    return check_source(Path(__file__).parent.parent / "examples" / "fc_tp.fusion").diagram()


def test_reference_fc_tp_equals_e3nn_fully_connected() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    from fusionlang.importers import from_e3nn_tensor_product

    diagram = _examples_fc_tp()
    with testing.default_dtype(torch.float64):
        tp = o3.FullyConnectedTensorProduct("32x0e + 32x1o + 32x2e", "0e + 1o + 2e", "32x0e + 32x1o + 32x2e")
    weights = from_e3nn_tensor_product(tp, diagram)
    assert _close(weights, tp.weight.detach(), 1e-12)  # same layout, same normalisation: identity
    x, y = _randn(3, tp.irreps_in1.dim), _randn(3, 9)
    assert _close(reference_forward(diagram, [x, y], {0: weights}), tp(x, y), 1e-10)


def uvu_tensor_product(irreps1: str, irreps2: str, **options: object):  # type: ignore[no-untyped-def]
    """e3nn's channelwise uvu product with one output entry per instruction, sorted (as in MACE)."""
    pytest.importorskip("e3nn.o3")
    with testing.default_dtype(torch.float64):
        return testing.e3nn_channelwise_product(irreps1, irreps2, **options)


def _fusion_source_for(tp, channels: str, weights: str) -> str:
    def text(irreps) -> str:
        return " + ".join(f"{mul}x{ir}" for mul, ir in irreps)

    return f"""
diagram imported {{
    group O3
    input x : {text(tp.irreps_in1)}
    input y : {text(tp.irreps_in2)}
    output z : {text(tp.irreps_out)}
    x, y -> z  [channels = {channels}, weights = {weights}]
}}
"""


@pytest.mark.parametrize("options", [{}, {"irrep_normalization": "norm", "path_normalization": "path"},
                                     {"in1_var": [2.0, 0.5], "out_var": None}])
def test_reference_uvu_equals_e3nn_with_imported_weights(options: dict) -> None:
    pytest.importorskip("e3nn")
    from fusionlang.importers import from_e3nn_tensor_product

    tp = uvu_tensor_product("3x0e + 3x1o", "0e + 1o + 2e", **options)
    diagram = _diagram(_fusion_source_for(tp, "uvu", "channel"))
    weights = from_e3nn_tensor_product(tp, diagram)
    x, y = _randn(4, tp.irreps_in1.dim), _randn(4, 9)
    assert _close(reference_forward(diagram, [x, y], {0: weights}), tp(x, y), 1e-10)


def test_importer_external_weights_and_refusals() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    from fusionlang.importers import from_e3nn_tensor_product

    with testing.default_dtype(torch.float64):
        tp = o3.FullyConnectedTensorProduct("2x0e + 2x1o", "1o", "3x1o", shared_weights=False)
    diagram = _diagram(_fusion_source_for(tp, "uvw", "external"))
    w = _randn(5, tp.weight_numel)
    ours = from_e3nn_tensor_product(tp, diagram, weight=w)
    x, y = _randn(5, 8), _randn(5, 3)
    assert _close(reference_forward(diagram, [x, y], {0: ours}), tp(x, y, w), 1e-10)
    with pytest.raises(ValueError, match="no internal weights"):
        from_e3nn_tensor_product(tp, diagram)
    other = _diagram(_fusion_source_for(tp, "uvw", "external").replace("3x1o", "2x1o"))
    with pytest.raises(ValueError, match="irreps_out of the e3nn module"):
        from_e3nn_tensor_product(tp, other, weight=w)


def test_importer_linear_equals_e3nn_linear() -> None:
    o3 = pytest.importorskip("e3nn.o3")
    from fusionlang.importers import from_e3nn_linear

    with testing.default_dtype(torch.float64):
        linear = o3.Linear("2x0e + 3x1o + 1x2e", "4x0e + 2x1o")
    diagram = _diagram("""
    diagram lin {
        group O3
        input x : 2x0e + 3x1o + 2e
        output y : 4x0e + 2x1o
        x -> y
    }""")
    weights = from_e3nn_linear(linear, diagram)
    x = _randn(3, linear.irreps_in.dim)
    assert _close(reference_forward(diagram, [x], {0: weights}), linear(x), 1e-10)


# -- random diagrams ----------------------------------------------------------------------------------

def test_random_diagrams_are_valid_deterministic_and_varied() -> None:
    sources = [testing.random_diagram(seed) for seed in range(40)]
    assert sources == [testing.random_diagram(seed) for seed in range(40)]
    diagrams = [_diagram(text) for text in sources]
    groups = {d.group.name for d in diagrams}
    statements = [s for d in diagrams for s in d.statements]
    assert groups == {"SU2", "SO3", "O3"}
    assert {s.channels for s in statements} == {"uvw", "uvu", "uuu"}
    assert {s.weights for s in statements} == {"none", "path", "channel", "external"}
    assert {s.arity for s in statements} >= {1, 2, 3, 4}
    assert any(leg.role == "internal" for d in diagrams for leg in d.legs)
    assert any(len(d.writers(leg.name)) > 1 for d in diagrams for leg in d.outputs)
    assert all(testing.random_diagram(seed, "SU2").count("group SU2") == 1 for seed in range(5))


@pytest.mark.parametrize("seed", range(12))
def test_reference_of_random_diagrams_is_equivariant(seed: int) -> None:
    diagram = _diagram(testing.random_diagram(seed))
    internal = testing.random_weights(diagram, generator=_generator(seed))
    externals = [s.index for s in diagram.statements if s.weights == "external"]
    n = len(diagram.inputs)

    def forward(*args: torch.Tensor):
        return reference_forward(diagram, args[:n], {**internal, **dict(zip(externals, args[n:], strict=True))})

    assert testing.assert_module_equivariant(forward, diagram) <= 1e-10


# -- trustworthy at high spins, in the complex basis, at 10^5 channels, and able to fail ------------

HIGH_SPIN = {
    "O3": "diagram high { group O3\n input x : 2x60e\n input y : 1o\n output z : 2x(59o + 60o + 61o)\n"
          " x, y -> z [channels = uvu, weights = channel] }",
    "SU2": "diagram high { group SU2\n input x : 2x119/2\n input y : 1/2\n output z : 2x(59 + 60)\n"
           " x, y -> z [channels = uvu, weights = channel] }",
}
COMPLEX_SQUARE = ("diagram cormorant_square { group SO3\n basis complex\n input F : 4x(0 + 1 + 2)\n"
                  " output G : 4x(0 + 1 + 2)\n F, F -> G [channels = uuu, weights = channel] }")
MANY_CHANNELS = ("diagram many { group O3\n input x : 100000x(0e + 1o)\n output y : 100000x(0e + 1o)\n"
                 " x -> y [channels = uuu, weights = channel] }")
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])


def _module(text: str, dtype: torch.dtype = torch.float64, name: str | None = None):  # type: ignore[no-untyped-def]
    from fusionlang import api

    result = api.compile(text)
    return result.module_class(name)(dtype=dtype), result.diagram(name)


def _roll_m(output: torch.Tensor, where: slice, dim: int, channel: int = 0) -> torch.Tensor:
    """``output`` with the m components of one channel of one entry cyclically shifted by one."""
    block = output[..., where].reshape(*output.shape[:-1], -1, dim).clone()
    block[..., channel, :] = block[..., channel, :].roll(1, dims=-1)
    return torch.cat([output[..., :where.start], block.flatten(-2), output[..., where.stop:]], dim=-1)


@DTYPES
@pytest.mark.parametrize("group", sorted(HIGH_SPIN))
def test_module_equivariance_holds_at_spin_60(group: str, dtype: torch.dtype) -> None:
    """The old D matrices gave false failures from l = 25 on and an OverflowError at l = 50."""
    module, diagram = _module(HIGH_SPIN[group], dtype)
    assert testing.assert_module_equivariant(module, diagram, dtype=dtype, trials=2) <= testing.default_tolerance(dtype)


@pytest.mark.parametrize("group", sorted(HIGH_SPIN))
def test_permuting_m_components_is_caught_at_spin_60(group: str) -> None:
    module, diagram = _module(HIGH_SPIN[group])
    irreps = diagram.irreps("z")
    entry = max(range(len(irreps)), key=lambda k: irreps[k].irrep.two_j)
    where, dim = irreps.slices()[entry], irreps[entry].irrep.dim

    def broken(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _roll_m(module(x, y), where, dim, channel=1)

    with pytest.raises(AssertionError, match="not equivariant"):
        testing.assert_module_equivariant(broken, diagram)


@DTYPES
def test_plain_complex_basis_diagram(dtype: torch.dtype) -> None:
    """``basis complex`` features are complex and rotate by SU(2) matrices of integer spin."""
    module, diagram = _module(COMPLEX_SQUARE, dtype)
    assert testing.rotation_group(diagram) == SU2
    assert testing.assert_module_equivariant(module, diagram, dtype=dtype) <= testing.default_tolerance(dtype)
    with pytest.raises(AssertionError, match="not equivariant under SU2"):
        testing.assert_module_equivariant(lambda f: module(f).conj(), diagram, dtype=dtype)
    (features,) = testing.module_arguments(module, diagram, dtype=dtype)
    assert features.dtype == testing.feature_dtype(SU2, dtype) and module(features).is_complex()


def test_complex_and_real_cormorant_graph_layers() -> None:
    """assert_module_equivariant also takes graph modules (a random graph, then graph_equivariance_error)."""
    text = (Path(__file__).resolve().parent.parent / "examples" / "cormorant.fusion").read_text()
    for name in ("cormorant_complex", "cormorant_real"):
        module, diagram = _module(text, name=name)
        assert testing.assert_module_equivariant(module, diagram, trials=2) <= 1e-10, name


def test_one_hundred_thousand_channels_take_seconds_and_a_single_wrong_channel_is_caught() -> None:
    """Rotations act block by block: a dense 400 000 x 400 000 matrix would need 1.3 TB."""
    module, diagram = _module(MANY_CHANNELS)
    start = time.perf_counter()
    assert testing.assert_module_equivariant(module, diagram, trials=2, batch=2) <= 1e-10
    assert time.perf_counter() - start < 30  # about 1 s on an idle core
    where, dim = diagram.irreps("y").slices()[1], 3

    def broken(x: torch.Tensor) -> torch.Tensor:
        return _roll_m(module(x), where, dim, channel=77_777)

    with pytest.raises(AssertionError, match="not equivariant"):
        testing.assert_module_equivariant(broken, diagram, trials=2, batch=2)


@pytest.mark.parametrize("group", sorted(GROUP_IRREPS))
def test_rotate_equals_the_dense_representation(group: str) -> None:
    irreps = Irreps(GROUP_IRREPS[group], group)
    element = random_rotation(group, _generator(6))
    x = testing.random_features(irreps, (3, 2), generator=_generator(7))
    assert _close(testing.rotate(x, irreps, element), x @ representation(irreps, element).T, 1e-13)
    with pytest.raises(ValueError, match="cannot carry"):
        testing.rotate(x[..., :-1], irreps, element)
