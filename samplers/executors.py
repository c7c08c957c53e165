"""Worker pools for chain sets: the chains of a set split into contiguous blocks, one block per task of
a ``concurrent.futures`` executor, each block run by the ordinary chain engine in its worker process.

Chain k is defined by (seed, k) alone (samplers/chain.py) and has a file of its own, so a block run in
any process writes the same files, bit for bit, as the whole set in one process (for learned chains:
at the same device, dtype and proposal batch, what chain sets guarantee anyway).

    local   concurrent.futures.ProcessPoolExecutor on this machine, processes started by "spawn" (a
            fresh interpreter: no forked torch / OpenMP / Numba thread state)
    mpi     mpi4py.futures.MPIPoolExecutor over the ranks of an MPI launch:
                mpiexec -n W+1 python -m mpi4py.futures -m generate ... --executor mpi
            (rank 0 runs the command and hands out the blocks; ranks 1..W are the workers; under
            SLURM ``srun -n W+1 python -m mpi4py.futures -m generate ...``)
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import Executor, ProcessPoolExecutor

EXECUTORS = ("local", "mpi")
_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"
MPI_LAUNCH = "mpiexec -n W+1 python -m mpi4py.futures -m generate ... --executor mpi"


class ExecutorError(ValueError):
    """An executor that cannot start here, stated in one line (how to launch it instead)."""


def split_chains(first: int, chains: int, blocks: int) -> list[tuple[int, int]]:
    """(first chain, number of chains) of each of min(blocks, chains) contiguous blocks of chains
    first .. first + chains - 1, as even as possible, the larger blocks first."""
    blocks = max(1, min(blocks, chains))
    size, extra = divmod(chains, blocks)
    out, k = [], first
    for b in range(blocks):
        n = size + (b < extra)
        out.append((k, n))
        k += n
    return out


def mpi_workers() -> int:
    """The number of worker ranks of the running ``python -m mpi4py.futures`` launch (one-line
    ExecutorError without mpi4py or outside such a launch)."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise ExecutorError("--executor mpi needs mpi4py and an MPI: pip install -e \".[mpi]\" "
                            "(mpi4py with the mpich wheel), or mpi4py built on a system MPI") from None
    size = MPI.COMM_WORLD.Get_size()
    if size < 2 or MPI.COMM_WORLD.Get_rank() != 0:
        raise ExecutorError(f"--executor mpi runs under an MPI launch with workers: {MPI_LAUNCH} "
                            f"(this process is rank {MPI.COMM_WORLD.Get_rank()} of {size})")
    return size - 1


def make_executor(kind: str, workers: int) -> Executor:
    """An executor of ``workers`` processes of kind ``kind`` (EXECUTORS)."""
    if kind == "local":
        # a killed worker leaves the pool's semaphores to the resource tracker, which cleans them up and
        # would say so in a warning at exit: the run's own one-line error says what happened
        if _TRACKER_QUIET not in sys.warnoptions:
            sys.warnoptions.append(_TRACKER_QUIET)  # the tracker process takes the -W options from here
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    if kind == "mpi":
        from mpi4py.futures import MPIPoolExecutor

        return MPIPoolExecutor(max_workers=workers)
    raise ExecutorError(f"unknown executor {kind!r} (one of {', '.join(EXECUTORS)})")
