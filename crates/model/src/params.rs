//! Parameter counts per part, from the configuration alone (no weights needed).

use crate::config::EncoderConfig;

/// Parameter counts of a backbone, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ParamCounts {
    pub embeddings: usize,
    /// ALBERT's E->H `embedding_hidden_mapping_in` (0 for BERT).
    pub projection: usize,
    /// All distinct transformer layers (an ALBERT group is stored once however often applied).
    pub encoder: usize,
    pub pooler: usize,
}

impl ParamCounts {
    pub fn of(c: &EncoderConfig) -> Self {
        let (v, e, h, f) = (
            c.vocab_size,
            c.embedding_size,
            c.hidden_size,
            c.intermediate_size,
        );
        let embeddings = (v + c.max_position_embeddings + c.type_vocab_size) * e + 2 * e;
        let projection = if c.has_projection() { e * h + h } else { 0 };
        let attention = 4 * (h * h + h) + 2 * h;
        let ffn = h * f + f + f * h + h + 2 * h;
        let encoder = c.num_hidden_groups * c.inner_group_num * (attention + ffn);
        Self {
            embeddings,
            projection,
            encoder,
            pooler: h * h + h,
        }
    }

    /// Backbone without the pooler (what a pooler-free sentence encoder stores).
    pub fn backbone(&self) -> usize {
        self.embeddings + self.projection + self.encoder
    }

    pub fn total(&self) -> usize {
        self.backbone() + self.pooler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn albert_and_bert_base_match_reference() {
        let a = ParamCounts::of(&EncoderConfig::albert_base());
        assert_eq!(a.embeddings, 3_906_048);
        assert_eq!(a.projection, 99_072);
        assert_eq!(a.encoder, 7_087_872);
        assert_eq!(a.pooler, 590_592);
        assert_eq!(a.total(), 11_683_584);
        assert_eq!(
            ParamCounts::of(&EncoderConfig::bert_base()).total(),
            109_482_240
        );
    }
}
