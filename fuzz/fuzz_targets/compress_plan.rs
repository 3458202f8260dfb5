//! The compression-plan grammar (`compress --plan`, `int4:per-channel:asym`,
//! `af8e3+prune=0.5:global+bitmask`) on arbitrary text, and the storage plan the simulator
//! builds from it. Beyond "no panic": an accepted plan validates, prints in canonical form,
//! and that text parses back to the same plan (and prints the same again).

#![no_main]

use adalbert_compress::{Format, Plan};
use adalbert_hw::StoragePlan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Plan>() {
        Ok(plan) => {
            plan.validate()
                .unwrap_or_else(|e| panic!("`{text}` parsed but does not validate: {e}"));
            let canonical = plan.to_string();
            let again: Plan = canonical
                .parse()
                .unwrap_or_else(|e| panic!("canonical `{canonical}` refused: {e}"));
            assert_eq!(again, plan, "`{text}` -> `{canonical}` changed");
            assert_eq!(again.to_string(), canonical);
            for bpc in 1..=3 {
                let sp = StoragePlan::new(plan, bpc).expect("a valid plan at 1..=3 bits per cell");
                assert!(sp.value_bits() >= 1 && sp.value_bits() <= 32);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(f) = text.parse::<Format>() {
        let again: Format = f.to_string().parse().expect("canonical format parses");
        assert_eq!(again, f);
    }
});
