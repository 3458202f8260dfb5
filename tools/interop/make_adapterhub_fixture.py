#!/usr/bin/env python3
"""AdapterHub bottleneck adapters with classification heads, made by the real `adapters`
package on the tiny test backbones, with the logits it computes, for the Rust tests of
`adalbert import/export --format adapterhub`.

Usage:  python3 tools/interop/make_adapterhub_fixture.py [--out DIR]
Re-executes itself inside ${ADALBERT_ADAPTERS_VENV:-tools/.venv-adapters} with
tools/interop/requirements-adapters.txt (`adapters` pins transformers ~=4.57, so it has its
own venv). Writes into DIR (default crates/model/tests/fixtures/interop):

  ah_bert_double/   double_seq_bn (Houlsby: after attention and after the FFN), relu,
                    reduction_factor 4 (m = 8) on the tiny BERT; a 3-class head on the pooler
                    (layers 1, use_pooler true)
  ah_albert_par/    par_bn (parallel to the FFN) with scaling 2.0 (folded into `up` on
                    import), gelu, reduction_factor 8 (m = 4) on the tiny ALBERT with one shared
                    layer; a 1-output (regression) head of 2 layers on the [CLS] state
                    (dense + tanh + classifier: adalbert's per-task pooler copy)
  adapterhub.json   per fixture: the token ids, mask and type ids fed and the head's logits

Saved with save_adapter(..., with_head=True, use_safetensors=True): adapter_config.json,
adapter.safetensors, head_config.json, model_head.safetensors. Every weight is seeded random
(torch.manual_seed), the up-projections included, so a wrong mapping changes the logits.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure("adapters")

import torch  # noqa: E402
from adapters import AutoAdapterModel, DoubleSeqBnConfig, ParBnConfig  # noqa: E402

FIX = _venv.FIX


def make(name: str, backbone: str, config, head: dict, out: Path) -> dict:
    torch.manual_seed(len(name))
    model = AutoAdapterModel.from_pretrained(FIX / backbone)
    model.add_adapter(name, config=config)
    model.add_classification_head(name, **head)
    model.train_adapter(name)
    _venv.perturb_trainable(model)  # the adapter and the head
    model.config._name_or_path = f"adalbert-fixture-{backbone}"  # a name, not this path
    model.save_adapter(out / name, name, with_head=True, use_safetensors=True)
    # Logits as a user gets them: a fresh model, load_adapter (with its head), eval mode.
    fresh = AutoAdapterModel.from_pretrained(FIX / backbone)
    loaded = fresh.load_adapter(str(out / name), use_safetensors=True)
    fresh.set_active_adapters(loaded)
    return _venv.case(backbone, fresh.eval())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=FIX / "interop")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cases = {
        "ah_bert_double": make(
            "ah_bert_double",
            "bert",
            DoubleSeqBnConfig(non_linearity="relu", reduction_factor=4),
            dict(num_labels=3, layers=1, use_pooler=True),
            args.out,
        ),
        "ah_albert_par": make(
            "ah_albert_par",
            "albert_shared",
            ParBnConfig(non_linearity="gelu", reduction_factor=8, scaling=2.0),
            dict(num_labels=1, layers=2, activation_function="tanh", use_pooler=False),
            args.out,
        ),
    }
    (args.out / "adapterhub.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {', '.join(cases)} into {args.out}")


if __name__ == "__main__":
    main()
