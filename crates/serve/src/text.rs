//! Bounding the work per input before the tokenizer sees it.
//!
//! The tokenizer truncates to `max_len` tokens only after encoding the whole text, so a 1 MB
//! input would cost the batching thread seconds and stall every request batched with it. Texts
//! are therefore cut on the HTTP side, before they are queued, at a bound that keeps the
//! first `max_len` tokens unchanged:
//!
//! - WordPiece and SentencePiece tokenize each whitespace-separated word on its own and give
//!   every word at least one token, so the first `max_len` words always yield at least
//!   `max_len` tokens, the same ones the whole text would start with. A text is cut just
//!   before its word number `max_len + 1`.
//! - A text with few, very long words is also cut after `max_len * 100` characters
//!   (WordPiece maps a word of more than 100 characters to one `[UNK]` token anyway).
//!
//! A cut input is reported as truncated, like one the tokenizer truncated.

/// Most characters kept per token of `max_len`.
pub const CHARS_PER_TOKEN: usize = 100;

/// `text` cut to the bound for `max_len` tokens, and whether anything was cut.
pub fn bound(text: &str, max_len: usize) -> (&str, bool) {
    let max_chars = max_len.saturating_mul(CHARS_PER_TOKEN);
    let mut words = 0usize;
    let mut in_word = false;
    for (chars, (at, c)) in text.char_indices().enumerate() {
        if chars >= max_chars {
            return (&text[..at], true);
        }
        if c.is_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
            if words > max_len {
                return (&text[..at], true);
            }
        }
    }
    (text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_kept_whole() {
        assert_eq!(bound("a fine film", 8), ("a fine film", false));
        assert_eq!(bound("  spaced   out  ", 2), ("  spaced   out  ", false));
    }

    #[test]
    fn cut_before_the_word_past_max_len() {
        assert_eq!(bound("one two three four", 2), ("one two ", true));
        // Whitespace runs never count as words: a megabyte of spaces costs nothing extra.
        let spaces = format!("a{}b c", " ".repeat(10));
        assert_eq!(bound(&spaces, 2).0, format!("a{}b ", " ".repeat(10)));
    }

    #[test]
    fn long_words_are_cut_by_characters_on_a_char_boundary() {
        let s = "é".repeat(1000);
        let (cut, was) = bound(&s, 2);
        assert!(was);
        assert_eq!(cut.chars().count(), 2 * CHARS_PER_TOKEN);
        let huge = "x".repeat(1 << 20);
        assert_eq!(bound(&huge, 128).0.len(), 128 * CHARS_PER_TOKEN);
    }
}
