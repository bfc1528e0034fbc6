//! Prints the postcard size of minute records from both profiles, and of the study's JSON
//! text for the same record, over a day of minutes.
//!
//! `cargo run -p relay-core --example record-size`

use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, Quantity, RecordFlags, RelayId};

fn main() {
    for profile in [Profile::Realistic, Profile::Paper] {
        let model = SignalModel::new(1, profile);
        let (mut min, mut max, mut total) = (usize::MAX, 0, 0);
        let mut json_total = 0;
        let minutes = 1440u32;
        let first = Minute::containing(1_795_478_400); // 2026-11-24T00:00Z
        for m in 0..minutes {
            let rec = model.record(RelayId(1), Minute(first.0 + m), 6, RecordFlags::CLOCK_SET);
            let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
            let len = rec.encode(&mut buf).map(|b| b.len()).unwrap_or(0);
            min = min.min(len);
            max = max.max(len);
            total += len;
            json_total += study_json(&rec).len();
        }
        println!(
            "{profile:?}: postcard {min}..{max} bytes, mean {:.1}; study-style JSON mean {:.1} bytes ({:.1} %)",
            total as f64 / f64::from(minutes),
            json_total as f64 / f64::from(minutes),
            100.0 * total as f64 / json_total as f64
        );
    }
}

/// The record as the published study's nodes wrote it: a JSON object per sample with the
/// quantities as three-decimal numbers, plus the minute and fault count.
fn study_json(rec: &MinuteRecord) -> String {
    let samples: Vec<String> = rec
        .samples
        .iter()
        .map(|s| {
            let fields: Vec<String> = Quantity::ALL
                .iter()
                .map(|q| format!("\"{}\": {:.3}", q.name(), q.raw(s) as f64 / 1000.0))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!(
        "{{\"relay\": {}, \"minute\": \"{}\", \"faults\": {}, \"samples\": [{}]}}",
        rec.relay,
        rec.minute,
        rec.faults,
        samples.join(", ")
    )
}
