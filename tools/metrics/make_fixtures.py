#!/usr/bin/env python3
"""Write the golden values that the Rust metrics in `crates/tasks` are tested against.

The reference implementations are the ones behind HF `evaluate`'s GLUE metric:
scikit-learn (accuracy_score, f1_score, matthews_corrcoef) and SciPy (pearsonr, spearmanr).
Inputs are drawn from seeded generators, so rerunning the script rewrites the same file
(up to library-version changes, which the file records).

Usage (from anywhere):
    python3 tools/metrics/make_fixtures.py            # venv at tools/.venv, created if absent
    ADALBERT_VENV=/work/venv/tools python3 tools/metrics/make_fixtures.py

Output: crates/tasks/tests/fixtures/metrics_golden.json, or the path given as the first
argument. NaN (SciPy's answer for a
constant input) is written as null, since JSON has no NaN.
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "crates" / "tasks" / "tests" / "fixtures" / "metrics_golden.json"
PACKAGES = ["numpy", "scipy", "scikit-learn"]


def ensure_venv() -> None:
    """Re-run this script inside the venv named by ADALBERT_VENV, creating it if needed."""
    venv_dir = Path(os.environ.get("ADALBERT_VENV", REPO / "tools" / ".venv")).resolve()
    python = venv_dir / "bin" / "python"
    if Path(sys.prefix).resolve() == venv_dir:
        return
    if not python.exists():
        print(f"creating venv {venv_dir}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    missing = subprocess.run(
        [str(python), "-c", "import numpy, scipy, sklearn"], capture_output=True
    ).returncode
    if missing:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def nan_to_none(x: float):
    return None if x != x else float(x)


def classification_cases(np):
    """(name, preds, golds, classes): random, imbalanced, multi-class and degenerate inputs."""
    cases = []
    for seed, n in [(1, 50), (2, 137), (3, 1000)]:
        rng = np.random.default_rng(seed)
        golds = rng.integers(0, 2, n)
        # Predictions agree with golds about 80% of the time.
        flip = rng.random(n) < 0.2
        preds = np.where(flip, 1 - golds, golds)
        cases.append((f"binary_seed{seed}_n{n}", preds, golds))
    rng = np.random.default_rng(4)
    golds = (rng.random(300) < 0.1).astype(int)
    preds = (rng.random(300) < 0.15).astype(int)
    cases.append(("binary_imbalanced_seed4", preds, golds))
    for seed in (5, 6):
        rng = np.random.default_rng(seed)
        golds = rng.integers(0, 3, 200)
        preds = np.where(rng.random(200) < 0.6, golds, rng.integers(0, 3, 200))
        cases.append((f"three_class_seed{seed}", preds, golds))
    g = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    cases += [
        ("all_predictions_one", np.ones(8, int), g),
        ("all_predictions_zero", np.zeros(8, int), g),
        ("everything_zero", np.zeros(6, int), np.zeros(6, int)),
        ("perfect", g.copy(), g),
        ("inverted", 1 - g, g),
        ("single_example", np.array([1]), np.array([1])),
    ]
    return cases


def regression_cases(np):
    """(name, preds, golds) as float32 values (exact in the Rust f32 labels)."""
    cases = []
    for seed, n in [(11, 20), (12, 250), (13, 1000)]:
        rng = np.random.default_rng(seed)
        golds = rng.uniform(0.0, 5.0, n).astype(np.float32)
        preds = (golds + rng.normal(0.0, 1.0, n)).astype(np.float32)
        cases.append((f"random_seed{seed}_n{n}", preds, golds))
    rng = np.random.default_rng(14)
    # Many ties on both sides: values on a half-point grid, as STS-B golds are.
    golds = (np.round(rng.uniform(0, 5, 120) * 2) / 2).astype(np.float32)
    preds = (np.round((golds + rng.normal(0, 1, 120)) * 2) / 2).astype(np.float32)
    cases.append(("ties_half_grid_seed14", preds, golds))
    x = np.arange(1, 11, dtype=np.float32)
    cases += [
        ("monotonic_nonlinear", (x**3).astype(np.float32), x),
        ("reversed", x[::-1].copy(), x),
        ("two_points", np.array([0.5, 2.0], np.float32), np.array([1.0, 3.0], np.float32)),
        ("constant_predictions", np.full(10, 2.5, np.float32), x),
        ("constant_golds", x, np.full(10, 1.0, np.float32)),
    ]
    return cases


def main() -> None:
    ensure_venv()
    import warnings

    import numpy as np
    import scipy
    import sklearn
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    warnings.simplefilter("ignore")  # constant inputs and 0/0 F1 warn; the values are what we test

    classification = []
    for name, preds, golds in classification_cases(np):
        case = {
            "name": name,
            "preds": [int(v) for v in preds],
            "golds": [int(v) for v in golds],
            "accuracy": float(accuracy_score(golds, preds)),
            "mcc": float(matthews_corrcoef(golds, preds)),
        }
        if max(preds.max(), golds.max()) <= 1:
            case["f1"] = float(f1_score(golds, preds, pos_label=1, average="binary"))
        classification.append(case)

    regression = []
    for name, preds, golds in regression_cases(np):
        p64, g64 = preds.astype(np.float64), golds.astype(np.float64)
        regression.append(
            {
                "name": name,
                "preds": [float(v) for v in p64],
                "golds": [float(v) for v in g64],
                "pearson": nan_to_none(pearsonr(p64, g64)[0]),
                "spearmanr": nan_to_none(spearmanr(p64, g64)[0]),
            }
        )

    fixture = {
        "generated_by": "tools/metrics/make_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "note": "null means NaN (SciPy returns NaN for a constant input)",
        "classification": classification,
        "regression": regression,
    }
    out = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fixture, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {out}: {len(classification)} classification, {len(regression)} regression cases")


if __name__ == "__main__":
    main()
