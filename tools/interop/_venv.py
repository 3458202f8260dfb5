"""Re-run the calling script inside the venv its ecosystem needs.

PEFT works with the project's tools venv (${ADALBERT_VENV:-tools/.venv}, transformers 5.24);
the `adapters` package pins an older transformers (~=4.57), so AdapterHub scripts run in
${ADALBERT_ADAPTERS_VENV:-tools/.venv-adapters}. Each venv is created and filled from its
pinned requirements file on first use (by tools/parity/_bootstrap.py, the project's one venv
bootstrap). Also the token ids and model fixtures every interop fixture shares.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools" / "parity"))
from _bootstrap import ensure_venv, venv_dir  # noqa: E402

# The model fixtures the interop fixtures are made on, and the token ids every fixture's
# logits are computed for (padding in the first row, a second segment in the second).
FIX = REPO / "crates/model/tests/fixtures"
INPUTS = {
    "input_ids": [[2, 10, 21, 33, 47, 3, 0, 0], [2, 52, 61, 3, 70, 81, 95, 3]],
    "attention_mask": [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]],
    "token_type_ids": [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]],
}


def ensure(which: str) -> None:
    """`which` is "peft" or "adapters"; returns only when running inside that venv."""
    if which == "peft":
        ensure_venv([HERE / "requirements.txt"], ["peft"])
    else:
        venv = venv_dir("ADALBERT_ADAPTERS_VENV", "tools/.venv-adapters")
        ensure_venv([HERE / "requirements-adapters.txt"], ["adapters"], venv)


def perturb_trainable(model, std: float = 0.3) -> None:
    """Add seeded noise to every trainable parameter (the adapter's and the head's), so a
    fixture whose mapping were wrong would change the logits."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * std)


def case(backbone: str, loaded) -> dict:
    """A fixture case: the backbone, INPUTS and the logits of `loaded` (an adapter as a user
    loads it, in eval mode) on them."""
    import torch

    with torch.no_grad():
        logits = loaded(**{k: torch.tensor(v) for k, v in INPUTS.items()}).logits
    return {"backbone": backbone, **INPUTS, "logits": logits.tolist()}
