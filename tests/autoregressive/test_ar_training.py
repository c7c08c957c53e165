"""Training autoregressive models (samplers/training.py): the VAN score-function objective, reverse-kl
switching to it, forward KL, checkpoints, exact resume, and python -m train --model autoregressive."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import generate
import train as train_cli
from lattice import XY, Phi4
from samplers.flows import build_model
from samplers.training import OBJECTIVES, TrainConfig, load_model, read_checkpoint, train
from tests.resume import assert_resume_is_exact

ROOT = Path(__file__).resolve().parents[2]
THEORY = Phi4((4, 4), m2=-4.0, g=8.0)
HYPER = {"arch": "pixelcnn", "hidden": [8, 8], "n_components": 2}


def tiny(seed=0, theory=THEORY, **hyper):
    torch.manual_seed(seed)
    return build_model("autoregressive", theory, **(HYPER | hyper))


def config(**kw):
    return TrainConfig(**{"model": "autoregressive", "hyper": HYPER, "steps": 30, "batch_size": 64, "lr": 1e-2,
                          "checkpoint_every": 10, "eval_batch": 128, **kw})


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def untimed(run):
    return [{k: v for k, v in r.items() if k != "time"} for r in metrics(run)]


@pytest.mark.parametrize("theory", [THEORY, XY((4, 4), 1.0)], ids=["phi4", "xy"])
def test_reverse_kl_score_lowers_the_loss(tmp_path, theory):
    summary = train(tiny(theory=theory), config(objective="reverse-kl-score", steps=40), tmp_path)
    m = metrics(tmp_path)
    assert np.mean([r["loss"] for r in m[-8:]]) < np.mean([r["loss"] for r in m[:8]]) - 1.0
    assert 0 < summary["ess"] <= 1 and 0 <= summary["acceptance"] <= 1


def test_score_loss_has_the_kl_value_and_the_van_gradient():
    model = tiny(dtype="float64")
    loss, log_w = OBJECTIVES["reverse-kl-score"].loss(model, 32, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(-log_w.mean().item(), rel=1e-12)
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    x, _ = model.sample(32, torch.Generator().manual_seed(0))  # the same samples
    log_q = model.log_q(x)
    f = (log_q - model.log_p(x)).detach()
    ((f - f.mean()) * log_q).mean().backward()
    for a, p in zip(got, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-10, atol=1e-12)


def test_reverse_kl_uses_the_score_estimator_for_a_non_reparameterizable_model(tmp_path):
    train(tiny(), config(steps=6, checkpoint_every=6), tmp_path / "a")
    train(tiny(), config(objective="reverse-kl-score", steps=6, checkpoint_every=6), tmp_path / "b")
    assert untimed(tmp_path / "a") == untimed(tmp_path / "b")


def test_forward_kl_on_an_ensemble_lowers_the_loss(tmp_path):
    ens = tmp_path / "phi4.h5"
    assert generate.main(["--theory", "phi4", "--L", "4", "--m2", "-4", "--g", "8", "--n-configs", "300",
                          "--n-therm", "100", "--quiet", "--out", str(ens)]) == 0
    run = tmp_path / "run"
    train(tiny(), config(objective="forward-kl", ensemble=str(ens), steps=30), run)
    m = metrics(run)
    assert np.mean([r["loss"] for r in m[-5:]]) < np.mean([r["loss"] for r in m[:5]])


def test_checkpoint_round_trip_gives_the_same_density(tmp_path):
    model = tiny(arch="made", hidden=[16])
    train(model, config(hyper=model.hyper, steps=5, checkpoint_every=5), tmp_path)
    loaded, ckpt = load_model(tmp_path)
    assert ckpt["model"] == "autoregressive" and loaded.hyper == model.hyper
    x = torch.randn(8, 4, 4)
    torch.testing.assert_close(loaded.log_q(x), model.log_q(x), rtol=0, atol=0)


def test_resumed_training_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    assert_resume_is_exact(tiny, config(steps=24), tmp_path, monkeypatch, kill_at=15, checkpoint_step=10)


def test_cli_trains_an_autoregressive_model_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--theory", "xy", "--L", "4", "--beta", "1.0", "--model", "autoregressive", "--model-opt", "arch=made",
            "--model-opt", "n_components=2", "--hidden", "16", "--steps", "4", "--batch-size", "16",
            "--eval-batch", "32", "--threads", "1", "--out", str(out)]
    assert train_cli.main(args) == 0
    assert "ESS/N" in capsys.readouterr().out and read_checkpoint(out)["hyper"]["arch"] == "made"
    assert train_cli.main(["--out", str(out), "--resume", "--steps", "6", "--quiet"]) == 0
    assert read_checkpoint(out)["step"] == 6
    capsys.readouterr()
    assert train_cli.main(args[:-2] + ["--model-opt", "arch=lstm", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "arch" in err and len(err.strip().splitlines()) == 1


def test_cli_subprocess_smoke(tmp_path):
    p = subprocess.run([sys.executable, "-m", "train", "--theory", "phi4", "--L", "4", "--m2", "1", "--g", "0",
                        "--model", "autoregressive", "--hidden", "8", "--steps", "2", "--batch-size", "8",
                        "--eval-batch", "16", "--threads", "1", "--quiet", "--out", str(tmp_path / "r")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
