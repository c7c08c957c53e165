"""python -m observables learned-action: the fit of -ln q against S, the XY vortex map, bad input."""
import json
import math
import sys

import numpy as np
import pytest
import torch

import generate
from lattice import XY
from observables import learned
from observables.__main__ import main
from observables.xy import vorticity
from samplers.flows import build_model
from samplers.training import TrainConfig, train


# ------------------------------------------------------------------------------------ plain functions
def test_fit_recovers_known_slope_and_offset():
    rng = np.random.default_rng(0)
    S = rng.normal(10.0, 3.0, 2000)
    y = 0.7 * S - 4.0 + rng.normal(0, 0.1, S.size)
    fit = learned.action_fit(S, y)
    assert fit.n == 2000
    assert fit.slope == pytest.approx(0.7, abs=0.003) and fit.offset == pytest.approx(-4.0, abs=0.05)
    assert fit.residual_std == pytest.approx(0.1, rel=0.05)
    assert fit.r2 == pytest.approx(1 - 0.01 / (0.49 * 9), abs=2e-3)


def test_exact_model_has_slope_one_offset_log_z():
    S = np.linspace(-3, 5, 11)
    fit = learned.action_fit(S, S + 2.5)  # -ln q = S + ln Z
    assert (fit.slope, fit.offset, fit.r2) == pytest.approx((1.0, 2.5, 1.0))
    assert fit.residual_std == pytest.approx(0.0, abs=1e-12)


def test_fit_refuses_too_few_or_non_finite():
    with pytest.raises(ValueError):
        learned.action_fit([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        learned.action_fit([1.0, 2.0, 3.0], [1.0, np.inf, 2.0])


def pair_config(L=6, vortex=(1, 1), antivortex=(3, 3)):
    """A vortex at the plaquette with lower-left corner ``vortex``, an antivortex at ``antivortex``:
    theta is the difference of the two windings' angles around the plaquette centres."""
    r, c = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    (r1, c1), (r2, c2) = vortex, antivortex
    theta = np.arctan2(c - c1 - 0.5, r - r1 - 0.5) - np.arctan2(c - c2 - 0.5, r - r2 - 0.5)
    return np.angle(np.exp(1j * theta))[None]


def test_vorticity_of_a_hand_made_vortex_antivortex_pair():
    w = vorticity(pair_config())[0]
    assert w[1, 1] == 1 and w[3, 3] == -1
    assert np.abs(w).sum() == 2 and w.sum() == 0
    assert np.array_equal(vorticity(-pair_config())[0], -w)  # theta -> -theta swaps them
    assert np.abs(vorticity(np.full((1, 4, 4), 0.3))).sum() == 0


def test_plaquette_score_and_detection():
    d = np.zeros((1, 4, 4))
    d[0, 2, 3] = 1.0  # a site: corner of the plaquettes (2,3), (1,3), (2,2), (1,2)
    s = learned.plaquette_score(d)[0]
    assert s.sum() == 4 and s[2, 3] == s[1, 3] == s[2, 2] == s[1, 2] == 1
    w = np.zeros((2, 4, 4), dtype=int)
    w[0, 1, 1], w[0, 2, 2] = 1, -1
    w[1, 0, 0] = 1
    score = np.zeros((2, 4, 4))
    score[0, 1, 1], score[0, 3, 3] = 5, 4  # one of two found
    score[1, 0, 0] = 1  # found
    det = learned.vortex_detection(score, w)
    assert det.n_configs == 2 and det.n_vortices == 3
    assert det.fraction_found == pytest.approx(0.75) and det.pooled_fraction_found == pytest.approx(2 / 3)
    assert det.random_baseline == pytest.approx((2 / 16 + 1 / 16) / 2)


def test_target_local_conditional_finds_the_hand_made_pair():
    t = pair_config(10, (2, 2), (2, 6))
    assert vorticity(t)[0, 2, 2] == 1 and vorticity(t)[0, 2, 6] == -1 and np.abs(vorticity(t)).sum() == 2
    t = np.concatenate([t, np.zeros((1, 10, 10))])  # the ensemble mean needs a second configuration
    res = learned.xy_vortex_map(t, learned.xy_local_surprise(t, 1.0).reshape(2, -1), 1.0)
    assert res["model"].n_configs == 1 and res["model"].fraction_found == 1.0
    # the local surprise is the normalized one-site conditional: it integrates to one
    grid = np.linspace(-np.pi, np.pi, 2001)[:-1]
    tt = np.repeat(t[:1], grid.size, axis=0)
    tt[:, 2, 4] = grid
    p = np.exp(-learned.xy_local_surprise(tt, 1.0)[:, 2, 4])
    assert p.max() / p.min() > 2  # not flat: the conditional depends on the neighbours
    assert p.mean() * 2 * np.pi == pytest.approx(1.0, rel=1e-9)


class LogQOnly:
    """A 'flow': log q only, no per-site conditionals; here an exact model of the target."""

    name = "exact-logq"

    def __init__(self, theory, log_z):
        self.theory, self.log_z = theory, log_z

    def to(self, *a, **k):
        return self

    def eval(self):
        return self

    def log_q(self, x):
        return -self.theory.torch_action(x) - self.log_z


def test_model_without_conditionals_gets_the_fit_and_skips_the_map():
    theory = XY((4, 4), 1.0)
    configs = np.random.default_rng(1).uniform(-np.pi, np.pi, (20, 4, 4))
    res = learned.learned_action(configs, theory, LogQOnly(theory, 3.0))
    assert (res["fit"].slope, res["fit"].offset, res["fit"].r2) == pytest.approx((1.0, 3.0, 1.0))
    assert "vortex" not in res and "map skipped" in res["vortex_note"]


# ------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def xy_setup(tmp_path_factory):
    """A tiny XY ensemble (4x4, beta 1, HMC) and an autoregressive model trained on it a few steps,
    plus a model of another lattice (2x2)."""
    d = tmp_path_factory.mktemp("learned")
    ens = d / "xy.h5"
    assert generate.main(["--theory", "xy", "--L", "4", "--beta", "1", "--algorithm", "hmc", "--n-configs", "50",
                          "--n-therm", "20", "--seed", "3", "--quiet", "--out", str(ens)]) == 0
    torch.manual_seed(0)
    model = build_model("autoregressive", XY((4, 4), 1.0), arch="pixelcnn", hidden=[8, 8], n_components=2)
    run = d / "ar"
    train(model, TrainConfig(model="autoregressive", hyper=model.hyper, objective="forward-kl", ensemble=str(ens),
                             steps=10, batch_size=16, lr=3e-3, checkpoint_every=10, eval_batch=16), run)
    other = build_model("autoregressive", XY((2, 2), 1.0), arch="made", hidden=[8], n_components=1)
    run2 = d / "ar_2x2"
    train(other, TrainConfig(model="autoregressive", hyper=other.hyper, steps=1, batch_size=4,
                             checkpoint_every=1, eval_batch=4), run2)
    return ens, run, run2


def test_cli_json_gives_finite_fit_and_vortex_map(xy_setup, capsys):
    ens, run, _ = xy_setup
    assert main(["learned-action", str(ens), "--model", str(run), "--json", "--skip", "5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    fit = doc["fit"]
    assert set(fit) == {"n", "slope", "offset", "r2", "residual_std"} and fit["n"] == 45
    assert all(math.isfinite(fit[k]) for k in fit)
    vm = doc["vortex_map"]
    keys = {"n_configs", "n_vortices", "fraction_found", "pooled_fraction_found", "random_baseline"}
    assert set(vm["model"]) == keys and set(vm["reference"]) == keys
    if vm["model"]["n_configs"] > 0:
        assert 0 <= vm["model"]["fraction_found"] <= 1 and 0 < vm["model"]["random_baseline"] < 1
    assert doc["theory"] == "xy" and doc["shape"] == [4, 4]


def test_cli_table_and_max_configs(xy_setup, capsys):
    ens, run, _ = xy_setup
    assert main(["learned-action", str(ens), "--model", str(run), "--max-configs", "20"]) == 0
    out = capsys.readouterr().out
    assert "N = 20" in out and "slope =" in out and "R^2 =" in out and "random guess" in out


def test_cli_refuses_a_model_of_another_lattice(xy_setup, capsys):
    ens, _, run2 = xy_setup
    assert main(["learned-action", str(ens), "--model", str(run2)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2x2" in err[0] and "4x4" in err[0]


@pytest.mark.parametrize("what", ["no-file", "no-model", "not-a-model"])
def test_cli_bad_input_is_one_line(xy_setup, tmp_path, capsys, what):
    ens, run, _ = xy_setup
    if what == "no-file":
        args = [str(tmp_path / "missing.h5"), "--model", str(run)]
    elif what == "no-model":
        args = [str(ens), "--model", str(tmp_path / "nothing")]
    else:
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "checkpoint.pt").write_bytes(b"garbage")
        args = [str(ens), "--model", str(bad)]
    assert main(["learned-action", *args]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_writes_plots(xy_setup, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    ens, run, _ = xy_setup
    assert main(["learned-action", str(ens), "--model", str(run), "--plots", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "learned_action.png").stat().st_size > 1000
    doc_vortex = (tmp_path / "p" / "vortex_map.png")
    assert doc_vortex.stat().st_size > 1000


def test_cli_plots_without_matplotlib_say_how_to_get_it(xy_setup, tmp_path, capsys, monkeypatch):
    ens, run, _ = xy_setup
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["learned-action", str(ens), "--model", str(run), "--plots", str(tmp_path / "p")]) == 2
    assert "pip install" in capsys.readouterr().err
