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

Threads: the local workers share this machine's cores, so each runs its Numba kernels on
cores // W threads (at least 1) unless NUMBA_NUM_THREADS is set; MPI ranks take NUMBA_NUM_THREADS
from the launch (one node's cores over its ranks is the user's to set). The thread count does not
change a chain's numbers.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor

EXECUTORS = ("local", "mpi")
PARENT_POLL_S = 0.5  # how often a local worker checks that its main process is alive
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
        context = multiprocessing.get_context("spawn")
        reports = context.SimpleQueue()
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_local_worker,
                                   initargs=(local_worker_threads(workers), reports))
        pool.fatal_reports = reports  # what workers said before ending themselves (report_fatal)
        return pool
    if kind == "mpi":
        from mpi4py.futures import MPIPoolExecutor

        return MPIPoolExecutor(max_workers=workers)
    raise ExecutorError(f"unknown executor {kind!r} (one of {', '.join(EXECUTORS)})")


def local_worker_threads(workers: int) -> int | None:
    """Numba threads of each of ``workers`` local workers: this process's cores // workers (at least
    1), or None where NUMBA_NUM_THREADS is set (the user's choice, inherited by the workers)."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return None
    return max(1, len(os.sched_getaffinity(0)) // max(1, workers))


_reports = None  # in a local worker: the queue of report_fatal


def _start_local_worker(threads: int | None, reports) -> None:
    """A local worker's initializer: its Numba thread count, its channel for report_fatal, and a
    watch on the main process: a worker whose main process is gone (killed) ends itself."""
    global _reports
    _reports = reports
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()
    if threads is not None:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _end_with_parent(parent: int) -> None:
    """End this process once its parent is gone (it is then re-parented): a chain file is safe from
    such an end as from a SIGKILL, and no orphan goes on writing a set its user thinks stopped."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(3)


def report_fatal(message: str, prog: str) -> None:
    """Say why this worker is about to end itself (os._exit after a failed write): to the main
    process of a local pool, which puts it in its one-line error (fatal_reports); elsewhere (an MPI
    rank, whose end aborts the launch) as ``prog``'s error line on stderr."""
    if _reports is not None:
        _reports.put(message)  # a SimpleQueue writes to its pipe at once, before the exit
    else:
        print(f"{prog}: error: {message}", file=sys.__stderr__, flush=True)


def fatal_reports(executor: Executor) -> list[str]:
    """What the workers of ``executor`` said with report_fatal (local pools; [] for MPI)."""
    reports = getattr(executor, "fatal_reports", None)
    found = []
    while reports is not None and not reports.empty():
        found.append(reports.get())
    return found
