#!/usr/bin/env python3
"""The same tiny tensors saved by PyTorch (`torch.save`, pickle) and by safetensors, for the
Rust test that a backbone's content hash does not depend on the file format it was saved in.

Usage:  python3 tools/parity/make_hash_fixture.py [--out DIR]
Re-executes itself inside ${ADALBERT_VENV:-tools/.venv} (see _bootstrap.py). Writes into
DIR (default crates/model/tests/fixtures/content_hash):

  pytorch_model.bin    torch.save of the state dict
  model.safetensors    safetensors.torch.save_file of the same state dict

The tensors are seeded (torch.manual_seed(17)) and cover what a Hugging Face checkpoint holds:
f32 weights with the `albert.` task-model prefix, an f16 tensor (a half-precision copy must be
a different backbone, so the dtype is part of the hash) and an i64 `position_ids` buffer.
A few KB in all. Deterministic: rerunning gives the same tensors.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bootstrap  # noqa: E402

_bootstrap.ensure_venv(
    [Path(__file__).resolve().parent / "requirements.txt"],
    ["torch", "safetensors"],
)

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "crates/model/tests/fixtures/content_hash")
    args = ap.parse_args()
    torch.manual_seed(17)
    sd = {
        "albert.embeddings.word_embeddings.weight": torch.randn(11, 4),
        "albert.embeddings.LayerNorm.weight": torch.ones(4) + 0.1 * torch.randn(4),
        "albert.embeddings.LayerNorm.bias": 0.1 * torch.randn(4),
        "albert.encoder.dense.weight": torch.randn(6, 4).to(torch.float16),
        "albert.embeddings.position_ids": torch.arange(8, dtype=torch.int64).unsqueeze(0),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(sd, args.out / "pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(args.out / "model.safetensors"))
    for f in ("pytorch_model.bin", "model.safetensors"):
        print(f"wrote {args.out / f} ({(args.out / f).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
