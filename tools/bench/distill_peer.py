#!/usr/bin/env python3
"""PyTorch peer for `adalbert distill --bench-steps`: one distillation step of
all-MiniLM-L6-v2 into a shared-layer ALBERT, timed.

Usage:  <venv>/bin/python tools/bench/distill_peer.py --corpus FILE [--model assets/minilm]
            [--batch 32] [--max-len 64] [--embedding-size 128] [--applications 6]
            [--iters 5] [--threads 2]
        <venv>/bin/python tools/bench/distill_peer.py --write-corpus FILE [--model assets/minilm]

The step is the one `adalbert distill` takes (crates/train/src/distill/loss.rs), same shapes:
  * teacher: the BERT, eval mode, no gradients, recording every hidden state and attention
    distribution (eager attention);
  * student: transformers' AlbertModel, E --embedding-size, one shared layer group applied
    --applications times, the teacher's widths and activation, dropout 0, train mode;
  * losses: hidden-state MSE of the embedding output and every application against the teacher
    layer it replaces (TinyBERT's uniform map), attention KL(teacher || student) per real query
    row and head, 1 - cos of the mean-pooled sentence embeddings; weights 1/1/1;
  * backward through every student weight, global-norm clipping at 1.0, AdamW (lr 5e-4, weight
    decay 0.01).
Batches are consecutive --batch lines of --corpus, tokenized by the teacher's tokenizer and cut
at --max-len (`--write-corpus` writes lines long enough that every batch is exactly
batch x max-len real tokens, so both engines see the same shape). Prints one JSON line:
{"engine": "torch", "variant": "distill E128 x6", "shape": "32x64", "ms", "ms_min",
 "examples_per_s", "tokens_per_s", "loss", "peak_rss_mb", ...}.
"""

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
from transformers import AlbertConfig, AlbertModel, AutoModel, AutoTokenizer


def layer_map(n, teacher_layers):
    return [max(1, -(-(a + 1) * teacher_layers // n)) - 1 for a in range(n)]


def write_corpus(model, path, lines=256, words=96):
    """Deterministic long lines of whole-word vocabulary entries (no subword pieces)."""
    tok = AutoTokenizer.from_pretrained(str(model))
    vocab = [w for w, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
             if w.isalpha() and w.isascii() and len(w) > 2]
    out = []
    for i in range(lines):
        out.append(" ".join(vocab[(i * 7919 + j * 104729) % len(vocab)] for j in range(words)))
    Path(path).write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[2] / "assets" / "minilm")
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--write-corpus", type=Path)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--embedding-size", type=int, default=128)
    ap.add_argument("--applications", type=int, default=6)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.write_corpus:
        write_corpus(args.model, args.write_corpus)
        return
    if not args.corpus:
        ap.error("--corpus is required")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    tok = AutoTokenizer.from_pretrained(str(args.model))
    teacher = AutoModel.from_pretrained(str(args.model), dtype=torch.float32, attn_implementation="eager")
    teacher.eval()
    tc = teacher.config
    cfg = AlbertConfig(
        vocab_size=tc.vocab_size, embedding_size=args.embedding_size, hidden_size=tc.hidden_size,
        num_hidden_layers=args.applications, num_hidden_groups=1, inner_group_num=1,
        num_attention_heads=tc.num_attention_heads, intermediate_size=tc.intermediate_size,
        hidden_act=tc.hidden_act, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        max_position_embeddings=tc.max_position_embeddings, type_vocab_size=tc.type_vocab_size,
        layer_norm_eps=tc.layer_norm_eps,
    )
    cfg._attn_implementation = "eager"
    student = AlbertModel(cfg, add_pooling_layer=False)
    student.train()
    params = list(student.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    n, heads, h = args.applications, tc.num_attention_heads, tc.hidden_size
    lmap = layer_map(n, tc.num_hidden_layers)

    lines = [l for l in args.corpus.read_text().splitlines() if l.strip()]
    batches = []
    for i in range(0, len(lines) - args.batch + 1, args.batch):
        enc = tok(lines[i:i + args.batch], truncation=True, max_length=args.max_len,
                  padding=True, return_tensors="pt")
        batches.append(enc)
    if not batches:
        raise SystemExit(f"{args.corpus}: fewer than {args.batch} lines")

    def mean_pool(x, m):
        return (x * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def step(k):
        enc = batches[k % len(batches)]
        ids, mask, tt = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
        with torch.no_grad():
            t = teacher(input_ids=ids, attention_mask=mask, token_type_ids=tt,
                        output_hidden_states=True, output_attentions=True)
        s = student(input_ids=ids, attention_mask=mask, token_type_ids=tt,
                    output_hidden_states=True, output_attentions=True)
        m = mask.float()
        m3 = m.unsqueeze(-1)
        real = m.sum().clamp(min=1.0)
        pairs = [(0, 0)] + [(a + 1, l + 1) for a, l in enumerate(lmap)]
        hidden = sum((((s.hidden_states[si] - t.hidden_states[ti]) ** 2) * m3).sum() for si, ti in pairs)
        hidden = hidden / (real * h * (n + 1))
        row = (m / (real * heads * n))[:, None, :, None]
        attention = 0.0
        for a, l in enumerate(lmap):
            p, q = s.attentions[a], t.attentions[l]
            kl = (q * (q.clamp(1e-30, 1).log() - p.clamp(1e-30, 1).log())).sum(-1, keepdim=True)
            attention = attention + (kl * row).sum()
        cos = torch.nn.functional.cosine_similarity(
            mean_pool(s.hidden_states[-1], m3), mean_pool(t.hidden_states[-1], m3), dim=-1, eps=1e-12)
        cosine = (1 - cos).mean()
        total = hidden + attention + cosine
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(total), int(m.sum())

    step(0)  # warm-up, as `--bench-steps` does
    times, loss, tokens = [], 0.0, 0
    for k in range(1, args.iters + 1):
        t0 = time.perf_counter()
        loss, tokens = step(k)
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    print(json.dumps({
        "engine": "torch", "variant": f"distill E{args.embedding_size} x{n}",
        "shape": f"{args.batch}x{args.max_len}", "ms": round(ms, 2), "ms_min": round(min(times), 2),
        "iters": args.iters, "threads": args.threads, "examples_per_s": round(args.batch / (ms / 1e3), 2),
        "tokens_per_s": round(tokens / (ms / 1e3), 1), "loss": loss,
        "student_params": sum(p.numel() for p in params),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "version": torch.__version__.split("+")[0],
    }), flush=True)


if __name__ == "__main__":
    main()
