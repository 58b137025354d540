"""``fusionlang.from_e3nn``: every e3nn tensor product and ``Linear`` that one statement can
express round-trips (same outputs to 1e-12 in float64, with e3nn's weights, internal or
external), and the others are refused with an error that names the missing feature."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import fusionlang
from fusionlang import cli
from fusionlang.e3nn_convert import E3nnConversionError, fusion_source

o3 = pytest.importorskip("e3nn.o3")

TOLERANCE = 1e-12


@pytest.fixture(autouse=True)
def _float64(float64_default: None) -> Iterator[None]:
    """e3nn builds its couplings in the default dtype; the comparison is in float64."""
    torch.manual_seed(0)
    yield


def mace_like(irreps1: str, irreps2: str, target: str, mode: str = "uvu", **options: Any) -> Any:
    """MACE's and NequIP's convolution product: one output entry per path (``irreps_mid``),
    sorted, with the instructions renumbered (what ``mace.modules.irreps_tools`` builds)."""
    in1, in2, wanted = o3.Irreps(irreps1), o3.Irreps(irreps2), o3.Irreps(target)
    mid, instructions = [], []
    for i, (mul, a) in enumerate(in1):
        for j, (_, b) in enumerate(in2):
            for c in a * b:
                if c in wanted:
                    instructions.append((i, j, len(mid), mode, True))
                    mid.append((mul, c))
    irreps_mid, permutation, _ = o3.Irreps(mid).sort()
    instructions = [(i, j, permutation[k], m, w) for i, j, k, m, w in instructions]
    return o3.TensorProduct(in1, in2, irreps_mid, instructions, **options)


def uvw_all_paths() -> Any:
    """``TensorProduct`` with explicit ``uvw`` instructions (every admissible triple)."""
    in1, in2, out = o3.Irreps("3x0e + 2x1o"), o3.Irreps("0e + 1o"), o3.Irreps("2x0e + 4x1o + 1x1e")
    instructions = [(i, j, k, "uvw", True) for i, (_, a) in enumerate(in1) for j, (_, b) in enumerate(in2)
                    for k, (_, c) in enumerate(out) if c in a * b]
    return o3.TensorProduct(in1, in2, out, instructions)


def uuu_internal() -> Any:
    return o3.TensorProduct("3x0e + 3x1o", "3x1o", "3x1o + 3x0e", [(0, 0, 0, "uuu", True), (1, 0, 1, "uuu", True)])


def _instruction_subset() -> Any:
    """A hand-picked subset, listed in path order (tests/test_e3nn_semantics.py takes another order)."""
    return o3.TensorProduct("2x0e + 2x1o", "0e + 1o", "2x0e + 2x1o", [(0, 0, 0, "uvw", True), (0, 1, 1, "uvw", True),
                                                                      (1, 1, 0, "uvw", True)])


SUPPORTED: dict[str, Callable[[], Any]] = {
    "fully_connected": lambda: o3.FullyConnectedTensorProduct("4x0e + 3x1o + 2x2e", "0e + 1o + 2e",
                                                              "5x0e + 2x1o + 2x1e + 3x2e"),
    "fully_connected_external": lambda: o3.FullyConnectedTensorProduct("2x0e + 2x1o", "0e + 1o", "3x0e + 3x1o",
                                                                       shared_weights=False, internal_weights=False),
    "fully_connected_norm": lambda: o3.FullyConnectedTensorProduct("2x0e + 2x1o", "0e + 1o + 2e", "2x1o + 3x2e",
                                                                   irrep_normalization="norm",
                                                                   path_normalization="path"),
    "uvu_external": lambda: mace_like("4x0e + 4x1o", "0e + 1o + 2e", "0e + 1o + 1e + 2e",
                                      shared_weights=False, internal_weights=False),
    "uvu_internal": lambda: mace_like("3x0e + 3x1o + 3x2e", "0e + 1o", "0e + 1o + 2e + 3o"),
    "uvw": uvw_all_paths,
    "uuu": uuu_internal,
    "uuu_external": lambda: mace_like("3x0e + 3x1o", "3x0e + 3x1o", "0e + 1o + 1e", mode="uuu",
                                      shared_weights=False, internal_weights=False),
    "full": lambda: o3.FullTensorProduct("2x0e + 2x1o", "0e + 1o + 2e"),
    "elementwise": lambda: o3.ElementwiseTensorProduct("4x1o", "4x1o"),
    "elementwise_aligned": lambda: o3.ElementwiseTensorProduct("2x0e + 2x1o", "2x1o + 2x0e"),
    "linear": lambda: o3.Linear("4x0e + 2x1o + 3x2e", "3x0e + 1o + 2x2e"),
    "linear_external": lambda: o3.Linear("4x0e + 2x1o", "3x0e + 2x1o", shared_weights=False, internal_weights=False),
    "linear_path_normalisation": lambda: o3.Linear("4x0e + 2x0e + 2x1o", "3x0e + 1o", path_normalization="path"),
    "instruction_subset": _instruction_subset,
    "elementwise_cross_pairs": lambda: o3.ElementwiseTensorProduct("2x0e + 2x1o", "4x1o"),
    "linear_instruction_subset": lambda: o3.Linear("2x0e + 2x0e", "3x0e", instructions=[(0, 0)]),
    "unweighted_normalisation": lambda: o3.FullTensorProduct("1o", "1o + 2e", irrep_normalization="norm"),
    "external_normalisation": lambda: o3.FullyConnectedTensorProduct("3x0e + 1x1o", "0e + 1o", "2x0e + 2x1o",
                                                                     path_normalization="path", shared_weights=False,
                                                                     internal_weights=False),
    "internal_variance": lambda: o3.FullyConnectedTensorProduct("2x0e + 2x1o", "0e + 1o", "2x0e + 2x1o",
                                                                in1_var=[1.0, 3.0]),
}


def arguments(module: Any, batch: int = 7) -> tuple[torch.Tensor, ...]:
    """Random inputs of an e3nn module, and per-sample weights when it takes them."""
    if hasattr(module, "irreps_in1"):
        xs: tuple[torch.Tensor, ...] = (module.irreps_in1.randn(batch, -1), module.irreps_in2.randn(batch, -1))
    else:
        xs = (module.irreps_in.randn(batch, -1),)
    if not module.shared_weights:
        xs += (torch.randn(batch, module.weight_numel),)
    return xs


def randomise(module: Any) -> None:
    """Fresh random internal weights (e3nn's Linear starts from its own randn; redraw anyway)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_()


@pytest.mark.parametrize("kind", sorted(SUPPORTED))
def test_round_trip_gives_the_same_outputs(kind: str) -> None:
    theirs = SUPPORTED[kind]()
    randomise(theirs)
    converted = fusionlang.from_e3nn(theirs)
    args = arguments(theirs)
    ours = converted.module
    assert ours.real_dtype == torch.float64                       # the e3nn module's dtype
    with torch.no_grad():
        difference = float((ours(*args) - theirs(*args)).abs().max())
    assert difference < TOLERANCE, (kind, difference)


@pytest.mark.parametrize("kind", sorted(SUPPORTED))
def test_converted_modules_describe_themselves_as_e3nn_does(kind: str) -> None:
    theirs = SUPPORTED[kind]()
    ours = fusionlang.from_e3nn(theirs).module
    names = ["irreps_in1", "irreps_in2"] if hasattr(theirs, "irreps_in1") else ["irreps_in"]
    for name in [*names, "irreps_out", "weight_numel", "shared_weights", "internal_weights"]:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert len(ours.instructions) == len(theirs.instructions)
    for mine, reference in zip(ours.instructions, theirs.instructions, strict=True):
        assert type(mine)._fields == type(reference)._fields
        # normalisation options give e3nn's factors; only variances are folded into the weights
        assert math.isclose(mine.path_weight, reference.path_weight, rel_tol=1e-12) or kind == "internal_variance"
        assert mine._replace(path_weight=0.0) == reference._replace(path_weight=0.0)


def test_the_source_is_canonical_and_says_what_it_came_from() -> None:
    tp = o3.FullyConnectedTensorProduct("2x0e + 2x1o", "0e + 1o", "3x0e + 3x1o")
    converted = fusionlang.from_e3nn(tp, name="interaction")
    assert converted.source == fusionlang.format_source(converted.source)
    assert converted.source == fusion_source(tp, name="interaction")
    assert converted.source.splitlines()[:2] == ["# FullyConnectedTensorProduct from e3nn (fusionlang.from_e3nn)",
                                                 "diagram interaction {"]
    assert "    x, y -> z  [channels = uvw, weights = channel]" in converted.source
    assert converted.diagram.name == "interaction" and fusionlang.check(converted.source).ok
    assert "paths = split" not in fusionlang.from_e3nn(o3.FullTensorProduct("1o", "1o")).source  # sum is split here
    assert "paths = split" in fusionlang.from_e3nn(o3.FullTensorProduct("2x0e + 2x1o", "0e + 1o")).source


def test_the_dtype_follows_the_e3nn_module_unless_given() -> None:
    tp = o3.FullyConnectedTensorProduct("2x0e", "0e", "0e")
    assert fusionlang.from_e3nn(tp).module.weight_z_0.dtype == torch.float64
    assert fusionlang.from_e3nn(tp, dtype=torch.float32).module.weight_z_0.dtype == torch.float32


REFUSED: dict[str, tuple[Callable[[], Any], str, str]] = {
    "tensor_square_external": (lambda: o3.TensorSquare("2x0e + 2x1o", "2x0e", shared_weights=False),
                               "TensorSquare with external weights", "internal weights"),
    "uvv": (lambda: o3.TensorProduct("2x0e", "3x0e", "3x0e", [(0, 0, 0, "uvv", True)]),
            "connection mode `uvv`", "uvw"),
    "uuw": (lambda: o3.TensorProduct("2x0e", "2x0e", "3x0e", [(0, 0, 0, "uuw", True)]),
            "connection mode `uuw`", "uuu"),
    "mixed_modes": (lambda: o3.TensorProduct("2x0e", "2x0e", "2x0e + 2x0e", [(0, 0, 0, "uvu", True),
                                                                          (0, 0, 1, "uuu", True)]),
                    "mixed instructions", "modes uuu, uvu;"),
    "mixed_weights": (lambda: o3.TensorProduct("2x0e", "2x0e", "2x0e + 2x0e", [(0, 0, 0, "uuu", True),
                                                                            (0, 0, 1, "uuu", False)]),
                      "mixed instructions", "paths with and without weights;"),
    "weighted_uvuv": (lambda: o3.TensorProduct("2x0e", "2x0e", "4x0e", [(0, 0, 0, "uvuv", True)]),
                      "`uvuv` with weights", "`uvuv` without"),
    "unwritten_output": (lambda: o3.TensorProduct("2x0e", "0e", "2x0e + 2x1o", [(0, 0, 0, "uvu", True)]),
                         "output entries without instructions", "[1]"),
    "shared_external_weights": (lambda: o3.FullyConnectedTensorProduct("2x0e", "0e", "2x0e", internal_weights=False),
                                "shared external weights", "shared_weights=False"),
    "unweighted_variance": (lambda: o3.FullTensorProduct("1o", "1o + 2e", in1_var=[2.0]),
                            "normalisation", "cannot absorb"),
    "external_instruction_order": (lambda: o3.TensorProduct("2x0e + 2x1o", "0e + 1o", "2x1o + 2x0e",
                                                            [(1, 0, 0, "uvu", True), (0, 0, 1, "uvu", True),
                                                             (0, 1, 0, "uvu", True), (1, 1, 1, "uvu", True)],
                                                            shared_weights=False, internal_weights=False),
                                   "instruction order", "in that order"),
    "external_variance": (lambda: o3.FullyConnectedTensorProduct("3x0e + 1x1o", "0e + 1o", "2x0e + 2x1o",
                                                                 out_var=[2.0, 1.0],
                                                                 shared_weights=False, internal_weights=False),
                          "normalisation", "rescaling by the caller"),
    "linear_biases": (lambda: o3.Linear("2x0e", "2x0e", biases=True), "biases", "biases=False"),
    "linear_feature_axes": (lambda: o3.Linear("2x0e", "2x0e", f_in=3, f_out=4), "f_in/f_out", "feature axes"),
    "multiplicity_zero": (lambda: o3.Linear("0x0e + 2x1o", "2x1o"), "irreps_in = 0x0e+2x1o", "multiplicity 0"),
    "not_e3nn": (lambda: torch.nn.Linear(3, 4), "module type torch.nn.modules.linear.Linear", "o3.Linear"),
    "fusionlang_module": (lambda: fusionlang.from_e3nn(o3.Linear("2x0e", "2x0e")).module, "a fusionlang module",
                          "compiled from .fusion source already"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_what_the_language_lacks_is_refused_by_name(kind: str) -> None:
    build, feature, detail = REFUSED[kind]
    module = build()
    with pytest.raises(E3nnConversionError) as caught:
        fusionlang.from_e3nn(module)
    assert caught.value.feature == feature and isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(f"cannot convert the e3nn module: {feature}: ")
    assert detail in str(caught.value), str(caught.value)


def test_command_line_writes_the_source_and_the_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tp = mace_like("2x0e + 2x1o", "0e + 1o", "0e + 1o")
    randomise(tp)
    torch.save(tp, tmp_path / "tp.pt")
    assert cli.main(["from-e3nn", str(tmp_path / "tp.pt")]) == 0
    printed = capsys.readouterr().out
    assert printed == fusionlang.from_e3nn(tp).source
    out, state = tmp_path / "tp.fusion", tmp_path / "state.pt"
    assert cli.main(["from-e3nn", str(tmp_path / "tp.pt"), "-o", str(out), "--state", str(state)]) == 0
    assert out.read_text(encoding="utf-8") == printed
    module = fusionlang.compile(out).module_class()(dtype=torch.float64)
    module.load_state_dict(torch.load(state, weights_only=True))
    args = arguments(tp)
    with torch.no_grad():
        assert float((module(*args) - tp(*args)).abs().max()) < TOLERANCE


def test_command_line_refusals_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(o3.TensorSquare("2x1o", "2x0e", shared_weights=False), tmp_path / "square.pt")
    assert cli.main(["from-e3nn", str(tmp_path / "square.pt")]) == 1
    assert "error: cannot convert the e3nn module: TensorSquare with external weights" in capsys.readouterr().err
    assert cli.main(["from-e3nn", str(tmp_path / "missing.pt")]) == 1
    assert "error[E901]: cannot load" in capsys.readouterr().err
