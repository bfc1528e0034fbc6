//! One rendering of blocks and records, for every place that shows them: `GET /readings`,
//! `GET /chain`, `GET /blocks`, `GET /disputes` and `gridledger export`. The column names
//! (`Vab_kV` … `Q_kvar`) and the exact decimals live here and nowhere else.
//!
//! JSON: a sample is an object of the ten quantities in register-map order, each the stored
//! integer ÷ 1000 as a JSON number (`docs/FORMAT.md` section 9). CSV: one row per sample,
//! the same names, exact decimals with three places.

use std::io::{self, Write};

use relay_core::{MinuteRecord, Quantity, RecordFlags, Sample};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Number;

use crate::chain::Block;

/// The column name of a quantity: its name and unit (`Vab_kV`, `PF`).
#[must_use]
pub fn column(q: Quantity) -> String {
    if q.unit().is_empty() {
        q.name().to_owned()
    } else {
        format!("{}_{}", q.name(), q.unit())
    }
}

/// A scaled integer (thousandths) as an exact decimal with three places.
#[must_use]
pub fn milli(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:03}",
        v.unsigned_abs() / 1000,
        v.unsigned_abs() % 1000
    )
}

/// A scaled integer as a JSON number with the value of `raw / 1000`: the double nearest to
/// the exact decimal (`raw` is exact as a double, and IEEE division rounds correctly), which
/// is what parsing [`milli`]'s text gives, without the text.
fn number(raw: i64) -> Number {
    Number::from_f64(raw as f64 / 1000.0).unwrap_or_else(|| Number::from(0))
}

/// The columns with their quantities, once: in register-map order, and sorted by name (the
/// order a JSON object built as a `serde_json::Value` has, which `/readings` has always
/// written).
fn columns() -> &'static [Vec<(String, Quantity)>; 2] {
    static COLUMNS: std::sync::OnceLock<[Vec<(String, Quantity)>; 2]> = std::sync::OnceLock::new();
    COLUMNS.get_or_init(|| {
        let ordered: Vec<(String, Quantity)> =
            Quantity::ALL.iter().map(|q| (column(*q), *q)).collect();
        let mut sorted = ordered.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        [ordered, sorted]
    })
}

/// A sample as a JSON object: the quantities in register-map order under their columns.
#[derive(Clone, Debug)]
pub struct SampleJson(pub Sample);

impl Serialize for SampleJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_sample(&self.0, &columns()[0], s)
    }
}

/// A sample as a JSON object with its columns sorted by name (see [`columns`]).
#[derive(Clone, Copy, Debug)]
pub struct SampleJsonSorted<'a>(pub &'a Sample);

impl Serialize for SampleJsonSorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_sample(self.0, &columns()[1], s)
    }
}

fn serialize_sample<S: Serializer>(
    sample: &Sample,
    columns: &[(String, Quantity)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(columns.len()))?;
    for (name, q) in columns {
        map.serialize_entry(name, &number(q.raw(sample)))?;
    }
    map.end()
}

/// The samples of a record, as JSON.
#[must_use]
pub fn samples_json(r: &MinuteRecord) -> Vec<SampleJson> {
    r.samples.iter().copied().map(SampleJson).collect()
}

#[derive(Serialize)]
struct JsonRecord {
    relay: u32,
    minute: u32,
    minute_utc: String,
    faults: u16,
    clock_set: bool,
    /// The record's canonical postcard bytes: the Merkle leaf.
    raw: String,
    samples: Vec<SampleJson>,
    /// The second of the minute of each sample (docs/FORMAT.md section 6).
    seconds: Vec<u16>,
}

fn json_record(bytes: &[u8], r: &MinuteRecord) -> JsonRecord {
    JsonRecord {
        relay: r.relay.0,
        minute: r.minute.0,
        minute_utc: r.minute.to_string(),
        faults: r.faults,
        clock_set: r.flags.contains(RecordFlags::CLOCK_SET),
        raw: hex::encode(bytes),
        samples: samples_json(r),
        seconds: r.sample_seconds().collect(),
    }
}

/// A record as the JSON export writes it (with its canonical bytes as `raw`).
#[must_use]
pub fn record_json(r: &MinuteRecord) -> serde_json::Value {
    let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
    let bytes = r.encode(&mut buf).map(|b| b.to_vec()).unwrap_or_default();
    serde_json::to_value(json_record(&bytes, r)).unwrap_or_default()
}

#[derive(Serialize)]
struct JsonBlock {
    height: u32,
    id: String,
    prev: String,
    merkle_root: String,
    time_ms: u64,
    bits: u8,
    miner: String,
    nonce: u64,
    signature: String,
    /// The block exactly as stored and sent: header, signature, records (docs/FORMAT.md).
    raw: String,
    records: Vec<JsonRecord>,
}

/// A block as the export and `/chain` write it (`docs/FORMAT.md` section 9).
pub fn json_block(height: u32, b: &Block) -> impl Serialize {
    let h = &b.header;
    JsonBlock {
        height,
        id: b.id().to_hex(),
        prev: h.prev.to_hex(),
        merkle_root: hex::encode(h.merkle_root),
        time_ms: h.time_ms,
        bits: h.bits,
        miner: hex::encode(h.miner),
        nonce: h.nonce,
        signature: hex::encode(b.signature),
        raw: hex::encode(b.to_bytes()),
        records: b
            .records
            .iter()
            .filter_map(|bytes| {
                MinuteRecord::decode(bytes)
                    .ok()
                    .map(|r| json_record(bytes, &r))
            })
            .collect(),
    }
}

/// The CSV header line, with its newline.
#[must_use]
pub fn csv_header() -> String {
    let mut out =
        String::from("height,block_id,relay,minute,minute_utc,faults,clock_set,sample,second");
    for q in Quantity::ALL {
        out.push(',');
        out.push_str(&column(q));
    }
    out.push('\n');
    out
}

/// Writes one CSV row per sample of `r`, held by the block `block_id` at `height`.
pub fn write_csv_rows(
    out: &mut dyn Write,
    height: u32,
    block_id: &str,
    r: &MinuteRecord,
) -> io::Result<()> {
    for (i, (s, second)) in r.samples.iter().zip(r.sample_seconds()).enumerate() {
        write!(
            out,
            "{height},{block_id},{},{},{},{},{},{i},{}",
            r.relay,
            r.minute.0,
            r.minute,
            r.faults,
            r.flags.contains(RecordFlags::CLOCK_SET),
            second
        )?;
        for q in Quantity::ALL {
            write!(out, ",{}", milli(q.raw(s)))?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_is_exact() {
        assert_eq!(milli(114_465), "114.465");
        assert_eq!(milli(5), "0.005");
        assert_eq!(milli(-1500), "-1.500");
        assert_eq!(milli(0), "0.000");
        assert_eq!(milli(i64::from(i32::MIN)), "-2147483.648");
    }

    #[test]
    fn numbers_are_the_parsed_decimals() {
        for raw in [
            0i64,
            1,
            -1,
            5,
            114_465,
            -1500,
            999,
            1001,
            49_987,
            2_147_483_647,
            i64::from(i32::MIN),
        ]
        .into_iter()
        .chain((0..20_000).map(|i| i * 7919 - 60_000_000))
        {
            let parsed: Number = milli(raw).parse().expect("a decimal");
            assert_eq!(number(raw), parsed, "{raw}");
        }
    }

    #[test]
    fn a_sample_keeps_register_map_order() {
        let r = crate::chain::vectors::vectors()
            .and_then(|v| MinuteRecord::decode(&v.blocks[1].records[0]).ok())
            .expect("a record");
        let text = serde_json::to_string(&SampleJson(r.samples[0])).expect("json");
        let names: Vec<String> = Quantity::ALL.iter().map(|q| column(*q)).collect();
        let mut at = 0;
        for n in &names {
            let i = text[at..].find(&format!("\"{n}\"")).expect(n) + at;
            assert!(i >= at, "{n} out of order in {text}");
            at = i;
        }
    }
}
