//! `adalbert predict`: labels for texts, from one or more bundles sharing one backbone.

use std::path::PathBuf;

use adalbert_model::tokenizer::TextInput;
use adalbert_model::MultiTask;
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Backbone model directory (config, weights, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// Task bundle; repeat the flag for several tasks.
    #[arg(long, required = true)]
    bundle: Vec<PathBuf>,
    /// Tokens per input; longer inputs are truncated (and the output says so).
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Separator of the two texts of a pair input.
    #[arg(long, default_value = " ||| ")]
    pair_sep: String,
    /// Print the predictions as one JSON object (task -> one prediction per text).
    #[arg(long)]
    json: bool,
    /// Number format of the backbone's products: fp32, bf16 or int8 (see `adalbert info
    /// --kernels` for the kernels each runs on this CPU).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: super::Precision,
    /// Texts; for pair tasks write `first ||| second`.
    #[arg(required = true)]
    texts: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // `--bundle A B "text"` reads B as a text: say so rather than predict on a file name.
    if let Some(t) = args
        .texts
        .iter()
        .find(|t| t.ends_with(".safetensors") && std::path::Path::new(t).is_file())
    {
        anyhow::bail!(
            "the text {t:?} is a bundle file: give each bundle its own flag \
             (--bundle A --bundle B \"text\")"
        );
    }
    let mut mt = MultiTask::open(&args.model, args.max_len)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    mt.set_kernels(args.precision.kernels())?;
    let mut names = Vec::new();
    for b in &args.bundle {
        names.push(
            mt.load_bundle(b)
                .with_context(|| format!("loading bundle {}", b.display()))?,
        );
    }
    let inputs: Vec<TextInput> = args
        .texts
        .iter()
        .map(|t| match t.split_once(&args.pair_sep) {
            Some((a, b)) => TextInput::Pair(a.to_string(), b.to_string()),
            None => TextInput::Single(t.clone()),
        })
        .collect();
    let mut all = serde_json::Map::new();
    let mut truncated = vec![false; inputs.len()];
    for name in &names {
        let preds = mt.predict(name, &inputs)?;
        for (t, p) in truncated.iter_mut().zip(&preds) {
            *t |= p.truncated;
        }
        if args.json {
            // Each prediction carries its own `truncated` field.
            all.insert(name.clone(), serde_json::to_value(&preds)?);
            continue;
        }
        outln!("[{name}]");
        for (text, p) in args.texts.iter().zip(&preds) {
            let scores: Vec<String> = p.scores.iter().map(|s| format!("{s:.3}")).collect();
            let cut = if p.truncated {
                format!(" [truncated to {} tokens]", args.max_len)
            } else {
                String::new()
            };
            outln!(
                "  {} <- {text} ({}){cut}",
                p.label.as_deref().unwrap_or("value"),
                scores.join(", ")
            );
        }
    }
    // The model saw only the first --max-len tokens of these: say so where a human looks.
    let cut: Vec<usize> = (0..truncated.len()).filter(|&i| truncated[i]).collect();
    if !cut.is_empty() {
        let which: Vec<String> = cut.iter().map(|i| (i + 1).to_string()).collect();
        eprintln!(
            "warning: input(s) {} were truncated to --max-len {} tokens; the prediction saw only their beginning",
            which.join(", "),
            args.max_len
        );
    }
    if args.json {
        outln!("{}", serde_json::Value::Object(all));
    }
    Ok(())
}
