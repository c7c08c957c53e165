"""python -m generate --workers W [--executor local|mpi]: the chains of a set in blocks over worker
processes write the files of one process, bit for bit; a killed worker ends the run with one line
naming the unfinished chains, and --resume completes them bit for bit; so does a full disk in a worker;
a second run on a set being written is one line. Real processes throughout (a spawn process pool;
mpiexec with 3 ranks)."""
import fcntl
import os
import pty
import resource
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from samplers.ensemble import open_ensemble
from samplers.executors import local_worker_threads, split_chains
from tests.cli import ENV, ROOT, run_cli

U1_SMALL = ["--theory", "u1", "--L", "4", "--beta", "2", "--n-therm", "20", "--seed", "3", "--n-configs", "60"]


def assert_same_files(a, b):
    """Two chain files hold the same chain: configurations, diagnostics and stored state, bitwise."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = ["configs", "state/config", "state/rng", "state/counters",
                 *(f"diagnostics/{n}" for n in fa["diagnostics"])]
        for name in names:
            np.testing.assert_array_equal(fa[name][...], fb[name][...], err_msg=f"{a} {name}")
        assert fa.attrs["chain"] == fb.attrs["chain"]


def test_chains_split_into_contiguous_even_blocks():
    assert split_chains(0, 5, 2) == [(0, 3), (3, 2)]
    assert split_chains(4, 3, 8) == [(4, 1), (5, 1), (6, 1)]
    assert split_chains(0, 4, 1) == [(0, 4)]


@pytest.mark.parametrize("chains, workers", [(3, 2), (2, 2)])
def test_a_set_on_workers_writes_the_files_of_one_process(tmp_path, chains, workers):
    code, out, err = run_cli("generate", *U1_SMALL, "--chains", chains, "--workers", workers,
                             "--out", tmp_path / "w.h5")
    assert code == 0, err
    assert f"over {workers} worker processes" in out and f"chain {chains - 1}:" in out
    assert run_cli("generate", *U1_SMALL, "--chains", chains, "--quiet", "--out", tmp_path / "one.h5")[0] == 0
    for k in range(chains):
        assert_same_files(tmp_path / f"w.chain{k}.h5", tmp_path / f"one.chain{k}.h5")


def test_one_chain_on_workers_keeps_the_plain_name(tmp_path):
    assert run_cli("generate", *U1_SMALL, "--workers", "2", "--quiet", "--out", tmp_path / "a.h5")[0] == 0
    assert [p.name for p in tmp_path.glob("*.h5")] == ["a.h5"]


def test_a_learned_set_on_workers_writes_the_files_of_one_process(tmp_path, trained):
    args = ["--algorithm", "learned-mh", "--proposal", trained("u1_L4_undertrained"), "--proposal-batch", "16",
            "--n-therm", "10", "--n-configs", "40", "--seed", "2", "--chains", "3", "--quiet"]
    code, _, err = run_cli("generate", *args, "--workers", "2", "--out", tmp_path / "w.h5")
    assert code == 0, err
    assert run_cli("generate", *args, "--out", tmp_path / "one.h5")[0] == 0
    for k in range(3):
        assert_same_files(tmp_path / f"w.chain{k}.h5", tmp_path / f"one.chain{k}.h5")


def test_bad_input_on_workers_is_one_line_once(tmp_path):
    code, _, err = run_cli("generate", *U1_SMALL, "--chains", "4", "--workers", "2", "--every", "0",
                           "--out", tmp_path / "w.h5")
    assert code == 2 and err.strip().count("\n") == 0 and "--every must be >= 1" in err
    code, _, err = run_cli("generate", *U1_SMALL, "--workers", "0", "--out", tmp_path / "w.h5")
    assert code == 2 and err.strip() == "python -m generate: error: --workers must be >= 1, got 0"


def stored(path) -> int:
    try:
        with open_ensemble(path) as f:
            return int(f["state/counters"][0])
    except Exception:  # not created, or not yet readable
        return 0


def test_a_killed_worker_ends_the_run_in_one_line_and_resume_completes_every_chain(tmp_path):
    args = ["--theory", "u1", "--L", "8", "--beta", "2", "--n-therm", "20", "--seed", "3", "--chains", "4",
            "--n-configs", "4000", "--every", "20", "--flush-seconds", "0.1", "--out", tmp_path / "k.h5"]
    proc = subprocess.Popen([sys.executable, "-m", "generate", *map(str, args), "--workers", "2"], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while (min(stored(tmp_path / f"k.chain{k}.h5") for k in range(4)) < 20 and time.time() < deadline
           and proc.poll() is None):
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True, text=True)
    victim = int(workers.stdout.split()[0])
    subprocess.run(["kill", "-KILL", str(victim)], check=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.strip().count("\n") == 0, err
    assert "a worker process ended before its chains were done" in err and "did not finish" in err
    assert "continue with --resume" in err
    held = [stored(tmp_path / f"k.chain{k}.h5") for k in range(4)]
    assert 0 < min(held) and max(held) < 4000  # every file readable, none finished
    code, _, err = run_cli("generate", *args, "--workers", "2", "--resume", "--quiet")
    assert code == 0, err
    code, _, err = run_cli("generate", *[a if a != tmp_path / "k.h5" else tmp_path / "r.h5" for a in args],
                           "--quiet")
    assert code == 0, err
    for k in range(4):
        assert_same_files(tmp_path / f"k.chain{k}.h5", tmp_path / f"r.chain{k}.h5")


def test_a_full_disk_in_a_worker_is_one_line_and_resume_completes_every_chain(tmp_path):
    """Every file limited to 1.2 MB (RLIMIT_FSIZE, inherited by the workers), as on a full disk: the
    worker that fails says why through the pool, the run ends in that one line naming the unfinished
    chains, and --resume with room completes every chain bit for bit."""
    args = ["--theory", "u1", "--L", "8", "--beta", "2", "--n-therm", "20", "--seed", "3", "--chains", "3",
            "--n-configs", "2500", "--flush-seconds", "0"]

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_200_000, 1_200_000))

    p = subprocess.run([sys.executable, "-m", "generate", *args, "--workers", "2", "--out", str(tmp_path / "f.h5")],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, preexec_fn=small_disk, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "write failed (disk full)" in p.stderr and "did not finish" in p.stderr and "--resume" in p.stderr
    held = [stored(tmp_path / f"f.chain{k}.h5") for k in range(3)]
    assert 0 < min(held) and max(held) < 2500
    code, _, err = run_cli("generate", *args, "--workers", "2", "--resume", "--quiet", "--out", tmp_path / "f.h5")
    assert code == 0, err
    assert run_cli("generate", *args, "--quiet", "--out", tmp_path / "r.h5")[0] == 0
    for k in range(3):
        assert_same_files(tmp_path / f"f.chain{k}.h5", tmp_path / f"r.chain{k}.h5")


def test_a_second_worker_run_on_a_set_being_written_is_one_line_and_leaves_it_intact(tmp_path):
    args = ["--theory", "u1", "--L", "8", "--beta", "2", "--n-therm", "20", "--seed", "3", "--chains", "3",
            "--n-configs", "200000", "--every", "20", "--flush-seconds", "0.1", "--workers", "2",
            "--out", tmp_path / "s.h5"]
    first = subprocess.Popen([sys.executable, "-m", "generate", *map(str, args), "--quiet"], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while min(stored(tmp_path / f"s.chain{k}.h5") for k in range(3)) < 10 and time.time() < deadline:
            time.sleep(0.05)
        code, _, err = run_cli("generate", *args, "--resume")
        assert code == 2 and err.count("\n") == 1, err
        assert "is being written by another process" in err and "1 other blocks of chains failed too" in err
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()  # its workers end with it
        first.communicate(timeout=60)
    assert min(stored(tmp_path / f"s.chain{k}.h5") for k in range(3)) >= 10


def test_workers_end_with_their_killed_main_process_and_leave_every_file_readable(tmp_path):
    args = ["--theory", "u1", "--L", "8", "--beta", "2", "--n-therm", "20", "--seed", "3", "--chains", "2",
            "--n-configs", "200000", "--every", "20", "--flush-seconds", "0.1", "--workers", "2", "--quiet",
            "--out", tmp_path / "o.h5"]
    proc = subprocess.Popen([sys.executable, "-m", "generate", *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while min(stored(tmp_path / f"o.chain{k}.h5") for k in range(2)) < 10 and time.time() < deadline:
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True, text=True)
    pids = [int(pid) for pid in workers.stdout.split()]
    assert len(pids) == 2
    proc.kill()
    proc.wait()
    deadline = time.time() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}/cmdline").exists() and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in pids)  # no orphan goes on writing
    assert min(stored(tmp_path / f"o.chain{k}.h5") for k in range(2)) >= 10

def test_a_set_on_workers_shows_the_flushed_configurations_on_a_terminal(tmp_path):
    """stderr on a pseudo-terminal (120 columns): the main process's bar counts what the workers flushed."""
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "generate", *U1_SMALL, "--chains", "3", "--workers", "2",
                             "--n-configs", "3000", "--flush-seconds", "0.2", "--out", str(tmp_path / "p.h5")],
                            cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed: the run ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert proc.wait(timeout=120) == 0
    bar = shown.decode(errors="replace")
    assert "3 chains on 2 workers (flushed)" in bar and "9000/9000" in bar, bar[-500:]


def test_local_workers_share_the_cores_in_numba_threads(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert local_worker_threads(2) == max(1, cores // 2) and local_worker_threads(cores + 1) == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert local_worker_threads(2) is None  # the user's setting, inherited as it is


def test_the_mpi_executor_outside_an_mpi_launch_is_one_line(tmp_path):
    code, _, err = run_cli("generate", *U1_SMALL, "--chains", "2", "--executor", "mpi", "--out", tmp_path / "m.h5")
    assert code == 2 and err.strip().count("\n") == 0
    assert "mpiexec -n W+1 python -m mpi4py.futures -m generate" in err or "pip install" in err
    assert not list(tmp_path.glob("*.h5"))


def find_mpiexec():
    """mpiexec beside this Python (the mpich wheel of the mpi extra puts it there), else on the PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install -e \".[mpi]\" (CI installs it)")
def test_the_mpi_executor_writes_the_files_of_one_process(tmp_path):
    pytest.importorskip("mpi4py", reason="no mpi4py: pip install -e \".[mpi]\" (CI installs it)")
    p = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "-m", "mpi4py.futures", "-m", "generate",
                        *map(str, U1_SMALL), "--chains", "3", "--executor", "mpi", "--out", str(tmp_path / "m.h5")],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "over 2 worker processes" in p.stdout
    assert run_cli("generate", *U1_SMALL, "--chains", "3", "--quiet", "--out", tmp_path / "one.h5")[0] == 0
    for k in range(3):
        assert_same_files(tmp_path / f"m.chain{k}.h5", tmp_path / f"one.chain{k}.h5")


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install -e \".[mpi]\" (CI installs it)")
def test_a_killed_mpi_worker_leaves_every_file_readable_and_resume_completes_every_chain(tmp_path):
    # MPICH ends the whole launch when a rank dies (its own message, not ours); the files stay intact
    pytest.importorskip("mpi4py", reason="no mpi4py: pip install -e \".[mpi]\" (CI installs it)")
    args = ["--theory", "u1", "--L", "8", "--beta", "2", "--n-therm", "20", "--seed", "3", "--chains", "4",
            "--n-configs", "2000", "--every", "20", "--flush-seconds", "0.1"]
    launch = [MPIEXEC, "-n", "3", sys.executable, "-m", "mpi4py.futures", "-m", "generate", *args,
              "--executor", "mpi", "--out", str(tmp_path / "k.h5")]
    proc = subprocess.Popen(launch, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (min(stored(tmp_path / f"k.chain{k}.h5") for k in range(4)) < 20 and time.time() < deadline
           and proc.poll() is None):
        time.sleep(0.05)
    ranks = subprocess.run(["pgrep", "-f", f"mpi4py.futures -m generate .*{tmp_path / 'k.h5'}"],
                           capture_output=True, text=True).stdout.split()
    ranks = [int(r) for r in ranks if int(r) != proc.pid]
    subprocess.run(["kill", "-KILL", str(max(ranks))], check=True)  # the last rank started: a worker
    assert proc.wait(timeout=120) != 0
    held = [stored(tmp_path / f"k.chain{k}.h5") for k in range(4)]
    assert 0 < min(held) and max(held) < 2000
    code, _, err = run_cli("generate", *args, "--out", tmp_path / "k.h5", "--resume", "--quiet", "--workers", "2")
    assert code == 0, err
    assert run_cli("generate", *args, "--out", tmp_path / "r.h5", "--quiet")[0] == 0
    for k in range(4):
        assert_same_files(tmp_path / f"k.chain{k}.h5", tmp_path / f"r.chain{k}.h5")
