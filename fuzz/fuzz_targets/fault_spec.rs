//! The fault grammar (`compress --faults`, `mlc:bpc=2:coding=gray`, `bitflip:rate=1e-6`,
//! `none`) on arbitrary text. Beyond "no panic": an accepted spec prints in canonical form
//! and that text parses back to the same spec; accepted rates and sigmas are in range.

#![no_main]

use adalbert_compress::FaultSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<FaultSpec>() {
        Ok(spec) => {
            match spec {
                FaultSpec::Bitflip { rate } => assert!((0.0..=1.0).contains(&rate), "rate {rate}"),
                FaultSpec::Mlc(m) => {
                    assert!((1..=3).contains(&m.bits_per_cell));
                    assert!(m.sigma_scale.is_finite() && m.sigma_scale > 0.0);
                }
                FaultSpec::None => {}
            }
            let canonical = spec.to_string();
            let again: FaultSpec = canonical
                .parse()
                .unwrap_or_else(|e| panic!("canonical `{canonical}` refused: {e}"));
            assert_eq!(again, spec, "`{text}` -> `{canonical}` changed");
            assert_eq!(again.to_string(), canonical);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
