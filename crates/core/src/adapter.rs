//! The adapter spec a user types (`houlsby:64`, `pfeiffer:32,act=gelu`, `lora:r=8,alpha=16`)
//! and whether ALBERT's shared layer gets one adapter set per application or one for all.
//!
//! # Grammar
//! ```text
//! spec   := kind ':' item (',' item)*
//! kind   := 'houlsby' | 'pfeiffer' | 'parallel' | 'lora'
//! item   := SIZE | ('size' | 'm' | 'r') '=' SIZE      bottleneck width m or LoRA rank r, 1..=8192
//!         | 'alpha=' X                               LoRA only: update scaled by X / r (default r)
//!         | 'act=' ('relu' | 'gelu' | 'gelu_new')    bottleneck non-linearity (default relu)
//! ```
//! [`AdapterSpec`]'s `Display` writes the canonical form (`houlsby:64,act=relu`,
//! `lora:r=8,alpha=16`), and parsing it gives the same value back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// A non-linearity: the FFN's (`hidden_act` of a config) or an adapter bottleneck's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`), ALBERT's default.
    GeluNew,
    /// exact erf form (`gelu`), BERT's default.
    Gelu,
    Relu,
}

impl Activation {
    /// From a Hugging Face `hidden_act` name (several names denote the tanh form).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluNew),
            "gelu" => Some(Self::Gelu),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    /// The canonical name (what `parse` reads back).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GeluNew => "gelu_new",
            Self::Gelu => "gelu",
            Self::Relu => "relu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which adapter a task trains; where each kind sits in a layer is [`AdapterKind::sites`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// Two bottlenecks per layer: after the attention projection and after the FFN output.
    Houlsby,
    /// One bottleneck per layer, after the FFN output.
    Pfeiffer,
    /// One bottleneck beside the FFN, reading the FFN's input.
    Parallel,
    /// Low-rank updates of the query and value projections.
    Lora,
}

impl AdapterKind {
    pub const ALL: [AdapterKind; 4] = [Self::Houlsby, Self::Pfeiffer, Self::Parallel, Self::Lora];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Houlsby => "houlsby",
            Self::Pfeiffer => "pfeiffer",
            Self::Parallel => "parallel",
            Self::Lora => "lora",
        }
    }
}

/// A parsed adapter spec (see the module docs for the grammar).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdapterSpec {
    pub kind: AdapterKind,
    /// Bottleneck width m, or LoRA rank r.
    pub size: usize,
    /// LoRA scaling numerator (update scaled by alpha / r); equals `size` for bottlenecks.
    pub alpha: f64,
    /// Bottleneck non-linearity (unused by LoRA).
    pub activation: Activation,
}

/// The largest bottleneck width or rank accepted.
pub const MAX_ADAPTER_SIZE: usize = 8192;

impl AdapterSpec {
    /// Parses the grammar of the module docs; errors quote the spec and say what was expected.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: String| CoreError::Spec {
            what: "adapter spec",
            input: spec.to_string(),
            reason,
        };
        let (kind_s, rest) = spec.trim().split_once(':').ok_or_else(|| {
            bad("expected KIND:SIZE, e.g. houlsby:64, pfeiffer:64, parallel:64, lora:r=8".into())
        })?;
        let kind = AdapterKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind_s.trim())
            .ok_or_else(|| {
                bad(format!(
                    "unknown kind `{kind_s}`: expected houlsby, pfeiffer, parallel or lora"
                ))
            })?;
        let mut size = None;
        let mut alpha = None;
        let mut activation = None;
        for item in rest.split(',') {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => ("size", item.trim()),
            };
            match key {
                "size" | "m" | "r" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| bad(format!("size `{value}` is not a positive integer")))?;
                    if n == 0 || n > MAX_ADAPTER_SIZE {
                        return Err(bad(format!("size {n} must be in 1..={MAX_ADAPTER_SIZE}")));
                    }
                    set_once(&mut size, n, "size", &bad)?;
                }
                "alpha" => {
                    let a: f64 = value
                        .parse()
                        .ok()
                        .filter(|a: &f64| a.is_finite() && *a > 0.0)
                        .ok_or_else(|| bad(format!("alpha `{value}` is not a positive number")))?;
                    set_once(&mut alpha, a, "alpha", &bad)?;
                }
                "act" => {
                    let act = Activation::parse(value).ok_or_else(|| {
                        bad(format!(
                            "act `{value}`: expected relu, gelu or gelu_new (swish is not supported)"
                        ))
                    })?;
                    set_once(&mut activation, act, "act", &bad)?;
                }
                other => return Err(bad(format!("unknown option `{other}`"))),
            }
        }
        let size = size.ok_or_else(|| bad("missing size".into()))?;
        if alpha.is_some() && kind != AdapterKind::Lora {
            return Err(bad("alpha applies to lora only".into()));
        }
        if activation.is_some() && kind == AdapterKind::Lora {
            return Err(bad("act applies to bottleneck adapters only".into()));
        }
        Ok(Self {
            kind,
            size,
            alpha: alpha.unwrap_or(size as f64),
            activation: activation.unwrap_or(Activation::Relu),
        })
    }

    /// Trainable adapter parameters attached to one layer application of hidden size
    /// `hidden`: those of every site the kind fills ([`crate::site::Site::params`];
    /// docs/sources.md#houlsby-adapters).
    pub fn params_per_application(&self, hidden: usize) -> usize {
        self.kind
            .sites()
            .iter()
            .map(|site| site.params(hidden, self.size))
            .sum()
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    v: T,
    key: &str,
    bad: &dyn Fn(String) -> CoreError,
) -> Result<()> {
    if slot.replace(v).is_some() {
        return Err(bad(format!("`{key}` is given twice")));
    }
    Ok(())
}

impl FromStr for AdapterSpec {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for AdapterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AdapterKind::Lora => write!(f, "lora:r={},alpha={}", self.size, self.alpha),
            kind => write!(f, "{}:{},act={}", kind.as_str(), self.size, self.activation),
        }
    }
}

/// Whether each layer application has its own adapters, or all share one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    #[default]
    PerApplication,
    Shared,
}

impl Sharing {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "per-application" => Ok(Self::PerApplication),
            "shared" => Ok(Self::Shared),
            other => Err(CoreError::Spec {
                what: "adapter sharing",
                input: other.to_string(),
                reason: "expected `per-application` or `shared`".into(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerApplication => "per-application",
            Self::Shared => "shared",
        }
    }
}

impl FromStr for Sharing {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn specs_parse_and_count_like_the_arithmetic() {
        let s = AdapterSpec::parse("houlsby:64").unwrap();
        assert_eq!((s.kind, s.size), (AdapterKind::Houlsby, 64));
        // 2 * (2 * 768 * 64 + 64 + 768) = 198,272 per application of albert-base.
        assert_eq!(s.params_per_application(768), 198_272);
        let l = AdapterSpec::parse("lora:r=8,alpha=16").unwrap();
        assert_eq!((l.kind, l.size, l.alpha), (AdapterKind::Lora, 8, 16.0));
        assert_eq!(l.params_per_application(768), 24_576);
        assert_eq!(AdapterSpec::parse("lora:8").unwrap().alpha, 8.0);
        let g = AdapterSpec::parse("pfeiffer:32,act=gelu").unwrap();
        assert_eq!(g.activation, Activation::Gelu);
        assert_eq!(g.to_string(), "pfeiffer:32,act=gelu");
    }

    #[test]
    fn bad_specs_quote_the_input() {
        for bad in [
            "houlsby",
            "houlsby:0",
            "houlsby:9000",
            "foo:3",
            "houlsby:x",
            "pfeiffer:8,alpha=2",
            "lora:r=4,bogus=1",
            "lora:r=4,act=gelu",
            "houlsby:8,act=swish",
            "houlsby:8,16",
        ] {
            let e = AdapterSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert!(Sharing::parse("both")
            .unwrap_err()
            .to_string()
            .contains("both"));
    }

    fn any_spec() -> impl Strategy<Value = AdapterSpec> {
        let act = prop_oneof![
            Just(Activation::Relu),
            Just(Activation::Gelu),
            Just(Activation::GeluNew)
        ];
        (0usize..4, 1usize..=MAX_ADAPTER_SIZE, 1u32..10_000, act).prop_map(|(k, size, a, act)| {
            let kind = AdapterKind::ALL[k];
            let lora = kind == AdapterKind::Lora;
            AdapterSpec {
                kind,
                size,
                alpha: if lora {
                    f64::from(a) / 8.0
                } else {
                    size as f64
                },
                activation: if lora { Activation::Relu } else { act },
            }
        })
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(spec in any_spec()) {
            prop_assert_eq!(AdapterSpec::parse(&spec.to_string()).unwrap(), spec);
        }

        #[test]
        fn sharing_round_trips(shared in any::<bool>()) {
            let s = if shared { Sharing::Shared } else { Sharing::PerApplication };
            prop_assert_eq!(Sharing::parse(&s.to_string()).unwrap(), s);
        }
    }
}
