"""Lean exact diffusion passes (issue 14 item 5): the faster circular padding is bitwise the old one, the
local and coloured step Jacobians are the dense ones (to rounding), and push / sample_prior split the
PF-ODE sampler like a flow's."""
import pytest
import torch
from torch import nn

from lattice import U1, XY, Phi4
from samplers.diffusion import model as dm_model
from samplers.diffusion.model import colour_period
from samplers.diffusion.score import circular_pad
from samplers.flows import build_model
from tests.diffusion.conftest import perturbed


def theory(name, L):
    return {"phi4": Phi4((L, L), m2=-4.0, g=8.0), "xy": XY((L, L), 1.0), "u1": U1((L, L), 1.0)}[name]


NAMES = ["phi4", "xy", "u1"]


def dense_score_jacobian(net, x, std):
    """d net(x, std) / dx by torch.func.jacrev (one backward pass per dof), rows and columns flattened."""
    shape = x.shape[1:]

    def f(xi, si):
        return net(xi.view(1, *shape), si.view(1))[0].flatten()

    return torch.func.vmap(torch.func.jacrev(f))(x.reshape(x.shape[0], -1), std).detach()


def step_jacobians(model, x, t0, t1, method):
    model.set_jacobian(method)
    try:
        return torch.cat([J for _, J in model._step_jacobians(x, t0, t1)])
    finally:
        model.set_jacobian("auto")


# ---------------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("p0, p1", [(1, 1), (2, 1), (0, 2), (3, 3)])
def test_circular_pad_is_f_pad_circular(p0, p1):
    h = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    ref = torch.nn.functional.pad(h, (p1, p1, p0, p0), mode="circular")
    assert torch.equal(circular_pad(h, p0, p1), ref)


def test_circular_pad_wraps_more_than_once():
    h = torch.arange(4.0).view(1, 1, 2, 2)
    out = circular_pad(h, 3, 3)  # F.pad refuses a pad larger than the axis
    idx = torch.arange(-3, 5) % 2
    assert torch.equal(out, h[..., idx, :][..., idx])


@pytest.mark.parametrize("name", NAMES)
def test_fast_padding_is_bitwise_the_old_one_outputs_jacobians_and_gradients(name):
    model = perturbed(theory(name, 8), hidden=(8, 8))
    net = model.net
    x = model.sample_prior(3, torch.Generator().manual_seed(0))
    std = torch.tensor([0.05, 0.7, 3.0], dtype=torch.float64)
    out, J, grads = {}, {}, {}
    for legacy in (True, False):
        net.legacy_padding = legacy
        out[legacy] = net(x, std)
        J[legacy] = dense_score_jacobian(net, x, std)
        net.zero_grad()
        model.dsm_loss(x, torch.Generator().manual_seed(1)).backward()
        grads[legacy] = [p.grad.clone() for p in net.parameters()]
    net.legacy_padding = False
    assert torch.equal(out[True], out[False])
    assert torch.equal(J[True], J[False])
    assert all(torch.equal(a, b) for a, b in zip(grads[True], grads[False]))


def test_parameter_names_are_unchanged():
    """Checkpoints store the state dict: the modules (and so the names) of the score network are those
    of the code before issue 14."""
    model = build_model("diffusion", theory("u1", 4), hidden=[8, 8])
    names = set(model.state_dict())
    expected = {"net.embed.0.w", "net.embed.1.weight", "net.embed.1.bias", "net.convs.0.weight", "net.convs.0.bias",
                "net.convs.1.weight", "net.convs.1.bias", "net.time_bias.0.weight", "net.time_bias.0.bias",
                "net.time_bias.1.weight", "net.time_bias.1.bias", "net.head.weight", "net.head.bias"}
    assert names == expected
    assert all(c.padding_mode == "circular" for c in [*model.net.convs, model.net.head])


# ---------------------------------------------------------------------------------------------- local Jacobian
@pytest.mark.parametrize("L, hidden, kernel", [(8, (32, 32, 32), 3), (16, (8, 8), 3), (3, (4,), 5), (2, (8, 8), 3)])
@pytest.mark.parametrize("name", NAMES)
def test_local_score_jacobian_is_the_dense_one(name, L, hidden, kernel):
    model = perturbed(theory(name, L), hidden=hidden, kernel_size=kernel, noise=0.1)
    x = model.sample_prior(2, torch.Generator().manual_seed(1))
    std = torch.tensor([0.2, 1.5], dtype=torch.float64)
    ref = dense_score_jacobian(model.net, x, std)
    J = model.net.jacobian(x, std)
    assert (J - ref).abs().max() <= 1e-13 * max(1.0, float(ref.abs().max()))
    assert (J == 0).any() if L >= 2 * model.net.receptive_radius + 2 else True  # exact zeros off the field


def test_local_score_jacobian_on_a_non_square_lattice():
    model = perturbed(U1((6, 9), 1.0), hidden=(8, 8), noise=0.1)
    x = model.sample_prior(2, torch.Generator().manual_seed(2))
    std = torch.tensor([0.3, 0.9], dtype=torch.float64)
    assert torch.allclose(model.net.jacobian(x, std), dense_score_jacobian(model.net, x, std), rtol=0, atol=1e-13)


@pytest.mark.parametrize("L", [8, 16])
@pytest.mark.parametrize("name", NAMES)
def test_local_and_coloured_step_log_determinants_are_the_dense_ones(name, L):
    """The same matrix three ways: log |det| agree to 1e-12 at random states (Heun and Euler; for the
    small Euler network of radius 2 (u1: 3) the colouring applies on 16 x 16: 64 of 256 columns, u1 128 of
    512; on 8 x 8 and for Heun it covers the lattice and falls back to the dense Jacobian)."""
    for hidden, integrator in [((8, 8), "heun"), ((4,), "euler")]:
        model = perturbed(theory(name, L), hidden=hidden, integrator=integrator, n_steps=4, noise=0.1)
        x = model.sample_prior(2, torch.Generator().manual_seed(3))
        x = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
        t0, t1 = model._grid()[2:4]
        dense = step_jacobians(model, x, t0, t1, "dense")
        for method in ("local", "colour"):
            J = step_jacobians(model, x, t0, t1, method)
            assert (J - dense).abs().max() < 1e-13, (method, hidden)
            assert (torch.linalg.slogdet(J)[1] - torch.linalg.slogdet(dense)[1]).abs().max() < 1e-12
        colouring = model._colouring()
        if L == 16 and integrator == "euler":
            assert colouring is not None and colouring[1] == model.n_dof // 4
        else:
            assert colouring is None


@pytest.mark.parametrize("name, target", [("phi4", {"kappa": 0.3}), ("u1", {"beta": 2.5})])
def test_step_jacobians_of_a_retargeted_model(name, target):
    base = Phi4((8, 8), kappa=0.25, lam=0.02) if name == "phi4" else U1((8, 8), 1.0)
    model = perturbed(base, hidden=(8,), n_steps=4, noise=0.1).retarget(**target)
    x = model.sample_prior(2, torch.Generator().manual_seed(5))
    t0, t1 = model._grid()[1:3]
    dense = step_jacobians(model, x, t0, t1, "dense")
    assert (step_jacobians(model, x, t0, t1, "local") - dense).abs().max() < 1e-13
    assert (step_jacobians(model, x, t0, t1, "colour") - dense).abs().max() < 1e-13


def test_colour_period():
    assert colour_period(16, 5) == 8 and colour_period(16, 9) == 16 and colour_period(8, 5) == 8
    assert colour_period(32, 13) == 16 and colour_period(26, 13) == 13 and colour_period(20, 3) == 4
    for size in range(1, 30):
        for dist in range(1, 12):
            c = colour_period(size, dist)
            for a in range(size):
                for b in range(a + c, size, c):  # same colour: cyclic distance >= dist
                    assert min(b - a, size - (b - a)) >= dist


class _GlobalNet(nn.Module):
    """A score that depends on the whole configuration (a global mean): nothing local may be assumed."""

    def forward(self, x, std):
        return -x + x.flatten(1).mean(1).view(-1, *[1] * (x.dim() - 1)) / std.view(-1, *[1] * (x.dim() - 1))


class _LocalNet(nn.Module):
    """A nearest-neighbour score with a receptive radius but no local Jacobian of its own."""

    receptive_radius = 1

    def forward(self, x, std):
        return -torch.sin(x) + 0.3 * torch.cos(torch.roll(x, 1, -1)) * torch.roll(x, -1, -2) / std.view(-1, 1, 1)


def test_auto_picks_local_colour_or_dense_by_what_the_network_offers():
    model = perturbed(theory("phi4", 16), hidden=(8,), integrator="euler", n_steps=3)
    assert model.jacobian_method() == "local"
    model.net = _LocalNet()
    assert model.jacobian_method() == "colour" and model._colouring()[1] == 16  # period 4 on each axis
    x = model.sample_prior(2, torch.Generator().manual_seed(0))
    t0, t1 = model._grid()[:2]
    assert (step_jacobians(model, x, t0, t1, "auto") - step_jacobians(model, x, t0, t1, "dense")).abs().max() < 1e-13
    model.net = _GlobalNet()
    assert model.jacobian_method() == "dense" and model.step_radius() is None
    with pytest.raises(ValueError, match="unknown Jacobian method"):
        model.set_jacobian("sparse")


# ---------------------------------------------------------------------------------------------- push
@pytest.mark.parametrize("name", NAMES)
def test_sample_ode_is_push_of_sample_prior_and_rows_are_independent(name):
    model = perturbed(theory(name, 4), hidden=(8, 8), n_steps=4)
    x, lq = model.sample_ode(5, torch.Generator().manual_seed(6))
    z = model.prior_sample(5, torch.Generator().manual_seed(6))
    assert torch.equal(z, model.sample_prior(5, torch.Generator().manual_seed(6)))
    px, plq = model.push(z)
    assert torch.equal(px, x) and torch.equal(plq, lq)
    z2 = model.sample_prior(3, torch.Generator().manual_seed(7))
    cx, clq = model.push(torch.cat([z, z2]))
    x2, lq2 = model.push(z2)
    assert torch.allclose(cx, torch.cat([x, x2]), rtol=0, atol=1e-12)
    assert torch.allclose(clq, torch.cat([lq, lq2]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_push_rows_are_bitwise_independent_on_cpu(name):
    """Stronger than the contract (and measured so here, float64 CPU): a row's x and log q are the same
    bits whatever batch it is pushed in (the time biases are computed once per step, ScoreNet._time_biases)."""
    model = perturbed(theory(name, 8), hidden=(16, 16), n_steps=6)
    z = model.sample_prior(7, torch.Generator().manual_seed(9))
    x, lq = model.push(z)
    parts = [model.push(z[:4]), model.push(z[4:5]), model.push(z[5:])]
    assert torch.equal(x, torch.cat([p[0] for p in parts])) and torch.equal(lq, torch.cat([p[1] for p in parts]))


def test_log_q_by_fixed_point_or_by_newton_agree(monkeypatch):
    model = perturbed(theory("u1", 4), hidden=(8, 8), n_steps=4, noise=0.1)
    x, lq = model.sample(3, torch.Generator().manual_seed(8))
    fixed_point = model.log_q(x)
    monkeypatch.setattr(dm_model, "FIXED_POINT_ITER", 0)
    newton = model.log_q(x)
    assert torch.allclose(fixed_point, lq, rtol=0, atol=1e-9) and torch.allclose(newton, lq, rtol=0, atol=1e-9)


def test_a_chain_set_shares_one_push_and_each_chain_gets_its_own_stream(dm_trained):
    """samplers/proposal.py: with ``push`` the chains of a set are served by one model pass; each gets
    the batch it would get alone, which is the model's own sample() with its stream's generator."""
    from samplers.proposal import ModelProposal, sample_batches

    run = str(dm_trained("u1_L2_b1"))
    props = [ModelProposal(path=run, batch_size=8, chain=c, seed=3) for c in (0, 1, 2)]
    together = sample_batches(props, [0, 4, 1])
    for p, b, (x, lq) in zip(props, [0, 4, 1], together):
        alone = p.sample_batch(b)
        assert (x == alone[0]).all() and (lq == alone[1]).all()
        with torch.no_grad():
            ref_x, ref_lq = p.net.sample(8, p._generator(b))
        assert (x == ref_x.numpy()).all() and (lq == ref_lq.numpy()).all()
