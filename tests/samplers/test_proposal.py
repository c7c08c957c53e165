"""The proposal interface of trained models: a deterministic stream with exact float64 log q."""
import numpy as np
import pytest
import torch

from lattice import U1, Phi4
from samplers.proposal import ModelProposal
from samplers.training import load_model


def test_proposals_are_float64_with_the_models_exact_log_q(trained):
    prop = ModelProposal(str(trained("u1_L4_trained")), batch_size=32, seed=3)
    assert prop.dtype == "float64" and prop.settings()["exact"]
    for i in (0, 5, 31, 32, 70):
        x, log_q = prop.proposal(i)
        assert x.dtype == np.float64 and x.shape == (2, 4, 4) and np.all(np.abs(x) <= np.pi)
        assert log_q == pytest.approx(prop.log_q(x), abs=1e-10)  # the pull-back of the very sample


def test_the_stream_is_a_function_of_seed_and_index_alone(trained):
    run = str(trained("u1_L4_trained"))
    a = ModelProposal(run, batch_size=16, seed=3)
    b = ModelProposal(run, batch_size=16, seed=3)
    order = [40, 3, 17, 3, 0]
    xa = [a.proposal(i)[0] for i in order]
    xb = [b.proposal(i)[0] for i in sorted(order)]  # visiting batches in another order
    for i, x in zip(order, xa):
        np.testing.assert_array_equal(x, xb[sorted(order).index(i)])
    other = ModelProposal(run, batch_size=16, seed=4)
    assert not np.array_equal(other.proposal(0)[0], xa[-1])


def test_a_changed_checkpoint_is_refused(trained, tmp_path):
    run = trained("u1_L4_trained")
    prop = ModelProposal(str(run))
    with pytest.raises(ValueError, match="changed since the chain started"):
        ModelProposal(str(run), sha256="0" * 64)
    assert len(prop.sha256) == 64


def test_a_model_for_another_theory_or_lattice_is_refused(trained):
    prop = ModelProposal(str(trained("u1_L4_trained")))
    prop.check_theory(U1((4, 4), 2.0))
    for other in (U1((8, 8), 2.0), U1((4, 4), 3.0), Phi4((4, 4), m2=1.0, g=0.0)):
        with pytest.raises(ValueError, match="the model in .* is for u1 \\(beta=2.0\\) on 4x4"):
            prop.check_theory(other)


def test_z2_mixture_density_is_symmetric_and_exact(trained):
    run = str(trained("phi4_L4_broken"))
    prop = ModelProposal(run, batch_size=64, symmetrize="z2")
    flow, _ = load_model(run)
    flow.to(torch.float64)
    x, log_q = prop.sample_batch(0)
    t = torch.as_tensor(x)
    with torch.no_grad():
        expected = torch.logaddexp(flow.log_q(t), flow.log_q(-t)).numpy() - np.log(2.0)
    np.testing.assert_allclose(log_q, expected, atol=1e-10)
    np.testing.assert_allclose([prop.log_q(-c) for c in x[:8]], log_q[:8], atol=1e-10)
    # both signs are proposed: the magnetizations of the batch take both signs about equally often
    signs = np.sign(x.mean(axis=(1, 2)))
    assert 16 < (signs > 0).sum() < 48


def test_z2_applies_to_phi4_only(trained):
    with pytest.raises(ValueError, match="z2 is for phi4"):
        ModelProposal(str(trained("u1_L4_trained")), symmetrize="z2")
