//! Text to token ids with the checkpoint's own tokenizer.
//!
//! `tokenizer.json` (the `tokenizers` crate, same code as Hugging Face's fast tokenizers) is
//! preferred; a bare `vocab.txt` falls back to an uncased BERT WordPiece pipeline. Truncation is
//! longest-first to a configurable maximum length and padding is to the longest in the batch.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::{BertNormalizer, Lowercase, NormalizerWrapper, Sequence};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    EncodeInput, Model as _, PaddingDirection, PaddingParams, PaddingStrategy, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::{ModelError, Result};

pub const DEFAULT_MAX_LEN: usize = 128;

/// One model input: a single text or a text pair.
#[derive(Debug, Clone, PartialEq)]
pub enum TextInput {
    Single(String),
    Pair(String, String),
}

/// A tokenized, padded batch as i64 tensors of shape [B, S].
pub struct Batch {
    pub input_ids: Tensor,
    pub token_type_ids: Tensor,
    pub attention_mask: Tensor,
    /// Whether each input was cut to fit `max_len`.
    pub truncated: Vec<bool>,
}

/// One token of an input (see [`Tokenizer::tokens`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    pub id: u32,
    pub text: String,
    pub special: bool,
    /// Byte span in the input text (`0..0` for special tokens).
    pub start: usize,
    pub stop: usize,
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
}

impl Tokenizer {
    /// Loads `tokenizer.json`, or `vocab.txt` if there is no `tokenizer.json`, from `dir`.
    pub fn from_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let inner = if json.is_file() {
            tokenizers::Tokenizer::from_file(&json).map_err(|e| {
                ModelError::Tokenizer(format!("cannot load {}: {e}", json.display()))
            })?
        } else if vocab.is_file() {
            wordpiece_from_vocab(&vocab)?
        } else {
            return Err(ModelError::Tokenizer(format!(
                "no tokenizer in {}: expected tokenizer.json or vocab.txt",
                dir.display()
            )));
        };
        Self::new(inner, max_len)
    }

    pub fn new(mut inner: tokenizers::Tokenizer, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(ModelError::Tokenizer(format!(
                "max length {max_len} is too small (at least 2 for the special tokens)"
            )));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| ModelError::Tokenizer(format!("cannot set truncation: {e}")))?;
        let pad_id = ["[PAD]", "<pad>"]
            .iter()
            .find_map(|t| inner.token_to_id(t).map(|id| (id, t.to_string())))
            .unwrap_or((0, "[PAD]".to_string()));
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: pad_id.0,
            pad_type_id: 0,
            pad_token: pad_id.1,
        }));
        Ok(Self { inner, max_len })
    }

    /// Lowercases every text before the model's own normalization (sentence-transformers'
    /// `do_lower_case`: a `Lowercase` normalizer in front of the tokenizer's).
    pub fn lowercase_inputs(&mut self) {
        let lower = NormalizerWrapper::Lowercase(Lowercase);
        let normalizer = match self.inner.get_normalizer().cloned() {
            Some(n) => NormalizerWrapper::Sequence(Sequence::new(vec![lower, n])),
            None => lower,
        };
        self.inner.with_normalizer(Some(normalizer));
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The tokens of one input as the model sees them (special tokens included, truncated to
    /// `max_len`): id, text, whether special, and the byte span in its text.
    pub fn tokens(&self, input: &TextInput) -> Result<Vec<Token>> {
        let enc = match input {
            TextInput::Single(a) => self.inner.encode(a.as_str(), true),
            TextInput::Pair(a, b) => self.inner.encode((a.as_str(), b.as_str()), true),
        }
        .map_err(|e| ModelError::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(enc
            .get_ids()
            .iter()
            .zip(enc.get_tokens())
            .zip(enc.get_special_tokens_mask())
            .zip(enc.get_offsets())
            .map(|(((&id, text), &special), &(start, stop))| Token {
                id,
                text: text.clone(),
                special: special != 0,
                start,
                stop,
            })
            .collect())
    }

    /// Tokenizes a batch. Empty texts are refused: they carry no content to classify.
    pub fn encode(&self, inputs: &[TextInput]) -> Result<Batch> {
        if inputs.is_empty() {
            return Err(ModelError::Input("no input texts".into()));
        }
        let mut enc_inputs: Vec<EncodeInput> = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let empty = |t: &str| t.trim().is_empty();
            match input {
                TextInput::Single(a) if empty(a) => {
                    return Err(ModelError::Input(format!("input {i} is empty")))
                }
                TextInput::Pair(a, b) if empty(a) || empty(b) => {
                    return Err(ModelError::Input(format!(
                        "input {i}: a pair text is empty"
                    )))
                }
                TextInput::Single(a) => enc_inputs.push(a.as_str().into()),
                TextInput::Pair(a, b) => enc_inputs.push((a.as_str(), b.as_str()).into()),
            }
        }
        let encodings = self
            .inner
            .encode_batch(enc_inputs, true)
            .map_err(|e| ModelError::Tokenizer(format!("encoding failed: {e}")))?;
        let b = encodings.len();
        let s = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * s);
        let mut types = Vec::with_capacity(b * s);
        let mut mask = Vec::with_capacity(b * s);
        let mut truncated = Vec::with_capacity(b);
        for e in &encodings {
            ids.extend(e.get_ids().iter().map(|&x| x as i64));
            types.extend(e.get_type_ids().iter().map(|&x| x as i64));
            mask.extend(e.get_attention_mask().iter().map(|&x| x as i64));
            truncated.push(!e.get_overflowing().is_empty());
        }
        let dev = Device::Cpu;
        Ok(Batch {
            input_ids: Tensor::from_vec(ids, (b, s), &dev)?,
            token_type_ids: Tensor::from_vec(types, (b, s), &dev)?,
            attention_mask: Tensor::from_vec(mask, (b, s), &dev)?,
            truncated,
        })
    }
}

/// An uncased BERT WordPiece tokenizer built from `vocab.txt` alone.
fn wordpiece_from_vocab(vocab: &Path) -> Result<tokenizers::Tokenizer> {
    let path = vocab
        .to_str()
        .ok_or_else(|| ModelError::Tokenizer(format!("non-UTF-8 path {}", vocab.display())))?;
    let wp = WordPiece::from_file(path)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| ModelError::Tokenizer(format!("cannot load {}: {e}", vocab.display())))?;
    let id = |t: &str| {
        wp.get_vocab().get(t).copied().ok_or_else(|| {
            ModelError::Tokenizer(format!("{} lacks the special token {t}", vocab.display()))
        })
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tk = tokenizers::Tokenizer::new(wp);
    tk.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
    tk.with_pre_tokenizer(Some(BertPreTokenizer));
    tk.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(tk)
}
