"""The SLURM scripts of the README (docs/cluster/*.sbatch) run as printed on one machine, with bash:
a chain set under mpiexec, measured as replicas and resumed by a repeated job; a flow trained under
torchrun and continued by a repeated job."""
import subprocess

from samplers.ensemble import read_ensemble
from samplers.training import read_checkpoint
from tests.cli import ENV, ROOT


def job(script: str, **settings) -> subprocess.CompletedProcess:
    """``bash docs/cluster/SCRIPT`` outside SLURM, settings from the environment."""
    env = {k: v for k, v in ENV.items() if not k.startswith("SLURM_")}
    return subprocess.run(["bash", str(ROOT / "docs" / "cluster" / script)], env={**env, **settings},
                          capture_output=True, text=True, timeout=300, cwd="/")


def test_the_chain_set_job_runs_on_one_machine_and_a_repeated_job_resumes_every_chain(tmp_path):
    out = tmp_path / "u1.h5"
    first = job("chain_set.sbatch", CHAINS="4", N_CONFIGS="20", OUT=str(out))
    assert first.returncode == 0, first.stderr
    assert "replicas (4;" in first.stdout and "\nP  " in first.stdout  # P: the plaquette
    again = job("chain_set.sbatch", CHAINS="4", N_CONFIGS="40", OUT=str(out))
    assert again.returncode == 0, again.stderr
    for k in range(4):
        ens = read_ensemble(tmp_path / f"u1.chain{k}.h5")
        assert len(ens.configs) == 40 and ens.attrs["chain"] == k


def test_the_torchrun_job_trains_on_two_ranks_and_a_repeated_job_continues(tmp_path):
    out = tmp_path / "run"
    settings = {"BATCH": "16", "EVAL_BATCH": "16", "OUT": str(out)}
    first = job("train_torchrun.sbatch", STEPS="4", **settings)
    assert first.returncode == 0, first.stderr
    assert "on 2 ranks" in first.stdout and read_checkpoint(out)["config"]["shards"] == 2
    again = job("train_torchrun.sbatch", STEPS="8", **settings)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout and read_checkpoint(out)["step"] == 8
