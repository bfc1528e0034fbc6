//! Every shipped profile, played by a device that serves the simulation's truth in the
//! profile's layout, read back through the profile: each quantity within its quantisation;
//! and bad profiles refused with the file, line and reason.

use std::collections::HashMap;
use std::path::PathBuf;

use device_profile::{FaultReading, Faults, Profile, Table};
use relay_core::measure::Quantity;
use relay_core::signal::{Profile as Signal, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

fn shipped() -> Vec<(PathBuf, Profile)> {
    device_profile::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Answers the profile's reads from what it encoded (unwritten registers read 0).
fn answer(profile: &Profile, served: &[(Table, u16, u16)]) -> Vec<Vec<u16>> {
    let map: HashMap<(Table, u16), u16> = served.iter().map(|&(t, a, v)| ((t, a), v)).collect();
    profile
        .reads()
        .iter()
        .map(|r| {
            (0..r.count)
                .map(|i| map.get(&(r.table, r.start + i)).copied().unwrap_or(0))
                .collect()
        })
        .collect()
}

#[test]
fn every_shipped_profile_reads_back_the_truth() {
    let files = shipped();
    assert!(files.len() >= 4, "profiles/ holds {files:?}");
    for (file, profile) in files {
        for seed in 1..4 {
            for signal in [Signal::Realistic, Signal::Paper] {
                let model = SignalModel::new(seed, signal);
                let record = model.record(
                    RelayId(7),
                    Minute(29_000_000 + seed as u32),
                    6,
                    RecordFlags::CLOCK_SET,
                );
                for (i, truth) in record.samples.iter().enumerate() {
                    let faults = profile.faults.as_ref().map(|f| match f {
                        Faults::Counter { .. } => FaultReading::Counter(1000 + i as u128),
                        Faults::Status { .. } => FaultReading::Status(i % 2 == 1),
                    });
                    let served = profile.encode(truth, faults);
                    let read = profile
                        .decode(&answer(&profile, &served))
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    for q in Quantity::ALL {
                        let (t, r) = (q.raw(truth) as f64, q.raw(&read.sample) as f64);
                        // A value the layout cannot carry (115 kV in a register of volts
                        // that stops at 65 535) reads as the layout's limit.
                        let (lo, hi) = profile.point(q).limits();
                        let t = t.clamp(lo, hi);
                        let tolerance = profile.quantisation(q, t);
                        assert!(
                            (t - r).abs() <= tolerance,
                            "{}: {} read {r}, truth {t}, quantisation {tolerance}",
                            file.display(),
                            q.name()
                        );
                    }
                    assert_eq!(read.faults, faults, "{}", file.display());
                }
            }
        }
    }
}

#[test]
fn requests_per_sample() {
    let reads = |name: &str| {
        let p = Profile::load(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../profiles")
                .join(name),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        p.reads().len()
    };
    // Quantities within 125 registers: one request.
    assert_eq!(reads("relay-sim-live.toml"), 1);
    assert_eq!(reads("schneider-pm5100.toml"), 1);
    // Farther apart: as few as the layout allows.
    assert_eq!(reads("eastron-sdm630.toml"), 2);
    assert_eq!(reads("sel-751a.toml"), 2);
}

const GOOD: &str = r#"
[device]
name = "t"
maker = "m"
model = "x"
source = "a document, version 1"
tested_on_hardware = false
function = 3
type = "i16"

[quantities]
Vab = { address = 0, unit = "V" }
Vbc = { address = 1, unit = "V" }
Vca = { address = 2, unit = "V" }
Ia  = { address = 3, unit = "A" }
Ib  = { address = 4, unit = "A" }
Ic  = { address = 5, unit = "A" }
f   = { address = 6, unit = "Hz", scale = 0.01 }
PF  = { address = 7, unit = "1", scale_pow10 = -3 }
P   = { address = 8, unit = "kW" }
Q   = { address = 9, unit = "kvar" }
"#;

fn refused(text: &str) -> device_profile::ProfileError {
    Profile::parse("bad.toml", text).expect_err("a bad profile is refused")
}

#[test]
fn bad_profiles_are_refused_with_file_line_and_reason() {
    Profile::parse("good.toml", GOOD).unwrap_or_else(|e| panic!("{e}"));
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect("needle")
    };

    // Overlapping registers: Vbc (a u32) runs into Vca.
    let t = GOOD.replace(
        r#"Vbc = { address = 1, unit = "V" }"#,
        r#"Vbc = { address = 1, type = "u32", unit = "V" }"#,
    );
    let e = refused(&t);
    assert!(e.reason.contains("overlaps"), "{e}");
    assert_eq!(e.file, "bad.toml");
    assert!(
        [line_of(&t, "Vbc ="), line_of(&t, "Vca =")].contains(&e.line),
        "{e}"
    );

    // Unknown type and word order: the line of the value.
    let t = GOOD.replace(
        r#"Ia  = { address = 3, unit = "A" }"#,
        r#"Ia  = { address = 3, type = "u24", unit = "A" }"#,
    );
    let e = refused(&t);
    assert_eq!(e.line, line_of(&t, "u24"), "{e}");
    assert!(
        e.reason.contains("u24") || e.reason.contains("variant"),
        "{e}"
    );
    let t = GOOD.replace(
        r#"Ib  = { address = 4, unit = "A" }"#,
        r#"Ib  = { address = 4, word_order = "ACBD", unit = "A" }"#,
    );
    let e = refused(&t);
    assert_eq!(e.line, line_of(&t, "ACBD"), "{e}");

    // A quantity missing.
    let t = GOOD.replace("Q   = { address = 9, unit = \"kvar\" }\n", "");
    let e = refused(&t);
    assert_eq!(e.key, "quantities.Q", "{e}");
    assert!(e.reason.contains("missing"), "{e}");

    // A block over 125 registers.
    let t = format!("{GOOD}\n[[blocks]]\nfunction = 3\nstart = 0\ncount = 126\n");
    let e = refused(&t);
    assert_eq!(e.key, "blocks.count", "{e}");
    assert_eq!(e.line, line_of(&t, "[[blocks]]"), "{e}");

    // Scale 0.
    let t = GOOD.replace("scale = 0.01", "scale = 0");
    let e = refused(&t);
    assert_eq!(e.key, "quantities.f.scale", "{e}");
    assert_eq!(e.line, line_of(&t, "f   ="), "{e}");

    // A unit that is not the quantity's; a function code that reads no registers; a
    // quantity that does not exist; a counter that is a float.
    let e = refused(&GOOD.replace(
        r#"Ia  = { address = 3, unit = "A" }"#,
        r#"Ia  = { address = 3, unit = "kV" }"#,
    ));
    assert_eq!(e.key, "quantities.Ia.unit", "{e}");
    let e = refused(&GOOD.replace(
        r#"Ia  = { address = 3, unit = "A" }"#,
        r#"Ia  = { address = 3, function = 1, unit = "A" }"#,
    ));
    assert_eq!(e.key, "quantities.Ia.function", "{e}");
    let e = refused(&format!("{GOOD}In = {{ address = 20, unit = \"A\" }}\n"));
    assert_eq!(e.key, "quantities.In", "{e}");
    let e = refused(&format!(
        "{GOOD}\n[faults]\nfrom = \"counter\"\naddress = 30\ntype = \"f32\"\n"
    ));
    assert_eq!(e.key, "faults.type", "{e}");
    // Unknown keys and broken TOML name their line too.
    let t = GOOD.replace(
        "tested_on_hardware = false",
        "tested_on_hardware = false\ncolour = 1",
    );
    let e = refused(&t);
    assert_eq!(e.line, line_of(&t, "colour"), "{e}");
    let e = refused("[device\nname = 1");
    assert_eq!(e.line, 1, "{e}");
    // A point outside the explicit blocks.
    let t = format!("{GOOD}\n[[blocks]]\nfunction = 3\nstart = 0\ncount = 9\n");
    let e = refused(&t);
    assert!(e.reason.contains("not inside"), "{e}");
}

#[test]
fn values_out_of_range_or_not_numbers_are_refused_not_invented() {
    let p = Profile::parse("good.toml", GOOD).expect("good");
    let mut regs = vec![vec![0u16; 10]];
    regs[0][7] = 2000; // PF 2.000
    let e = p.decode(&regs).expect_err("PF 2");
    assert!(e.to_string().contains("PF"), "{e}");
    regs[0][7] = 0;
    regs[0][0] = 0xFFFF; // Vab -1 V as an i16
    let e = p.decode(&regs).expect_err("negative voltage");
    assert!(e.to_string().contains("Vab"), "{e}");
    let e = p.decode(&[vec![0u16; 5]]).expect_err("short answer");
    assert!(e.to_string().contains("asked"), "{e}");
}

/// A layout with every feature at once: CDAB floats, int16 values scaled by 0.01, powers
/// scaled by a shared exponent register, little-endian 64-bit currents, a u32 trip counter.
const EVERY_FEATURE: &str = r#"
[device]
name = "every feature"
maker = "test"
model = "test"
source = "this test"
tested_on_hardware = false
function = 3
max_gap = 0

[quantities]
Vab = { address = 10, type = "f32", word_order = "CDAB", unit = "kV" }
Vbc = { address = 12, type = "f32", word_order = "CDAB", unit = "kV" }
Vca = { address = 14, type = "f32", word_order = "CDAB", unit = "kV" }
Ia  = { address = 20, type = "u64", word_order = "DCBA", scale_pow10 = -3, unit = "A" }
Ib  = { address = 24, type = "u64", word_order = "DCBA", scale_pow10 = -3, unit = "A" }
Ic  = { address = 28, type = "u64", word_order = "DCBA", scale_pow10 = -3, unit = "A" }
f   = { address = 40, type = "i16", scale = 0.01, unit = "Hz" }
PF  = { address = 41, type = "i16", scale = 0.01, unit = "1" }
P   = { address = 50, type = "i32", word_order = "BADC", scale_register = { address = 60 }, unit = "W" }
Q   = { address = 52, type = "i32", word_order = "BADC", scale_register = { address = 60 }, unit = "var" }

[faults]
from = "counter"
address = 70
type = "u32"
word_order = "CDAB"
"#;

#[test]
fn a_layout_with_every_feature_reads_back() {
    let profile = Profile::parse("every.toml", EVERY_FEATURE).unwrap_or_else(|e| panic!("{e}"));
    // max_gap 0: one read per run of adjacent registers.
    assert_eq!(profile.reads().len(), 6, "{:?}", profile.reads());
    let model = SignalModel::new(9, Signal::Realistic);
    let record = model.record(RelayId(1), Minute(29_000_001), 6, RecordFlags::CLOCK_SET);
    for (i, truth) in record.samples.iter().enumerate() {
        let counter = Some(FaultReading::Counter(u128::from(u32::MAX) - 2 + i as u128));
        let read = profile
            .decode(&answer(&profile, &profile.encode(truth, counter)))
            .unwrap_or_else(|e| panic!("{e}"));
        for q in Quantity::ALL {
            let (t, r) = (q.raw(truth) as f64, q.raw(&read.sample) as f64);
            assert!(
                (t - r).abs() <= profile.quantisation(q, t),
                "{} read {r}, truth {t}",
                q.name()
            );
        }
        // The counter wraps past u32::MAX.
        let expected = (u128::from(u32::MAX) - 2 + i as u128) % (1u128 << 32);
        assert_eq!(read.faults, Some(FaultReading::Counter(expected)));
    }
}
