"""The `latticeml` console command dispatches to the four CLIs."""
import shutil
import subprocess

import latticeml_cli
from samplers.ensemble import read_ensemble


def test_unknown_command_is_an_error(capsys):
    assert latticeml_cli.main(["frobnicate"]) == 2
    assert "usage: latticeml {generate,train,observables,pipeline}" in capsys.readouterr().err


def test_installed_command_runs_generate_and_observables(tmp_path):
    exe = shutil.which("latticeml")
    assert exe, "the console script is installed by pip install -e . (pyproject [project.scripts])"
    out = tmp_path / "u1.h5"
    subprocess.run([exe, "generate", "--theory", "u1", "--L", "4", "--beta", "1", "--n-configs", "20",
                    "--quiet", "--out", str(out)], check=True, timeout=120)
    assert len(read_ensemble(out).configs) == 20
    p = subprocess.run([exe, "observables", "measure", str(out), "--select", "P"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and p.stdout.splitlines()[1].startswith("P ")
