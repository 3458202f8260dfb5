//! Whole-pipeline sanity checks (issue 5 "Must hold") and hand-computed simulator figures.

use adalbert_hw::compare::{compare, compare_table};
use adalbert_hw::sim::run_schedule;
use adalbert_hw::workload::Role;
use adalbert_hw::{
    Accelerator, Capacity, HwError, MemoryTable, ModelShape, Platform, Policy, Scenario, Sharing,
    StoragePlan, TaskStore, Usage,
};

/// A scenario with RRAM values at 2 bits per cell; adapter `none` runs the plain model.
fn scenario_with(platform: Platform, model: &str, adapter: &str, plan: &str) -> Scenario {
    Scenario::new(
        platform,
        ModelShape::resolve(model).unwrap(),
        (adapter != "none").then(|| adapter.parse().unwrap()),
        Sharing::PerApplication,
        StoragePlan::parse(plan, 2).unwrap(),
        128,
        2,
    )
    .unwrap()
}

fn scenario(model: &str, adapter: &str, plan: &str) -> Scenario {
    scenario_with(Platform::builtin().unwrap(), model, adapter, plan)
}

/// Every backbone tensor at 8 bits, matrices and embeddings half pruned, bit-mask encoded:
/// 5,835,904 + 11,776 (biases and norms, not pruned) = 5,847,680 stored values.
const PLAN: &str = "int8+prune=0.5:emb+bitmask+scope=all";
/// Every tensor dense at 8 bits.
const DENSE8: &str = "int8+scope=all";

#[test]
fn more_sparsity_or_fewer_bits_never_increase_backbone_bytes() {
    let bytes = |plan: &str| {
        let s = scenario("albert-base", "houlsby:64", plan);
        s.adapted.totals.backbone_value_bits + s.adapted.totals.backbone_mask_bits
    };
    for enc in ["dense", "bitmask"] {
        let mut prev = f64::INFINITY;
        for sp in [0.0, 0.25, 0.5, 0.75, 0.9] {
            let b = bytes(&format!("int8+prune={sp}:emb+{enc}"));
            assert!(b <= prev, "{enc} sparsity {sp}");
            prev = b;
        }
        let mut prev = f64::INFINITY;
        for format in ["fp16", "int8", "int6", "int4", "int2"] {
            let b = bytes(&format!("{format}+prune=0.5:emb+{enc}"));
            assert!(b < prev, "{enc} {format}");
            prev = b;
        }
    }
}

#[test]
fn more_tasks_never_lower_baseline_area_or_switch_energy() {
    let s = scenario("albert-base", "houlsby:64", PLAN);
    for policy in [Policy::AlbertDram, Policy::AlbertSram] {
        let mut prev = s.run(policy, 1, TaskStore::Sram).unwrap();
        for n in 2..=8 {
            let r = s.run(policy, n, TaskStore::Sram).unwrap();
            assert!(r.area_mm2 >= prev.area_mm2, "{policy} N={n}");
            assert!(
                r.switch.energy_pj >= prev.switch.energy_pj,
                "{policy} N={n}"
            );
            prev = r;
        }
    }
    // albert-sram holds N models: its SRAM grows by exactly one model per task.
    let one = s.run(Policy::AlbertSram, 1, TaskStore::Sram).unwrap();
    let two = s.run(Policy::AlbertSram, 2, TaskStore::Sram).unwrap();
    let model = (s.plain.totals.backbone_value_bits
        + s.plain.totals.backbone_mask_bits
        + s.plain.totals.task_bits)
        / 8.0;
    assert!((two.occupancy.sram_used_bytes - one.occupancy.sram_used_bytes - model).abs() < 1e-6);
}

#[test]
fn over_capacity_mapping_is_refused_with_a_clear_error() {
    let mut arch = Accelerator::builtin().unwrap();
    arch.sram_capacity = Capacity::Bits(8.0 * 8e6);
    let platform = Platform::new(arch, MemoryTable::builtin().unwrap()).unwrap();
    let s = scenario_with(platform, "albert-base", "houlsby:64", PLAN);
    let err = s.run(Policy::AlbertSram, 2, TaskStore::Sram).unwrap_err();
    assert!(
        matches!(err, HwError::Capacity { memory: "SRAM", .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("albert-sram") && msg.contains("SRAM") && msg.contains("8.000 MB"),
        "{msg}"
    );
    // adapter-hetero only keeps task tensors (2.4 MB per task with 12 adapter sets) and
    // activations in SRAM: two tasks fit, four do not.
    assert!(s.run(Policy::AdapterHetero, 2, TaskStore::Sram).is_ok());
    assert!(s.run(Policy::AdapterHetero, 4, TaskStore::Sram).is_err());
    // A fixed 1 MB RRAM cannot hold a 7.3 MB backbone.
    let mut arch = Accelerator::builtin().unwrap();
    arch.rram_capacity = Capacity::Bits(8e6);
    let platform = Platform::new(arch, MemoryTable::builtin().unwrap()).unwrap();
    let s = scenario_with(platform, "albert-base", "houlsby:64", PLAN);
    let err = s
        .run(Policy::AdapterHetero, 1, TaskStore::Sram)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("RRAM") && err.contains("adapter-hetero"),
        "{err}"
    );
}

#[test]
fn switch_costs_follow_the_policies() {
    let s = scenario("albert-base", "houlsby:64", PLAN);
    let dram = s.run(Policy::AlbertDram, 4, TaskStore::Sram).unwrap();
    // albert-dram reloads the whole sparse model: 5,847,680 values + 11,683,584 mask bits =
    // 7,308,128 bytes, + the 1,538-parameter classifier at 8 bits.
    assert_eq!(dram.switch.bits, (7_308_128.0 + 1_538.0) * 8.0);
    let tech = MemoryTable::builtin().unwrap();
    let min_energy = dram.switch.bits * tech.dram.energy_pj_per_bit.value;
    assert!(dram.switch.energy_pj > min_energy);
    let dram_ns = dram.switch.bits / (12.8 * 8.0);
    let p = Platform::builtin().unwrap();
    let sram = tech
        .scale(p.sram_row(), dram.occupancy.sram_capacity_bytes * 8.0, 1)
        .with_min_parallel_banks(16.0);
    let sram_ns = dram.switch.bits / sram.write_bits_per_ns();
    assert!((dram.switch.latency_ns - dram_ns.max(sram_ns)).abs() < 1e-6);
    for p in [
        Policy::AlbertSram,
        Policy::AdapterHetero,
        Policy::AdapterSram,
    ] {
        assert_eq!(
            s.run(p, 4, TaskStore::Sram).unwrap().switch.energy_pj,
            0.0,
            "{p}"
        );
    }
    // With task tensors kept off-chip, an adapter switch loads only the task-specific tensors.
    let off = s.run(Policy::AdapterHetero, 4, TaskStore::Dram).unwrap();
    assert_eq!(off.switch.bits, s.adapted.totals.task_bits);
    assert_eq!(s.adapted.params(Role::Task), 12 * (198_272 + 3_072) + 1_538);
    assert_eq!(off.switch.bits, (s.adapted.params(Role::Task) * 8) as f64);
}

#[test]
fn schedule_counts_switches_between_consecutive_tasks() {
    let s = scenario("albert-base", "houlsby:64", PLAN);
    let r = s.run(Policy::AlbertDram, 3, TaskStore::Sram).unwrap();
    let cost = run_schedule(&r, &[(0, 5), (1, 2), (1, 3), (2, 1), (0, 4)]);
    assert_eq!((cost.requests, cost.switches), (15, 3));
    let expected = 15.0 * r.energy_pj + 3.0 * r.switch.energy_pj;
    assert!((cost.energy_pj - expected).abs() < 1e-6 * expected);
}

#[test]
fn hetero_places_backbone_in_rram_and_reads_it_there() {
    let s = scenario("albert-base", "houlsby:64", PLAN);
    let r = s.run(Policy::AdapterHetero, 1, TaskStore::Sram).unwrap();
    // values at 8 bits for 5,847,680 non-zeros; one mask bit per element (SLC)
    assert_eq!(r.occupancy.rram_value_bytes, 5_847_680.0);
    assert_eq!(r.occupancy.rram_mask_bytes, 11_683_584.0 / 8.0);
    // cells: values at 2 bits per cell + mask at 1 bit per cell
    assert_eq!(
        r.occupancy.rram_cells,
        5_847_680.0 * 8.0 / 2.0 + 11_683_584.0
    );
    assert!(r.energy.rram_read > 0.0 && r.area.rram > 0.0);
    let sram = s.run(Policy::AdapterSram, 1, TaskStore::Sram).unwrap();
    assert_eq!(sram.energy.rram_read, 0.0);
    assert_eq!(sram.area.rram, 0.0);
    // the same MACs run under every policy
    assert_eq!(r.macs, sram.macs);
}

#[test]
fn compute_bound_latency_is_hand_computed() {
    // Dense 8-bit plan, albert-sram, one task. The Q, K, V and attention-output projections
    // ([128 x 768] . [768 x 768]) of the 12 applications merge into one op of count 48. Each
    // takes 128 * ceil(768/16) * ceil(768/16) = 294,912 cycles = 294,912 ns at 1 GHz. Its SRAM
    // traffic per execution, 128*768*16 activation bits + (768*768 + 768)*8 weight bits read and
    // 128*768*16 bits written, streams from 16 banks of 64-bit words in about 40 us, so the op is
    // compute-bound: its latency is the compute time, 48 * 294,912 = 14,155,776 ns.
    let s = scenario("albert-base", "none", DENSE8);
    let q = s
        .plain
        .sim_ops
        .iter()
        .find(|o| o.k == 768 && o.n == 768 && o.m == 128)
        .unwrap();
    assert_eq!(q.count, 48.0);
    let p = &s.platform;
    let m = adalbert_hw::Mapping::new(p, &s.plain, Policy::AlbertSram, 1, TaskStore::Sram).unwrap();
    let cost = adalbert_hw::sim::op_cost(p, &s.plain, &m, q);
    assert_eq!(cost.compute_ns, 14_155_776.0);
    assert_eq!(cost.latency_ns, 14_155_776.0);
    assert_eq!(cost.macs, 48.0 * 128.0 * 768.0 * 768.0);
}

#[test]
fn leakage_matches_the_nvmexplorer_rows_scaled_by_hand() {
    // adapter-hetero, one task, albert-base with houlsby:64 per application, PLAN at 2 bits
    // per cell. Every array leaks its anchor row's leakage per 2 MiB (2^24 cells):
    // - SRAM (56.345 mW): task tensors 12 * (198,272 + 3,072) + 1,538 = 2,417,666 params * 8 bit
    //   = 19,341,328 bits, plus the attention phase's activations (5*128*768 + 12*128*128 +
    //   128*64) * 16 bit = 11,141,120 bits;
    // - buffers (SRAM row): 76 KiB = 622,592 bits;
    // - RRAM (11.979 mW): 5,847,680 values * 8 bit / 2 per cell = 23,390,720 cells, plus the
    //   11,683,584-cell single-level mask.
    let s = scenario("albert-base", "houlsby:64", PLAN);
    let r = s.run(Policy::AdapterHetero, 1, TaskStore::Sram).unwrap();
    let anchor = 16_777_216.0;
    let expected = 56.345 * (19_341_328.0 + 11_141_120.0 + 622_592.0) / anchor
        + 11.979 * (23_390_720.0 + 11_683_584.0) / anchor;
    assert!(
        (r.leakage_mw - expected).abs() < 1e-9 * expected,
        "{} vs {expected}",
        r.leakage_mw
    );
    // = 104.464 mW of SRAM and buffers + 25.043 mW of RRAM
    assert_eq!((expected * 100.0).round() / 100.0, 129.51);
    assert!((r.energy.leakage - expected * r.latency_ns).abs() < 1e-9 * r.energy.leakage);
}

/// A tiny ALBERT (H 32, 12 applications of one layer) with houlsby:8 adapters shared by the
/// applications, every tensor dense at 8 bits, 2 bits per RRAM cell, on a chip whose SRAM and
/// RRAM are exactly one NVMExplorer anchor (2^24 bits, 2^24 cells), so every array is its row.
fn tiny_on_anchor_chip() -> Scenario {
    let json = r#"{"model_type": "albert", "vocab_size": 100, "embedding_size": 16,
        "hidden_size": 32, "num_hidden_layers": 12, "num_attention_heads": 2,
        "intermediate_size": 64, "num_hidden_groups": 1, "inner_group_num": 1,
        "max_position_embeddings": 64, "type_vocab_size": 2}"#;
    let mut arch = Accelerator::builtin().unwrap();
    arch.sram_capacity = Capacity::Bits(16_777_216.0);
    arch.rram_capacity = Capacity::Bits(16_777_216.0);
    let platform = Platform::new(arch, MemoryTable::builtin().unwrap()).unwrap();
    Scenario::new(
        platform,
        ModelShape::from_json(json, "tiny.json").unwrap(),
        Some("houlsby:8".parse().unwrap()),
        Sharing::Shared,
        StoragePlan::parse(DENSE8, 2).unwrap(),
        16,
        2,
    )
    .unwrap()
}

/// Task bits of the tiny model: two adapters 2 * (2*32*8 + 8 + 32), two LayerNorms 2 * 2*32,
/// classifier 32*2 + 2 = 1,298 parameters at 8 bits.
const TINY_TASK_BITS: f64 = 10_384.0;
/// Leakage of the SRAM row (56.345 mW) + RRAM row (11.979 mW) + buffers (76 KiB of SRAM row).
const TINY_ON_CHIP_MW: f64 = 56.345 + 11.979 + 56.345 * 76.0 / 2048.0;

#[test]
fn switch_with_every_task_in_sram_moves_nothing() {
    let s = tiny_on_anchor_chip();
    assert_eq!(s.adapted.totals.task_bits, TINY_TASK_BITS);
    let r = s.run(Policy::AdapterHetero, 4, TaskStore::Sram).unwrap();
    assert_eq!(
        (r.switch.bits, r.switch.energy_pj, r.switch.latency_ns),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(
        r.occupancy.sram_used_bytes * 8.0,
        4.0 * TINY_TASK_BITS + s.adapted.totals.activation_bits
    );
}

#[test]
fn switch_from_the_rram_task_array_by_hand() {
    // Four tasks' tensors in RRAM at 2 bits per cell: 4 * 10,384 / 2 = 20,768 cells of the
    // anchor's 2^24, the rest hold the backbone. The task array reads a 64-bit word for
    // 6.178 * 1.5 = 9.267 pJ in 0.793 * 2 = 1.586 ns (no H-tree below one anchor); the SRAM
    // writes one for 17.016 pJ in 4.679 ns; both serve 16 banks in parallel. A switch wakes the
    // gated task array (1 us; energy = 1 us of its leakage), then copies 10,384 bits: SRAM-bound,
    // 10,384 / (64 * 16 / 4.679) = 47.448 ns. Leakage meanwhile: SRAM + the whole RRAM anchor
    // (values + task array) + buffers.
    let s = tiny_on_anchor_chip();
    let r = s.run(Policy::AdapterHetero, 4, TaskStore::Rram).unwrap();
    let words = TINY_TASK_BITS / 64.0;
    let task_array_mw = 11.979 * 20_768.0 / 16_777_216.0;
    let latency = 1000.0 + TINY_TASK_BITS * 4.679 / 1024.0;
    let energy = words * (9.267 + 17.016) + task_array_mw * 1000.0 + TINY_ON_CHIP_MW * latency;
    assert_eq!(r.switch.bits, TINY_TASK_BITS);
    assert!(
        (r.switch.latency_ns - latency).abs() < 1e-9,
        "{}",
        r.switch.latency_ns
    );
    assert!(
        (r.switch.energy_pj - energy).abs() < 1e-9 * energy,
        "{} vs {energy}",
        r.switch.energy_pj
    );
    assert_eq!(r.occupancy.rram_task_bytes * 8.0, 4.0 * TINY_TASK_BITS);
    // without gating the task array leaks all the time and needs no wake-up
    let mut arch = s.platform.arch.clone();
    arch.rram_power_gating = false;
    let mut ungated = s.clone();
    ungated.platform = Platform::new(arch, s.platform.tech.clone()).unwrap();
    let u = ungated
        .run(Policy::AdapterHetero, 4, TaskStore::Rram)
        .unwrap();
    let copy = TINY_TASK_BITS * 4.679 / 1024.0;
    let energy = words * (9.267 + 17.016) + TINY_ON_CHIP_MW * copy;
    assert!((u.switch.energy_pj - energy).abs() < 1e-9 * energy);
    assert!((u.leakage_mw - r.leakage_mw - task_array_mw).abs() < 1e-9);
}

#[test]
fn switch_from_dram_by_hand() {
    // 10,384 bits over one x32 LPDDR4-3200 interface (12.8 GB/s = 102.4 bits/ns) take
    // 101.406 ns, longer than the SRAM write (47.448 ns). Energy: 8.47 pJ per bit moved, the
    // SRAM writes, two x16 dies (the interface's) in active standby (37.875 mW each) while
    // streaming, and on-chip leakage over the switch.
    let s = tiny_on_anchor_chip();
    let r = s.run(Policy::AdapterHetero, 4, TaskStore::Dram).unwrap();
    let dram_ns = TINY_TASK_BITS / 102.4;
    let energy = TINY_TASK_BITS * 8.47
        + TINY_TASK_BITS / 64.0 * 17.016
        + 2.0 * 37.875 * dram_ns
        + TINY_ON_CHIP_MW * dram_ns;
    assert!((r.switch.latency_ns - 101.40625).abs() < 1e-9);
    assert!(
        (r.switch.energy_pj - energy).abs() < 1e-9 * energy,
        "{} vs {energy}",
        r.switch.energy_pj
    );
    assert_eq!(r.idle.dram_dies, 2.0);
}

#[test]
fn idle_time_at_a_rate_is_charged_by_hand() {
    // Task store dram, 4 tasks, a switch every request, 1000 requests/s (1 ms apart). The busy
    // time is the inference plus one switch; the rest of the millisecond is idle: the SRAM and
    // buffers leak (56.345 + 56.345 * 76/2048 mW), the backbone's RRAM is gated (idle far beyond
    // its 1 us break-even) and woken once per request (1 us; 1 us of its 11.979 mW), and the two
    // DRAM dies self-refresh (1.2 mW each) whenever they do not stream the switch.
    let s = tiny_on_anchor_chip();
    let r = s.run(Policy::AdapterHetero, 4, TaskStore::Dram).unwrap();
    let usage = Usage::new(1.0, Some(1000.0)).unwrap();
    let q = r.request(&usage);
    let busy = r.latency_ns + r.switch.latency_ns + 1000.0;
    let idle = 1e6 - busy;
    let expected = r.energy_pj
        + r.switch.energy_pj
        + 11.979 * 1000.0
        + idle * (56.345 + 56.345 * 76.0 / 2048.0)
        + 2.0 * 1.2 * (1e6 - 101.40625);
    assert!(q.gated && !q.saturated);
    assert!((q.latency_ns - busy).abs() < 1e-6);
    assert!(
        (q.energy_pj - expected).abs() < 1e-9 * expected,
        "{} vs {expected}",
        q.energy_pj
    );
    // back to back: no idle time, no wake-up, DRAM self-refresh over the non-streaming time
    let b = r.request(&Usage::back_to_back(1.0));
    let expected = r.energy_pj + r.switch.energy_pj + 2.4 * r.latency_ns;
    assert!((b.energy_pj - expected).abs() < 1e-9 * expected);
    // with the SRAM retention mode the idle SRAM leaks 0.3 of that
    let mut arch = s.platform.arch.clone();
    arch.sram_retention = true;
    let mut retained = s.clone();
    retained.platform = Platform::new(arch, s.platform.tech.clone()).unwrap();
    let q2 = retained
        .run(Policy::AdapterHetero, 4, TaskStore::Dram)
        .unwrap()
        .request(&usage);
    let saved = 0.7 * idle * (56.345 + 56.345 * 76.0 / 2048.0);
    assert!((q.energy_pj - q2.energy_pj - saved).abs() < 1e-9 * saved);
    // a rate above what the chip serves saturates it
    let fast = Usage::new(1.0, Some(1e9 / (0.5 * busy))).unwrap();
    assert!(r.request(&fast).saturated);
}

#[test]
fn a_model_directory_with_config_json_is_a_workload() {
    // A distilled ALBERT student as `adalbert distill` writes it: a Hugging Face ALBERT
    // directory. Parameters: embeddings 30522*128 + 512*128 + 2*128 + 2*128 = 3,972,864;
    // E->H 128*384 + 384 = 49,536; the shared layer 4*(384*384 + 384) + 768 + (384*1536 + 1536)
    // + (1536*384 + 384) + 768 = 1,774,464; pooler 384*384 + 384 = 147,840.
    let dir = std::env::temp_dir().join(format!("adalbert-hw-student-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "albert", "vocab_size": 30522, "embedding_size": 128,
            "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
            "intermediate_size": 1536, "num_hidden_groups": 1, "inner_group_num": 1,
            "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu_new"}"#,
    )
    .unwrap();
    let model = ModelShape::resolve(dir.to_str().unwrap()).unwrap();
    let s = scenario_with(
        Platform::builtin().unwrap(),
        dir.to_str().unwrap(),
        "houlsby:64",
        PLAN,
    );
    assert_eq!(
        s.adapted.params(Role::Backbone),
        3_972_864 + 49_536 + 1_774_464 + 147_840
    );
    assert_eq!(model.applications(), 6);
    let r = s.run(Policy::AdapterHetero, 4, TaskStore::Rram).unwrap();
    assert!(r.occupancy.rram_task_bytes > 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sequence_longer_than_the_position_embeddings_is_refused_naming_the_field() {
    let err = Scenario::new(
        Platform::builtin().unwrap(),
        ModelShape::resolve("albert-base").unwrap(),
        None,
        Sharing::Shared,
        StoragePlan::parse(PLAN, 2).unwrap(),
        513,
        2,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("seq_len") && err.contains("1..=512") && err.contains("513"),
        "{err}"
    );
}

#[test]
fn adapter_hetero_area_grows_slowly_and_baseline_sram_fast() {
    let s = scenario("albert-base", "houlsby:64", PLAN);
    let area = |p, n| s.run(p, n, TaskStore::Sram).unwrap().area_mm2;
    let hetero = area(Policy::AdapterHetero, 8) - area(Policy::AdapterHetero, 1);
    let sram = area(Policy::AlbertSram, 8) - area(Policy::AlbertSram, 1);
    assert!(
        hetero > 0.0 && hetero < sram / 2.0,
        "hetero +{hetero} vs albert-sram +{sram}"
    );
    // one adapter set shared by the 12 applications: 12x smaller task tensors
    let shared = Scenario::new(
        Platform::builtin().unwrap(),
        ModelShape::resolve("albert-base").unwrap(),
        Some("houlsby:64".parse().unwrap()),
        Sharing::Shared,
        StoragePlan::parse(PLAN, 2).unwrap(),
        128,
        2,
    )
    .unwrap();
    let area = |p, n| shared.run(p, n, TaskStore::Sram).unwrap().area_mm2;
    let hetero_shared = area(Policy::AdapterHetero, 8) - area(Policy::AdapterHetero, 1);
    assert!(
        hetero_shared < sram / 20.0,
        "shared hetero +{hetero_shared} vs albert-sram +{sram}"
    );
}

#[test]
fn compare_prints_ratios_against_both_baselines() {
    let s = scenario("albert-base", "houlsby:64", PLAN);
    let rows = compare(&s, 8, TaskStore::Sram, 1.0);
    assert_eq!(rows.len(), 32);
    for r in rows.iter().filter(|r| r.policy == Policy::AlbertDram) {
        assert_eq!(r.vs_dram.unwrap(), [1.0, 1.0, 1.0]);
    }
    let table = compare_table(&rows);
    println!("{table}");
    assert!(table.contains("adapter-hetero"));
}

#[test]
fn compute_cycles_of_albert_base_are_hand_computed() {
    // Per layer on 16x16 at 1 GHz: q,k,v,o 4*128*48*48; scores and context 12*128*4*8 each;
    // ffn and ffn_output 128*48*192 each; softmax 12*128*128/16; 2 adds and 2 LayerNorms
    // 128*768/16 each; gelu 128*3072/16.
    let layer = 4 * 128 * 48 * 48
        + 2 * 12 * 128 * 4 * 8
        + 2 * 128 * 48 * 192
        + 12 * 128 * 128 / 16
        + 4 * 128 * 768 / 16
        + 128 * 3072 / 16;
    assert_eq!(layer, 3_698_688);
    // embeddings: 2 adds + LayerNorm over 128x128, E->H 128*8*48; pooler 48*48, tanh 48,
    // classifier 48 * 1, entropy 1.
    let rest = 2 * 128 * 128 / 16 + 128 * 128 / 16 + 128 * 8 * 48 + 48 * 48 + 48 + 48 + 1;
    let s = scenario("albert-base", "none", DENSE8);
    let r = s.run(Policy::AlbertSram, 1, TaskStore::Sram).unwrap();
    assert_eq!(r.compute_ns, (12 * layer + rest) as f64);
}

#[test]
fn energy_terms_follow_from_tensor_reads() {
    // Independent path: the RRAM read energy equals (backbone bits x reads per inference) at the
    // scaled per-word energies; the MAC energy is MACs x MAC energy, zero-skipped at density 0.5
    // for backbone matmuls; leakage is on-chip leakage x latency.
    let s = scenario("albert-base", "houlsby:64", PLAN);
    let p = &s.platform;
    let r = s.run(Policy::AdapterHetero, 1, TaskStore::Sram).unwrap();
    let w = &s.adapted;
    let (mut values, mut mask) = (0.0, 0.0);
    for t in w.tensors.iter().filter(|t| t.role == Role::Backbone) {
        values += t.value_bits as f64 * t.reads_per_inference;
        mask += t.mask_bits as f64 * t.reads_per_inference;
    }
    let m = adalbert_hw::Mapping::new(p, w, Policy::AdapterHetero, 1, TaskStore::Sram).unwrap();
    let expected = values / 64.0 * m.rram_values.read_pj + mask / 64.0 * m.rram_mask.read_pj;
    assert!((r.energy.rram_read - expected).abs() < 1e-6 * expected);
    let mac = p.arch.mac_pj;
    assert!(r.energy.mac < r.macs * mac && r.energy.mac > 0.5 * r.macs * mac);
    // dense plan: nothing is skipped
    let dense = scenario("albert-base", "houlsby:64", DENSE8);
    let d = dense
        .run(Policy::AdapterHetero, 1, TaskStore::Sram)
        .unwrap();
    assert!((d.energy.mac - d.macs * mac).abs() < 1e-6 * d.energy.mac);
}

#[test]
fn fixed_capacities_are_charged_even_when_a_policy_leaves_them_empty() {
    let mut arch = Accelerator::builtin().unwrap();
    arch.rram_capacity = Capacity::Bits(16.0 * 8e6);
    let tech = MemoryTable::builtin().unwrap();
    let rram_row = tech.cell(&arch.rram_cell).unwrap().clone();
    let platform = Platform::new(arch, tech.clone()).unwrap();
    let s = scenario_with(platform, "albert-base", "houlsby:64", PLAN);
    let r = s.run(Policy::AlbertSram, 1, TaskStore::Sram).unwrap();
    // 16 MB of cells = 128e6 cells, not otherwise used: area = k * A0 * 1.05 (2-bit cells of the
    // plan) with k = 128e6 / 2^24
    let k = 128e6 / (2.0 * 1024.0 * 1024.0 * 8.0);
    assert!((r.area.rram - k * rram_row.area_mm2 * 1.05).abs() < 1e-9);
    assert_eq!(r.energy.rram_read, 0.0);
}
