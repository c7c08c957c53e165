"""Normalizing flows: exact-density learned samplers (interface in base.py).

``build_model(name, theory, **hyperparameters)`` builds the model ``name`` ("realnvp",
"circular-flow", "gauge-flow") for a theory; each lives in its own module.
"""
from .base import MODELS, Flow, Transform, build_model  # noqa: F401
