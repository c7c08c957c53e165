"""Launched by tests/test_ensemble_safety.py: ``python -m generate`` that SIGKILLs itself inside a state
write, at the KILL_AT-th call of rng_to_array (two per state write: /state_next's, then /state's; each
comes after the copy's configuration is written and before its RNG state and counters are)."""
import os
import signal
import sys

import generate
from samplers import ensemble

calls = 0
rng_to_array = ensemble.rng_to_array


def killing(rng):
    global calls
    calls += 1
    if calls == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return rng_to_array(rng)


ensemble.rng_to_array = killing
sys.exit(generate.main(sys.argv[1:]))
