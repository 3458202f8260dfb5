#!/usr/bin/env python3
"""Build tiny, randomly initialised ALBERT/BERT models with HF transformers and save them, with
reference inputs and outputs, as parity fixtures for the Rust encoder (crates/model/tests).

Usage (from anywhere):  python3 tools/parity/make_fixtures.py [--out DIR]
The script re-executes itself inside ${ADALBERT_VENV:-tools/.venv} (created and filled with the
pinned packages of tools/parity/requirements.txt when needed). Not run by CI: its output is
committed under crates/model/tests/fixtures/<name>/:

  config.json                 HF config (model_type albert or bert)
  model.safetensors           weights (or pytorch_model.bin for the `bert` fixture)
  reference.safetensors       input_ids, attention_mask, token_type_ids   i64 [B,S]
                              last_hidden_state                          f32 [B,S,H]
                              pooler_output                              f32 [B,H]   (tanh(dense(CLS)))
                              logits                                     f32 [B,num_labels] (task models only)
                              embedding_output                           f32 [B,S,E] (after embedding LayerNorm,
                                                                         before any E->H projection; debug aid)
                              layer_outputs                              f32 [N,B,S,H] (output of every layer
                                                                         application in execution order; debug aid)

Every parameter (including biases and LayerNorm gains/biases, which HF initialises to 0/1) is
re-drawn at random so that a bias or LayerNorm that is not loaded shows up as a mismatch.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bootstrap  # noqa: E402

_bootstrap.ensure_venv([Path(__file__).resolve().parent / "requirements.txt"], ["torch", "transformers", "safetensors"])

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    AlbertConfig,
    AlbertForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
)

DEFAULT_OUT = _bootstrap.REPO / "crates" / "model" / "tests" / "fixtures"
B, S = 2, 7
COMMON = dict(
    vocab_size=99,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    initializer_range=0.02,
)


def specs():
    return [
        dict(
            name="albert_shared",
            seed=1001,
            cls=AlbertForSequenceClassification,
            config=AlbertConfig(
                **COMMON,
                embedding_size=16,
                num_hidden_layers=4,
                num_hidden_groups=1,
                inner_group_num=1,
                hidden_act="gelu_new",
                classifier_dropout_prob=0.1,
                num_labels=3,
                bos_token_id=2,
                eos_token_id=3,
            ),
            alt_act="gelu",
            format="safetensors",
        ),
        dict(
            name="albert_groups",
            seed=1002,
            cls=AlbertForSequenceClassification,
            config=AlbertConfig(
                **COMMON,
                embedding_size=16,
                num_hidden_layers=4,
                num_hidden_groups=2,
                inner_group_num=2,
                hidden_act="gelu",
                classifier_dropout_prob=0.1,
                num_labels=2,
                bos_token_id=2,
                eos_token_id=3,
            ),
            alt_act="gelu_new",
            format="safetensors",
        ),
        dict(
            name="bert",
            seed=1003,
            cls=BertForSequenceClassification,
            config=BertConfig(
                **COMMON,
                num_hidden_layers=3,
                hidden_act="gelu",
                num_labels=1,
                problem_type="regression",
            ),
            alt_act="gelu_new",
            format="bin",
        ),
        dict(
            name="bert_noprefix_relu",
            seed=1004,
            cls=BertModel,
            config=BertConfig(**COMMON, num_hidden_layers=2, hidden_act="relu"),
            alt_act="gelu",
            format="safetensors",
        ),
    ]


def randomize_(model: torch.nn.Module) -> None:
    """Redraw every parameter: weights N(0, 0.2^2), biases N(0, 0.1^2), LayerNorm gain 1 + N(0, 0.1^2)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                if name.endswith(".weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))


def make_inputs(vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (B, S), generator=g, dtype=torch.int64)
    # row 0: full length, a pair with segment B starting at position 4
    # row 1: 5 real tokens then 2 pads, segment B at positions 2..4
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]], dtype=torch.int64)
    tt = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]], dtype=torch.int64)
    ids[:, 0] = 2  # [CLS]-like
    ids[0, 3] = 3  # [SEP]-like
    ids[0, 6] = 3
    ids[1, 1] = 3
    ids[1, 4] = 3
    ids = ids * mask  # pad id 0
    return ids, mask, tt


def base_of(model):
    return getattr(model, "albert", None) or getattr(model, "bert", None) or model


def run(model, ids, mask, tt):
    """Forward pass that also records the embedding output and every layer application's output."""
    base = base_of(model)
    rec = {"emb": None, "layers": []}
    layer_cls = type(base.encoder.albert_layer_groups[0].albert_layers[0]) if hasattr(base.encoder, "albert_layer_groups") else type(base.encoder.layer[0])

    def out_tensor(o):
        return o[0] if isinstance(o, (tuple, list)) else o

    hooks = [base.embeddings.register_forward_hook(lambda m, i, o: rec.__setitem__("emb", out_tensor(o).detach().clone()))]
    for m in base.modules():
        if isinstance(m, layer_cls):
            hooks.append(m.register_forward_hook(lambda m, i, o: rec["layers"].append(out_tensor(o).detach().clone())))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=False)
    finally:
        for h in hooks:
            h.remove()
    if hasattr(out, "logits"):
        # task model: re-run the base to get last_hidden_state and pooler_output
        with torch.no_grad():
            bo = base(input_ids=ids, attention_mask=mask, token_type_ids=tt)
        return bo.last_hidden_state, bo.pooler_output, out.logits, rec
    return out.last_hidden_state, out.pooler_output, None, rec


def build(spec, out_dir: Path) -> dict:
    torch.manual_seed(spec["seed"])
    cfg = spec["config"]
    cfg._attn_implementation = "eager"
    model = spec["cls"](cfg).eval()
    randomize_(model)
    model.eval()
    ids, mask, tt = make_inputs(cfg.vocab_size, spec["seed"])
    lhs, pooled, logits, rec = run(model, ids, mask, tt)

    # How far the fixture is from the same model with the other GELU form: shows the fixture
    # distinguishes gelu (erf) from gelu_new (tanh) well above the 1e-5 test tolerance.
    alt_cfg = type(cfg).from_dict(cfg.to_dict())
    alt_cfg.hidden_act = spec["alt_act"]
    alt_cfg._attn_implementation = "eager"
    alt = spec["cls"](alt_cfg).eval()
    alt.load_state_dict(model.state_dict())
    alt_lhs, _, _, _ = run(alt, ids, mask, tt)
    act_gap = (alt_lhs - lhs).abs().max().item()

    d = out_dir / spec["name"]
    d.mkdir(parents=True, exist_ok=True)
    for old in ("model.safetensors", "pytorch_model.bin"):
        (d / old).unlink(missing_ok=True)
    cfg_dict = model.config.to_dict()
    cfg_dict.pop("_attn_implementation_autoset", None)
    cfg_dict.pop("_attn_implementation", None)
    cfg_dict["architectures"] = [type(model).__name__]
    cfg_dict["dtype"] = "float32"
    (d / "config.json").write_text(json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n")

    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if spec["format"] == "bin":
        torch.save(sd, d / "pytorch_model.bin")
        weights = "pytorch_model.bin"
    else:
        save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
        weights = "model.safetensors"

    ref = {
        "input_ids": ids.contiguous(),
        "attention_mask": mask.contiguous(),
        "token_type_ids": tt.contiguous(),
        "last_hidden_state": lhs.float().contiguous(),
        "pooler_output": pooled.float().contiguous(),
        "embedding_output": rec["emb"].float().contiguous(),
        "layer_outputs": torch.stack(rec["layers"]).float().contiguous(),
    }
    if logits is not None:
        ref["logits"] = logits.float().contiguous()
    # sanity: the last recorded layer output is the final hidden state
    assert torch.equal(ref["layer_outputs"][-1], ref["last_hidden_state"]), "layer hook mismatch"
    save_file(ref, str(d / "reference.safetensors"), metadata={"generator": f"tools/parity/make_fixtures.py seed={spec['seed']}"})

    for f in d.iterdir():
        f.chmod(0o644)

    # round trip: the saved directory, loaded back by transformers, reproduces the reference
    back = spec["cls"].from_pretrained(str(d), attn_implementation="eager").eval()
    b_lhs, b_pooled, b_logits, _ = run(back, ids, mask, tt)
    rt = max((b_lhs - lhs).abs().max().item(), (b_pooled - pooled).abs().max().item())
    if logits is not None:
        rt = max(rt, (b_logits - logits).abs().max().item())
    if rt > 0.0:
        sys.exit(f"{spec['name']}: reloaded model differs from the reference by {rt}")

    n_params = sum(p.numel() for p in model.parameters())
    info = {
        "name": spec["name"],
        "class": type(model).__name__,
        "weights": weights,
        "params": n_params,
        "hidden_act": cfg.hidden_act,
        "keys_sample": sorted(sd)[:2],
        "shapes": {k: list(v.shape) for k, v in ref.items()},
        "max_abs": {k: round(v.abs().max().item(), 4) for k, v in ref.items() if v.is_floating_point()},
        "gap_if_other_gelu": act_gap,
    }
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {__import__('transformers').__version__}")
    for spec in specs():
        info = build(spec, args.out)
        print(json.dumps(info))
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"fixtures written to {args.out} ({total / 1024:.1f} KiB in all)")
    if total > 2 * 1024 * 1024:
        sys.exit(f"fixtures exceed 2 MB ({total} bytes)")


if __name__ == "__main__":
    main()
