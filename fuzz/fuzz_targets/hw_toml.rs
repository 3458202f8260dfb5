//! The hardware TOML loaders on arbitrary text: the architecture (`simulate --arch`), the
//! memory table (`--memory`), the sensitivity space (`simulate --sensitivity`) and the design
//! space (`adalbert dse`), each given the same text. Beyond "no panic": an accepted memory
//! table survives a TOML round trip unchanged, an accepted architecture's derived figures
//! are finite and positive, and every range of an accepted sensitivity space yields values
//! inside itself at both ends and the middle.

#![no_main]

use std::sync::OnceLock;

use adalbert_hw::{Accelerator, MemoryTable};
use libfuzzer_sys::fuzz_target;

fn builtins() -> &'static (Accelerator, MemoryTable) {
    static B: OnceLock<(Accelerator, MemoryTable)> = OnceLock::new();
    B.get_or_init(|| {
        (
            Accelerator::builtin().expect("built-in architecture"),
            MemoryTable::builtin().expect("built-in memory table"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = "fuzz.toml";
    // Errors render (some name a value rather than the document, e.g. a bad plan string).
    let named = |e: adalbert_hw::HwError| assert!(!e.to_string().is_empty());
    match Accelerator::from_toml_str(text, origin) {
        Ok(a) => {
            for (what, v) in [
                ("mac_pj", a.mac_pj),
                ("energy_scale", a.energy_scale),
                ("area_scale", a.area_scale),
                ("datapath_area_mm2", a.datapath_area_mm2),
                ("clock_ghz", a.clock_ghz),
            ] {
                assert!(v.is_finite() && v > 0.0, "{what} = {v} accepted");
            }
            assert!(a.mac_rows > 0 && a.mac_cols > 0);
        }
        Err(e) => named(e),
    }
    match MemoryTable::from_toml_str(text, origin) {
        Ok(m) => {
            let again = toml::to_string(&m).expect("a loaded table serializes");
            let back = MemoryTable::from_toml_str(&again, origin).expect("its own text loads");
            assert_eq!(back, m, "memory table changed in a TOML round trip");
        }
        Err(e) => named(e),
    }
    match adalbert_hw::sensitivity::Space::from_toml_str(text, origin) {
        Ok(space) => {
            assert!(space.samples > 0 && space.tasks > 0);
            for r in &space.ranges {
                for u in [0.0, 0.5, 1.0] {
                    let v = r.at(u);
                    assert!(v >= r.min && v <= r.max, "{} at {u} = {v}", r.knob);
                }
            }
        }
        Err(e) => named(e),
    }
    let (arch, memory) = builtins();
    if let Err(e) = adalbert_hw::dse::Space::from_toml_str(text, origin, arch, memory) {
        named(e);
    }
});
