"""Multi-state ab initio data: SA-CASSCF energies, forces and S0–S1 couplings of ethylene, and S0/S1 energies
only of stilbene (:func:`label_energies`, design in :mod:`fusionlang.stilbene`) (issue 12).

Three parts, all under one output folder as in :mod:`fusionlang.datagen`:

1. **label** (:func:`label_states`): state-averaged CASSCF with equal weights over ``nstates`` singlets
   (``fix_spin_(ss=0)``), per-state energies (eV) and forces (eV/Å), the S0–S1 derivative coupling
   (1/Å) and the gap, with every convergence flag; unconverged results raise :class:`NotConvergedError`.
   SA-CASSCF is converged from the previous geometry's orbitals (``guess=``) and from RHF orbitals, the
   lower state-averaged solution is kept, and its active space's overlap with the previous one is returned.
2. **sample** (:func:`fusionlang.ethylene.sample_geometries`): twisted and pyramidalised ethylene, a fixed
   design of chains, deterministic from a seed; every geometry carries its provenance.
3. **generate / assemble** (:func:`generate`, :func:`assemble`): each chain is labelled in order by one
   single-threaded process (orbitals follow along the chain); each label is appended and fsynced to
   ``labels/traj{chain}.extxyz`` on its own, so a kill loses only the label in flight; ``assemble``
   writes ``frames.extxyz.xz`` and ``manifest.json``.

pyscf, tblite and ase are imported inside the functions that need them; this module imports without them:

>>> [round(g.torsion, 1) for g in sample_geometries(4)]
[0.0, 7.5, 15.0, 22.5]
>>> geometry = ethylene_positions(90.0, 30.0)
>>> geometry.shape
(6, 3)
>>> ExcitedConfig().method
'SA-CASSCF(2,2)'
"""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fusionlang.datagen import (
    THREAD_VARIABLES,
    _append,
    _frame_text,
    _fsync_replace,
    _versions,
    file_sha256,
    labelled,
    save_config,
)
from fusionlang.ethylene import ETHYLENE_SYMBOLS, Geometry, ethylene_positions, sample_geometries  # noqa: F401  (re-exported)
from fusionlang.stilbene import CONFIG_DEFAULTS as STILBENE_DEFAULTS
from fusionlang.stilbene import DESIGN_NOTE as STILBENE_DESIGN
from fusionlang.stilbene import sample_geometries as stilbene_geometries

HARTREE_EV = 27.211386024367243  # ase.units.Hartree (CODATA 2014), the unit datagen's labels use
BOHR_ANGSTROM = 0.5291772105638411  # ase.units.Bohr
# Below this smallest singular value of <active(previous)|active(new)> the active space is flagged as rotated.
# Geometry alone lowers it: 0.99 for the scans' 7.5° torsion steps, 0.82 for a 15° step at 60° pyramidalisation
# (measured); an orbital swapped out of the π space gives ~0.
ACTIVE_OVERLAP_THRESHOLD = 0.5
# Below this Mulliken weight of the active orbitals on carbon p functions the active space is not the π/π*
# pair: 0.99 planar, 0.84-0.89 twisted or pyramidalised in the sample (measured); a noisy replica whose
# active space had rotated into a σ(C-H) orbital gave 0.75.
CARBON_P_THRESHOLD = 0.8
SINGLET_SPIN_TOLERANCE = 1e-4  # largest <S^2> accepted for a state that must be a singlet


class LabellingError(RuntimeError):
    """A geometry that gets no label (logged to ``failures.jsonl``, never stored)."""


class ActiveSpaceError(LabellingError):
    """Every start converged to an active space that is not the π/π* pair of the C=C bond."""


class NotConvergedError(LabellingError):
    """SA-CASSCF, a state gradient or the coupling did not converge, or a root is not a singlet."""


# ----------------------------------------------------------------------------------------------- labels
@dataclasses.dataclass(frozen=True)
class Orbitals:
    """Converged orbitals of one geometry: the guess for the next geometry of a chain."""

    symbols: tuple[str, ...]
    positions: np.ndarray  # Å
    basis: str
    mo_coeff: np.ndarray
    ncore: int
    ncas: int


@dataclasses.dataclass(frozen=True)
class StateEnergies:
    """What :func:`label_energies` returns (energies in eV); :class:`StateLabels` adds forces and couplings."""

    energies: np.ndarray  # (nstates,)
    converged: dict[str, bool]
    spin_squares: tuple[float, ...]
    active_overlap: float  # smallest singular value against the guess's active orbitals (1.0 without a guess)
    active_carbon_p: float  # Mulliken weight of the active orbitals on carbon p functions (0..1)
    guess: str  # the start kept: "previous" (the guess's orbitals) or "rhf"
    other_start_excess: float  # eV, state-averaged energy of the other start's solution above the kept one
    seconds: float
    orbitals: Orbitals

    @property
    def gap(self) -> float:
        """E(S1) − E(S0) in eV."""
        return float(self.energies[1] - self.energies[0])

    @property
    def active_rotated(self) -> bool:
        """True when the active space moved away from the guess's (the chain did not follow smoothly)."""
        return self.active_overlap < ACTIVE_OVERLAP_THRESHOLD


@dataclasses.dataclass(frozen=True)
class StateLabels(StateEnergies):
    """What :func:`label_states` returns; energies eV, forces eV/Å, couplings 1/Å (see :func:`label_states`)."""

    forces: np.ndarray  # (nstates, natoms, 3)
    coupling: np.ndarray  # (natoms, 3): <S0|d/dR S1> without the CSF term (electron translation factors)
    coupling_csf: np.ndarray  # (natoms, 3): the CSF term; coupling + coupling_csf is the full <S0|d/dR S1>


def _single_thread() -> None:
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def _molecule(symbols: Sequence[str], positions: Any, basis: str) -> Any:
    from pyscf import gto

    atoms = [(s, tuple(float(x) for x in p)) for s, p in zip(symbols, np.asarray(positions), strict=True)]
    return gto.M(atom=atoms, basis=basis, unit="Angstrom", verbose=0)


def _rhf(mol: Any, conv_tol: float) -> Any:
    from pyscf import scf

    mf = scf.RHF(mol)
    mf.conv_tol = conv_tol
    mf.kernel()
    return mf


def _sa_casscf(mf: Any, ncas: int, nelecas: int, nstates: int, conv_tol: float, conv_tol_grad: float) -> Any:
    """An SA-CASSCF solver with equal weights over ``nstates`` roots, singlets forced by a spin penalty."""
    from pyscf import mcscf

    mc = mcscf.CASSCF(mf, ncas, nelecas)
    mc.fix_spin_(ss=0)
    mc = mc.state_average_([1.0 / nstates] * nstates)
    mc.conv_tol = conv_tol
    mc.conv_tol_grad = conv_tol_grad
    return mc


def _following_guess(mc: Any, guess: Orbitals | None) -> np.ndarray:
    """The previous geometry's orbitals projected onto this geometry's basis, or RHF's orbitals."""
    from pyscf import mcscf

    if guess is None:
        return np.asarray(mc._scf.mo_coeff)
    previous = _molecule(guess.symbols, guess.positions, guess.basis)
    return np.asarray(mcscf.project_init_guess(mc, guess.mo_coeff, previous))


def active_overlap(guess: Orbitals | None, mol: Any, mo_coeff: np.ndarray, ncore: int, ncas: int) -> float:
    """Smallest singular value of the overlap between the guess's active orbitals and the new ones
    (1 when the two active spaces span the same space, 0 when some direction left it); 1.0 without guess."""
    from pyscf import gto

    if guess is None:
        return 1.0
    previous = _molecule(guess.symbols, guess.positions, guess.basis)
    cross = gto.intor_cross("int1e_ovlp", previous, mol)
    old = guess.mo_coeff[:, guess.ncore:guess.ncore + guess.ncas]
    new = mo_coeff[:, ncore:ncore + ncas]
    return float(np.linalg.svd(old.T @ cross @ new, compute_uv=False).min())


def carbon_p_weight(mol: Any, mo_coeff: np.ndarray, ncore: int, ncas: int) -> float:
    """Mulliken weight (averaged over the active orbitals) on carbon p functions: ≈ 1 for the π/π* pair."""
    active = mo_coeff[:, ncore:ncore + ncas]
    overlap = mol.intor_symmetric("int1e_ovlp")
    carbon_p = [i for i, label in enumerate(mol.ao_labels(fmt=False)) if label[1] == "C" and label[2][-1] == "p"]
    populations = active * (overlap @ active)
    return float(populations[carbon_p].sum() / ncas)


def _converge(mc: Any, mo0: np.ndarray) -> bool:
    mc.kernel(mo0)
    return bool(mc.converged)


def _spin_squares(mc: Any) -> tuple[float, ...]:
    from pyscf.fci import spin_op

    return tuple(float(spin_op.spin_square0(ci, mc.ncas, mc.nelecas)[0]) for ci in mc.ci)


def _state_gradients(mc: Any, nstates: int) -> tuple[list[np.ndarray], list[bool]]:
    """Nuclear gradients (Eh/Bohr) of every state and whether each Lagrangian (Z-vector) solve converged."""
    solver = mc.nuc_grad_method()
    gradients, flags = [], []
    for state in range(nstates):
        gradients.append(np.asarray(solver.kernel(state=state)))
        flags.append(bool(solver.converged))
    return gradients, flags


def _s0_s1_coupling(mc: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """PySCF's ``<S0|d S1/dR>`` (state = (ket 1, bra 0)) in 1/Bohr: without the CSF term (electron
    translation factors, ``use_etfs=True``), the CSF term on its own, and whether the solve converged."""
    solver = mc.nac_method()
    coupling = np.asarray(solver.kernel(state=(1, 0), use_etfs=True))
    converged = bool(solver.converged)
    gap = mc.e_states[0] - mc.e_states[1]  # e_bra - e_ket, the factor PySCF's kernel divides by
    csf = np.asarray(solver.nac_csf(state=(1, 0))) / gap
    return coupling, csf, converged


def _raise_unless_converged(converged: dict[str, bool], spins: Sequence[float], where: str) -> None:
    failed = sorted(name for name, ok in converged.items() if not ok)
    if failed:
        raise NotConvergedError(f"SA-CASSCF labels of {where} not converged: {', '.join(failed)}; "
                                "nothing is returned for this geometry")
    if max(spins) > SINGLET_SPIN_TOLERANCE:
        raise NotConvergedError(f"SA-CASSCF roots of {where} are not all singlets: <S^2> = {list(spins)}")


@dataclasses.dataclass(frozen=True)
class Solution:
    """The SA-CASSCF solution kept for a geometry, which start gave it and how far above it the other start's
    solution lay (state-averaged energy, eV; 0.0 when both agree or only one start converged)."""

    mc: Any
    start: str  # "previous" (the previous geometry's orbitals) or "rhf"
    other_start_excess: float


def _solve(symbols: Sequence[str], positions: Any, basis: str, nstates: int, ncas: int, nelecas: int,
           guess: Orbitals | None, conv_tol: float, conv_tol_grad: float) -> Solution:
    """Converge SA-CASSCF from the previous geometry's orbitals (if any) and from RHF orbitals, and keep the
    solution of lower state-averaged energy (the previous one on a tie within 1e-9 Eh). SA-CASSCF has several
    solutions: on the 90° twisted, pyramidalised ethylene, following alone stays on a branch whose S1 is the
    wrong zwitterion, 0.7 eV too high at 30° pyramidalisation (see docs/excited.md)."""
    mol = _molecule(symbols, positions, basis)
    mf = _rhf(mol, conv_tol)
    found: list[tuple[str, Any]] = []
    for start, orbitals in ((("previous", guess),) if guess is not None else ()) + (("rhf", None),):
        mc = _sa_casscf(mf, ncas, nelecas, nstates, conv_tol, conv_tol_grad)
        if _converge(mc, _following_guess(mc, orbitals)):
            found.append((start, mc))
    if not found:
        raise NotConvergedError(f"SA-CASSCF did not converge from any start (RHF converged: {bool(mf.converged)}); "
                                "nothing is returned for this geometry")
    found = _pi_spaces(found, guess, mol, ncas)
    lowest = min(float(mc.e_tot) for _, mc in found)
    start, mc = next((s, m) for s, m in found if float(m.e_tot) - lowest < 1e-9)
    excess = max(float(m.e_tot) for _, m in found) - float(mc.e_tot)
    return Solution(mc, start, excess * HARTREE_EV)


def _pi_spaces(found: list[tuple[str, Any]], guess: Orbitals | None, mol: Any, ncas: int) -> list[tuple[str, Any]]:
    """The converged solutions whose active space is the π/π* pair: on carbon p functions (weight at least
    :data:`CARBON_P_THRESHOLD`) and continuous with the previous geometry's (overlap at least
    :data:`ACTIVE_OVERLAP_THRESHOLD`). A lower solution with another active space is a different model of the
    molecule, not a better label: on a noisy replica both starts once converged to an active space rotated
    into σ(C-H) (weight 0.75, overlap 0.18 with its neighbour, the gap 1 eV off its neighbours')."""
    kept = [(start, mc) for start, mc in found
            if carbon_p_weight(mol, np.asarray(mc.mo_coeff), mc.ncore, ncas) >= CARBON_P_THRESHOLD
            and active_overlap(guess, mol, np.asarray(mc.mo_coeff), mc.ncore, ncas) >= ACTIVE_OVERLAP_THRESHOLD]
    if not kept:
        weights = [round(carbon_p_weight(mol, np.asarray(mc.mo_coeff), mc.ncore, ncas), 3) for _, mc in found]
        raise ActiveSpaceError(f"no start converged to the π/π* active space (carbon p weights {weights}, "
                               f"threshold {CARBON_P_THRESHOLD}; or the active space left the previous geometry's)")
    return kept


def label_states(symbols: Sequence[str], positions: Any, *, basis: str = "6-31g*", nstates: int = 2, ncas: int = 2,
                 nelecas: int = 2, guess: Orbitals | None = None, conv_tol: float = 1e-11,
                 conv_tol_grad: float = 1e-6) -> StateLabels:
    """SA-CASSCF(``nelecas``, ``ncas``) labels of one geometry (positions in Å), ``nstates`` singlets with equal
    weights: energies (eV), forces −∇E (eV/Å) of every state, and the S0–S1 derivative coupling
    ``<S0|∂S1/∂R>`` (1/Å) from PySCF's analytic SA-CASSCF NAC, split into the part with electron translation
    factors (``coupling``, translation invariant, what surface hopping uses) and the CSF term
    (``coupling_csf``); their sum is the full derivative coupling. Its overall sign is arbitrary (the phases
    of the two CI vectors are). ``guess``: the previous geometry's :attr:`StateLabels.orbitals`; SA-CASSCF is
    converged from it and from RHF orbitals, and the solution of lower state-averaged energy is kept.

    Raises :class:`NotConvergedError` when the CASSCF, a gradient or the coupling did not converge, or a
    root is not a singlet (``<S^2>`` above 1e-4); :class:`ActiveSpaceError` when no start's active space is
    the π/π* pair (:func:`_pi_spaces`).

    >>> labels = label_states(ETHYLENE_SYMBOLS, ethylene_positions(0.0, 0.0), basis="sto-3g")  # doctest: +SKIP
    >>> labels.gap > 0, labels.converged["casscf"]  # doctest: +SKIP
    (True, True)
    """
    _single_thread()
    from pyscf import lib

    lib.num_threads(1)
    start = time.perf_counter()
    where = f"{len(symbols)} atoms ({''.join(symbols)}) in {basis}"
    solution = _solve(symbols, positions, basis, nstates, ncas, nelecas, guess, conv_tol, conv_tol_grad)
    mc = solution.mc
    spins = _spin_squares(mc)
    gradients, gradient_flags = _state_gradients(mc, nstates)
    coupling, csf, coupling_flag = _s0_s1_coupling(mc)
    converged = {"casscf": bool(mc.converged), **{f"gradient_S{k}": f for k, f in enumerate(gradient_flags)},
                 "coupling": coupling_flag}
    _raise_unless_converged(converged, spins, where)
    mo = np.asarray(mc.mo_coeff)
    orbitals = Orbitals(tuple(symbols), np.array(positions, dtype=float), basis, mo, mc.ncore, ncas)
    return StateLabels(
        energies=np.asarray(mc.e_states, dtype=float) * HARTREE_EV,
        forces=-np.asarray(gradients) * HARTREE_EV / BOHR_ANGSTROM,
        coupling=coupling / BOHR_ANGSTROM, coupling_csf=csf / BOHR_ANGSTROM, converged=converged,
        spin_squares=spins, active_overlap=active_overlap(guess, mc.mol, mo, mc.ncore, ncas),
        active_carbon_p=carbon_p_weight(mc.mol, mo, mc.ncore, ncas), guess=solution.start,
        other_start_excess=solution.other_start_excess,
        seconds=time.perf_counter() - start, orbitals=orbitals)


def state_energies(symbols: Sequence[str], positions: Any, *, basis: str = "6-31g*", nstates: int = 2,
                   ncas: int = 2, nelecas: int = 2, conv_tol: float = 1e-11) -> np.ndarray:
    """Only the SA-CASSCF state energies (eV) of one geometry, from RHF orbitals (finite-difference checks)."""
    _single_thread()
    mc = _solve(symbols, positions, basis, nstates, ncas, nelecas, None, conv_tol, 1e-6).mc
    _raise_unless_converged({"casscf": bool(mc.converged)}, _spin_squares(mc), "energy-only geometry")
    return np.asarray(mc.e_states, dtype=float) * HARTREE_EV


def label_energies(symbols: Sequence[str], positions: Any, *, basis: str = "sto-3g", nstates: int = 2,
                   ncas: int = 2, nelecas: int = 2, guess: Orbitals | None = None, conv_tol: float = 1e-11,
                   conv_tol_grad: float = 1e-6) -> StateEnergies:
    """:func:`label_states` without gradients or couplings: the same two starts, π-space filter, convergence
    and singlet checks, for molecules whose gradients cost too much (stilbene: ≈ 6 s per geometry for the
    energies, ≈ 2 min per state gradient in STO-3G)."""
    _single_thread()
    from pyscf import lib

    lib.num_threads(1)
    start = time.perf_counter()
    solution = _solve(symbols, positions, basis, nstates, ncas, nelecas, guess, conv_tol, conv_tol_grad)
    mc, converged = solution.mc, {"casscf": bool(solution.mc.converged)}
    spins = _spin_squares(mc)
    _raise_unless_converged(converged, spins, f"{len(symbols)} atoms ({''.join(symbols)}) in {basis}")
    mo = np.asarray(mc.mo_coeff)
    return StateEnergies(
        energies=np.asarray(mc.e_states, dtype=float) * HARTREE_EV, converged=converged, spin_squares=spins,
        active_overlap=active_overlap(guess, mc.mol, mo, mc.ncore, ncas),
        active_carbon_p=carbon_p_weight(mc.mol, mo, mc.ncore, ncas), guess=solution.start,
        other_start_excess=solution.other_start_excess, seconds=time.perf_counter() - start,
        orbitals=Orbitals(tuple(symbols), np.array(positions, dtype=float), basis, mo, mc.ncore, ncas))


# ----------------------------------------------------------------------------------------------- generation
@dataclasses.dataclass(frozen=True)
class ExcitedConfig:
    """Everything that determines the data set (saved as ``config.json``; a resume must match it, except
    ``count`` and ``md_snapshots``, which only extend the design)."""

    molecule: str = "ethylene"
    count: int = 1000  # geometries of the scan/grid design (chains 0, 1, 2, ...)
    seed: int = 0
    noise: float = 0.03  # Å, Gaussian noise on every coordinate of the noisy grid replicas
    md_snapshots: int = 0  # optional GFN2-xTB MD snapshots (chain 1000)
    md_temperature: float = 1000.0  # K
    method: str = "SA-CASSCF(2,2)"
    basis: str = "6-31g*"
    nstates: int = 2
    ncas: int = 2
    nelecas: int = 2
    conv_tol: float = 1e-11  # Eh, CASSCF energy
    conv_tol_grad: float = 1e-6  # CASSCF orbital gradient

    @classmethod
    def for_molecule(cls, molecule: str, **fields: Any) -> ExcitedConfig:
        """The configuration of ``molecule`` with its own defaults (stilbene: STO-3G, noise 0.02 Å, 420)."""
        return cls(molecule=molecule, **{**(STILBENE_DEFAULTS if molecule == "stilbene" else {}), **fields})

    @property
    def energies_only(self) -> bool:
        """Stilbene gets energies only: its SA-CASSCF state gradients cost ≈ 2 min each in STO-3G."""
        return self.molecule == "stilbene"

    def geometries(self) -> list[Any]:
        if self.molecule == "stilbene" and not self.md_snapshots:
            return list(stilbene_geometries(self.count, self.seed, noise=self.noise))
        if self.molecule != "ethylene":
            raise ValueError(f"no excited-state sampling design for {self.molecule!r} with these settings "
                             "(ethylene; stilbene without MD snapshots)")
        return sample_geometries(self.count, self.seed, noise=self.noise, md_snapshots=self.md_snapshots,
                                 md_temperature=self.md_temperature)


def labelled_frame(geometry: Any, labels: StateEnergies, config: ExcitedConfig) -> Any:
    """An ASE ``Atoms`` with the provenance and every label: info ``REF_energy_S{k}`` (eV), ``REF_gap`` (eV),
    flags; for :class:`StateLabels` also arrays ``REF_forces_S{k}`` (eV/Å), ``REF_nac`` and ``REF_nac_csf``
    (1/Å) and info ``nac_norm``."""
    from ase import Atoms

    atoms = Atoms(symbols=list(geometry.symbols), positions=geometry.positions, pbc=False)
    atoms.info.update(geometry.info())
    for k, energy in enumerate(labels.energies):
        atoms.info[f"REF_energy_S{k}"] = float(energy)
        atoms.info[f"spin_square_S{k}"] = labels.spin_squares[k]
    atoms.info["REF_gap"] = labels.gap
    if isinstance(labels, StateLabels):  # the same keys, values and order as before the energies-only path
        for k, forces in enumerate(labels.forces):
            atoms.arrays[f"REF_forces_S{k}"] = np.asarray(forces)
        atoms.arrays["REF_nac"] = labels.coupling
        atoms.arrays["REF_nac_csf"] = labels.coupling_csf
        atoms.info["nac_norm"] = float(np.linalg.norm(labels.coupling))
    atoms.info.update(**{f"converged_{k}": v for k, v in labels.converged.items()},
                      active_overlap=labels.active_overlap, active_rotated=labels.active_rotated,
                      active_carbon_p=labels.active_carbon_p, guess=labels.guess,
                      other_start_excess=labels.other_start_excess,
                      label_seconds=round(labels.seconds, 3), labelled_at=round(time.time(), 3),
                      method=config.method, basis=config.basis)
    return atoms


def _worker_init() -> None:
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


def _log_failure(out: Path, geometry: Geometry, error: Exception) -> None:
    record = {"time": time.time(), "chain": geometry.chain, "step": geometry.step, "error": repr(error)}
    _append(out / "failures.jsonl", json.dumps(record) + "\n")


def label_chain(config: ExcitedConfig, out: str, geometries: Sequence[Any]) -> tuple[int, int]:
    """Label the geometries of one chain in order (each one's orbitals the next one's guess), appending and
    fsyncing each label to ``labels/traj{chain}.extxyz``; a failure is logged and restarts the following
    from RHF. Returns (labels made, failures)."""
    folder = Path(out)
    guess: Orbitals | None = None
    made = failed = 0
    label = label_energies if config.energies_only else label_states
    for geometry in geometries:
        try:
            labels = label(geometry.symbols, geometry.positions, basis=config.basis, nstates=config.nstates,
                           ncas=config.ncas, nelecas=config.nelecas, guess=guess, conv_tol=config.conv_tol,
                           conv_tol_grad=config.conv_tol_grad)
        except NotConvergedError as error:
            _log_failure(folder, geometry, error)
            guess, failed = None, failed + 1
            continue
        except ActiveSpaceError as error:  # the previous orbitals stay the next geometry's guess
            _log_failure(folder, geometry, error)
            failed += 1
            continue
        _append(folder / "labels" / f"traj{geometry.chain}.extxyz", _frame_text(labelled_frame(geometry, labels,
                                                                                                 config)))
        guess, made = labels.orbitals, made + 1
        print(f"chain {geometry.chain} step {geometry.step}: gap {labels.gap:.3f} eV, "
              f"{labels.seconds:.1f} s, guess {labels.guess}", flush=True)
    return made, failed


def _todo(config: ExcitedConfig, out: Path, limit: int | None) -> list[list[Any]]:
    """The unlabelled geometries of each chain, in chain order; ``limit`` caps their total."""
    by_chain: dict[int, list[Any]] = {}
    for geometry in config.geometries():
        by_chain.setdefault(geometry.chain, []).append(geometry)
    chains, left = [], limit if limit is not None else -1
    for chain, geometries in sorted(by_chain.items()):
        done = {int(a.info["step"]) for a in labelled(out, chain)}
        missing = [g for g in geometries if g.step not in done]
        if left >= 0:
            missing, left = missing[:left], left - len(missing[:left])
        if missing:
            chains.append(missing)
    return chains


def generate(config: ExcitedConfig, out: Path | str, workers: int = 1, limit: int | None = None) -> tuple[int, int]:
    """Label every missing geometry of the design, one chain per single-threaded process at a time;
    return (labels made, failures). A rerun resumes: labelled geometries are skipped."""
    import multiprocessing

    out = Path(out)
    save_config(config, out, growable=("count", "md_snapshots"))
    (out / "labels").mkdir(parents=True, exist_ok=True)
    chains = _todo(config, out, limit)
    for name in THREAD_VARIABLES:  # spawned workers inherit these before numpy or pyscf load
        os.environ[name] = "1"
    _append(out / "runs.jsonl", json.dumps({"started": time.time(), "workers": workers,
                                            "todo": sum(len(c) for c in chains)}) + "\n")
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as pool:
        results = list(pool.map(label_chain, [config] * len(chains), [str(out)] * len(chains), chains))
    return sum(r[0] for r in results), sum(r[1] for r in results)


# ----------------------------------------------------------------------------------------------- assembling
def _failures(out: Path) -> dict[str, int]:
    """Geometries that got no label, by reason (``failures.jsonl``; a rerun may have labelled some since)."""
    found: dict[str, int] = {}
    path = out / "failures.jsonl"
    for line in (path.read_text().splitlines() if path.exists() else []):
        reason = json.loads(line)["error"].split("(")[0]
        found[reason] = found.get(reason, 0) + 1
    return found


def _labelling_wall(out: Path, finished: Sequence[float]) -> tuple[float, int]:
    """Seconds from each run's start to its last label, summed, and the number of runs."""
    path = out / "runs.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    starts = [float(json.loads(line)["started"]) for line in lines if line.strip()]
    wall = 0.0
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        inside = [f for f in finished if start <= f < end]
        wall += (max(inside) - start) if inside else 0.0
    return wall, len(starts)


def _write_xz(frames: Sequence[Any], path: Path) -> None:
    from ase.io import write

    buffer = io.StringIO()
    write(buffer, list(frames), format="extxyz")
    tmp = path.with_name(f".{path.name}.tmp")
    with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as handle:
        handle.write(buffer.getvalue())
    _fsync_replace(tmp, path)


COUPLING_NOTE = {
    "key": "REF_nac", "csf_key": "REF_nac_csf", "units": "1/Angstrom",
    "definition": "<S0|d S1/dR>: PySCF 2.14 SA-CASSCF analytic derivative coupling, "
                  "pyscf.nac.sacasscf.NonAdiabaticCouplings(mc).kernel(state=(1, 0), use_etfs=True), "
                  "converted from 1/Bohr; it includes electron translation factors, i.e. omits the CSF term",
    "csf_term": "REF_nac_csf is the omitted CSF term (nac_csf(state=(1, 0)) / (E0 - E1)); "
                "REF_nac + REF_nac_csf is the full derivative coupling, REF_nac alone is translation invariant",
    "sign": "arbitrary per geometry: the phases of the two CI vectors are not fixed, so the stored vector "
            "may be -1 times that of a neighbouring geometry; compare or learn it sign-free",
    "energy_scaled": "(E1 - E0) * REF_nac in eV/Angstrom is the coupling times the gap (not stored)",
}


def _manifest(config: ExcitedConfig, frames: Sequence[Any], files: dict[str, str], wall: tuple[float, int],
              sample_seconds: float, out: Path) -> dict[str, Any]:
    seconds = [float(a.info.get("label_seconds", 0.0)) for a in frames]
    chains = sorted({int(a.info["chain"]) for a in frames})
    return {
        "molecule": config.molecule,
        "labels": {"program": "pyscf", "method": config.method, "basis": config.basis,
                   "active_space": {"electrons": config.nelecas, "orbitals": config.ncas,
                                    "character": "C=C pi and pi* (carbon p weight in active_carbon_p)",
                                    "rotated_below_overlap": ACTIVE_OVERLAP_THRESHOLD},
                   "state_averaging": {"states": config.nstates, "weights": [1.0 / config.nstates] * config.nstates,
                                       "spin": "singlets forced: fix_spin_(ss=0)"},
                   "starts": "SA-CASSCF converged from the previous geometry's orbitals (the chain's previous label "
                             "in this run) and from RHF orbitals; the lower state-averaged solution is kept (info "
                             "guess; other_start_excess: the other start's SA energy above it, eV)",
                   "conv_tol": config.conv_tol, "conv_tol_grad": config.conv_tol_grad,
                   "energy_keys": [f"REF_energy_S{k}" for k in range(config.nstates)],
                   "forces_keys": [f"REF_forces_S{k}" for k in range(config.nstates)],
                   "gap_key": "REF_gap", "coupling": COUPLING_NOTE,
                   "units": {"energy": "eV", "forces": "eV/Angstrom", "coupling": "1/Angstrom"}},
        "sampling": {"design": "chain 0 torsion scan 0..180 deg step 7.5 (planar CH2); chain 1 pyramidalisation "
                               "scan 0..60 deg step 5 at 90 deg torsion; chain 2 grid torsion 0..180 step 15 x "
                               "pyramidalisation 0..90 step 10 (snake order); chains 3.. the grid again with angles "
                               "jittered within half a cell, the C=C bond uniform in 1.30..1.50 A (info cc_bond) "
                               "and Gaussian Cartesian noise; chain 1000 xTB MD",
                     "seed": config.seed, "noise_angstrom": config.noise, "md_snapshots": config.md_snapshots,
                     "md_temperature_K": config.md_temperature, "noise_seed": "1000000*seed + 1000*chain + step"},
        "counts": {"frames": len(frames), "per_chain": {str(c): sum(int(a.info["chain"]) == c for a in frames)
                                                         for c in chains},
                   "design": config.count + config.md_snapshots,
                   "failed": _failures(out),
                   "kept_start": {s: sum(a.info["guess"] == s for a in frames) for s in ("previous", "rhf")},
                   "other_start_higher_by_1e-6_eV": sum(float(a.info["other_start_excess"]) > 1e-6 for a in frames)},
        "versions": _versions(),
        "wall_time_s": {"labelling_wall": round(wall[0], 1), "labelling_runs": wall[1],
                        "labelling_process_sum": round(sum(seconds), 1),
                        "mean_per_label": round(sum(seconds) / max(len(seconds), 1), 3),
                        "sampling": round(sample_seconds, 3)},
        "sha256": files,
        "config": dataclasses.asdict(config),
    }


ENERGIES_ONLY_NOTE = ("S0 and S1 energies only, no forces and no S0-S1 coupling: SA-CASSCF(2,2)/STO-3G energies of "
                      "stilbene cost about 6 s per geometry, each state gradient or the coupling about 2 min")


def _energies_only(manifest: dict[str, Any]) -> None:
    """Rewrite the ethylene-shaped manifest for stilbene's energies-only labels and design."""
    labels = manifest["labels"]
    for key in ("forces_keys", "coupling"):
        labels.pop(key)
    labels.update(energies_only=ENERGIES_ONLY_NOTE, units={"energy": "eV"})
    labels["active_space"]["character"] = ("the pi HOMO/LUMO pair (C=C pi/pi* delocalised over the rings; carbon p "
                                           "weight in active_carbon_p)")
    manifest["sampling"]["design"] = STILBENE_DESIGN


def assemble(out: Path | str) -> dict[str, Any]:
    """Write ``frames.extxyz.xz`` (every label of the design, sorted by chain and step) and ``manifest.json``."""
    out = Path(out)
    config = ExcitedConfig(**json.loads((out / "config.json").read_text(encoding="utf-8")))
    start = time.perf_counter()
    wanted = {(g.chain, g.step) for g in config.geometries()}
    sample_seconds = time.perf_counter() - start
    frames = [a for chain in sorted({c for c, _ in wanted}) for a in labelled(out, chain, repair=False)
              if (int(a.info["chain"]), int(a.info["step"])) in wanted]
    frames.sort(key=lambda a: (int(a.info["chain"]), int(a.info["step"])))
    _write_xz(frames, out / "frames.extxyz.xz")
    files = {"frames.extxyz.xz": file_sha256(out / "frames.extxyz.xz")}
    wall = _labelling_wall(out, sorted(float(a.info.get("labelled_at", 0.0)) for a in frames))
    manifest = _manifest(config, frames, files, wall, sample_seconds, out)
    if config.energies_only:
        _energies_only(manifest)
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _fsync_replace(tmp, out / "manifest.json")
    return manifest
