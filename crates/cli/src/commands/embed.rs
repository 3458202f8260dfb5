//! `adalbert embed`: one vector per text.

use std::path::PathBuf;

use adalbert_model::backbone::{cls_pool, mean_pool};
use adalbert_model::tokenizer::{TextInput, Tokenizer, DEFAULT_MAX_LEN};
use adalbert_model::{Backbone, Ctx};
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
    /// Also print the cosine-similarity matrix of the texts.
    #[arg(long, conflicts_with = "json")]
    similarity: bool,
    /// Texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (backbone, _) = Backbone::from_dir(&args.model)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    let tok = Tokenizer::from_dir(&args.model, args.max_len)?;
    let inputs: Vec<TextInput> = args.texts.iter().cloned().map(TextInput::Single).collect();
    let batch = tok.encode(&inputs)?;
    for (i, t) in batch.truncated.iter().enumerate() {
        if *t {
            eprintln!("note: text {i} was truncated to {} tokens", args.max_len);
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
    let rows: Vec<Vec<f32>> = vectors.to_vec2()?;
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for (text, v) in args.texts.iter().zip(&rows) {
            let shown: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
            println!("{text}\n  [{}] (dim {})", shown.join(", "), v.len());
        }
    }
    if args.similarity {
        print_similarity(&args.texts, &rows);
    }
    Ok(())
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
