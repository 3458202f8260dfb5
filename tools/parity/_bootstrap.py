"""Run the calling script inside the project's tools venv, creating it if needed.

The venv lives at ${ADALBERT_VENV:-<repo>/tools/.venv}. If the current interpreter is not that
venv's python, the venv is created (python3 -m venv) when absent, the pinned requirements are
pip-installed when an import check fails, and the script is re-executed with the venv's python.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def venv_dir(var: str = "ADALBERT_VENV", default: str = "tools/.venv") -> Path:
    """The venv named by environment variable `var`, else `default` (relative to the repo)."""
    p = Path(os.environ.get(var, default))
    return p if p.is_absolute() else (REPO / p)


def ensure_venv(requirements: list[Path], modules: list[str], venv: Path | None = None) -> None:
    """Re-exec the current script inside `venv` (default: the tools venv, `venv_dir()`);
    returns only when already running in it."""
    venv = venv or venv_dir()
    py = venv / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == venv.resolve()
    if in_venv:
        return
    if not py.exists():
        print(f"[bootstrap] creating venv {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    check = "import " + ", ".join(modules)
    if subprocess.run([str(py), "-c", check], capture_output=True).returncode != 0:
        args = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
        for r in requirements:
            args += ["-r", str(r)]
        print(f"[bootstrap] installing into {venv}: {' '.join(args[5:])}", file=sys.stderr)
        subprocess.run(args, check=True)
    os.execv(str(py), [str(py), str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])
