"""The exact references the tests compare against: the public module lattice.exact."""
from lattice.exact import *  # noqa: F401,F403
from lattice.exact import __all__  # noqa: F401
