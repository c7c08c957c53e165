"""log q of a *poorly trained* autoregressive XY model is exact (issue 13, item 4), so learned-mh with
it is exact whatever its acceptance; a biased short chain is the heavy tail of w = p / q, not log q.

Models: randomly initialised, randomly perturbed, and trained for 20 reverse-KL steps; lattices
2 x 2 and 4 x 4. Checks, in float64:
  (a) the cached per-site sampling path gives the same conditional parameters as the one-pass
      density evaluation at *any* x (also at and beyond +-pi), sampling returns log_q(x), and log q is
      2 pi-periodic (wrapping changes nothing);
  (b) every conditional q(x_i | x_<i), read from the full model with x_i on a grid, integrates to 1;
  (c) 2 x 2: the joint q integrates to 1 over the 4-torus and E_q[f] by quadrature equals the
      sample means; 4 x 4: E_u[q / u] = 1 and E_q[f] by importance sampling from the uniform
      distribution; and the Rosenblatt transform of samples (u_i = CDF of q(. | x_<i) at x_i) is
      uniform on every site: the sampler draws exactly from the density log_q evaluates;
  (d) learned-mh with the 20-step model reproduces exact (2 x 2, quadrature) and heat-bath (4 x 4, beta 0.3)
      values of <cos> and <|M|^2>, and so does self-normalised reweighting of model samples; and
      Z = E_q[w] from model samples equals Z = 1 / E_p[1 / w] from heat-bath samples.
Fixed seeds; |z| < 4 for the statistical checks.
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from lattice import XY
from observables.stats import gamma_method, weighted_mean
from samplers import HeatBath, LearnedMH
from samplers.autoregressive.conditionals import wrap
from samplers.chain import ChainState, MemoryWriter, run_chain
from samplers.flows import build_model
from samplers.proposal import ModelProposal
from samplers.training import TrainConfig, load_model, train

from tests.exact import ring_link_cos

from .conftest import perturbed

Z_MAX = 4.0
XY2, XY4 = XY((2, 2), 1.0), XY((4, 4), 1.0)
# 4 x 4 chains: at beta = 1 a 20-step model has var log w ~ 15 (acceptance < 0.01: the heavy tail itself);
# at beta = 0.3 it has var log w ~ 1.3, acceptance ~ 0.4, so 20000 updates are a fair test of exactness
XY4_HOT = XY((4, 4), 0.3)
SMALL = {"arch": "pixelcnn", "hidden": [8, 8], "n_components": 2}
MADE = {"arch": "made", "hidden": [16, 16], "n_components": 3}


def fresh(theory, seed=0, **hyper):
    torch.manual_seed(seed)
    return build_model("autoregressive", theory, dtype="float64", **hyper)


@pytest.fixture(scope="module")
def poor_runs(tmp_path_factory):
    """name -> run folder of a model trained for only 20 reverse-KL steps (acceptance well below 1)."""
    out = {}
    for name, theory in (("xy2", XY2), ("xy4", XY4), ("xy4_hot", XY4_HOT)):
        torch.manual_seed(0)
        model = build_model("autoregressive", theory, **SMALL)
        run = tmp_path_factory.mktemp(name)
        train(model, TrainConfig(model="autoregressive", hyper=model.hyper, steps=20, batch_size=64, lr=1e-2,
                                 checkpoint_every=20, eval_batch=64, threads=1), run)
        out[name] = run
    return out


def poor(poor_runs, name):
    model, _ = load_model(poor_runs[name])
    return model.double().eval()


def models(poor_runs, theory):
    name = "xy2" if theory is XY2 else "xy4"
    return {"init-pixelcnn": fresh(theory, **SMALL), "init-made": fresh(theory, **MADE),
            "perturbed-pixelcnn": perturbed(theory, seed=1, noise=0.3, **SMALL),
            "perturbed-made": perturbed(theory, seed=2, noise=0.3, **MADE),
            "trained-20-steps": poor(poor_runs, name)}


def replay(model, x):
    """The raw conditional parameters (N, V, P) the *sampling* path (the networks' cached per-site
    ``site``) computes when it is fed the given x instead of fresh draws."""
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    cache = model.net.start(torch.zeros(x.shape[0], model.in_features, model.n_sites, dtype=torch.float64))
    raws = []
    for i in range(model.n_sites):
        raws.append(model.net.site(cache, i))
        model.net.record(cache, i, model.features(flat[:, i]))
    return torch.stack(raws, 1)


def edge_configs(theory, n=32, seed=0):
    """Angles at, just inside and beyond +-pi, mixed with uniform ones."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor([math.pi, -math.pi, math.pi - 1e-12, -math.pi + 1e-12, math.pi + 1e-9,
                            -math.pi - 1e-9, 3 * math.pi - 1e-3, -7.0], dtype=torch.float64)
    x = (torch.rand((n, *theory.shape), generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    pick = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(pick, special[torch.randint(0, len(special), x.shape, generator=g)], x)


def rosenblatt(model, x):
    """u[n, i] = CDF of q(. | x_<i) at x_i, measured from -pi (analytic von Mises CDFs of the mixture
    parameters of the density pass); iid uniform iff x ~ q."""
    log_pi, mu, kappa = (t.numpy() for t in model.conditional.params(model.conditional_params(x)))
    th = wrap(x.reshape(x.shape[0], -1)).numpy()[..., None]
    cdf = stats.vonmises.cdf(th - mu, kappa) - stats.vonmises.cdf(-math.pi - mu, kappa)
    return (np.exp(log_pi) * cdf).sum(-1)


def observables(x):
    """(|M|^2, <cos> per link term, cos(x_0 - x_last), sin(x_1 - 2 x_2)) per configuration."""
    f = x.reshape(x.shape[0], -1)
    m2 = f.cos().mean(1) ** 2 + f.sin().mean(1) ** 2
    links = sum(torch.cos(torch.roll(x, -1, dims=mu) - x) for mu in (1, 2)).mean(dim=(1, 2)) / 2
    return torch.stack([m2, links, torch.cos(f[:, 0] - f[:, -1]), torch.sin(f[:, 1] - 2 * f[:, 2])], 1)


def torus_grid(n, d=4):
    a = -math.pi + 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    return torch.cartesian_prod(*([a] * d)).reshape(-1, 2, 2)


# --------------------------------------------------------------------------- (a) sampling path = density path
@pytest.mark.parametrize("theory", [XY2, XY4], ids=["2x2", "4x4"])
def test_sampling_path_and_density_pass_agree_everywhere(poor_runs, theory):
    with torch.no_grad():
        for name, m in models(poor_runs, theory).items():
            x, lq = m.sample(128, torch.Generator().manual_seed(3))
            assert torch.all((x >= -math.pi) & (x <= math.pi)), name
            torch.testing.assert_close(m.log_q(x), lq, rtol=0, atol=1e-12, msg=name)
            xe = edge_configs(theory)
            for pts in (x, xe):  # the cached path at the sampled x, and at x at / beyond +-pi
                torch.testing.assert_close(replay(m, pts), m.conditional_params(pts), rtol=0, atol=1e-12, msg=name)
            ref = m.log_q(wrap(xe))
            for shifted in (xe, xe + 2 * math.pi, xe - 4 * math.pi):
                torch.testing.assert_close(m.log_q(shifted), ref, rtol=0, atol=1e-11, msg=name)


# --------------------------------------------------------------------------- (b) conditionals normalize
@pytest.mark.parametrize("theory", [XY2, XY4], ids=["2x2", "4x4"])
def test_every_conditional_of_the_model_integrates_to_one(poor_runs, theory):
    G, V = 256, theory.shape[0] * theory.shape[1]  # periodic trapezoid: spectrally accurate for smooth q
    grid = -math.pi + 2 * math.pi * torch.arange(G, dtype=torch.float64) / G
    with torch.no_grad():
        for name, m in models(poor_runs, theory).items():
            ctx, _ = m.sample(3, torch.Generator().manual_seed(4))
            for c in ctx:
                for i in range(V):
                    x = c.reshape(1, V).repeat(G, 1)
                    x[:, i] = grid
                    lp = m.conditional_log_prob(x.reshape(G, *theory.shape))
                    assert torch.all(lp[:, :i] == lp[:1, :i]), name  # sites before i do not see x_i
                    total = lp[:, i].exp().mean().item() * 2 * math.pi
                    assert total == pytest.approx(1.0, abs=1e-10), f"{name}: site {i} integrates to {total}"


# --------------------------------------------------------------------------- (c) samples follow the density
def test_2x2_joint_density_integrates_to_one_and_matches_its_samples(poor_runs):
    n = 16  # 16^4 points; n = 24 gives the same to 1e-10
    x = torus_grid(n)
    f = observables(x)
    with torch.no_grad():
        for name, m in models(poor_runs, XY2).items():
            w = m.log_q(x).exp() * (2 * math.pi / n) ** 4
            assert w.sum().item() == pytest.approx(1.0, abs=1e-9), name
            exact = (w[:, None] * f).sum(0)
            s, _ = m.sample(20000, torch.Generator().manual_seed(5))
            o = observables(s)
            z = (o.mean(0) - exact) / (o.std(0) / math.sqrt(len(o)))
            assert torch.all(z.abs() < Z_MAX), f"{name}: z = {z.tolist()}"


def test_4x4_importance_sampling_from_the_uniform_distribution(poor_runs):
    N, V = 50000, 16
    u = (torch.rand((N, 4, 4), generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 2 - 1) * math.pi
    f = observables(u)
    with torch.no_grad():
        for name, m in models(poor_runs, XY4).items():
            r = (m.log_q(u) + V * math.log(2 * math.pi)).exp()  # q / u
            z_norm = (r.mean() - 1) / (r.std() / math.sqrt(N))
            assert abs(z_norm) < Z_MAX, f"{name}: E_u[q/u] = {r.mean().item()}, z = {z_norm.item()}"
            s, _ = m.sample(20000, torch.Generator().manual_seed(7))
            o = observables(s)
            rf = r[:, None] * f
            z = (o.mean(0) - rf.mean(0)) / torch.sqrt(o.var(0) / len(o) + rf.var(0) / N)
            assert torch.all(z.abs() < Z_MAX), f"{name}: z = {z.tolist()}"


@pytest.mark.parametrize("theory", [XY2, XY4], ids=["2x2", "4x4"])
def test_rosenblatt_transform_of_samples_is_uniform(poor_runs, theory):
    with torch.no_grad():
        for name, m in models(poor_runs, theory).items():
            x, _ = m.sample(4000, torch.Generator().manual_seed(8))
            u = rosenblatt(m, x)
            assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-4, name
            for i in range(u.shape[1]):
                assert stats.kstest(u[:, i], "uniform").pvalue > 1e-4, f"{name}: site {i}"
            z = (u.mean(0) - 0.5) / math.sqrt(1 / 12 / len(u))
            assert np.all(np.abs(z) < Z_MAX), f"{name}: z = {z}"


# --------------------------------------------------------------------------- (d) exact chains
def exact_2x2():
    """<|M|^2> and <cos> per link term on 2 x 2 by quadrature of exp(-S) (global symmetry: theta_0 = 0)."""
    n = 48
    a = -math.pi + 2 * math.pi * np.arange(n) / n
    t = np.zeros((n**3, 4))
    t[:, 1:] = np.stack(np.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)
    x = t.reshape(-1, 2, 2)
    p = np.exp(-XY2.action_batch(np.ascontiguousarray(x)))
    f = observables(torch.as_tensor(x)).numpy()[:, :2]
    return (p[:, None] * f).sum(0) / p.sum()


@pytest.fixture(scope="module")
def heatbath_4x4_hot():
    """A heat-bath chain of XY4_HOT (every 2nd of 100000 sweeps): the independent reference."""
    writer = MemoryWriter()
    run_chain(XY4_HOT, HeatBath(), ChainState.start(XY4_HOT, 11), 50000, every=2, n_therm=500, writer=writer)
    return writer.arrays()[0]


def learned_mh(run, theory, n, seed=1):
    writer = MemoryWriter()
    summary = run_chain(theory, LearnedMH({"path": str(run), "seed": seed, "batch_size": 512}),
                        ChainState.start(theory, seed), n, n_therm=200, writer=writer)
    return writer.arrays()[0], summary


def z_chain(configs, ref, ref_err=np.zeros(2)):
    o = observables(torch.as_tensor(configs)).numpy()[:, :2]
    est = [gamma_method(o[:, k]) for k in range(2)]
    return np.array([(e.value - r) / math.hypot(e.error, re) for e, r, re in zip(est, ref, ref_err)])


def assert_reweighting_agrees(run, theory, ref, ref_err, batch_size: int, seed: int) -> None:
    """Self-normalised reweighting of independent model samples, w = p / q, matches ref (|z| < Z_MAX)."""
    x, lq = ModelProposal(str(run), batch_size=batch_size, seed=seed).sample_batch(0)
    lw = -theory.action_batch(x) - lq
    o = observables(torch.as_tensor(x)).numpy()[:, :2]
    for k in range(2):
        value, error, _ = weighted_mean(o[:, k], lw)
        assert abs(value - ref[k]) < Z_MAX * math.hypot(error, ref_err[k]), \
            f"reweighted {k}: {value} +- {error} vs {ref[k]}"


def test_learned_mh_with_a_poor_model_is_exact_on_2x2(poor_runs):
    ref = exact_2x2()
    assert ref[1] == pytest.approx(ring_link_cos(2 * XY2.beta, 4), abs=1e-9)
    configs, summary = learned_mh(poor_runs["xy2"], XY2, 8000)
    assert 0.05 < summary.acceptance < 0.9
    z = z_chain(configs, ref)
    assert np.all(np.abs(z) < Z_MAX), f"learned-mh: z = {z}"
    assert_reweighting_agrees(poor_runs["xy2"], XY2, ref, np.zeros(2), batch_size=4096, seed=2)


def test_learned_mh_with_a_poor_model_agrees_with_a_heat_bath_chain_on_4x4(poor_runs, heatbath_4x4_hot):
    hb = observables(torch.as_tensor(heatbath_4x4_hot)).numpy()[:, :2]
    ref = [gamma_method(hb[:, k]) for k in range(2)]
    val, err = np.array([r.value for r in ref]), np.array([r.error for r in ref])
    configs, summary = learned_mh(poor_runs["xy4_hot"], XY4_HOT, 20000)
    assert 0.2 < summary.acceptance < 0.9
    z = z_chain(configs, val, err)
    assert np.all(np.abs(z) < Z_MAX), f"learned-mh: z = {z} (acceptance {summary.acceptance})"
    assert_reweighting_agrees(poor_runs["xy4_hot"], XY4_HOT, val, err, batch_size=16384, seed=3)


def test_partition_function_from_model_samples_equals_that_from_target_samples(poor_runs, heatbath_4x4_hot):
    """Z = E_q[w] (needs samples that follow the reported log q) = 1 / E_p[1 / w] (needs a normalized
    log q at configurations of an independent exact sampler): both hold only for an exact model."""
    prop = ModelProposal(str(poor_runs["xy4_hot"]), batch_size=16384, seed=4)
    x, lq = prop.sample_batch(0)
    lw_q = -XY4_HOT.action_batch(x) - lq
    hb = np.ascontiguousarray(heatbath_4x4_hot[::2])  # every 4th sweep: ~independent
    with torch.no_grad():
        lq_p = prop.net.log_q(torch.as_tensor(hb)).numpy()  # the proposal's float64 model
    lw_p = -XY4_HOT.action_batch(hb) - lq_p
    wq, iwp = np.exp(lw_q - lw_q.mean()), np.exp(-(lw_p - lw_q.mean()))
    log_z_q, log_z_p = math.log(wq.mean()), -math.log(iwp.mean())
    error = math.hypot(wq.std() / wq.mean() / math.sqrt(len(wq)), iwp.std() / iwp.mean() / math.sqrt(len(iwp)))
    assert abs(log_z_q - log_z_p) < Z_MAX * error, f"log Z: {log_z_q} (q) vs {log_z_p} (p), error {error}"
