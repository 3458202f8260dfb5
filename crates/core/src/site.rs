//! Where a task's parameters attach inside each transformer layer: the one table that the
//! model's execution paths, its task-parameter builders and the parameter counts read.
//!
//! A layer is two sublayers, attention and feed-forward, each ending in
//! `LayerNorm(x + y)` for its input `x` and output `y`. A task may change that end into
//!
//! ```text
//! LayerNorm'(x + s(y + p(x))),   s(z) = z + sequential(z)
//! ```
//!
//! with a parallel bottleneck `p` that reads the sublayer's input, a sequential bottleneck
//! `s` with its own residual, and its own copy `LayerNorm'` of the LayerNorm; and it may add
//! low-rank updates to the attention's query, key and value projections. Each of these places
//! is a [`Site`]; an adapter kind is the list of sites it fills ([`AdapterKind::sites`]).
//! Adding a kind made of these places means adding one row to that table.

use crate::adapter::AdapterKind;

/// The two sublayers of a transformer layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sublayer {
    Attention,
    FeedForward,
}

/// The attention projections a low-rank update can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    Query,
    Key,
    Value,
}

impl Projection {
    /// In the order of the fused `[query; key; value]` projection.
    pub const ALL: [Projection; 3] = [Self::Query, Self::Key, Self::Value];

    /// Position in [`Projection::ALL`] (the block of the fused projection's output).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One place in a layer where a task parameter attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// `W x + (alpha / r) B A x`: a low-rank update of an attention projection (LoRA).
    Lora(Projection),
    /// `y + up(act(down(x)))`: a bottleneck reading the sublayer's input, added to its output
    /// (the parallel adapter).
    Parallel(Sublayer),
    /// `z + up(act(down(z)))`: a bottleneck with its own residual on the sublayer's output
    /// (Houlsby's and Pfeiffer's adapters).
    Sequential(Sublayer),
    /// A task copy of the sublayer's LayerNorm.
    LayerNorm(Sublayer),
}

impl Site {
    /// The LayerNorm copies a task trains when its layout asks for them.
    pub const LAYER_NORMS: [Site; 2] = [
        Site::LayerNorm(Sublayer::Attention),
        Site::LayerNorm(Sublayer::FeedForward),
    ];

    /// The tensors' name under `task.layers.{k}.` (task bundles are stored with these).
    pub fn name(self) -> &'static str {
        use Sublayer::{Attention, FeedForward};
        match self {
            Site::Lora(Projection::Query) => "lora_query",
            Site::Lora(Projection::Key) => "lora_key",
            Site::Lora(Projection::Value) => "lora_value",
            Site::Parallel(Attention) => "attention_parallel_adapter",
            Site::Parallel(FeedForward) => "parallel_adapter",
            Site::Sequential(Attention) => "attention_adapter",
            Site::Sequential(FeedForward) => "output_adapter",
            Site::LayerNorm(Attention) => "attention.LayerNorm",
            Site::LayerNorm(FeedForward) => "full_layer_layer_norm",
        }
    }

    /// Whether a bottleneck (`down`, `up`) sits here.
    pub fn is_bottleneck(self) -> bool {
        matches!(self, Site::Parallel(_) | Site::Sequential(_))
    }

    /// Parameters at this site for hidden size `hidden` and an adapter of width or rank
    /// `size`: `A [r, H]` and `B [H, r]` for LoRA; `down [m, H]`, `up [H, m]` and their biases
    /// for a bottleneck; gamma and beta for a LayerNorm.
    pub fn params(self, hidden: usize, size: usize) -> usize {
        match self {
            Site::Lora(_) => 2 * hidden * size,
            Site::Parallel(_) | Site::Sequential(_) => 2 * hidden * size + size + hidden,
            Site::LayerNorm(_) => 2 * hidden,
        }
    }
}

impl AdapterKind {
    /// The sites this kind fills in every layer, in the order their parameters are
    /// initialized (the seeded stream draws them in this order).
    pub fn sites(self) -> &'static [Site] {
        use Sublayer::{Attention, FeedForward};
        match self {
            AdapterKind::Houlsby => &[Site::Sequential(Attention), Site::Sequential(FeedForward)],
            AdapterKind::Pfeiffer => &[Site::Sequential(FeedForward)],
            AdapterKind::Parallel => &[Site::Parallel(FeedForward)],
            AdapterKind::Lora => &[Site::Lora(Projection::Query), Site::Lora(Projection::Value)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_site_has_its_own_name() {
        let mut all = vec![];
        for s in [Sublayer::Attention, Sublayer::FeedForward] {
            all.extend([Site::Parallel(s), Site::Sequential(s), Site::LayerNorm(s)]);
        }
        all.extend(Projection::ALL.map(Site::Lora));
        let mut names: Vec<&str> = all.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn kinds_fill_the_sites_of_their_papers() {
        let bottlenecks = |k: AdapterKind| k.sites().iter().filter(|s| s.is_bottleneck()).count();
        assert_eq!(bottlenecks(AdapterKind::Houlsby), 2);
        assert_eq!(bottlenecks(AdapterKind::Pfeiffer), 1);
        assert_eq!(bottlenecks(AdapterKind::Parallel), 1);
        assert_eq!(bottlenecks(AdapterKind::Lora), 0);
        assert_eq!(AdapterKind::Lora.sites().len(), 2);
    }
}
