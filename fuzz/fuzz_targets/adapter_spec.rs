//! The adapter-spec grammar (`--adapter houlsby:64`, `lora:r=8,alpha=16`) and the sharing
//! word on arbitrary text. Beyond "no panic": an accepted spec prints in canonical form,
//! that text parses back to the same spec, and its size is in the documented range.

#![no_main]

use adalbert_core::adapter::{AdapterSpec, Sharing, MAX_ADAPTER_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AdapterSpec::parse(text) {
        Ok(spec) => {
            assert!(
                (1..=MAX_ADAPTER_SIZE).contains(&spec.size),
                "size {}",
                spec.size
            );
            assert!(
                spec.alpha.is_finite() && spec.alpha > 0.0,
                "alpha {}",
                spec.alpha
            );
            let canonical = spec.to_string();
            let again = AdapterSpec::parse(&canonical)
                .unwrap_or_else(|e| panic!("canonical `{canonical}` refused: {e}"));
            assert_eq!(again, spec, "`{text}` -> `{canonical}` changed");
            assert_eq!(again.to_string(), canonical);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(text.trim()) || msg.contains(text), "{msg}");
        }
    }
    if let Ok(s) = Sharing::parse(text) {
        assert_eq!(Sharing::parse(s.as_str()).ok(), Some(s));
    }
});
