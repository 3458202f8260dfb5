//! `adalbert embed`: one vector per text, pooled and normalized as the model's
//! sentence-transformers files say (`adalbert_model::sentence`, the code the server uses too);
//! with `--vs-fp32`, how far a compressed precision moves the vectors (texts from the command
//! line, a file or standard input, or a task's split).

use std::io::Read;
use std::path::{Path, PathBuf};

use adalbert_model::sentence::{self, l2_normalize, PoolingMode, SentenceConfig};
use adalbert_model::tokenizer::{TextInput, Tokenizer, DEFAULT_MAX_LEN};
use adalbert_model::{Backbone, Ctx, Isa, Kernels};
use adalbert_tasks::{load_dataset, Split};
use anyhow::{bail, Context};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    /// Mask-aware mean of the last hidden states.
    Mean,
    /// The [CLS] token's last hidden state.
    Cls,
    /// Element-wise maximum over the tokens.
    Max,
    /// Sum over the tokens divided by the square root of their number.
    MeanSqrtLen,
    /// Mean weighted by position (1, 2, ...).
    WeightedMean,
    /// The last token's state.
    LastToken,
    /// The pooler output, tanh(dense([CLS])) (not a sentence-transformers mode).
    Pooler,
}

impl Pooling {
    fn mode(self) -> Option<PoolingMode> {
        Some(match self {
            Self::Mean => PoolingMode::Mean,
            Self::Cls => PoolingMode::Cls,
            Self::Max => PoolingMode::Max,
            Self::MeanSqrtLen => PoolingMode::MeanSqrtLen,
            Self::WeightedMean => PoolingMode::WeightedMean,
            Self::LastToken => PoolingMode::LastToken,
            Self::Pooler => return None,
        })
    }
}

#[derive(clap::Args)]
#[command(
    after_help = "A model folder with sentence-transformers files (modules.json, \
1_Pooling/config.json, a Normalize module, sentence_bert_config.json) is embedded as \
SentenceTransformer(folder).encode(texts) does: its pooling, unit length when it has a \
Normalize module, its max_seq_length and do_lower_case. A folder without them keeps \
adalbert's plain defaults: mean pooling, no normalization, 128 tokens."
)]
pub struct Args {
    /// Model folder: config.json, weights, tokenizer (and sentence-transformers files, read
    /// when present).
    #[arg(long)]
    model: PathBuf,
    /// How token states become one vector (default: the model's 1_Pooling/config.json, else
    /// mean).
    #[arg(long, value_enum)]
    pooling: Option<Pooling>,
    /// Tokens per text; longer texts are truncated with a note (default: the model's
    /// max_seq_length from sentence_bert_config.json, else 128; at most the model's positions).
    #[arg(long)]
    max_len: Option<usize>,
    /// Scale every vector to unit length, even if the model has no Normalize module.
    #[arg(long, conflicts_with = "no_normalize")]
    normalize: bool,
    /// Keep the pooled vectors as they are, even if the model has a Normalize module.
    #[arg(long)]
    no_normalize: bool,
    /// Read texts from FILE, one per line (`-` for standard input); they come after any texts
    /// given as arguments.
    #[arg(long, value_name = "FILE|-")]
    input: Option<PathBuf>,
    /// Write the vectors to FILE instead of printing them: `.jsonl` (one {"text", "embedding"}
    /// object per line) or `.npy` (float32, shape [texts, dim]), chosen by the extension.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["vs_fp32", "similarity"])]
    output: Option<PathBuf>,
    /// Print JSON and nothing else: an array of arrays of floats (with --output, a summary
    /// of what was written; with --vs-fp32, the drift).
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
    /// Which split of --task to embed (train, dev or test).
    #[arg(long, default_value = "dev", requires = "task")]
    split: Split,
    /// How many of the task's texts.
    #[arg(long, default_value_t = 256, requires = "task")]
    max_examples: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Texts to embed.
    #[arg(required_unless_present_any = ["task", "input"])]
    texts: Vec<String>,
}

/// Output format of `--output`, by extension.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OutputFormat {
    Jsonl,
    Npy,
}

impl OutputFormat {
    fn of(path: &Path) -> anyhow::Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("jsonl") => Ok(Self::Jsonl),
            Some(e) if e.eq_ignore_ascii_case("npy") => Ok(Self::Npy),
            _ => bail!(
                "--output {}: unknown extension; use .jsonl (JSON Lines) or .npy (NumPy float32)",
                path.display()
            ),
        }
    }
}

/// What the vectors are computed with.
struct Embedder {
    backbone: Backbone,
    tokenizer: Tokenizer,
    config: SentenceConfig,
    /// `--pooling pooler`: the pooler output instead of a sentence-transformers mode.
    pooler: bool,
    normalize: Option<bool>,
}

impl Embedder {
    /// Tokenizes `inputs` and runs the backbone over them (no task parameters, eval mode).
    fn forward(
        &self,
        inputs: &[TextInput],
    ) -> anyhow::Result<(
        adalbert_model::tokenizer::Batch,
        adalbert_model::EncoderOutput,
    )> {
        let batch = self.tokenizer.encode(inputs)?;
        let out = self.backbone.forward(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
            None,
            &Ctx::eval(),
        )?;
        Ok((batch, out))
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let output = args.output.as_deref().map(OutputFormat::of).transpose()?;
    let mut texts = args.texts.clone();
    if let Some(input) = &args.input {
        texts.extend(read_lines(input)?);
    }
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
    let mut config = SentenceConfig::from_dir(&args.model)?;
    if let Some(mode) = args.pooling.and_then(Pooling::mode) {
        config.pooling = vec![mode];
    }
    let positions = backbone.config.shape.max_position_embeddings;
    let max_len = match args.max_len {
        Some(n) if n > positions => bail!(
            "--max-len {n} is above the model's {positions} positions ({}); use at most {positions}",
            args.model.display()
        ),
        Some(n) => n,
        None => config.max_len(DEFAULT_MAX_LEN, positions),
    };
    let tokenizer = config.tokenizer(&args.model, max_len)?;
    backbone.set_kernels(args.precision.kernels());
    let normalize = match (args.normalize, args.no_normalize) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let mut embedder = Embedder {
        backbone,
        tokenizer,
        pooler: args.pooling == Some(Pooling::Pooler),
        normalize,
        config,
    };
    if args.hidden {
        let rows = embed_hidden(&embedder, &texts, &args)?;
        outln!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let kernels = embedder.backbone.inference_kernels();
    let rows = embed(&embedder, &texts, &args)?;
    if args.vs_fp32 {
        // fp32 whatever ADALBERT_KERNELS says (under `int8`, `auto` would run int8 too): our
        // fp32 kernels where the CPU has AVX-512, else candle's ops.
        embedder.backbone.set_kernels(match Isa::detect() {
            Isa::Portable => Kernels::Candle,
            isa => Kernels::Isa(isa),
        });
        let fp32_kernels = embedder.backbone.inference_kernels();
        let want = embed(&embedder, &texts, &args)?;
        let d = Drift::of(&rows, &want);
        if args.json {
            let v = serde_json::json!({"precision": args.precision.name(), "kernels": kernels,
                "fp32_kernels": fp32_kernels, "texts": texts.len(), "dim": d.dim,
                "max_abs_diff": d.max_abs, "mean_abs_diff": d.mean_abs,
                "min_cosine": d.min_cos, "mean_cosine": d.mean_cos});
            outln!("{v}");
        } else {
            outln!(
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
    if let (Some(path), Some(format)) = (&args.output, output) {
        let dim = rows.first().map_or(0, Vec::len);
        let bytes = match format {
            OutputFormat::Npy => adalbert_core::files::npy_f32(&rows, dim)
                .map_err(|e| anyhow::anyhow!("--output {}: {e}", path.display()))?,
            OutputFormat::Jsonl => {
                let mut out = Vec::new();
                for (text, v) in texts.iter().zip(&rows) {
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({"text": text, "embedding": v}),
                    )?;
                    out.push(b'\n');
                }
                out
            }
        };
        adalbert_core::files::write_atomic(path, &bytes)
            .with_context(|| format!("writing --output {}", path.display()))?;
        let normalized = normalize.unwrap_or(embedder.config.normalize);
        let pooling = if embedder.pooler {
            "pooler".to_string()
        } else {
            embedder.config.pooling_name()
        };
        if args.json {
            let v = serde_json::json!({"output": path, "texts": rows.len(), "dim": dim,
                "pooling": pooling, "normalized": normalized, "max_len": max_len});
            outln!("{v}");
        } else {
            outln!(
                "wrote {} vectors of dimension {dim} to {} (pooling {pooling}, {}normalized, max_len {max_len})",
                rows.len(),
                path.display(),
                if normalized { "" } else { "not " }
            );
        }
        return Ok(());
    }
    if args.json {
        outln!("{}", serde_json::to_string(&rows)?);
    } else {
        for (text, v) in texts.iter().zip(&rows) {
            let shown: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
            outln!("{text}\n  [{}] (dim {})", shown.join(", "), v.len());
        }
    }
    if args.similarity {
        print_similarity(&texts, &rows);
    }
    Ok(())
}

/// The texts of `--input`: one per line (a final line break is optional, `\r\n` is accepted);
/// a line that is not UTF-8 or is empty is an error naming the file and line.
fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let stdin = path.as_os_str() == "-";
    let name = if stdin {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let mut bytes = Vec::new();
    if stdin {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading --input - (standard input)")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading --input {name}"))?;
    }
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = std::str::from_utf8(line).map_err(|e| {
                anyhow::anyhow!(
                    "--input {name}, line {}: not valid UTF-8 (byte {})",
                    i + 1,
                    e.valid_up_to() + 1
                )
            })?;
            if text.trim().is_empty() {
                bail!(
                    "--input {name}, line {}: empty text (one text per line)",
                    i + 1
                );
            }
            Ok(text.to_string())
        })
        .collect()
}

/// One vector per text, `args.batch` texts per forward pass.
fn embed(e: &Embedder, texts: &[String], args: &Args) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(texts.len());
    for (c, chunk) in texts.chunks(args.batch).enumerate() {
        let inputs: Vec<TextInput> = chunk.iter().cloned().map(TextInput::Single).collect();
        let (vectors, truncated) = if e.pooler {
            let (batch, out) = e.forward(&inputs)?;
            let Some(p) = out.pooler_output else {
                bail!(
                    "{} has no pooler weights; use another --pooling (mean, cls, ...)",
                    args.model.display()
                );
            };
            let mut v: Vec<Vec<f32>> = p.to_vec2()?;
            if e.normalize.unwrap_or(e.config.normalize) {
                v.iter_mut().for_each(|r| l2_normalize(r));
            }
            (v, batch.truncated)
        } else {
            let out = sentence::embed(
                &e.backbone,
                None,
                &e.tokenizer,
                &inputs,
                &e.config,
                e.normalize,
            )?;
            (out.vectors, out.truncated)
        };
        for (i, t) in truncated.iter().enumerate() {
            if *t && !args.vs_fp32 {
                eprintln!(
                    "note: text {} was truncated to {} tokens",
                    c * args.batch + i,
                    e.tokenizer.max_len()
                );
            }
        }
        rows.extend(vectors);
    }
    Ok(rows)
}

/// Per text (each encoded on its own, no padding): its token ids, the last hidden state of
/// each token and the pooled vector.
fn embed_hidden(
    e: &Embedder,
    texts: &[String],
    args: &Args,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut rows = Vec::with_capacity(texts.len());
    for text in texts {
        let (batch, out) = e.forward(&[TextInput::Single(text.clone())])?;
        let ids = |t: &candle_core::Tensor| -> anyhow::Result<Vec<u32>> {
            Ok(t.to_dtype(candle_core::DType::U32)?.get(0)?.to_vec1()?)
        };
        let hidden: Vec<Vec<f32>> = out.last_hidden_state.get(0)?.to_vec2()?;
        // The pooled vector exactly as a plain `embed` of this text prints it.
        let embedding = embed(e, std::slice::from_ref(text), args)?
            .pop()
            .context("no vector for the text")?;
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
    outln!("\ncosine similarity");
    for (i, a) in rows.iter().enumerate() {
        let cells: Vec<String> = rows
            .iter()
            .map(|b| format!("{:6.3}", cosine(a, b)))
            .collect();
        let label: String = texts[i].chars().take(40).collect();
        outln!("{:>2} {} | {label}", i, cells.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("texts.txt");
        std::fs::write(&p, "first\r\nsecond\n").unwrap();
        assert_eq!(read_lines(&p).unwrap(), vec!["first", "second"]);
        std::fs::write(&p, "first\n\nthird").unwrap();
        let e = read_lines(&p).unwrap_err().to_string();
        assert!(e.contains("texts.txt, line 2: empty text"), "{e}");
        std::fs::write(&p, b"ok\nbad \xff\n").unwrap();
        let e = read_lines(&p).unwrap_err().to_string();
        assert!(e.contains("texts.txt, line 2: not valid UTF-8"), "{e}");
        assert_eq!(
            OutputFormat::of(Path::new("a.NPY")).unwrap(),
            OutputFormat::Npy
        );
        let e = OutputFormat::of(Path::new("a.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.csv") && e.contains(".jsonl"), "{e}");
    }

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
