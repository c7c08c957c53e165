"""python -m train under torchrun (samplers/distributed.py), with real torchrun processes on CPU (gloo):
two ranks train the parameters one process trains on the same shards of the same global batch, for
every gradient estimator, also as two torchrun nodes; rank 0 alone writes and prints; a run killed under torchrun resumes to the
uninterrupted run, on two ranks or on one; a NaN on one rank stops every rank at the same step; bad
input is one line from rank 0. Tiny 4 x 4 lattices."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import generate
from samplers.training import read_checkpoint
from tests.cli import ENV, ROOT

PHI4 = ["--theory", "phi4", "--L", "4", "--m2", "-4", "--g", "8"]
SMALL = ["--batch-size", "16", "--eval-batch", "16", "--checkpoint-every", "5", "--threads", "1", "--quiet"]
REALNVP = ["--model", "realnvp", "--n-layers", "2", "--hidden", "8"]


def torchrun(ranks: int, *args, module: str = "train", **kw) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node ranks -m module args`` (torchrun is torch.distributed.run)."""
    launch = ["-m", module] if module.endswith("train") else [str(ROOT / module)]
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                             str(ranks), *launch, *map(str, args)], cwd=ROOT, env={**ENV, **kw.pop("env", {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (torchrun starts each rank in a session of its own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL to torchrun and every rank at once, as a job's end does."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()


def one_process(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train", *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def our_lines(err: str) -> list[str]:
    """What python -m train said on stderr (torchrun adds its own log lines and failure report)."""
    return [line for line in err.splitlines() if line.startswith("python -m train")]


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_parameters(a, b, rtol=1e-5, atol=1e-6):
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=rtol, atol=atol, msg=key)


@pytest.fixture(scope="module")
def phi4_ensemble(tmp_path_factory):
    path = tmp_path_factory.mktemp("ens") / "phi4.h5"
    assert generate.main([*PHI4, "--algorithm", "hmc", "--n-configs", "200", "--seed", "1", "--quiet",
                          "--out", str(path)]) == 0
    return path


ESTIMATORS = {  # objective -> the model and data it trains
    "reverse-kl": [*PHI4, *REALNVP],
    "forward-kl": ["--ensemble", "ENSEMBLE", *REALNVP, "--objective", "forward-kl"],
    "reverse-kl-score": [*PHI4, "--model", "autoregressive", "--hidden", "8", "--objective", "reverse-kl-score"],
}


@pytest.mark.parametrize("objective", ESTIMATORS)
def test_two_ranks_train_the_parameters_of_one_process_drawing_the_same_shards(objective, tmp_path, phi4_ensemble):
    """float32 (the default): the two runs differ only in how the shards' gradients are summed."""
    args = [str(phi4_ensemble) if a == "ENSEMBLE" else a for a in ESTIMATORS[objective]] + [*SMALL, "--steps", 12]
    rc, out, err = finish(torchrun(2, *args, "--out", tmp_path / "two", "--quiet"))
    assert rc == 0, err
    single = one_process(*args, "--shards", 2, "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    assert read_checkpoint(tmp_path / "two")["config"]["shards"] == 2  # the default: one shard per rank
    assert_same_parameters(tmp_path / "one", tmp_path / "two")
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_torchrun_nodes_train_the_parameters_of_one_process(tmp_path):
    """Multi-node torchrun as on a cluster (one launcher per node, c10d rendezvous), both nodes here."""
    args = [*PHI4, *REALNVP, *SMALL, "--steps", 8, "--dtype", "float64"]
    endpoint = f"localhost:{free_port()}"
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
                               "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "test",
                               "-m", "train", *map(str, args), "--out", str(tmp_path / "nodes")], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for node in nodes:
        rc, _, err = finish(node)
        assert rc == 0, err
    single = one_process(*args, "--shards", 2, "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    assert read_checkpoint(tmp_path / "nodes")["config"]["shards"] == 2
    assert_same_parameters(tmp_path / "one", tmp_path / "nodes", rtol=0, atol=0)


def test_rank_0_alone_prints_and_writes_the_run_folder(tmp_path):
    rc, out, err = finish(torchrun(2, *PHI4, *REALNVP, *SMALL[:-1], "--steps", 5, "--out", tmp_path / "run"))
    assert rc == 0, err
    assert out.count("training realnvp") == 1 and "batch 16 in 2 shards on 2 ranks" in out
    assert out.count("final loss:") == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "metrics.jsonl", "summary.json"]
    assert len(losses(tmp_path / "run")) == 5  # one line per step, not one per rank
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["shards"] == 2


def test_a_run_killed_under_torchrun_resumes_on_two_ranks_or_one_to_the_uninterrupted_run(tmp_path):
    """SIGKILL to torchrun and both ranks after the first checkpoint; --resume under torchrun up to
    step 100, then on one process to the end: bit for bit the run one process makes with 2 shards
    (float64: the sum of two shard gradients rounds alike on one rank and over two)."""
    args = [*PHI4, *REALNVP, *SMALL, "--dtype", "float64", "--lr-schedule", "constant"]
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    proc = torchrun(2, *args, "--steps", 400, "--out", killed)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    kill_all(proc)
    step = read_checkpoint(killed)["step"]
    assert 5 <= step < 100
    rc, _, err = finish(torchrun(2, *args, "--steps", 100, "--out", killed, "--resume"))
    assert rc == 0, err
    resumed = one_process(*args, "--steps", 120, "--out", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = one_process(*args, "--shards", 2, "--steps", 120, "--out", ref)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert losses(killed) == losses(ref)
    assert_same_parameters(killed, ref, rtol=0, atol=0)


def test_a_nan_on_one_rank_stops_every_rank_at_that_step_and_keeps_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = torchrun(2, *PHI4, *REALNVP, *SMALL, "--steps", 20, "--out", run, module="tests/distributed_poison.py",
                    env={"POISON_RANK": "1", "POISON_STEP": "8"})
    rc, _, err = finish(proc)
    assert rc != 0
    assert our_lines(err) == [f"python -m train: error: the loss became nan at step 8; the last good checkpoint "
                              f"(step 5) is kept in {run / 'checkpoint.pt'}"], err
    assert read_checkpoint(run)["step"] == 5 and len(losses(run)) == 7


def test_bad_input_under_torchrun_is_one_line_from_rank_0(tmp_path):
    rc, _, err = finish(torchrun(2, *PHI4, *REALNVP, *SMALL, "--steps", 4, "--shards", 3, "--out", tmp_path / "r"))
    assert rc != 0 and our_lines(err) == ["python -m train: error: --shards must be >= 1 and divide --batch-size 16, "
                                          "got 3"], err
    assert not (tmp_path / "r").exists()


def test_resume_on_a_number_of_ranks_that_does_not_divide_the_shards_is_one_line(tmp_path):
    run = tmp_path / "run"
    assert one_process(*PHI4, *REALNVP, *SMALL, "--steps", 5, "--out", run).returncode == 0  # one shard
    rc, _, err = finish(torchrun(2, "--steps", 10, "--out", run, "--resume", "--quiet"))
    assert rc != 0 and len(our_lines(err)) == 1 and "2 ranks cannot share 1 batch shards" in err, err
    assert read_checkpoint(run)["step"] == 5
