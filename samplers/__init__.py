"""Markov-chain generators (Metropolis, HMC), the chain runner and the ensemble file."""
from .hmc import HMC
from .metropolis import Metropolis

SAMPLERS = {"metropolis": Metropolis, "hmc": HMC}
