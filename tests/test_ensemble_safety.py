"""What may happen to an ensemble file with real processes: a second writer, a full disk, a
killed plain (non-SWMR) writer, a killed `measure`. The configurations must stay readable and
the chain resumable, and each problem is one line on stderr."""
import json
import resource
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from samplers.ensemble import read_ensemble
from tests.cli import ENV, ROOT, generate_then_kill, run_cli

CHAIN = ["--theory", "phi4", "--L", "8", "--kappa", "0.2", "--lam", "0.02", "--algorithm", "metropolis",
         "--n-therm", "10", "--seed", "3", "--quiet"]


def _kill_plain_writer(path) -> None:
    """Leave ``path`` as a plain h5py writer killed mid-update leaves it: flagged open for write."""
    code = (f"import h5py, time\nf = h5py.File({str(path)!r}, 'r+')\nf.attrs['note'] = 'x'\nf.flush()\n"
            "print('open', flush=True)\ntime.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_second_writer_of_one_file_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "a.h5"
    first = subprocess.Popen([sys.executable, "-m", "generate", *CHAIN, "--n-configs", "400000", "--out", str(out)],
                             cwd=ROOT, env=ENV)
    try:
        deadline = time.time() + 60
        while not out.exists() and time.time() < deadline:
            time.sleep(0.05)
        rc, _, err = run_cli("generate", "--out", out, "--resume", "--n-configs", "400000", "--quiet")
        assert rc == 2 and "being written by another process" in err and len(err.strip().splitlines()) == 1
        assert first.poll() is None  # the first writer runs on, undisturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert len(read_ensemble(out).configs) >= 0  # still readable after the kill


def test_full_disk_is_one_line_and_the_chain_resumes_to_the_uninterrupted_result(tmp_path):
    full, ref = tmp_path / "full.h5", tmp_path / "ref.h5"
    args = [sys.executable, "-m", "generate", *CHAIN, "--n-configs", "2500", "--flush-seconds", "0"]

    def small_disk():  # writes past 1.2 MB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_200_000, 1_200_000))

    p = subprocess.run([*args, "--out", str(full)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       preexec_fn=small_disk, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "disk full" in p.stderr and str(full) in p.stderr
    kept = len(read_ensemble(full).configs)
    assert 0 < kept < 2500
    assert run_cli("generate", "--out", full, "--resume", "--n-configs", 2500, "--quiet")[0] == 0
    subprocess.run([*args, "--out", str(ref)], cwd=ROOT, env=ENV, check=True, timeout=120)
    np.testing.assert_array_equal(read_ensemble(full).configs, read_ensemble(ref).configs)


def test_resume_on_a_full_disk_leaves_the_file_as_it_was(tmp_path):
    out = tmp_path / "a.h5"
    assert run_cli("generate", *CHAIN, "--n-configs", 200, "--out", out)[0] == 0
    generate_then_kill([*CHAIN[:-1], "--n-configs", "400000", "--resume", "--flush-seconds", "0"], out, 300)
    before = read_ensemble(out).configs

    def no_room():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    p = subprocess.run([sys.executable, "-m", "generate", "--out", str(out), "--resume", "--n-configs", "400000",
                        "--quiet"], cwd=ROOT, env=ENV, capture_output=True, text=True, preexec_fn=no_room,
                       timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "disk full" in p.stderr
    np.testing.assert_array_equal(read_ensemble(out).configs, before)


@pytest.mark.parametrize("kill_at, torn", [(9, "state_next"), (10, "state")])
def test_a_writer_killed_inside_its_state_write_resumes_to_the_uninterrupted_chain(tmp_path, kill_at, torn):
    # rng_to_array calls: 2 at creation, 2 at the start, then 2 a flush: 9 tears /state_next of the
    # third flush, 10 tears /state (its new configuration beside the old RNG state and counters)
    args = ["--theory", "u1", "--L", "4", "--beta", "2", "--n-therm", "5", "--seed", "3", "--n-configs", "20",
            "--flush-seconds", "0", "--quiet"]
    p = subprocess.run([sys.executable, "tests/torn_state_writer.py", *args, "--out", tmp_path / "k.h5"],
                       cwd=ROOT, env={**ENV, "KILL_AT": str(kill_at)}, capture_output=True)
    assert p.returncode == -signal.SIGKILL
    with h5py.File(tmp_path / "k.h5", "r", swmr=True) as f:
        assert not np.array_equal(f[f"{torn}/config"][...], f["configs"][f[f"{torn}/counters"][0] - 1])
    assert run_cli("generate", *args, "--out", tmp_path / "k.h5", "--resume")[0] == 0
    assert run_cli("generate", *args, "--out", tmp_path / "r.h5")[0] == 0
    with h5py.File(tmp_path / "k.h5", "r") as fk, h5py.File(tmp_path / "r.h5", "r") as fr:
        for name in ("configs", "state/config", "state/rng", "state/counters", "diagnostics/dH"):
            np.testing.assert_array_equal(fk[name][...], fr[name][...], err_msg=name)


def test_a_file_whose_plain_writer_was_killed_is_read_and_resumed(tmp_path):
    out = tmp_path / "a.h5"
    assert run_cli("generate", *CHAIN, "--n-configs", 100, "--out", out)[0] == 0
    expected = read_ensemble(out).configs
    _kill_plain_writer(out)
    try:
        h5py.File(out, "r", locking=False).close()
        raise AssertionError("the killed writer should have left the file flagged")
    except OSError as e:
        assert "already open for write" in str(e)
    np.testing.assert_array_equal(read_ensemble(out).configs, expected)
    rc, out_text, err = run_cli("observables", "measure", out)
    assert rc == 0, err
    assert run_cli("generate", "--out", out, "--resume", "--n-configs", 150, "--quiet")[0] == 0
    np.testing.assert_array_equal(read_ensemble(out).configs[:100], expected)
    assert len(read_ensemble(out).configs) == 150


def test_measure_stores_into_a_side_file_and_never_opens_the_ensemble_for_writing(tmp_path):
    out = tmp_path / "a.h5"
    assert run_cli("generate", *CHAIN, "--n-configs", 100, "--out", out)[0] == 0
    stamp = out.stat().st_mtime_ns, out.read_bytes()
    assert run_cli("observables", "measure", out)[0] == 0
    assert (out.stat().st_mtime_ns, out.read_bytes()) == stamp
    assert (tmp_path / "a.observables.json").exists()


def test_two_measures_of_one_file_at_once_both_succeed_and_leave_valid_results(tmp_path):
    out = tmp_path / "a.h5"
    assert run_cli("generate", *CHAIN, "--n-configs", 100, "--out", out)[0] == 0
    procs = [subprocess.Popen([sys.executable, "-m", "observables", "measure", str(out)], cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs), [p.stderr.read() for p in procs]
    assert json.loads((tmp_path / "a.observables.json").read_text())["settings"]["n"] == 100
    assert not list(tmp_path.glob("*.partial"))
