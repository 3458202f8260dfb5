//! The server's request bodies on arbitrary bytes, parsed with the functions and types the
//! handlers use. The first byte picks the route (taken modulo 7): task predict, mixed
//! predict, OpenAI embeddings, TEI embed, TEI predict, tokenize, task load; the second is the
//! server's `max_len` (1..=256); the rest is the body. Beyond "no panic": every accepted
//! input is non-empty and within the bound for `max_len` tokens ([`adalbert_serve::text`]),
//! is a prefix of what was sent, and is flagged as cut exactly when it is shorter.

#![no_main]

use adalbert_model::tokenizer::TextInput;
use adalbert_serve::api::{parse_input, parse_json, MixedRequest, TaskPredictRequest};
use adalbert_serve::compat::{
    parse_texts, tei_predict_items, truncation_allowed, LoadRequest, OpenAiEmbeddingRequest,
    TeiEmbedRequest, TeiPredictRequest, TokenizeRequest,
};
use adalbert_serve::text::{bound, CHARS_PER_TOKEN};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Checks one text the server accepted against the one sent.
fn check_text(kept: &str, sent: &str, cut: bool, max_len: usize) {
    assert!(!kept.trim().is_empty(), "an empty text accepted");
    assert!(
        sent.starts_with(kept),
        "kept text is not a prefix of the sent one"
    );
    assert!(kept.len() < sent.len() || !cut, "flagged as cut but whole");
    assert!(kept.chars().count() <= max_len * CHARS_PER_TOKEN);
    assert!(
        kept.split_whitespace().count() <= max_len,
        "more words than max_len"
    );
    assert_eq!(
        bound(kept, max_len),
        (kept, false),
        "bounding is not idempotent"
    );
}

fn sent_texts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(sent_texts).collect(),
        _ => Vec::new(),
    }
}

/// Every accepted input against what was sent (single texts and pairs alike).
fn check_inputs(inputs: &[TextInput], cut: &[bool], sent: &[Value], max_len: usize) {
    assert_eq!(inputs.len(), cut.len());
    assert_eq!(inputs.len(), sent.len());
    for ((input, &c), v) in inputs.iter().zip(cut).zip(sent) {
        let kept: Vec<&str> = match input {
            TextInput::Single(a) => vec![a],
            TextInput::Pair(a, b) => vec![a, b],
        };
        let sent = sent_texts(v);
        assert_eq!(kept.len(), sent.len());
        let mut any_cut = false;
        for (k, s) in kept.iter().zip(&sent) {
            check_text(k, s, c, max_len);
            any_cut |= k.len() < s.len();
        }
        assert_eq!(any_cut, c, "cut flag disagrees with the texts");
    }
}

/// Each of `items` through [`parse_input`], stopping at the first refused one as the
/// handlers do.
fn inputs_of(items: Vec<Value>, max_len: usize) {
    let mut inputs = Vec::new();
    let mut cut = Vec::new();
    for (i, v) in items.iter().enumerate() {
        match parse_input(v.clone(), &format!("inputs[{i}]"), max_len) {
            Ok((input, c)) => {
                inputs.push(input);
                cut.push(c);
            }
            Err(e) => {
                assert!(e.reason.contains(&format!("inputs[{i}]")), "{}", e.reason);
                return;
            }
        }
    }
    check_inputs(&inputs, &cut, &items, max_len);
}

fn texts_of(v: Value, max_len: usize) {
    let sent = match &v {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    if let Ok((inputs, cut)) = parse_texts(v, "inputs", max_len) {
        assert!(inputs.iter().all(|i| matches!(i, TextInput::Single(_))));
        check_inputs(&inputs, &cut, &sent, max_len);
    }
}

fuzz_target!(|data: &[u8]| {
    let [route, max_len, body @ ..] = data else {
        return;
    };
    let max_len = usize::from(*max_len) + 1;
    match route % 7 {
        0 => {
            if let Ok(req) = parse_json::<TaskPredictRequest>(body) {
                inputs_of(req.inputs, max_len);
            }
        }
        1 => {
            if let Ok(req) = parse_json::<MixedRequest>(body) {
                inputs_of(req.requests.into_iter().map(|r| r.input).collect(), max_len);
            }
        }
        2 => {
            if let Ok(req) = parse_json::<OpenAiEmbeddingRequest>(body) {
                texts_of(req.input, max_len);
            }
        }
        3 => {
            if let Ok(req) = parse_json::<TeiEmbedRequest>(body) {
                let _ = truncation_allowed(req.truncate, req.truncation_direction.as_deref());
                texts_of(req.inputs, max_len);
            }
        }
        4 => {
            if let Ok(req) = parse_json::<TeiPredictRequest>(body) {
                let _ = truncation_allowed(req.truncate, req.truncation_direction.as_deref());
                if let Ok((items, single)) = tei_predict_items(req.inputs) {
                    assert!(!single || items.len() == 1);
                    inputs_of(items, max_len);
                }
            }
        }
        5 => {
            if let Ok(req) = parse_json::<TokenizeRequest>(body) {
                texts_of(req.inputs, max_len);
            }
        }
        _ => {
            if let Ok(req) = parse_json::<LoadRequest>(body) {
                assert!(serde_json::to_string(&req.path).is_ok());
            }
        }
    }
});
