"""Training learned samplers: objectives, metrics, checkpoints, exact resume, NaN guard; python -m train."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import generate
import train as train_cli
from lattice import Phi4
from samplers.flows import build_model
from samplers.training import TrainConfig, TrainingError, load_model, read_checkpoint, train
from tests.resume import assert_resume_is_exact

ROOT = Path(__file__).resolve().parents[2]
THEORY = Phi4((4, 4), m2=-4.0, g=8.0)
HYPER = {"n_layers": 2, "hidden": (8,)}


def tiny(seed=0):
    torch.manual_seed(seed)
    return build_model("realnvp", THEORY, **HYPER)


def config(**kw):
    return TrainConfig(**{"model": "realnvp", "hyper": HYPER, "steps": 40, "batch_size": 64, "lr": 3e-3,
                          "checkpoint_every": 10, "eval_batch": 256, **kw})


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_reverse_kl_lowers_the_loss_and_writes_a_run_folder(tmp_path):
    summary = train(tiny(), config(steps=60), tmp_path)
    m = metrics(tmp_path)
    assert [r["step"] for r in m] == list(range(1, 61))
    assert np.mean([r["loss"] for r in m[-10:]]) < np.mean([r["loss"] for r in m[:10]]) - 1.0
    assert set(m[0]) >= {"loss", "ess", "acceptance", "lr", "time"}
    assert 0 < summary["ess"] <= 1 and 0 <= summary["acceptance"] <= 1
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 60


def test_checkpoint_round_trip_gives_the_same_density(tmp_path):
    flow = tiny()
    train(flow, config(steps=10), tmp_path)
    loaded, ckpt = load_model(tmp_path)
    assert ckpt["theory"]["params"] == {"m2": -4.0, "g": 8.0} and ckpt["theory"]["shape"] == [4, 4]
    x = torch.randn(8, 4, 4)
    torch.testing.assert_close(loaded.log_q(x), flow.log_q(x), rtol=0, atol=0)


def test_resumed_training_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    assert_resume_is_exact(tiny, config(steps=30), tmp_path, monkeypatch, kill_at=25, checkpoint_step=20)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    flow = tiny()
    calls = {"n": 0}
    real_log_p = flow.log_p

    def poisoned(x):
        calls["n"] += 1
        return real_log_p(x) * (float("nan") if calls["n"] > 25 else 1.0)

    monkeypatch.setattr(flow, "log_p", poisoned)
    with pytest.raises(TrainingError, match="step 20"):
        train(flow, config(steps=40), tmp_path)
    assert read_checkpoint(tmp_path)["step"] == 20


def test_forward_kl_on_an_ensemble_lowers_the_loss(tmp_path):
    ens = tmp_path / "phi4.h5"
    assert generate.main(["--theory", "phi4", "--L", "4", "--m2", "-4", "--g", "8", "--n-configs", "500",
                          "--n-therm", "100", "--quiet", "--out", str(ens)]) == 0
    run = tmp_path / "run"
    train(tiny(), config(objective="forward-kl", ensemble=str(ens), steps=60), run)
    m = metrics(run)
    assert np.mean([r["loss"] for r in m[-10:]]) < np.mean([r["loss"] for r in m[:10]])


# ------------------------------------------------------------------ python -m train
TINY_ARGS = ["--theory", "phi4", "--L", "4", "--m2", "-4", "--g", "8", "--model", "realnvp", "--n-layers", "2",
             "--hidden", "8", "--steps", "6", "--batch-size", "32", "--eval-batch", "64", "--quiet"]


def run_cli(*args):
    p = subprocess.run([sys.executable, "-m", "train", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_cli_trains_and_resumes_to_more_steps(tmp_path):
    out = tmp_path / "run"
    assert train_cli.main([*TINY_ARGS, "--out", str(out)]) == 0
    assert train_cli.main(["--out", str(out), "--resume", "--steps", "9", "--quiet"]) == 0
    assert read_checkpoint(out)["step"] == 9 and len(metrics(out)) == 9


def test_cli_refuses_an_existing_run_folder(tmp_path):
    out = tmp_path / "run"
    assert train_cli.main([*TINY_ARGS, "--out", str(out)]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    code, _, err = run_cli(*TINY_ARGS, "--out", out)
    assert code == 2 and "exists" in err and "Traceback" not in err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_cli_refuses_resume_with_another_lattice_size(tmp_path):
    out = tmp_path / "run"
    assert train_cli.main([*TINY_ARGS, "--out", str(out)]) == 0
    code, _, err = run_cli("--out", out, "--resume", "--L", "8", "--steps", "12")
    assert code == 2 and "L = 4" in err and "Traceback" not in err


def test_cli_refuses_an_ensemble_of_another_theory_than_the_model(tmp_path):
    ens = tmp_path / "u1.h5"
    assert generate.main(["--theory", "u1", "--L", "4", "--beta", "1", "--n-configs", "5", "--n-therm", "2",
                          "--quiet", "--out", str(ens)]) == 0
    code, _, err = run_cli("--ensemble", ens, "--model", "realnvp", "--objective", "forward-kl", "--steps", "2",
                           "--out", tmp_path / "run")
    assert code == 2 and "realnvp" in err and "u1" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad,needle", [(["--objective", "forward-kl"], "--ensemble"),
                                        (["--steps", "0"], "--steps"), (["--lr", "-1"], "--lr"),
                                        (["--hidden", "a,b"], "--hidden"), (["--device", "cuda:7"], "cuda")])
def test_cli_bad_options_are_one_line_errors(tmp_path, bad, needle):
    args = list(TINY_ARGS)
    for flag, value in zip(bad[::2], bad[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    code, _, err = run_cli(*args, "--out", tmp_path / "run")
    assert code == 2 and needle in err.strip().splitlines()[-1] and "Traceback" not in err


def test_a_checkpoint_whose_weights_do_not_fit_its_architecture_is_a_one_line_error(tmp_path):
    train(tiny(), config(steps=2, checkpoint_every=2), tmp_path)
    ckpt = read_checkpoint(tmp_path)
    ckpt["hyper"] = {**ckpt["hyper"], "hidden": [4]}  # as if saved by a version with other defaults
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="weights do not fit the realnvp"):
        load_model(tmp_path)
