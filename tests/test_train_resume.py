"""python -m train: --resume with the original command line, exact resume after SIGKILL (thread count
restored), one-line errors (missing run, unknown --model-opt, full disk), the NaN guard without a
checkpoint, the divergence warning and the labelled batch ESS (issue 13). Tiny 4 x 4 lattices."""
import json
import resource
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

import generate
import train as train_cli
from lattice import Phi4
from samplers.flows import build_model
from samplers.flows.base import Flow
from samplers.training import TrainConfig, TrainingError, load_model, read_checkpoint, train, training_warning
from tests.cli import ENV, ROOT

PHI4 = ["--theory", "phi4", "--L", "4", "--m2", "-4", "--g", "8"]
TINY = [*PHI4, "--model", "realnvp", "--n-layers", "2", "--hidden", "8", "--batch-size", "16", "--eval-batch", "32"]


def untimed(run):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def start(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "train", *map(str, args)], cwd=ROOT, env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def one_line_error(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ------------------------------------------------------------------ exact resume after SIGKILL
def test_resume_after_sigkill_is_bit_identical_and_restores_the_thread_count(tmp_path):
    """Trained on 1 thread and SIGKILLed after a checkpoint, resumed without --threads in an environment
    whose default is 2 threads: the stored count is restored and the run equals an uninterrupted one
    (trained in this process meanwhile, on 1 thread too)."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    args = [*TINY, "--steps", 120, "--checkpoint-every", 5, "--threads", 1, "--quiet"]
    proc = start(*args, "--out", killed)

    def kill_after_the_first_checkpoint():
        deadline = time.time() + 60
        while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)

    watcher = threading.Thread(target=kill_after_the_first_checkpoint)
    watcher.start()
    threads = torch.get_num_threads()
    try:
        assert train_cli.main([*map(str, args), "--out", str(ref)]) == 0
    finally:
        torch.set_num_threads(threads)
        watcher.join()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL and read_checkpoint(killed)["step"] < 120  # killed mid-run

    rc, _, err = finish(start("--out", killed, "--resume", "--quiet", env={**ENV, "OMP_NUM_THREADS": "2"}))
    assert rc == 0, err
    assert read_checkpoint(killed)["config"]["threads"] == 1
    assert json.loads((killed / "summary.json").read_text())["threads"] == 1
    assert untimed(ref) == untimed(killed)
    for (ka, va), (kb, vb) in zip(load_model(ref)[0].state_dict().items(),
                                  load_model(killed)[0].state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


# ------------------------------------------------------------------ --resume with the original command line
@pytest.fixture(scope="module")
def u1_ensemble(tmp_path_factory):
    path = tmp_path_factory.mktemp("ens") / "u1.h5"
    assert generate.main(["--theory", "u1", "--L", "4", "--beta", "1", "--n-configs", "64", "--n-therm", "20",
                          "--quiet", "--out", str(path)]) == 0
    return path


# model -> (its original command line, a flag that conflicts with it, the stored value the error names)
MODELS = {
    "realnvp": ([*PHI4, "--model", "realnvp", "--n-layers", "2", "--hidden", "8"],
                ["--batch-size", "8"], "batch_size = 16"),
    "gauge-flow": (["--theory", "u1", "--L", "4", "--beta", "1", "--model", "gauge-flow", "--n-layers", "2",
                    "--hidden", "4"], ["--kernel-size", "5"], "kernel_size = 3"),
    "circular-flow": (["--theory", "xy", "--L", "4", "--beta", "1", "--model", "circular-flow", "--n-layers", "2",
                       "--hidden", "4", "--kernel-size", "3"], ["--model-opt", "n_bins=4"], "n_bins = 8"),
    "autoregressive": ([*PHI4, "--model", "autoregressive", "--model-opt", "arch=made", "--hidden", "16",
                        "--model-opt", "n_components=2"], ["--n-layers", "3"], "which has hidden = 16;"),
    "diffusion": (["--ensemble", "ENSEMBLE", "--model", "diffusion", "--hidden", "8", "--model-opt", "n_steps=4"],
                  ["--model-opt", "n_steps=8"], "n_steps = 4"),
}


@pytest.mark.parametrize("model", MODELS)
def test_resume_accepts_the_original_command_line_and_names_a_conflict(model, tmp_path, u1_ensemble, capsys):
    original, bad, stored = MODELS[model]
    original = [str(u1_ensemble) if a == "ENSEMBLE" else a for a in original]
    out = tmp_path / "run"
    command = [*original, "--batch-size", "16", "--eval-batch", "4", "--checkpoint-every", "2", "--quiet",
               "--out", str(out)]
    assert train_cli.main([*command, "--steps", "2"]) == 0
    assert train_cli.main([*command, "--steps", "4", "--resume"]) == 0  # same flags, more steps
    assert read_checkpoint(out)["step"] == 4
    capsys.readouterr()
    assert train_cli.main([*command, "--steps", "6", "--resume", *bad]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert bad[-1].split("=")[0] in err and stored in err, err  # the flag, and the run's value
    assert read_checkpoint(out)["step"] == 4


def test_a_conflicting_flag_is_one_line_in_a_real_process(tmp_path):
    out = tmp_path / "run"
    assert train_cli.main([*TINY, "--steps", "2", "--quiet", "--out", str(out)]) == 0
    rc, _, err = finish(start(*TINY, "--lr", "0.01", "--steps", "4", "--resume", "--out", out))
    assert rc == 2 and "--lr 0.01" in one_line_error(err) and "lr = 0.001" in err


def test_resume_of_a_missing_run_folder_says_so(tmp_path, capsys):
    assert train_cli.main(["--out", str(tmp_path / "nothing"), "--resume", "--steps", "5"]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "no run to continue" in err and "no such folder" in err and "--theory" not in err


def test_an_unknown_model_option_is_one_line_listing_the_known_ones(tmp_path, capsys):
    assert train_cli.main([*TINY, "--model-opt", "foo=bar", "--steps", "2", "--out", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "--model-opt foo" in err and "n_layers, hidden, kernel_size" in err


# ------------------------------------------------------------------ full disk
def file_size_limit(limit: int):
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG, as on a full disk."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_is_one_line(tmp_path):
    out = tmp_path / "run"  # 3 kB: the metrics fit, the first checkpoint (23 kB) does not
    rc, _, err = finish(start(*TINY, "--steps", 20, "--checkpoint-every", 5, "--threads", 1, "--quiet",
                              "--out", out, preexec_fn=file_size_limit(3000)))
    assert rc == 2 and "disk full writing checkpoint.pt" in one_line_error(err), err
    assert "no checkpoint was written yet" in err and not (out / "checkpoint.pt.partial").exists()


def test_resume_passes_a_metrics_line_cut_short_by_a_full_disk(tmp_path):
    out = tmp_path / "run"
    assert train_cli.main([*TINY, "--steps", "6", "--checkpoint-every", "3", "--quiet", "--out", str(out)]) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "loss": 1.2')  # as left by a write that failed mid-line
    assert train_cli.main(["--out", str(out), "--resume", "--steps", "9", "--quiet"]) == 0
    assert [r["step"] for r in untimed(out)] == list(range(1, 10))


# ------------------------------------------------------------------ NaN guard, divergence, the bar
def tiny_flow():
    torch.manual_seed(0)
    return build_model("realnvp", Phi4((4, 4), m2=-4.0, g=8.0), n_layers=2, hidden=(8,))


def config(**kw):
    return TrainConfig(**{"model": "realnvp", "steps": 20, "batch_size": 16, "checkpoint_every": 10,
                          "eval_batch": 32, **kw})


def test_the_nan_guard_says_when_no_checkpoint_exists_yet(tmp_path, monkeypatch):
    flow = tiny_flow()
    monkeypatch.setattr(flow, "log_p", lambda x: torch.full((len(x),), float("nan"), dtype=torch.float64))
    with pytest.raises(TrainingError, match="no checkpoint was written yet") as e:
        train(flow, config(), tmp_path)
    assert "step 0" not in str(e.value) and not (tmp_path / "checkpoint.pt").exists()


def test_a_loss_diverging_without_nan_is_warned_about(tmp_path, monkeypatch, capsys):
    real, calls = Flow.log_p, {"n": 0}

    def blowing_up(self, x):  # finite but huge from the 11th batch on
        calls["n"] += 1
        return real(self, x) * (1e30 if calls["n"] > 10 else 1.0)

    monkeypatch.setattr(Flow, "log_p", blowing_up)
    assert train_cli.main([*TINY, "--steps", "20", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "diverged" in warning[0]
    assert "diverged" in json.loads((tmp_path / "run" / "summary.json").read_text())["warning"]


def history(losses, ess=0.3):
    return [{"step": i + 1, "loss": v, "ess": ess} for i, v in enumerate(losses)]


def test_the_divergence_criterion():
    noisy = [5.0 - 0.1 * i + (-1) ** i * 2.0 for i in range(50)]  # falling, noisy: fine
    assert training_warning(history(noisy), {"ess": 0.2, "n": 100}) is None
    assert "diverged to 1e+32" in training_warning(history([1.0, 0.5, 1e32]), {"ess": None, "n": 0})
    grew = [-1.0] * 40 + [50.0] * 10  # > 10 x max(1, |lowest|) above the lowest
    assert "loss grew from -1" in training_warning(history(grew), {"ess": None, "n": 0})
    assert "ESS collapsed" in training_warning(history([1.0] * 20), {"ess": 1.0 / 100, "n": 100})
    assert training_warning(history([1.0] * 20, ess=0.01), {"ess": 1.0 / 100, "n": 100}) is None  # never good


def test_the_progress_bar_labels_the_batch_ess(tmp_path, capsys):
    train(tiny_flow(), config(steps=3), tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "batch ESS=" in err and "batch acc=" in err
