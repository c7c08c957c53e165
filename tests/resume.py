"""The exact-resume specification every trainable model must meet, shared by the model test folders."""
import json

import pytest
import torch

from samplers.training import load_model, read_checkpoint, train


def _untimed(run):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_resume_is_exact(make_model, config, tmp_path, monkeypatch, kill_at: int, checkpoint_step: int,
                           hook: str = "log_p"):
    """Train ``make_model()`` with ``config`` uninterrupted, and again interrupted at the ``kill_at``-th
    call of the model's method ``hook`` (log p; dsm_loss for models that never evaluate it in
    training), after the checkpoint of ``checkpoint_step``, then resumed from a model with other
    initial weights: metrics (all but times) and final weights must be identical."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(make_model(), config, a)
    interrupted = make_model()
    calls = {"n": 0}
    real = getattr(interrupted, hook)

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(interrupted, hook, killed)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, config, b)
    assert read_checkpoint(b)["step"] == checkpoint_step
    train(make_model(seed=99), config, b, resume=True)  # parameters come from the checkpoint
    assert _untimed(a) == _untimed(b)
    for (ka, va), (kb, vb) in zip(load_model(a)[0].state_dict().items(), load_model(b)[0].state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
