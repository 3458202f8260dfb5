//! `derived-same-polarity`: a sentence-pair task DERIVED from the VADER movie snippets.
//!
//! No real sentence-pair data can be had offline, yet the pair path of the model (segment
//! ids, `[SEP]`, pair heads) needs exercising on real text. This task pairs two real movie
//! sentences and asks whether they have the same polarity. It is NOT a GLUE task and says
//! so in its name.
//!
//! Pairs are built inside one split only (from that split's `movie-polarity` sentences), so
//! no sentence crosses from train to test. The split's sentences are shuffled again with a
//! stream derived from the seed and paired off two by two; each sentence appears in one
//! pair, and an odd last one is left out.

use crate::example::{Example, Label};
use adalbert_core::rng::{shuffle, streams, SplitMix64};

/// Label order of the derived pair task.
pub(crate) const PAIR_LABELS: [&str; 2] = ["different", "same"];

/// Pair up polarity-labelled sentences; label 1 (`same`) when both have the same class.
pub(crate) fn same_polarity_pairs(mut sentences: Vec<Example>, seed: u64) -> Vec<Example> {
    let mut rng = SplitMix64::new(seed ^ streams::PAIRING);
    shuffle(&mut sentences, &mut rng);
    sentences
        .chunks_exact(2)
        .map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            Example {
                id: format!("{}+{}", a.id, b.id),
                text_a: a.text_a.clone(),
                text_b: Some(b.text_a.clone()),
                label: Label::Class(usize::from(a.label == b.label)),
            }
        })
        .collect()
}
