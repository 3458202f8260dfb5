#!/usr/bin/env python3
"""PEFT LoRA adapters made by the real `peft` package on the tiny test backbones, with the
logits PEFT computes, for the Rust tests of `adalbert import/export --format peft`.

Usage:  python3 tools/interop/make_peft_fixture.py [--out DIR]
Re-executes itself inside ${ADALBERT_VENV:-tools/.venv} with tools/interop/requirements.txt
(peft pinned). Writes into DIR (default crates/model/tests/fixtures/interop):

  peft_bert/     adapter_config.json + adapter_model.safetensors: LoRA r=4, alpha=8 on query
                 and value of the tiny BERT (crates/model/tests/fixtures/bert), 3 labels, with
                 the classifier, every LayerNorm and the pooler as modules_to_save
  peft_albert/   the same on the tiny ALBERT with one shared layer (fixtures/albert_shared),
                 use_rslora (scaling alpha/sqrt(r)), modules_to_save classifier only
  peft.json      per fixture: the token ids, mask and type ids fed, and the logits of
                 PeftModel.from_pretrained(<base>ForSequenceClassification, dir) in eval mode

Every LoRA matrix and saved module is filled with seeded random values (torch.manual_seed)
so that a wrong mapping changes the logits. A few KB in all; deterministic.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure("peft")

import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

FIX = _venv.FIX


def base(backbone: str, num_labels: int):
    return AutoModelForSequenceClassification.from_pretrained(
        FIX / backbone, num_labels=num_labels, ignore_mismatched_sizes=True
    )


def make(name: str, backbone: str, num_labels: int, lora: dict, out: Path) -> dict:
    torch.manual_seed(len(name))
    model = get_peft_model(base(backbone, num_labels), LoraConfig(task_type="SEQ_CLS", **lora))
    _venv.perturb_trainable(model)  # LoRA matrices and the modules_to_save copies
    # A name, not this machine's path (PEFT records where the base model was read from).
    model.peft_config["default"].base_model_name_or_path = f"adalbert-fixture-{backbone}"
    model.save_pretrained(out / name)
    # PEFT also writes a model card; it is not part of the adapter format the tests read.
    (out / name / "README.md").unlink(missing_ok=True)
    # Logits of the saved adapter as a user loads it: a fresh base model + from_pretrained.
    loaded = PeftModel.from_pretrained(base(backbone, num_labels), out / name)
    return _venv.case(backbone, loaded.eval())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=FIX / "interop")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cases = {
        "peft_bert": make(
            "peft_bert",
            "bert",
            3,
            dict(r=4, lora_alpha=8, target_modules=["query", "value"],
                 modules_to_save=["classifier", "LayerNorm", "pooler"]),
            args.out,
        ),
        "peft_albert": make(
            "peft_albert",
            "albert_shared",
            3,
            dict(r=2, lora_alpha=6, use_rslora=True, target_modules=["query", "value"]),
            args.out,
        ),
    }
    (args.out / "peft.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {', '.join(cases)} into {args.out}")


if __name__ == "__main__":
    main()
