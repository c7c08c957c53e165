"""The plaquette prior of the gauge flow (samplers/flows/priors.py, ``--model-opt prior=plaquette``):
its draws, its exact density, the flow's exact log q on top of it, and the options."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tests.flows.test_base_transforms as base
from lattice import U1
from samplers.flows.base import UniformAnglePrior
from samplers.flows.gauge import build, gauge_transform
from samplers.flows.priors import PlaquettePrior, links_from_plaquettes, plaquette_angles, von_mises
from samplers.weights import ess_fraction
from tests.cli import run_cli
from tests.exact import ive

torch.set_num_threads(1)  # 2 threads spin-wait badly when the 2 cores are shared

Z_MAX = 4.0


def wrap(x):
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def bessel_ratio(n: int, kappa: float) -> float:
    """I_n(kappa) / I_0(kappa)."""
    return float(ive(n, kappa) / ive(0, kappa))


def z_score(samples: np.ndarray, exact: float) -> float:
    """(mean - exact) / standard error of independent samples."""
    diff = float(samples.mean()) - exact
    err = float(samples.std(ddof=1)) / math.sqrt(len(samples))
    if err == 0:  # constant samples: exact or infinitely far off
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / err


def prior_links(shape, beta0, n, seed=0):
    return PlaquettePrior((2, *shape), beta0).to(torch.float64).sample(n, torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- draws

@pytest.mark.parametrize("kappa", [0.3, 6.0, 200.0])
def test_von_mises_moments_are_bessel_ratios(kappa):
    d = von_mises(kappa, (40000,), torch.Generator().manual_seed(1)).numpy()
    assert d.min() >= -math.pi and d.max() <= math.pi
    for k in (1, 2, 3):
        z = z_score(np.cos(k * d), bessel_ratio(k, kappa))
        assert abs(z) < Z_MAX, (k, z)
    assert abs(z_score(np.sin(d), 0.0)) < Z_MAX


def test_von_mises_at_zero_concentration_is_uniform():
    d = von_mises(0.0, (20000,), torch.Generator().manual_seed(2)).numpy()
    for k in (1, 2):
        assert abs(z_score(np.cos(k * d), 0.0)) < Z_MAX
    assert abs(z_score(d**2, math.pi**2 / 3)) < Z_MAX


@pytest.mark.parametrize("shape", [(8, 8), (4, 6)])
def test_prior_plaquettes_are_von_mises_except_the_last(shape):
    beta0 = 2.0
    p = wrap(plaquette_angles(prior_links(shape, beta0, 2000))).flatten(1)
    rest, last = p[:, :-1], p[:, -1]
    # each configuration's mean over its V - 1 independent plaquettes
    for k in (1, 2):
        z = z_score(torch.cos(k * rest).mean(1).numpy(), bessel_ratio(k, beta0))
        assert abs(z) < Z_MAX, (k, z)
    # and per plaquette (position by position), the first moment
    per_site = torch.cos(rest).mean(0).numpy()
    err = math.sqrt((1 + bessel_ratio(2, beta0)) / 2 - bessel_ratio(1, beta0) ** 2) / math.sqrt(p.shape[0])
    assert np.abs(per_site - bessel_ratio(1, beta0)).max() < 4.5 * err
    # P_last = -(sum of the others) mod 2 pi
    assert float(wrap(last + rest.sum(1)).abs().max()) < 1e-10


def test_prior_links_are_uniform_each():
    """The gauge transformation and holonomies spread every link uniformly (the prior is not gauge fixed)."""
    x = prior_links((4, 4), 6.0, 4000, seed=3)
    for f in (torch.cos, torch.sin):
        m = f(x).mean(0).flatten().numpy()
        assert np.abs(m).max() < 4.5 / math.sqrt(2 * 4000)


def test_construction_from_given_plaquettes_and_gauge():
    """links_from_plaquettes: plaquettes phi(x) for x != P_last, and a gauge transformation alpha enters
    as theta_mu(x) + alpha(x) - alpha(x + e_mu)."""
    g = torch.Generator().manual_seed(4)
    n, l0, l1 = 3, 4, 6
    phi = (2 * torch.rand((n, l0, l1), generator=g, dtype=torch.float64) - 1) * math.pi
    h0, h1 = (2 * torch.rand((2, n), generator=g, dtype=torch.float64) - 1) * math.pi
    alpha = (2 * torch.rand((n, l0, l1), generator=g, dtype=torch.float64) - 1) * math.pi
    x = links_from_plaquettes(phi, h0, h1, alpha)
    assert x.shape == (n, 2, l0, l1) and bool((x >= -math.pi).all() and (x < math.pi).all())
    p = wrap(plaquette_angles(x)).flatten(1)
    assert float(wrap(p[:, :-1] - phi.flatten(1)[:, :-1]).abs().max()) < 1e-12
    x0 = links_from_plaquettes(phi, h0, h1, torch.zeros_like(alpha))
    assert float(wrap(x - gauge_transform(x0, alpha)).abs().max()) < 1e-12
    # the gauge-fixed links: theta_1 = 0 off the last column, theta_0(x0, 0) = 0 except x0 = L0 - 1
    assert float(x0[:, 1, :, :-1].abs().max()) == 0 and float(x0[:, 0, :-1, 0].abs().max()) == 0
    assert float(wrap(x0[:, 0, -1, 0] - h0).abs().max()) < 1e-15
    assert float(wrap(x0[:, 1, 0, -1] - h1).abs().max()) < 1e-15


# ---------------------------------------------------------------------------------------------- exact density

def log_z_torus(beta: float, shape) -> float:
    """log Z = log int dtheta exp(-S) = 2V log(2 pi) - beta V + log sum_n I_n(beta)^V (character expansion)."""
    v = math.prod(shape)
    n = np.arange(-40, 41)
    return 2 * v * math.log(2 * math.pi) + math.log((ive(n, beta) ** v).sum())  # ive = exp(-beta) I_n


@pytest.mark.parametrize("beta,beta0", [(1.0, 1.0), (1.5, 0.8)])
def test_importance_weights_with_log_r_give_the_partition_function(beta, beta0):
    shape = (2, 2)
    theory = U1(shape, beta)
    prior = PlaquettePrior((2, *shape), beta0).to(torch.float64)
    x = prior.sample(20000, torch.Generator().manual_seed(5))
    log_p = -theory.torch_action(x)
    log_z = log_z_torus(beta, shape)
    w = torch.exp(log_p - prior.log_prob(x) - log_z).numpy()  # E_r[w] = 1 for the exact log r
    assert abs(z_score(w, 1.0)) < Z_MAX
    # a density that treats P_last as drawn too (all V plaquettes von Mises) is wrong, and fails
    wrong = prior.log_prob(x) + beta0 * torch.cos(plaquette_angles(x)[:, -1, -1]) - math.log(ive(0, beta0)) - beta0
    w_wrong = torch.exp(log_p - wrong - log_z).numpy()
    assert abs(z_score(w_wrong, 1.0)) > 10


def test_log_r_is_gauge_invariant_and_haar_at_zero_coupling():
    x = prior_links((4, 4), 3.0, 8, seed=6)
    prior = PlaquettePrior((2, 4, 4), 3.0)
    alpha = torch.randn((8, 4, 4), generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 3
    assert float((prior.log_prob(gauge_transform(x, alpha)) - prior.log_prob(x)).abs().max()) < 1e-10
    haar = UniformAnglePrior((2, 4, 4)).log_prob(x)
    assert float((PlaquettePrior((2, 4, 4), 0.0).log_prob(x) - haar).abs().max()) < 1e-10


# ---------------------------------------------------------------------------------------------- the flow

BASE_TESTS = [base.test_shapes_dtypes_and_angle_range, base.test_invertible_and_logdets_cancel,
              base.test_sample_and_log_q_agree, base.test_gradients_reach_every_parameter]


@pytest.mark.parametrize("test", BASE_TESTS, ids=lambda t: t.__name__)
def test_gauge_flow_with_plaquette_prior_passes_the_shared_flow_tests(test, monkeypatch):
    monkeypatch.setitem(base.HYPER, "prior", "plaquette")
    flow = base.make_flow("gauge-flow", "u1")
    assert isinstance(flow.prior, PlaquettePrior) and flow.prior.beta0 == 2.0
    test("gauge-flow", "u1")


def test_gauge_flow_with_plaquette_prior_logdet_matches_autograd_jacobian(monkeypatch):
    monkeypatch.setitem(base.HYPER, "prior", "plaquette")
    base.test_logdet_matches_autograd_jacobian("gauge-flow", "u1", (4, 4))


def test_flow_log_q_is_gauge_invariant_with_plaquette_prior():
    torch.manual_seed(0)
    flow = build(U1((8, 8), 3.0), n_layers=8, hidden=(8,), prior="plaquette", dtype=torch.float64)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 0.15)
        x, lq = flow.sample(6, torch.Generator().manual_seed(8))
        alpha = torch.randn((6, 8, 8), generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 3
        assert float((flow.log_q(gauge_transform(x, alpha)) - lq).abs().max()) < 1e-9


def exact_identity_ess(beta: float, volume: int) -> float:
    """ESS/N of the plaquette sampler at beta0 = beta (N -> infinity): w = exp(beta cos theta_P(last)) with
    E[w] = sum_n r_n^(V-1) I_n(beta), E[w^2] = sum_n r_n^(V-1) I_n(2 beta), r_n = I_n(beta) / I_0(beta)."""
    n = np.arange(-40, 41)
    r = ive(n, beta) / ive(0, beta)
    m1 = (r ** (volume - 1) * ive(n, beta)).sum()  # common factors exp(beta), exp(2 beta) cancel below
    m2 = (r ** (volume - 1) * ive(n, 2 * beta)).sum()
    return float(m1 * m1 / m2)


def test_identity_flow_with_plaquette_prior_has_the_plaquette_sampler_ess():
    beta, n, blocks = 6.0, 8192, 16
    flow = build(U1((8, 8), beta), n_layers=2, hidden=(8,), prior="plaquette", dtype=torch.float64)
    with torch.no_grad():
        x, lq = flow.sample(n, torch.Generator().manual_seed(10))
        log_w = (flow.log_p(x) - lq).numpy()
    # the weights of the zero-initialized flow are exp(-S - log r) = const * exp(beta cos theta_P(last))
    last = torch.cos(plaquette_angles(x.double())[:, -1, -1]).numpy()
    assert np.ptp(log_w - beta * last) < 1e-9
    ess = ess_fraction(log_w)
    jack = np.array([ess_fraction(np.delete(log_w, np.s_[b * n // blocks:(b + 1) * n // blocks]))
                     for b in range(blocks)])
    err = math.sqrt((blocks - 1) * jack.var())
    exact = exact_identity_ess(beta, 64)
    assert abs(ess - exact) < Z_MAX * err, f"ESS/N {ess:.4f} +- {err:.4f} vs exact {exact:.4f}"


# ---------------------------------------------------------------------------------------------- options, state

def test_sampling_is_reproducible_with_a_seeded_generator():
    prior = PlaquettePrior((2, 8, 8), 6.0)
    a = prior.sample(64, torch.Generator().manual_seed(11))
    b = prior.sample(64, torch.Generator().manual_seed(11))
    c = prior.sample(64, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and bool((a >= -math.pi).all() and (a < math.pi).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_sampling_on_cuda_with_a_cuda_generator():
    prior = PlaquettePrior((2, 8, 8), 6.0).to("cuda")
    x = prior.sample(256, torch.Generator(device="cuda").manual_seed(0))
    assert x.device.type == "cuda"
    p = wrap(plaquette_angles(x.double())).flatten(1)
    assert float(wrap(p[:, -1] + p[:, :-1].sum(1)).abs().max()) < 1e-4


def test_hyper_records_the_prior_and_old_hyper_rebuilds_haar():
    theory = U1((4, 4), 2.5)
    flow = build(theory, n_layers=2, hidden=(8,), prior="plaquette")
    assert flow.hyper["prior"] == "plaquette" and flow.hyper["prior_beta"] == 2.5
    rebuilt = build(theory, **flow.hyper)
    assert isinstance(rebuilt.prior, PlaquettePrior) and rebuilt.prior.beta0 == 2.5
    assert build(theory, n_layers=2, hidden=(8,), prior="plaquette", prior_beta=1).hyper["prior_beta"] == 1.0
    old = {k: v for k, v in flow.hyper.items() if not k.startswith("prior")}
    assert isinstance(build(theory, **old).prior, UniformAnglePrior)
    assert build(theory, **old).hyper["prior"] == "haar"


@pytest.mark.parametrize("opts,message", [
    (["--model-opt", "prior=gaussian"], "prior=gaussian: choose haar or plaquette"),
    (["--model-opt", "prior=plaquette", "--model-opt", "prior_beta=NaN"], "prior_beta=nan: needs a finite number >= 0"),
], ids=["unknown-prior", "nan-beta"])
def test_train_refuses_bad_prior_options_in_one_line(opts, message, tmp_path):
    rc, out, err = run_cli("train", "--theory", "u1", "--L", 4, "--beta", 2, "--model", "gauge-flow", *opts,
                           "--steps", 1, "--out", tmp_path / "r")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("opts,message", [
    ({"prior": "plaquette", "prior_beta": -1}, "prior_beta=-1: needs a finite number >= 0"),
    ({"prior": "plaquette", "prior_beta": math.inf}, "prior_beta=inf"),
    ({"prior": "plaquette", "prior_beta": "6"}, "prior_beta=6: needs a finite number"),
    ({"prior_beta": 3.0}, "prior_beta=3.0 needs prior=plaquette"),
], ids=["negative-beta", "infinite-beta", "string-beta", "beta-with-haar"])
def test_build_refuses_bad_prior_beta(opts, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as e:
        build(U1((4, 4), 2.0), n_layers=2, hidden=(8,), **opts)
    assert "\n" not in str(e.value)


def test_train_refuses_prior_for_a_model_without_it(tmp_path):
    rc, out, err = run_cli("train", "--theory", "xy", "--L", 4, "--beta", 1, "--model", "circular-flow",
                           "--model-opt", "prior=plaquette", "--steps", 1, "--out", tmp_path / "r")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "--model-opt prior: not an option of circular-flow" in err, err



# ---------------------------------------------------------------------------------------------- the Numba twin

def test_numba_construction_gives_the_same_links_and_log_density():
    """lattice/u1_plaquettes.py (--algorithm plaquette-mh) builds the same links from the same (phi, h0, h1,
    alpha) and has the same log density."""
    u1p = pytest.importorskip("lattice.u1_plaquettes")
    prior = PlaquettePrior((2, 4, 6), 2.5)
    phi, h0, h1, alpha = prior.draw_parts(16, torch.Generator().manual_seed(13))
    ours = links_from_plaquettes(phi, h0, h1, alpha)
    theirs = u1p.links_from_plaquettes_batch(phi.numpy(), torch.stack((h0, h1), 1).numpy(), alpha.numpy())
    assert float(wrap(ours - torch.from_numpy(theirs)).abs().max()) < 1e-12
    assert float(np.abs(prior.log_prob(ours).numpy() - u1p.log_q(theirs, 2.5)).max()) < 1e-10


def test_resume_with_another_prior_names_the_conflicting_flag(tmp_path):
    run = ["--theory", "u1", "--L", 4, "--beta", 2, "--model", "gauge-flow", "--batch-size", 8, "--eval-batch", 0,
           "--quiet", "--out", tmp_path / "r"]
    assert run_cli("train", *run, "--model-opt", "prior=plaquette", "--steps", 2)[0] == 0
    rc, _, err = run_cli("train", *run, "--model-opt", "prior=haar", "--steps", 4, "--resume")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--model-opt prior=haar conflicts with the run" in err and "prior = plaquette" in err
