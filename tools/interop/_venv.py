"""Re-run the calling script inside the venv its ecosystem needs.

PEFT works with the project's tools venv (${ADALBERT_VENV:-tools/.venv}, transformers 5.24);
the `adapters` package pins an older transformers (~=4.57), so AdapterHub scripts run in
${ADALBERT_ADAPTERS_VENV:-tools/.venv-adapters}. Each venv is created and filled from its
pinned requirements file on first use.
"""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _dir(var: str, default: str) -> Path:
    p = Path(os.environ.get(var, default))
    return p if p.is_absolute() else REPO / p


def ensure(which: str) -> None:
    """`which` is "peft" or "adapters"; returns only when running inside that venv."""
    if which == "peft":
        venv, req, mods = _dir("ADALBERT_VENV", "tools/.venv"), HERE / "requirements.txt", "peft"
    else:
        venv = _dir("ADALBERT_ADAPTERS_VENV", "tools/.venv-adapters")
        req, mods = HERE / "requirements-adapters.txt", "adapters"
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    if not py.exists():
        print(f"[venv] creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(py), "-c", f"import {mods}"], capture_output=True).returncode != 0:
        print(f"[venv] installing {req} into {venv}", file=sys.stderr)
        subprocess.run([str(py), "-m", "pip", "install", "-r", str(req)], check=True)
    os.execv(str(py), [str(py), str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])
