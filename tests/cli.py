"""Running the CLIs as a user does: in a subprocess, and killed mid-run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from samplers.ensemble import open_ensemble

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run_cli(module: str, *args) -> tuple[int, str, str]:
    """``python -m module args`` in a subprocess: (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                       env=ENV, timeout=300)
    return p.returncode, p.stdout, p.stderr


def generate_then_kill(args, out: Path, min_stored: int, watch: Path | None = None) -> int:
    """Start ``python -m generate args --out out``, SIGKILL it once the file ``watch`` (default: out)
    holds at least ``min_stored`` flushed configurations; returns how many it held."""
    proc = subprocess.Popen([sys.executable, "-m", "generate", *map(str, args), "--out", str(out)], cwd=ROOT, env=ENV)
    deadline, stored = time.time() + 120, 0
    watch = out if watch is None else watch
    while time.time() < deadline and stored < min_stored and proc.poll() is None:
        time.sleep(0.01)
        if watch.exists():
            try:
                with open_ensemble(watch) as f:
                    stored = int(f["state/counters"][0])
            except Exception:  # created but not yet readable
                pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return stored
