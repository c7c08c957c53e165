"""The lean exact model passes of issue 14 (samplers/flows/nets.py, the lean paths of gauge.py and
realnvp.py): the fast circular convolution against F.conv2d, SiteConvNet against conv_net, the lean
flow passes against the reference passes (the code before issue 14), row independence of push, and
checkpoint compatibility of the parameter names."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from lattice import make_theory
from samplers.flows import build_model, nets
from samplers.flows.gauge import wrap
from samplers.flows.nets import SiteConvNet, circular_conv2d, conv_net, reference_passes

torch.set_num_threads(1)


def reference_conv(x, w, b):
    k0, k1 = w.shape[-2:]
    return F.conv2d(F.pad(x, (k1 // 2, k1 // 2, k0 // 2, k0 // 2), mode="circular"), w, b)


def rel(a, b):
    return float((a - b).abs().max().detach() / b.abs().max().detach())


# ------------------------------------------------------------------------------ circular_conv2d
@pytest.mark.parametrize("shape,kernel", [((8, 8), (3, 3)), ((4, 6), (3, 5)), ((5, 3), (1, 1)), ((3, 3), (3, 3))])
def test_circular_conv2d_is_f_conv2d(shape, kernel):
    g = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float64, 1e-13), (torch.float32, 1e-5)):
        x = torch.randn(5, 3, *shape, generator=g, dtype=dtype, requires_grad=True)
        w = torch.randn(4, 3, *kernel, generator=g, dtype=dtype, requires_grad=True)
        b = torch.randn(4, generator=g, dtype=dtype, requires_grad=True)
        out, ref = circular_conv2d(x, w, b), reference_conv(x, w, b)
        assert out.shape == ref.shape and out.dtype == dtype
        assert rel(out, ref) < tol
        # autograd: the same gradients
        gy = torch.randn(ref.shape, generator=g, dtype=dtype)
        ga = torch.autograd.grad((out * gy).sum(), (x, w, b))
        gr = torch.autograd.grad((ref * gy).sum(), (x, w, b))
        for a, r in zip(ga, gr):
            assert rel(a, r) < 10 * tol


def test_circular_conv2d_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(circular_conv2d, (x, w, b))


# ------------------------------------------------------------------------------ SiteConvNet
def _masked_case(dtype, shape=(4, 8), max_groups=8, seed=0):
    """conv_net on a masked input; the SiteConvNet of the same parameters at some output sites. The
    table holds the three input channels of a site as one row of 3 components (one row group); the
    masked sites have no row."""
    torch.manual_seed(seed)
    l0, l1 = shape
    V = l0 * l1
    net = conv_net(3, 7, (5, 6), 3, final_zero=False).to(dtype)
    # zero inputs: whole sites (a row group covers all three channels of a site)
    mask = torch.rand(V, generator=torch.Generator().manual_seed(seed)) < 0.6
    in_rows = torch.where(mask, torch.arange(V), torch.full((V,), -1))[None]
    out_sites = torch.tensor([0, 5, 9, V - 1, 17])
    plan = SiteConvNet(net, shape, out_sites, in_rows, V, max_groups=max_groups)
    return net, plan, mask, out_sites


def _run_both(net, plan, mask, out_sites, x, batch_last=False):
    """SiteConvNet and conv_net (masked input) on x (N, 3, 4, 8): both (N, S, C_out)."""
    n = x.shape[0]
    masked = x * mask.view(1, 1, 4, 8)
    ref = net(masked).reshape(n, 7, 32)[:, :, out_sites].transpose(1, 2)
    table = masked.reshape(n, 3, 32).transpose(1, 2)  # (N, R, Q)
    if batch_last:  # table (Q, R, N), output (C, S, N)
        return plan(net, table.permute(2, 1, 0), batch_last=True).permute(2, 1, 0), ref
    return plan(net, table), ref


@pytest.mark.parametrize("batch_last", [False, True], ids=["rows", "batch-last"])
@pytest.mark.parametrize("max_groups", [8, 64], ids=["zero-row", "groups"])
def test_site_conv_net_is_conv_net(max_groups, batch_last):
    for dtype, tol in ((torch.float64, 1e-13), (torch.float32, 1e-5)):
        net, plan, mask, out_sites = _masked_case(dtype, max_groups=max_groups)
        assert plan.zero_row == (max_groups == 8)  # the random mask has more than 8 read patterns
        x = torch.randn(6, 3, 4, 8, dtype=dtype, requires_grad=True)
        out, ref = _run_both(net, plan, mask, out_sites, x, batch_last)
        assert out.shape == ref.shape and rel(out, ref) < tol
        gy = torch.randn(ref.shape, dtype=dtype)
        ga = torch.autograd.grad((out * gy).sum(), [x, *net.parameters()], retain_graph=True)  # shares x * mask
        gr = torch.autograd.grad((ref * gy).sum(), [x, *net.parameters()])
        for a, r in zip(ga, gr):
            assert rel(a, r) < 10 * tol


def test_site_conv_net_rows_are_bitwise_independent():
    """Row i of the output has the same bits whatever the other rows and the batch size."""
    net, plan, mask, out_sites = _masked_case(torch.float64, max_groups=64)
    table = torch.randn(41, 32, 3, dtype=torch.float64)
    with torch.no_grad():
        full = plan(net, table)
        for a, b in ((0, 1), (3, 4), (5, 12), (40, 41), (0, 17)):
            assert torch.equal(plan(net, table[a:b]), full[a:b])


def test_site_conv_net_gradcheck_and_functorch():
    net, plan, mask, _ = _masked_case(torch.float64, max_groups=64)
    table = torch.randn(2, 32, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: plan(net, t), (table,))
    jac = torch.func.jacrev(lambda t: plan(net, t))(table.detach())
    assert jac.shape == (2, 5, 7, 2, 32, 3)
    tb = table.detach().permute(2, 1, 0).contiguous().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: plan(net, t, batch_last=True), (tb,))


def test_site_conv_net_sees_parameter_changes_without_autograd():
    """The derived weights kept between no-grad passes are refreshed when a parameter changes."""
    net, plan, mask, out_sites = _masked_case(torch.float64)
    x = torch.randn(3, 3, 4, 8, dtype=torch.float64)
    with torch.no_grad():
        before, _ = _run_both(net, plan, mask, out_sites, x)
        net[0].weight.add_(0.5)  # in place (as an optimizer step)
        after, _ = _run_both(net, plan, mask, out_sites, x)
        net[-1].bias = torch.nn.Parameter(net[-1].bias + 1.0)  # replaced
        replaced, ref = _run_both(net, plan, mask, out_sites, x)
    assert float((after - before).abs().max()) > 1e-3
    assert float((replaced - after - 1.0).abs().max()) < 1e-12
    assert rel(replaced, ref) < 1e-13


def test_site_conv_net_refuses_other_networks():
    with pytest.raises(ValueError):
        SiteConvNet(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1)), (4, 4), torch.arange(4),
                    torch.zeros(1, 16, dtype=torch.long), 16)  # zero padding, not circular
    with pytest.raises(ValueError):
        SiteConvNet(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"), torch.nn.Tanh()),
                    (4, 4), torch.arange(4), torch.zeros(1, 16, dtype=torch.long), 16)


# ------------------------------------------------------------------------------ lean flow passes
def _flow(model, L=8, seed=0, std=0.1, **hyper):
    theory = make_theory("u1", (L, L), beta=2.0) if model == "gauge-flow" else \
        make_theory("phi4", (L, L), m2=-4.0, g=8.0)
    torch.manual_seed(seed)
    flow = build_model(model, theory, **hyper).to(torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


CASES = [("gauge-flow", {}), ("gauge-flow", {"plaq_map": "ncp"}), ("gauge-flow", {"passive_sum": False}),
         ("gauge-flow", {"n_layers": 4, "hidden": (8,), "kernel_size": 5}), ("realnvp", {}),
         ("realnvp", {"hidden": (8, 8, 8), "kernel_size": 5})]


def _diff(model, a, b):
    return float((wrap(a - b) if model == "gauge-flow" else a - b).abs().max())


@pytest.mark.parametrize("model,hyper", CASES, ids=[f"{m}-{'-'.join(map(str, h.values())) or 'default'}" for m, h in CASES])
def test_lean_passes_are_the_reference_passes(model, hyper):
    """sample, push and log_q of the lean code equal those of the code before issue 14 to rounding:
    the same map and the same exact density."""
    flow = _flow(model, **hyper)
    z = flow.sample_prior(64, torch.Generator().manual_seed(3))
    with torch.no_grad():
        x, lq = flow.push(z)
        lq_back = flow.log_q(x)
        with reference_passes():
            assert not flow._lean(z)
            xr, lqr = flow.push(z)
            lq_back_r = flow.log_q(x)
    assert flow._lean(z)
    scale = 1 + float(lq.abs().max())
    assert _diff(model, x, xr) < 1e-12
    assert float((lq - lqr).abs().max()) < 1e-12 * scale
    assert float((lq_back - lq_back_r).abs().max()) < 1e-12 * scale
    assert float((lq_back - lq).abs().max()) < 1e-10 * scale  # the pull-back of the very sample
    if model == "gauge-flow":
        assert bool((x >= -math.pi).all()) and bool((x < math.pi).all())
    # each layer on its own, both directions
    for t in flow.transforms[:3]:
        with torch.no_grad():
            y, ld = t.forward(z)
            w, ild = t.inverse(z)
            with reference_passes():
                yr, ldr = t.forward(z)
                wr, ildr = t.inverse(z)
        assert _diff(model, y, yr) < 1e-12 and _diff(model, w, wr) < 1e-12
        assert float((ld - ldr).abs().max()) < 1e-11 and float((ild - ildr).abs().max()) < 1e-11


@pytest.mark.parametrize("model", ["gauge-flow", "realnvp"])
def test_lean_gradients_are_the_reference_gradients(model):
    """A reverse-KL loss through the lean sampling pass back-propagates the reference gradients (float64)."""
    flow = _flow(model, n_layers=4)
    z = flow.sample_prior(16, torch.Generator().manual_seed(4))
    grads = []
    for ref in (False, True):
        with reference_passes(ref):
            x, lq = flow.push(z)
            grads.append(torch.autograd.grad((lq - flow.log_p(x)).mean(), list(flow.parameters())))
    for a, r in zip(*grads):
        assert float((a - r).abs().max()) < 1e-10 * (1 + float(r.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("model,L,hyper", [("gauge-flow", 8, {}), ("gauge-flow", 4, {"n_layers": 8, "hidden": (8,)}),
                                          ("gauge-flow", 12, {"plaq_map": "ncp", "n_layers": 4}), ("realnvp", 8, {}),
                                          ("realnvp", 6, {"n_layers": 4})])
def test_push_rows_are_independent(model, L, hyper, dtype):
    """push of a concatenation of batches is the pushes of each: rows do not interact, also across the
    chunks a large no-grad pass is cut into, and log_q likewise. Bitwise on the CPU (the chain sets of
    samplers/proposal.py rely on it): every operation of the lean passes acts on each row in the same
    way whatever the batch (nets.SiteConvNet's products, circular._softplus)."""
    flow = _flow(model, L=L, **hyper).to(dtype)
    zs = [flow.sample_prior(n, torch.Generator().manual_seed(n)) for n in (37, 300, 1, 5)]
    old = nets.CHUNK_SITES
    try:
        for chunk in (old, L * L * 7):  # one pass, and chunks of 7 configurations
            nets.CHUNK_SITES = chunk
            with torch.no_grad():
                x, lq = flow.push(torch.cat(zs))
                parts = [flow.push(z) for z in zs]
                back = flow.log_q(x)
                alone = torch.cat([flow.log_q(x[i:i + 1]) for i in range(0, len(x), 29)])
            assert torch.equal(x, torch.cat([p[0] for p in parts]))
            assert torch.equal(lq, torch.cat([p[1] for p in parts]))
            assert torch.equal(back[::29], alone)
    finally:
        nets.CHUNK_SITES = old


def test_parameter_names_are_unchanged():
    """Checkpoints store the nn.Sequential of conv_net: the lean passes add no state (their index tensors
    are non-persistent buffers), so state_dicts keep their keys and shapes and old ones load."""
    gauge = _flow("gauge-flow", n_layers=2)
    keys = set(gauge.state_dict())
    assert keys == {f"transforms.{i}.net.{j}.{p}" for i in range(2) for j in (0, 2, 4) for p in ("weight", "bias")} \
        | {"prior._anchor"}
    rnvp = _flow("realnvp", n_layers=2)  # its convolutions follow a padding module: net.1, net.4, net.7
    assert {k for k in rnvp.state_dict() if ".net." in k} == \
        {f"transforms.{i}.net.{j}.{p}" for i in range(2) for j in (1, 4, 7) for p in ("weight", "bias")}
    for flow, model in ((gauge, "gauge-flow"), (rnvp, "realnvp")):
        fresh = build_model(model, flow.theory, n_layers=2).to(torch.float64)
        fresh.load_state_dict(flow.state_dict())  # strict
        with torch.no_grad():
            x = flow.sample(4, torch.Generator().manual_seed(7))[0]
            assert float((fresh.log_q(x) - flow.log_q(x)).abs().max()) < 1e-12
