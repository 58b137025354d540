"""Generate ab initio data sets: GFN2-xTB Langevin MD samples, PySCF DFT labels, extended XYZ out.

Three steps, each resumable, all under one output folder:

1. **sample**: for each trajectory ``t`` (its own seed), Langevin MD with GFN2-xTB (``tblite`` through
   ASE) from the starting geometry; after ``equilibration`` steps a snapshot every ``interval`` steps.
   Snapshots go to ``samples/traj{t}.extxyz`` (written once, atomically).
2. **label**: PySCF DFT energy and forces (eV, eV/Å) of every snapshot, in ``workers`` single-threaded
   processes. Each finished label is appended and fsynced to ``labels/traj{t}.extxyz``; a restart
   reads the shards and skips what is there, so a kill loses only the labels in flight.
3. **assemble**: ``train``/``valid``/``test`` extended XYZ (xz-compressed; the test set is the last
   trajectory, never seen by train or valid) with ``REF_energy``/``REF_forces`` (mace-torch's
   ``energy_key``/``forces_key``), and ``manifest.json`` (method, versions, seeds, counts, sha256).

pyscf, tblite and ase are imported inside the functions that need them; this module imports without
them:

>>> config = DatasetConfig(molecule="ethanol", trajectories=3, per_trajectory=4, seed=7)
>>> config.trajectory_seeds()
[7000, 7001, 7002]
>>> snapshot_steps(equilibration=1000, interval=50, count=3)
[1000, 1050, 1100]
>>> config.method, config.basis
('b3lyp', '6-31g*')
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import lzma
import os
import platform
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

# ASE names of the molecules this module knows (ase.build.molecule); anything else is tried as-is.
MOLECULES = {"ethanol": "CH3CH2OH", "malonaldehyde": "malonaldehyde"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines the data set (saved as ``config.json``; a resume must match it)."""

    molecule: str = "ethanol"
    trajectories: int = 3
    per_trajectory: int = 500
    temperature: float = 500.0  # K
    seed: int = 0
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01
    equilibration: int = 2000  # MD steps before the first snapshot
    interval: int = 50  # MD steps between snapshots (25 fs)
    xtb_method: str = "GFN2-xTB"
    method: str = "b3lyp"  # PySCF exchange-correlation functional
    basis: str = "6-31g*"
    density_fitting: bool = True
    conv_tol: float = 1e-10
    valid_fraction: float = 0.1

    def trajectory_seeds(self) -> list[int]:
        return [1000 * self.seed + t for t in range(self.trajectories)]


def snapshot_steps(equilibration: int, interval: int, count: int) -> list[int]:
    """MD step numbers at which snapshots are taken."""
    return [equilibration + k * interval for k in range(count)]


def _ase_name(molecule: str) -> str:
    return MOLECULES.get(molecule.lower(), molecule)


# ----------------------------------------------------------------------------------------------- sampling
def sample_trajectory(config: DatasetConfig, trajectory: int) -> list[Any]:
    """Snapshots (ASE ``Atoms``) of one GFN2-xTB Langevin trajectory, seeded by ``trajectory``."""
    import numpy as np
    from ase import units
    from ase.build import molecule
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from tblite.ase import TBLite

    seed = config.trajectory_seeds()[trajectory]
    rng = np.random.default_rng(seed)
    atoms = molecule(_ase_name(config.molecule))
    atoms.calc = TBLite(method=config.xtb_method, verbosity=0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=config.temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, config.timestep_fs * units.fs, temperature_K=config.temperature,
                   friction=config.friction_per_fs / units.fs, fixcm=False, rng=rng)
    dyn.run(config.equilibration)
    snapshots = []
    for k in range(config.per_trajectory):
        if k:
            dyn.run(config.interval)
        snap = atoms.copy()
        snap.calc = None
        snap.set_constraint()
        snap.info = {"trajectory": trajectory, "index": k, "md_step": config.equilibration + k * config.interval,
                     "seed": seed, "temperature_K": config.temperature}
        snapshots.append(snap)
    return snapshots


def _read_frames(path: Path) -> list[Any]:
    from ase.io import read

    return list(read(path, ":", format="extxyz")) if path.exists() and path.stat().st_size else []


def samples(config: DatasetConfig, out: Path, trajectory: int) -> list[Any]:
    """The snapshots of one trajectory, sampled once and then read back from ``samples/``."""
    from ase.io import write

    path = out / "samples" / f"traj{trajectory}.extxyz"
    if path.exists():
        frames = _read_frames(path)
        if len(frames) >= config.per_trajectory:
            return frames[: config.per_trajectory]
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    frames = sample_trajectory(config, trajectory)
    for f in frames:
        f.info["sample_seconds"] = round((time.perf_counter() - start) / len(frames), 6)
    tmp = path.with_suffix(".tmp")
    write(tmp, frames, format="extxyz")
    _fsync_replace(tmp, path)
    return frames


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- labelling
_WORKER_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


def label_geometry(symbols: Sequence[str], positions: Any, method: str, basis: str, density_fitting: bool = True,
                   conv_tol: float = 1e-10, guess_key: Any = None) -> tuple[float, Any, float]:
    """PySCF restricted Kohn-Sham energy (eV), forces (eV/Å) and wall seconds of one closed-shell geometry.

    The density of the previous call with the same ``guess_key`` (in this process) is the initial guess.
    """
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    import numpy as np
    from ase.units import Bohr, Hartree
    from pyscf import dft, gto, lib

    lib.num_threads(1)
    start = time.perf_counter()
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(symbols, np.asarray(positions), strict=True)], basis=basis,
                unit="Angstrom", verbose=0)
    mf = dft.RKS(mol)
    mf.xc = method
    mf.conv_tol = conv_tol
    if density_fitting:
        mf = mf.density_fit()
    guesses: dict[Any, Any] = _WORKER_STATE.setdefault("dm", {})
    dm0 = guesses.get(guess_key)
    energy = mf.kernel(dm0=dm0) if dm0 is not None else mf.kernel()
    if not mf.converged:
        mf = mf.newton()
        energy = mf.kernel(dm0=mf.make_rdm1())
        if not mf.converged:
            raise RuntimeError("SCF did not converge")
    gradient = mf.nuc_grad_method().kernel()
    guesses[guess_key] = mf.make_rdm1()
    return float(energy) * Hartree, -np.asarray(gradient) * Hartree / Bohr, time.perf_counter() - start


def _label_task(config: DatasetConfig, trajectory: int, index: int, symbols: list[str],
                positions: Any) -> tuple[int, int, float, Any, float]:
    energy, forces, seconds = label_geometry(symbols, positions, config.method, config.basis,
                                             config.density_fitting, config.conv_tol, guess_key=trajectory)
    return trajectory, index, energy, forces, seconds


def _frame_text(atoms: Any) -> str:
    from ase.io import write

    buffer = io.StringIO()
    write(buffer, atoms, format="extxyz")
    return buffer.getvalue()


def _complete_text(path: Path) -> tuple[str, bool]:
    """The complete frames of a shard, and whether a partly written last frame (a kill mid-write) follows."""
    if not path.exists():
        return "", False
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    pos = 0
    while pos < len(lines):
        try:
            n = int(lines[pos].strip())
        except ValueError:
            break
        if pos + 2 + n > len(lines) or not lines[pos + 1 + n].endswith("\n"):
            break
        pos += 2 + n
    return "".join(lines[:pos]), pos < len(lines)


def labelled(out: Path, trajectory: int, repair: bool = True) -> list[Any]:
    """Labelled frames of one trajectory; ``repair`` drops a partial last frame from the file (only while no
    generation writes to it; ``assemble`` reads without repairing)."""
    from ase.io import read

    path = out / "labels" / f"traj{trajectory}.extxyz"
    text, partial = _complete_text(path)
    if partial and repair:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        _fsync_replace(tmp, path)
    return list(read(io.StringIO(text), ":", format="extxyz")) if text else []


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def save_config(config: Any, out: Path, growable: Sequence[str] = ("per_trajectory", "trajectories")) -> None:
    """Write ``config`` (a dataclass) as ``out/config.json``, atomically; a folder made with other
    settings is refused (``ValueError``), except for the ``growable`` counts, which a resumed run
    may raise."""
    path = out / "config.json"
    wanted = dataclasses.asdict(config)
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        clash = {k: (v, wanted.get(k)) for k, v in saved.items() if k not in growable and wanted.get(k) != v}
        if clash:
            raise ValueError(f"{out} was made with other settings (saved, asked): {clash}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    _fsync_replace(tmp, path)


def generate(config: DatasetConfig, out: Path | str, workers: int = 2, progress: bool = True,
             limit: int | None = None) -> int:
    """Sample (if not done) and label every missing snapshot; return the number of new labels.

    ``limit`` caps the labels made in this call (a smoke test). Trajectories are labelled round-robin,
    so a run stopped early leaves every trajectory about equally far.
    """
    from tqdm import tqdm

    out = Path(out)
    save_config(config, out)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    todo: list[tuple[int, Any]] = []
    total = done_before = 0
    for t in range(config.trajectories):
        frames = samples(config, out, t)
        done = {int(a.info["index"]) for a in labelled(out, t)}
        total += len(frames)
        done_before += len(done & set(range(len(frames))))
        todo += [(t, f) for f in frames if int(f.info["index"]) not in done]
    todo.sort(key=lambda item: (int(item[1].info["index"]), item[0]))
    if limit is not None:
        todo = todo[:limit]
    for name in THREAD_VARIABLES:  # spawned workers inherit these before numpy or pyscf load
        os.environ[name] = "1"
    import multiprocessing

    with open(out / "runs.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"started": time.time(), "workers": workers, "todo": len(todo)}) + "\n")
    made = 0
    bar = tqdm(total=total, initial=done_before, unit="label", disable=not progress, smoothing=0.05)
    pending = iter(todo)
    by_key = {(t, int(f.info["index"])): f for t, f in todo}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as pool:
        running: dict[Future[Any], tuple[int, int]] = {}

        def submit(n: int) -> None:
            for t, f in _take(pending, n):
                future = pool.submit(_label_task, config, t, int(f.info["index"]), f.get_chemical_symbols(),
                                     f.get_positions())
                running[future] = (t, int(f.info["index"]))

        submit(2 * workers)  # a short queue: a kill loses at most these
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                key = running.pop(future)
                try:
                    t, index, energy, forces, seconds = future.result()
                except Exception as error:  # noqa: BLE001 - logged; a rerun retries it
                    with open(out / "failures.jsonl", "a", encoding="utf-8") as handle:
                        handle.write(json.dumps({"time": time.time(), "trajectory": key[0], "index": key[1],
                                                "error": repr(error)}) + "\n")
                    continue
                atoms = by_key[(t, index)].copy()
                atoms.calc = None
                atoms.info.update(REF_energy=energy, label_seconds=round(seconds, 3), labelled_at=round(time.time(), 3),
                                  method=config.method, basis=config.basis, density_fitting=config.density_fitting)
                atoms.arrays["REF_forces"] = forces
                _append(out / "labels" / f"traj{t}.extxyz", _frame_text(atoms))
                made += 1
                bar.update(1)
                bar.set_postfix(s_per_label=f"{seconds:.1f}")
            submit(len(finished))
    bar.close()
    return made


def _take(iterator: Iterable[Any], n: int) -> list[Any]:
    taken = []
    for item in iterator:
        taken.append(item)
        if len(taken) >= n:
            break
    return taken


# ----------------------------------------------------------------------------------------------- assembling
def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (the manifest's checksums)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("pyscf", "tblite", "ase", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def assemble(out: Path | str, seed: int = 0) -> dict[str, Any]:
    """Write ``train``/``valid``/``test.extxyz.xz`` and ``manifest.json`` from the labelled shards.

    The last trajectory is the test set; the others are shuffled (``seed``) into train and valid.
    """
    import numpy as np
    from ase.io import write

    out = Path(out)
    config = DatasetConfig(**json.loads((out / "config.json").read_text(encoding="utf-8")))
    shards = {t: sorted(labelled(out, t, repair=False), key=lambda a: int(a.info["index"]))
              for t in range(config.trajectories)}
    test = shards[config.trajectories - 1]
    pool = [a for t in range(config.trajectories - 1) for a in shards[t]]
    order = np.random.default_rng(seed).permutation(len(pool))
    n_valid = int(round(config.valid_fraction * len(pool)))
    splits = {"train": [pool[i] for i in order[n_valid:]], "valid": [pool[i] for i in order[:n_valid]],
              "test": test}
    files = {}
    for name, frames in splits.items():
        path = out / f"{name}.extxyz.xz"
        tmp = out / f".{name}.extxyz.xz.tmp"
        buffer = io.StringIO()
        write(buffer, frames, format="extxyz")
        with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as handle:
            handle.write(buffer.getvalue())
        _fsync_replace(tmp, path)
        files[path.name] = file_sha256(path)
    label_seconds = [float(a.info.get("label_seconds", 0.0)) for frames in shards.values() for a in frames]
    finished = sorted(float(a.info.get("labelled_at", 0.0)) for frames in shards.values() for a in frames)
    starts = [json.loads(line)["started"] for line in (out / "runs.jsonl").read_text(encoding="utf-8").splitlines()
              if line.strip()] if (out / "runs.jsonl").exists() else []
    wall = 0.0
    for i, start in enumerate(starts):  # each run: from its start to its last label
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        inside = [f for f in finished if start <= f < end]
        wall += (max(inside) - start) if inside else 0.0
    sample_seconds = sum(float(f.info.get("sample_seconds", 0.0)) for t in range(config.trajectories)
                         for f in _read_frames(out / "samples" / f"traj{t}.extxyz"))
    manifest = {
        "molecule": config.molecule,
        "labels": {"program": "pyscf", "method": config.method, "basis": config.basis,
                   "density_fitting": config.density_fitting, "conv_tol": config.conv_tol,
                   "energy_key": "REF_energy", "forces_key": "REF_forces", "units": {"energy": "eV",
                                                                                      "forces": "eV/Angstrom"}},
        "sampling": {"program": "tblite", "method": config.xtb_method, "dynamics": "Langevin (ase)",
                     "temperature_K": config.temperature, "timestep_fs": config.timestep_fs,
                     "friction_per_fs": config.friction_per_fs, "equilibration_steps": config.equilibration,
                     "interval_steps": config.interval, "trajectory_seeds": config.trajectory_seeds()},
        "splits": {"test": f"trajectory {config.trajectories - 1}",
                   "train+valid": f"trajectories 0..{config.trajectories - 2}, shuffled with seed {seed}"},
        "counts": {name: len(frames) for name, frames in splits.items()},
        "labelled_per_trajectory": {str(t): len(frames) for t, frames in shards.items()},
        "versions": _versions(),
        "wall_time_s": {"labelling_wall": round(wall, 1), "labelling_runs": len(starts),
                        "labelling_process_sum": round(sum(label_seconds), 1),
                        "mean_per_label": round(sum(label_seconds) / max(len(label_seconds), 1), 3),
                        "sampling": round(sample_seconds, 1)},
        "sha256": files,
        "config": dataclasses.asdict(config),
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _fsync_replace(tmp, out / "manifest.json")
    return manifest
