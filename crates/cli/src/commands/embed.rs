//! `adalbert embed`: one vector per text; with `--vs-fp32`, how far a compressed precision
//! moves the vectors (texts from the command line or from a task's split).

use std::path::PathBuf;

use adalbert_model::backbone::{cls_pool, mean_pool};
use adalbert_model::tokenizer::{TextInput, Tokenizer, DEFAULT_MAX_LEN};
use adalbert_model::{Backbone, Ctx, Isa, Kernels};
use adalbert_tasks::{load_dataset, Split};
use anyhow::{bail, Context};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Pooling {
    /// Mask-aware mean of the last hidden states (sentence-transformers).
    Mean,
    /// The [CLS] token's last hidden state.
    Cls,
    /// The pooler output, tanh(dense([CLS])).
    Pooler,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value = "mean")]
    pooling: Pooling,
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    max_len: usize,
    /// Print a JSON array of arrays of floats and nothing else.
    #[arg(long)]
    json: bool,
    /// With --json: one object per text with its token ids, the last hidden state of each of
    /// its tokens and the pooled vector (what tools/distill/check_hf.py compares with
    /// transformers).
    #[arg(long, requires = "json", conflicts_with = "vs_fp32")]
    hidden: bool,
    /// Also print the cosine-similarity matrix of the texts.
    #[arg(long, conflicts_with_all = ["json", "vs_fp32"])]
    similarity: bool,
    /// Number format of the backbone's products: fp32, bf16 or int8 (see `adalbert info
    /// --kernels` for the kernels each runs on this CPU).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: super::Precision,
    /// Instead of the vectors, print how far --precision moves them from the fp32 ones (max
    /// and mean |difference|, lowest and mean cosine similarity), over every text.
    #[arg(long)]
    vs_fp32: bool,
    /// Also embed the first texts (each pair's first text) of this task's split: an offline
    /// suite task (e.g. movie-polarity, data from --data or assets/data) or a GLUE task.
    #[arg(long)]
    task: Option<String>,
    /// The task's data folder.
    #[arg(long, requires = "task")]
    data: Option<PathBuf>,
    #[arg(long, default_value = "dev", requires = "task")]
    split: Split,
    /// How many of the task's texts.
    #[arg(long, default_value_t = 256, requires = "task")]
    max_examples: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Texts to embed.
    #[arg(required_unless_present = "task")]
    texts: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut texts = args.texts.clone();
    if let Some(task) = &args.task {
        let data = load_dataset(task, args.data.as_deref(), args.split, 0)
            .with_context(|| format!("--task {task}: loading its {} split", args.split.name()))?;
        texts.extend(
            data.examples
                .into_iter()
                .take(args.max_examples)
                .map(|e| e.text_a),
        );
    }
    if texts.is_empty() {
        bail!("no texts to embed");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (mut backbone, _) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    let tok = Tokenizer::from_dir(&args.model, args.max_len)?;
    backbone.set_kernels(args.precision.kernels());
    let kernels = backbone.inference_kernels();
    if args.hidden {
        let rows = embed_hidden(&backbone, &tok, &texts, &args)?;
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let rows = embed(&backbone, &tok, &texts, &args)?;
    if args.vs_fp32 {
        // fp32 whatever ADALBERT_KERNELS says (under `int8`, `auto` would run int8 too): our
        // fp32 kernels where the CPU has AVX-512, else candle's ops.
        backbone.set_kernels(match Isa::detect() {
            Isa::Portable => Kernels::Candle,
            isa => Kernels::Isa(isa),
        });
        let fp32_kernels = backbone.inference_kernels();
        let want = embed(&backbone, &tok, &texts, &args)?;
        let d = Drift::of(&rows, &want);
        if args.json {
            let v = serde_json::json!({"precision": args.precision.name(), "kernels": kernels,
                "fp32_kernels": fp32_kernels, "texts": texts.len(), "dim": d.dim,
                "max_abs_diff": d.max_abs, "mean_abs_diff": d.mean_abs,
                "min_cosine": d.min_cos, "mean_cosine": d.mean_cos});
            println!("{v}");
        } else {
            println!(
                "{} ({kernels}) vs fp32 ({fp32_kernels}) over {} texts, dim {}: max |diff| {:.3e}, mean |diff| {:.3e}, cosine min {:.6} mean {:.6}",
                args.precision.name(),
                texts.len(),
                d.dim,
                d.max_abs,
                d.mean_abs,
                d.min_cos,
                d.mean_cos
            );
        }
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for (text, v) in texts.iter().zip(&rows) {
            let shown: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
            println!("{text}\n  [{}] (dim {})", shown.join(", "), v.len());
        }
    }
    if args.similarity {
        print_similarity(&texts, &rows);
    }
    Ok(())
}

/// One pooled vector per text, `args.batch` texts per forward pass.
fn embed(
    backbone: &Backbone,
    tok: &Tokenizer,
    texts: &[String],
    args: &Args,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(texts.len());
    for (c, chunk) in texts.chunks(args.batch).enumerate() {
        let inputs: Vec<TextInput> = chunk.iter().cloned().map(TextInput::Single).collect();
        let batch = tok.encode(&inputs)?;
        for (i, t) in batch.truncated.iter().enumerate() {
            if *t && !args.vs_fp32 {
                eprintln!(
                    "note: text {} was truncated to {} tokens",
                    c * args.batch + i,
                    args.max_len
                );
            }
        }
        let out = backbone.forward(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            None,
            &Ctx::eval(),
        )?;
        let vectors = match args.pooling {
            Pooling::Mean => mean_pool(&out.last_hidden_state, &batch.attention_mask)?,
            Pooling::Cls => cls_pool(&out.last_hidden_state)?,
            Pooling::Pooler => match out.pooler_output {
                Some(p) => p,
                None => bail!(
                    "{} has no pooler weights; use --pooling mean or cls",
                    args.model.display()
                ),
            },
        };
        rows.extend(vectors.to_vec2::<f32>()?);
    }
    Ok(rows)
}

/// Per text (each encoded on its own, no padding): its token ids, the last hidden state of
/// each token and the pooled vector.
fn embed_hidden(
    backbone: &Backbone,
    tok: &Tokenizer,
    texts: &[String],
    args: &Args,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut rows = Vec::with_capacity(texts.len());
    for text in texts {
        let batch = tok.encode(&[TextInput::Single(text.clone())])?;
        let out = backbone.forward(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            None,
            &Ctx::eval(),
        )?;
        let pooled = match args.pooling {
            Pooling::Mean => mean_pool(&out.last_hidden_state, &batch.attention_mask)?,
            Pooling::Cls => cls_pool(&out.last_hidden_state)?,
            Pooling::Pooler => match out.pooler_output {
                Some(p) => p,
                None => bail!(
                    "{} has no pooler weights; use --pooling mean or cls",
                    args.model.display()
                ),
            },
        };
        let ids = |t: &candle_core::Tensor| -> anyhow::Result<Vec<u32>> {
            Ok(t.to_dtype(candle_core::DType::U32)?.get(0)?.to_vec1()?)
        };
        let hidden: Vec<Vec<f32>> = out.last_hidden_state.get(0)?.to_vec2()?;
        let embedding: Vec<f32> = pooled.get(0)?.to_vec1()?;
        rows.push(serde_json::json!({
            "text": text,
            "input_ids": ids(&batch.input_ids)?,
            "token_type_ids": ids(&batch.token_type_ids)?,
            "last_hidden_state": hidden,
            "embedding": embedding,
        }));
    }
    Ok(rows)
}

/// How far one set of vectors lies from another, row by row.
#[derive(Debug, PartialEq)]
struct Drift {
    dim: usize,
    max_abs: f64,
    mean_abs: f64,
    min_cos: f64,
    mean_cos: f64,
}

impl Drift {
    fn of(got: &[Vec<f32>], want: &[Vec<f32>]) -> Self {
        let (mut max_abs, mut sum_abs, mut count) = (0.0f64, 0.0f64, 0usize);
        let (mut min_cos, mut sum_cos) = (f64::INFINITY, 0.0f64);
        for (g, w) in got.iter().zip(want) {
            for (x, y) in g.iter().zip(w) {
                let d = (*x as f64 - *y as f64).abs();
                max_abs = max_abs.max(d);
                sum_abs += d;
                count += 1;
            }
            let c = cosine(g, w) as f64;
            min_cos = min_cos.min(c);
            sum_cos += c;
        }
        let rows = got.len().min(want.len()).max(1);
        Self {
            dim: got.first().map_or(0, Vec::len),
            max_abs,
            mean_abs: sum_abs / count.max(1) as f64,
            min_cos: if min_cos.is_finite() { min_cos } else { 1.0 },
            mean_cos: sum_cos / rows as f64,
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

fn print_similarity(texts: &[String], rows: &[Vec<f32>]) {
    println!("\ncosine similarity");
    for (i, a) in rows.iter().enumerate() {
        let cells: Vec<String> = rows
            .iter()
            .map(|b| format!("{:6.3}", cosine(a, b)))
            .collect();
        let label: String = texts[i].chars().take(40).collect();
        println!("{:>2} {} | {label}", i, cells.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_measured_per_element_and_per_row() {
        let want = vec![vec![1.0, 0.0], vec![0.0, 2.0]];
        assert_eq!(
            Drift::of(&want, &want),
            Drift {
                dim: 2,
                max_abs: 0.0,
                mean_abs: 0.0,
                min_cos: 1.0,
                mean_cos: 1.0
            }
        );
        // Row 0 turned by 90 degrees (cosine 0), row 1 scaled (cosine 1).
        let got = vec![vec![0.0, 1.0], vec![0.0, 3.0]];
        let d = Drift::of(&got, &want);
        assert_eq!((d.max_abs, d.mean_abs), (1.0, 0.75));
        assert_eq!((d.min_cos, d.mean_cos), (0.0, 0.5));
    }
}
