//! Sentence embeddings as the model was published for sentence-transformers: which token
//! states become the sentence vector (`1_Pooling/config.json`), whether it is scaled to unit
//! length (a `Normalize` module in `modules.json`) and how many tokens the model reads
//! (`sentence_bert_config.json`: `max_seq_length`, `do_lower_case`).
//!
//! This is the one place that pools and normalizes sentence vectors: `adalbert embed` and the
//! server's embedding routes both call [`SentenceConfig::embed`]. A model directory without
//! `modules.json` gets [`SentenceConfig::default`] (mask-aware mean, no normalization, the
//! caller's length limit), which is what adalbert did before it read these files.
//!
//! The semantics follow sentence-transformers' `Pooling` and `Normalize` modules
//! (docs/sources.md#sentence-transformers): several pooling modes concatenate their vectors in
//! the order the config lists them (the legacy `pooling_mode_*` booleans in the fixed order
//! cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken); normalization divides by
//! max(L2 norm, 1e-12).

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor, D};
use serde_json::Value;

use crate::adapters::TaskParams;
use crate::backbone::{cls_pool, mean_pool, Backbone};
use crate::error::{ModelError, Result};
use crate::nn::Ctx;
use crate::tokenizer::{TextInput, Tokenizer};

/// One way of turning token states into a vector (sentence-transformers' pooling modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first real token (`[CLS]`).
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
    /// Mask-aware mean.
    Mean,
    /// Sum over the real tokens divided by the square root of their number.
    MeanSqrtLen,
    /// Mean weighted by position (1, 2, ... from the first real token).
    WeightedMean,
    /// The last real token.
    LastToken,
}

impl PoolingMode {
    /// The legacy boolean keys of `1_Pooling/config.json`, in the order sentence-transformers
    /// concatenates them.
    const LEGACY: [(&'static str, PoolingMode); 6] = [
        ("pooling_mode_cls_token", PoolingMode::Cls),
        ("pooling_mode_max_tokens", PoolingMode::Max),
        ("pooling_mode_mean_tokens", PoolingMode::Mean),
        (
            "pooling_mode_mean_sqrt_len_tokens",
            PoolingMode::MeanSqrtLen,
        ),
        (
            "pooling_mode_weightedmean_tokens",
            PoolingMode::WeightedMean,
        ),
        ("pooling_mode_lasttoken", PoolingMode::LastToken),
    ];

    /// The name sentence-transformers writes in `pooling_mode`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Max => "max",
            Self::Mean => "mean",
            Self::MeanSqrtLen => "mean_sqrt_len_tokens",
            Self::WeightedMean => "weightedmean",
            Self::LastToken => "lasttoken",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::LEGACY.iter().map(|(_, m)| *m).find(|m| m.name() == s)
    }

    /// [B, S, H] token states and a [B, S] mask (1 = real token, right padding) -> [B, H].
    pub fn pool(self, last_hidden_state: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let lhs = last_hidden_state;
        let mask = attention_mask.to_dtype(DType::F32)?;
        Ok(match self {
            Self::Mean => mean_pool(lhs, attention_mask)?,
            Self::Cls => pick_tokens(lhs, attention_mask, |_, first| first)?,
            Self::LastToken => pick_tokens(lhs, attention_mask, |last, _| last)?,
            Self::Max => {
                let keep = mask.unsqueeze(2)?.broadcast_as(lhs.shape())?.ne(0f32)?;
                let floor = Tensor::full(f32::NEG_INFINITY, lhs.shape(), lhs.device())?;
                keep.where_cond(lhs, &floor)?.max(1)?
            }
            Self::MeanSqrtLen => {
                let m = mask.unsqueeze(2)?;
                let summed = lhs.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?.sqrt()?;
                summed.broadcast_div(&counts)?
            }
            Self::WeightedMean => {
                let (_, s) = mask.dims2()?;
                let positions = Tensor::arange(1f32, s as f32 + 1.0, lhs.device())?;
                let w = mask.broadcast_mul(&positions.unsqueeze(0)?)?.unsqueeze(2)?;
                let summed = lhs.broadcast_mul(&w)?.sum(1)?;
                let total = w.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&total)?
            }
        })
    }
}

/// Row b's state at `choose(last real index, first real index)`; a row without real tokens
/// takes position 0 (sentence-transformers takes the last position there, times a zero mask).
fn pick_tokens(
    lhs: &Tensor,
    attention_mask: &Tensor,
    choose: impl Fn(usize, usize) -> usize,
) -> Result<Tensor> {
    let mask: Vec<Vec<i64>> = attention_mask.to_dtype(DType::I64)?.to_vec2()?;
    let rows = mask
        .iter()
        .enumerate()
        .map(|(b, row)| {
            let first = row.iter().position(|&m| m != 0).unwrap_or(0);
            let last = row.iter().rposition(|&m| m != 0).unwrap_or(0);
            Ok(lhs.get(b)?.get(choose(last, first))?)
        })
        .collect::<Result<Vec<_>>>()?;
    if rows.is_empty() {
        return cls_pool(lhs);
    }
    Ok(Tensor::stack(&rows, 0)?)
}

/// The sentence-embedding recipe of a model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceConfig {
    /// Pooling modes whose vectors are concatenated, in order (never empty).
    pub pooling: Vec<PoolingMode>,
    /// Scale each vector to unit L2 length (a `Normalize` module).
    pub normalize: bool,
    /// `max_seq_length` of `sentence_bert_config.json`: the tokens the model reads.
    pub max_seq_length: Option<usize>,
    /// `do_lower_case` of `sentence_bert_config.json`: lowercase texts before tokenizing.
    pub do_lower_case: bool,
    /// The `modules.json` this was read from; `None` for the default.
    pub source: Option<PathBuf>,
}

impl Default for SentenceConfig {
    /// Mean pooling without normalization and the caller's length limit: what a directory
    /// without sentence-transformers files gets (and what adalbert did before reading them).
    fn default() -> Self {
        Self {
            pooling: vec![PoolingMode::Mean],
            normalize: false,
            max_seq_length: None,
            do_lower_case: false,
            source: None,
        }
    }
}

fn config_error(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| config_error(path, e.to_string()))
}

impl SentenceConfig {
    /// Reads `modules.json`, its Pooling module's `config.json` and `sentence_bert_config.json`
    /// from `dir`. Without `modules.json`: [`SentenceConfig::default`]. A file that exists but
    /// is malformed, or a module adalbert cannot run (e.g. `Dense`), is an error naming the
    /// file and field.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(Self::default());
        }
        let modules = read_json(&modules_path)?;
        let modules = modules
            .as_array()
            .ok_or_else(|| config_error(&modules_path, "expected a JSON array of modules"))?;
        let mut cfg = Self {
            source: Some(modules_path.clone()),
            ..Self::default()
        };
        let mut seen_transformer = false;
        for (i, m) in modules.iter().enumerate() {
            let kind = m["type"].as_str().ok_or_else(|| {
                config_error(
                    &modules_path,
                    format!("module {i}: missing string field `type`"),
                )
            })?;
            let path = m["path"].as_str().unwrap_or("");
            let short = kind.rsplit('.').next().unwrap_or(kind);
            match short {
                "Transformer" => {
                    if !path.is_empty() {
                        return Err(config_error(
                            &modules_path,
                            format!("module {i} (Transformer) lives in `{path}`; adalbert reads the weights from the model folder itself, so pass that subfolder as --model"),
                        ));
                    }
                    seen_transformer = true;
                }
                "Pooling" => {
                    let p = dir.join(path).join("config.json");
                    cfg.pooling = if p.is_file() {
                        pooling_modes(&p, &read_json(&p)?)?
                    } else {
                        vec![PoolingMode::Mean]
                    };
                }
                "Normalize" => cfg.normalize = true,
                other => {
                    return Err(config_error(
                        &modules_path,
                        format!("module {i} has type `{kind}`: adalbert runs only Transformer, Pooling and Normalize modules, not `{other}`"),
                    ))
                }
            }
        }
        if !seen_transformer {
            return Err(config_error(
                &modules_path,
                "no sentence_transformers Transformer module",
            ));
        }
        let sbert = dir.join("sentence_bert_config.json");
        if sbert.is_file() {
            let v = read_json(&sbert)?;
            match &v["max_seq_length"] {
                Value::Null => {}
                x => {
                    let n = x.as_u64().filter(|&n| n >= 2).ok_or_else(|| {
                        config_error(
                            &sbert,
                            format!("`max_seq_length` must be an integer of at least 2, found {x}"),
                        )
                    })?;
                    cfg.max_seq_length = Some(n as usize);
                }
            }
            cfg.do_lower_case = v["do_lower_case"].as_bool().unwrap_or(false);
        }
        Ok(cfg)
    }

    /// Whether the directory had sentence-transformers files.
    pub fn is_sentence_transformers(&self) -> bool {
        self.source.is_some()
    }

    /// The pooling modes as sentence-transformers names them, joined by `+`.
    pub fn pooling_name(&self) -> String {
        let names: Vec<&str> = self.pooling.iter().map(|m| m.name()).collect();
        names.join("+")
    }

    /// The length limit to tokenize at: `max_seq_length` when the model sets it, else
    /// `fallback`; never above the model's `positions`.
    pub fn max_len(&self, fallback: usize, positions: usize) -> usize {
        self.max_seq_length.unwrap_or(fallback).min(positions)
    }

    /// Pools [B, S, H] token states into [B, H x modes] (the modes' vectors concatenated).
    pub fn pool(&self, last_hidden_state: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let parts = self
            .pooling
            .iter()
            .map(|m| m.pool(last_hidden_state, attention_mask))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, D::Minus1)?)
    }

    /// Sentence vectors: [`SentenceConfig::pool`], then unit length when `normalize` (the
    /// caller's override) or else the model's `Normalize` says so.
    pub fn embed(
        &self,
        last_hidden_state: &Tensor,
        attention_mask: &Tensor,
        normalize: Option<bool>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut rows: Vec<Vec<f32>> = self.pool(last_hidden_state, attention_mask)?.to_vec2()?;
        if normalize.unwrap_or(self.normalize) {
            rows.iter_mut().for_each(|v| l2_normalize(v));
        }
        Ok(rows)
    }
}

/// Sentence vectors and, per input, the tokens it used and whether it was truncated.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Vec<usize>,
    pub truncated: Vec<bool>,
}

impl SentenceConfig {
    /// The model's tokenizer cut at `max_len` tokens, lowercasing first when
    /// `do_lower_case` says so.
    pub fn tokenizer(&self, dir: &Path, max_len: usize) -> Result<Tokenizer> {
        let mut tok = Tokenizer::from_dir(dir, max_len)?;
        if self.do_lower_case {
            tok.lowercase_inputs();
        }
        Ok(tok)
    }
}

/// One encoder pass over `inputs` (the bare backbone, or with `task`'s parameters), pooled and
/// normalized as `cfg` says (`normalize` overrides the model's Normalize).
pub fn embed(
    backbone: &Backbone,
    task: Option<&TaskParams>,
    tokenizer: &Tokenizer,
    inputs: &[TextInput],
    cfg: &SentenceConfig,
    normalize: Option<bool>,
) -> Result<Embedded> {
    let batch = tokenizer.encode(inputs)?;
    let out = backbone.forward(
        &batch.input_ids,
        &batch.token_type_ids,
        &batch.attention_mask,
        task,
        &Ctx::eval(),
    )?;
    let vectors = cfg.embed(&out.last_hidden_state, &batch.attention_mask, normalize)?;
    let mask: Vec<Vec<i64>> = batch.attention_mask.to_vec2()?;
    let tokens = mask
        .iter()
        .map(|row| row.iter().filter(|&&m| m != 0).count())
        .collect();
    Ok(Embedded {
        vectors,
        tokens,
        truncated: batch.truncated,
    })
}

/// Divides `v` by max(||v||_2, 1e-12), as sentence-transformers' Normalize does.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// The pooling modes of a `1_Pooling/config.json`: the newer `pooling_mode` (a name or a list
/// of names) or the legacy `pooling_mode_*` booleans (none set means mean).
fn pooling_modes(path: &Path, cfg: &Value) -> Result<Vec<PoolingMode>> {
    let parse = |v: &Value| -> Result<PoolingMode> {
        let name = v.as_str().ok_or_else(|| {
            config_error(
                path,
                format!("`pooling_mode` entries must be strings, found {v}"),
            )
        })?;
        PoolingMode::parse(name).ok_or_else(|| {
            let known: Vec<&str> = PoolingMode::LEGACY.iter().map(|(_, m)| m.name()).collect();
            config_error(
                path,
                format!(
                    "unknown `pooling_mode` `{name}` (known: {})",
                    known.join(", ")
                ),
            )
        })
    };
    let modes = match &cfg["pooling_mode"] {
        Value::Null => PoolingMode::LEGACY
            .iter()
            .filter(|(key, _)| cfg[key].as_bool() == Some(true))
            .map(|(_, m)| *m)
            .collect(),
        Value::Array(list) => list.iter().map(parse).collect::<Result<Vec<_>>>()?,
        v => vec![parse(v)?],
    };
    // `include_prompt: false` only matters with prompts, which adalbert never prepends.
    Ok(if modes.is_empty() {
        vec![PoolingMode::Mean]
    } else {
        modes
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// B=2, S=3, H=2; row 1 has one padded position.
    fn states() -> (Tensor, Tensor) {
        let lhs = Tensor::new(
            &[
                [[1f32, -2.0], [3.0, 0.5], [-1.0, 4.0]],
                [[2.0, 1.0], [0.0, -3.0], [100.0, 100.0]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(&[[1i64, 1, 1], [1, 1, 0]], &Device::Cpu).unwrap();
        (lhs, mask)
    }

    /// Every mode against values computed by hand.
    #[test]
    fn pooling_modes_match_hand_computed_values() {
        let (lhs, mask) = states();
        let got =
            |m: PoolingMode| -> Vec<Vec<f32>> { m.pool(&lhs, &mask).unwrap().to_vec2().unwrap() };
        assert_eq!(got(PoolingMode::Cls), vec![vec![1.0, -2.0], vec![2.0, 1.0]]);
        assert_eq!(
            got(PoolingMode::LastToken),
            vec![vec![-1.0, 4.0], vec![0.0, -3.0]]
        );
        assert_eq!(got(PoolingMode::Max), vec![vec![3.0, 4.0], vec![2.0, 1.0]]);
        assert_eq!(
            got(PoolingMode::Mean),
            vec![vec![1.0, 2.5 / 3.0], vec![1.0, -1.0]]
        );
        let s3 = 3f32.sqrt();
        let s2 = 2f32.sqrt();
        let v = got(PoolingMode::MeanSqrtLen);
        for (g, w) in v
            .concat()
            .iter()
            .zip([3.0 / s3, 2.5 / s3, 2.0 / s2, -2.0 / s2])
        {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        // weights 1,2,3 (row 1: 1,2): (1*1+2*3+3*-1)/6, (1*-2+2*0.5+3*4)/6; (2+0)/3, (1-6)/3
        let v = got(PoolingMode::WeightedMean);
        for (g, w) in v
            .concat()
            .iter()
            .zip([4.0 / 6.0, 11.0 / 6.0, 2.0 / 3.0, -5.0 / 3.0])
        {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn modes_concatenate_and_normalize() {
        let (lhs, mask) = states();
        let cfg = SentenceConfig {
            pooling: vec![PoolingMode::Cls, PoolingMode::Max],
            normalize: true,
            ..SentenceConfig::default()
        };
        let rows = cfg.embed(&lhs, &mask, None).unwrap();
        let n = (1.0f32 + 4.0 + 9.0 + 16.0).sqrt();
        assert_eq!(rows[0], vec![1.0 / n, -2.0 / n, 3.0 / n, 4.0 / n]);
        let raw = cfg.embed(&lhs, &mask, Some(false)).unwrap();
        assert_eq!(raw[1], vec![2.0, 1.0, 2.0, 1.0]);
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const MODULES: &str = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#;

    #[test]
    fn files_are_read_in_both_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            SentenceConfig::from_dir(d).unwrap(),
            SentenceConfig::default()
        );
        write(d, "modules.json", MODULES);
        let cfg = SentenceConfig::from_dir(d).unwrap();
        assert_eq!((cfg.pooling_name(), cfg.normalize), ("mean".into(), true));
        write(
            d,
            "1_Pooling/config.json",
            r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}"#,
        );
        assert_eq!(
            SentenceConfig::from_dir(d).unwrap().pooling_name(),
            "cls+mean"
        );
        write(
            d,
            "1_Pooling/config.json",
            r#"{"pooling_mode": ["lasttoken", "max"]}"#,
        );
        assert_eq!(
            SentenceConfig::from_dir(d).unwrap().pooling_name(),
            "lasttoken+max"
        );
        write(
            d,
            "sentence_bert_config.json",
            r#"{"max_seq_length": 256, "do_lower_case": true}"#,
        );
        let cfg = SentenceConfig::from_dir(d).unwrap();
        assert_eq!((cfg.max_seq_length, cfg.do_lower_case), (Some(256), true));
        assert_eq!((cfg.max_len(128, 512), cfg.max_len(128, 64)), (256, 64));
    }

    #[test]
    fn bad_files_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = |d: &Path| SentenceConfig::from_dir(d).unwrap_err().to_string();
        write(d, "modules.json", "not json");
        assert!(err(d).contains("modules.json"), "{}", err(d));
        write(d, "modules.json", MODULES);
        write(d, "1_Pooling/config.json", r#"{"pooling_mode": "median"}"#);
        let e = err(d);
        assert!(
            e.contains("1_Pooling/config.json") && e.contains("median"),
            "{e}"
        );
        write(d, "1_Pooling/config.json", r#"{"pooling_mode": "mean"}"#);
        write(
            d,
            "sentence_bert_config.json",
            r#"{"max_seq_length": "long"}"#,
        );
        let e = err(d);
        assert!(
            e.contains("sentence_bert_config.json") && e.contains("max_seq_length"),
            "{e}"
        );
        write(
            d,
            "modules.json",
            &MODULES.replace(
                "2_Normalize\",\"type\":\"sentence_transformers.models.Normalize",
                "2_Dense\",\"type\":\"sentence_transformers.models.Dense",
            ),
        );
        let e = err(d);
        assert!(e.contains("Dense") && e.contains("modules.json"), "{e}");
    }
}
