"""Markov-chain generators (Metropolis, HMC, learned-model MH, hybrid), the chain runner and the ensemble file."""
from .hmc import HMC
from .hybrid import Hybrid
from .learned_mh import LearnedMH, ModelSamples
from .metropolis import Metropolis

SAMPLERS = {"metropolis": Metropolis, "hmc": HMC, "learned-mh": LearnedMH, "hybrid": Hybrid,
            "model-samples": ModelSamples}
