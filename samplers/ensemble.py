"""The ensemble file: one HDF5 file per Markov chain (layout in docs/design.md).

    /configs                 (N, *config_shape) float64, chunked, appended as the chain runs
    /diagnostics/action      (N,) S of each stored configuration
    /diagnostics/accept      (N,) acceptance over the `every` updates that led to it
    /diagnostics/dH          (N,) HMC only: dH of the last trajectory before it
    /state/config            the chain's configuration at the last flush (= the last stored one)
    /state/rng               (6,) uint64: the PCG64 state of the chain's generator at that point
    /state/counters          (3,) int64: n_stored, n_updates, thermalized
    /state/sampler           (K,) float64: what the sampler carries besides the configuration
                             (learned-mh: next proposal index, log q of the current
                             configuration, its proposal index; K = 0 for HMC and Metropolis)
    /state_next/...          the same four datasets: each flush writes the new state here in
                             full before it writes /state (see below)
    attributes               theory, parameters, lattice, algorithm and tuned settings, seed,
                             provenance (program, version, git commit, host, user, command, times)

Crash safety: while a chain runs the file is in HDF5 single-writer/multiple-reader (SWMR)
mode, whose ordered metadata writes keep the file consistent if the writer dies at any
moment. Each flush writes the new configurations first and the state after them, so the
state never points past the data. The state is several datasets, each its own write, so a
writer killed between them would leave a torn state (a new configuration beside an old RNG
state): each flush writes it twice, to /state_next and then to /state, each with its counters
last. If the two copies' counters differ, the kill came while /state was being written and
/state_next is the complete new state; if they agree, /state is complete (a kill while
/state_next was written left /state untouched). ``valid_state`` picks the copy. Readers open
with ``swmr=True`` (``open_ensemble``) and take the first ``n_stored`` configurations. A file whose writer was killed keeps HDF5's
"open for writing" flag; ``--resume`` copies its valid content into a clean file, then
replaces the original atomically, and continues from the stored state.
"""
from __future__ import annotations

import errno
import fcntl
import getpass
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from .chain import ChainState, RunSummary
from .hdf5_flags import cleared_view

FORMAT = "latticeml-ensemble"
FORMAT_VERSION = 1
_MB = 1 << 20
REQUIRED_ATTRS = ("theory", "params", "shape", "algorithm", "seed", "every", "init", "n_therm", "sampler_settings")
REQUIRED_DATA = ("configs", "diagnostics", "state/config", "state/rng", "state/counters")
STATE, STATE_NEXT = "state", "state_next"


class EnsembleError(ValueError):
    """A problem with an ensemble file, stated in one line."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance() -> dict:
    """Who made the file, with what, where and how."""
    from lattice import __version__

    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        commit = head.stdout.strip() if head.returncode == 0 else ""
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += "-dirty"
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = ""
    return {
        "program": "latticeml generate",
        "version": __version__,
        "git_commit": commit or "unknown",
        "host": socket.gethostname(),
        "user": user,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "command_line": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "start_time": now(),
    }


# ---------------------------------------------------------------- RNG state <-> array
def rng_to_array(rng: np.random.Generator) -> np.ndarray:
    s = rng.bit_generator.state
    if s["bit_generator"] != "PCG64":
        raise TypeError("only PCG64 generators are stored")
    m = (1 << 64) - 1
    st, inc = s["state"]["state"], s["state"]["inc"]
    return np.array([st >> 64, st & m, inc >> 64, inc & m, s["has_uint32"], s["uinteger"]], dtype=np.uint64)


def rng_from_array(a: np.ndarray) -> np.random.Generator:
    a = [int(v) for v in a]
    bg = np.random.PCG64()
    bg.state = {"bit_generator": "PCG64", "state": {"state": (a[0] << 64) | a[1], "inc": (a[2] << 64) | a[3]},
                "has_uint32": a[4], "uinteger": a[5]}
    return np.random.Generator(bg)


# ---------------------------------------------------------------- reading
TRUNCATED_RETRIES, TRUNCATED_WAIT = 20, 0.1  # up to 2 s for a writer's flush to reach the disk


def open_ensemble(path: str | os.PathLike) -> h5py.File:
    """Open an ensemble for reading, also one still being written or whose writer was killed."""
    path = Path(path)
    if not path.exists():
        raise EnsembleError(f"{path}: no such file")
    for attempt in range(TRUNCATED_RETRIES + 1):
        try:
            f = h5py.File(path, "r", locking=False)  # readers take no lock, so they never block a writer
            break
        except OSError as e:
            if "already open for write" in str(e):
                f = _open_flagged(path)
                break
            # a running writer's flush can leave the end of the file on disk behind its superblock for
            # a moment ("truncated file: eof < stored_eof"): look again before calling the file damaged
            if "truncated file" not in str(e) or attempt == TRUNCATED_RETRIES:
                raise EnsembleError(f"{path}: not a readable HDF5 file (truncated or damaged?): {e}") from None
            time.sleep(TRUNCATED_WAIT)
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise EnsembleError(f"{path}: not a latticeml ensemble file")
    missing = [k for k in REQUIRED_ATTRS if k not in f.attrs] + [k for k in REQUIRED_DATA if k not in f]
    if missing:
        f.close()
        raise EnsembleError(f"{path}: not a complete latticeml ensemble (no {', '.join(missing)})")
    return f


def _open_flagged(path: Path) -> h5py.File:
    """A file still flagged "open for write": a running (or killed) SWMR writer's, read with SWMR;
    otherwise one whose plain writer was killed, read through a view with the flags cleared."""
    try:
        return h5py.File(path, "r", swmr=True, locking=False)
    except OSError:
        pass
    view = cleared_view(path)
    if view is None:
        raise EnsembleError(f"{path}: flagged open for write and not readable") from None
    try:
        return h5py.File(view, "r")
    except OSError as e:
        view.close()
        raise EnsembleError(f"{path}: not readable after its writer was killed: {e}") from None


def attrs_of(f: h5py.File) -> dict:
    """The file's attributes as plain Python values (JSON fields decoded)."""
    out = {}
    for k, v in f.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        if k in ("params", "sampler_settings", "shape", "config_shape"):
            v = json.loads(v) if isinstance(v, str) else v
        out[k] = v
    return out


def valid_state(f: h5py.File) -> h5py.Group:
    """The complete copy of the chain state: /state, unless a writer was killed while writing it,
    which /state_next's differing counters show (files made before /state_next have /state only)."""
    if STATE_NEXT not in f:
        return f[STATE]
    if f.swmr_mode:
        for g in (STATE, STATE_NEXT):
            for d in f[g].values():
                d.refresh()
    same = np.array_equal(f[f"{STATE}/counters"][...], f[f"{STATE_NEXT}/counters"][...])
    return f[STATE] if same else f[STATE_NEXT]


def n_stored(f: h5py.File) -> int:
    """Configurations covered by the stored state (valid ones), never more than written."""
    if f.swmr_mode:
        f["configs"].refresh()
    return min(int(valid_state(f)["counters"][0]), f["configs"].shape[0])


@dataclass
class Ensemble:
    attrs: dict
    configs: np.ndarray
    diagnostics: dict


def read_ensemble(path: str | os.PathLike, start: int = 0, stop: int | None = None, step: int = 1) -> Ensemble:
    """The valid configurations [start:stop:step], diagnostics and attributes of an ensemble file."""
    with open_ensemble(path) as f:
        n = n_stored(f)
        stop = n if stop is None else min(stop, n)
        if f.swmr_mode:
            for d in [f["configs"], *f["diagnostics"].values()]:
                d.refresh()
        rows = slice(start, max(start, stop), step)
        return Ensemble(attrs_of(f), f["configs"][rows], {k: d[rows] for k, d in f["diagnostics"].items()})


def load_state(f: h5py.File) -> ChainState:
    g = valid_state(f)
    counters = g["counters"][...]
    sampler = g["sampler"][...] if "sampler" in g else np.zeros(0)
    return ChainState(config=np.ascontiguousarray(g["config"][...]), rng=rng_from_array(g["rng"][...]),
                      n_stored=int(counters[0]), n_updates=int(counters[1]), thermalized=bool(counters[2]),
                      sampler_state=np.asarray(sampler, dtype=np.float64))


# ---------------------------------------------------------------- writing
def _create_state(f: h5py.File, name: str, config_shape: tuple, sampler_size: int) -> None:
    s = f.create_group(name)
    s.create_dataset("config", shape=config_shape, dtype="f8")
    s.create_dataset("rng", shape=(6,), dtype="u8")
    s.create_dataset("counters", shape=(3,), dtype="i8")
    s.create_dataset("sampler", shape=(sampler_size,), dtype="f8")


def _write_state(f: h5py.File, state: ChainState) -> None:
    """Write the state to /state_next, then to /state; in each, the counters last (valid_state)."""
    for name in (STATE_NEXT, STATE):
        g = f[name]
        g["config"][...] = state.config
        g["rng"][...] = rng_to_array(state.rng)
        if state.sampler_state.size:
            g["sampler"][...] = state.sampler_state
        for d in ("config", "rng", "sampler"):
            g[d].flush()  # each on disk before the counters that vouch for them
        g["counters"][...] = [state.n_stored, state.n_updates, int(state.thermalized)]
        g["counters"].flush()


def create_ensemble(path: Path, attrs: dict, config_shape: tuple, diagnostics: tuple[str, ...],
                    state: ChainState) -> None:
    """Create the file with its attributes, empty datasets and the initial chain state.

    Written to a temporary name and renamed, so an existing file (with --overwrite) is only
    replaced by a complete new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    bytes_per_config = 8 * int(np.prod(config_shape))
    chunk = max(1, min(4096, _MB // bytes_per_config))
    with h5py.File(tmp, "w", libver="latest") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        for k, v in attrs.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) else v
        f.attrs["status"] = "created"
        f.create_dataset("configs", shape=(0, *config_shape), maxshape=(None, *config_shape),
                         chunks=(chunk, *config_shape), dtype="f8")
        g = f.create_group("diagnostics")
        for name in ("action", "accept", *diagnostics):
            g.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(max(chunk, 1024),), dtype="f8")
        for name in (STATE, STATE_NEXT):
            _create_state(f, name, config_shape, state.sampler_state.size)
        _write_state(f, state)
    os.replace(tmp, path)


class WriteError(EnsembleError):
    """Writing the ensemble failed (disk full, say): what was flushed before stays readable.
    HDF5 objects left after a failed write can crash the interpreter when they are freed, so a
    CLI reports this error and ends the process at once (``os._exit``)."""


def make_clean(path: Path) -> None:
    """Make a file left by a killed writer (HDF5 flag 'open for writing' still set) a clean one:
    copy its valid content to a temporary file and replace the original atomically."""
    path = Path(path)
    try:
        h5py.File(path, "r+").close()
        return
    except OSError:
        pass
    tmp = path.with_name(path.name + ".partial")
    _check_room(path, tmp)
    try:
        # no `with` for dst: closing an HDF5 file after a failed write can crash the interpreter,
        # so on failure it is left to os._exit (WriteError)
        dst = h5py.File(tmp, "w", libver="latest")
        with open_ensemble(path) as src:
            n = n_stored(src)
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for name in ("configs", *(f"diagnostics/{k}" for k in src["diagnostics"])):
                d = src[name]
                if src.swmr_mode:
                    d.refresh()
                dst.create_dataset(name, data=d[:n], maxshape=d.maxshape, chunks=d.chunks, dtype=d.dtype)
            state = valid_state(src)
            for name in (STATE, STATE_NEXT):
                src.copy(state, dst, name)
            dst.close()
    except (OSError, RuntimeError) as e:
        raise WriteError(f"{path}: could not write its clean copy {tmp.name} ({_os_reason(e)}); "
                         f"{path} is untouched") from None
    os.replace(tmp, path)


def _check_room(path: Path, tmp: Path) -> None:
    """Refuse to start a copy of ``path`` that cannot fit (free disk space, or the process's
    file-size limit), before anything is written."""
    need = path.stat().st_size
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if shutil.disk_usage(tmp.parent).free < need or (soft != resource.RLIM_INFINITY and soft < need):
        raise WriteError(f"{path}: no room for its clean copy {tmp.name} ({need / _MB:.1f} MB; disk full); "
                         f"{path} is untouched")


def _os_reason(e: OSError) -> str:
    """The short reason of an OS / HDF5 write error (disk full is the common one)."""
    text = str(e)
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EFBIG) or "No space left" in text or "File too large" in text:
        return "disk full"
    return text.splitlines()[0] if text else type(e).__name__


def lock_ensemble(path: Path):
    """Take the ensemble's writer lock (an flock on NAME.lock beside it) for this process's
    lifetime, or raise EnsembleError if another process writes the file. Held from before the
    file is read until the process exits, so two writers of one file can never overlap."""
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock, "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise EnsembleError(f"{path} is being written by another process (lock {lock.name} is held); "
                            "wait for it to finish or stop it first") from None
    return fh


@contextmanager
def writing(path: Path, what: str = "write"):
    """Turn an HDF5 / OS write failure into one WriteError line that names the file."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        raise WriteError(f"{path}: {what} failed ({_os_reason(e)}); every configuration flushed before stays "
                         "readable: continue with --resume once there is room") from None


def mark_resumed(path: Path, n_configs: int) -> None:
    """Record a --resume (new target length, resume count) in the file's attributes."""
    with writing(path), h5py.File(path, "r+") as f:
        f.attrs["n_configs"] = n_configs
        f.attrs["resumed"] = int(f.attrs.get("resumed", 0)) + 1


class EnsembleWriter:
    """Appends a running chain to its file (the Writer of samplers/chain.py)."""

    def __init__(self, path: Path, extra_end_attrs: dict | None = None):
        self.path = Path(path)
        self.f: h5py.File | None = None
        self.buffer: list = []
        self.extra_end_attrs = extra_end_attrs or {}

    def begin(self, state: ChainState, settings: dict) -> None:
        with writing(self.path):
            self._begin(state, settings)

    def _begin(self, state: ChainState, settings: dict) -> None:
        f = h5py.File(self.path, "r+", libver="latest")
        f.attrs["sampler_settings"] = json.dumps(settings)
        f.attrs["status"] = "running"
        n = state.n_stored
        for d in [f["configs"], *f["diagnostics"].values()]:
            d.resize(n, axis=0)  # drop anything written after the stored state
        if STATE_NEXT not in f:  # a file from before /state_next
            _create_state(f, STATE_NEXT, state.config.shape, state.sampler_state.size)
        _write_state(f, state)
        f.flush()
        f.swmr_mode = True
        self.f = f

    def append(self, config: np.ndarray, action: float, info: dict) -> None:
        self.buffer.append((config.copy(), action, info))

    def flush(self, state: ChainState) -> None:
        if self.buffer:
            with writing(self.path):
                self._flush(state)

    def _flush(self, state: ChainState) -> None:
        f = self.f
        n0 = f["configs"].shape[0]
        n1 = n0 + len(self.buffer)
        d = f["configs"]
        d.resize(n1, axis=0)
        d[n0:n1] = np.stack([b[0] for b in self.buffer])
        d.flush()
        diag = f["diagnostics"]
        for name, dset in diag.items():
            dset.resize(n1, axis=0)
            dset[n0:n1] = [b[1] if name == "action" else b[2][name] for b in self.buffer]
            dset.flush()
        _write_state(f, state)
        f.flush()
        self.buffer.clear()

    def finish(self, summary: RunSummary) -> None:
        with writing(self.path):
            self.f.close()
            self.f = None
            self._mark_complete(summary)

    def _mark_complete(self, summary: RunSummary) -> None:
        with h5py.File(self.path, "r+") as f:
            f.attrs["status"] = "complete"
            f.attrs["end_time"] = now()
            f.attrs["compile_time_s"] = summary.compile_time
            f.attrs["sampling_time_s"] = summary.wall_time
            f.attrs["acceptance"] = summary.acceptance
            f.attrs["sampler_report"] = json.dumps(summary.report)
            for k, v in self.extra_end_attrs.items():
                f.attrs[k] = v
