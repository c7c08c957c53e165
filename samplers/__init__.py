"""Markov-chain generators (Metropolis, HMC, learned-model MH, hybrid), the chain runner and the ensemble file."""
from .heatbath import HeatBath, OverRelaxation
from .hmc import HMC
from .hybrid import Hybrid
from .learned_mh import LearnedMH, ModelSamples
from .metropolis import Metropolis
from .plaquette_mh import PlaquetteMH
from .tempering import Tempering
from .winding import WindingHMC
from .wolff import Wolff

SAMPLERS = {"metropolis": Metropolis, "hmc": HMC, "learned-mh": LearnedMH, "hybrid": Hybrid,
            "model-samples": ModelSamples}
SAMPLERS["wolff"] = Wolff  # Wolff / Brower-Tamayo single-cluster updates (+ Metropolis sweeps)
SAMPLERS.update(heatbath=HeatBath, overrelaxation=OverRelaxation)  # von Mises heat bath (+ over-relaxation)
SAMPLERS["plaquette-mh"] = PlaquetteMH  # u1: independence MH from independent plaquettes (exact)
SAMPLERS["tempering"] = Tempering  # parallel tempering over a coupling ladder, a local sampler per replica
SAMPLERS["winding-hmc"] = WindingHMC  # u1: HMC trajectories + Metropolis winding moves between sectors (exact)
