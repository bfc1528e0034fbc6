//! One rendering of blocks and records, for every place that shows them: `GET /readings`,
//! `GET /chain`, `GET /blocks`, `GET /disputes` and `gridledger export`. The column names
//! (`Vab_kV` … `Q_kvar`) and the exact decimals live here and nowhere else.
//!
//! JSON: a sample is an object of the ten quantities in register-map order, each the stored
//! integer ÷ 1000 as a JSON number (`docs/book/src/FORMAT.md` section 9). CSV: one row per sample,
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

/// Writes [`number`]`(raw)` as `serde_json` writes it, without the float formatting: the
/// shortest decimal that reads back as the double nearest `raw / 1000`. For `|raw|` below
/// 2⁵³ that is the exact decimal with its trailing zeros cut (one zero kept after the
/// point): two decimals of three places are more than a double's spacing apart there, so
/// no shorter decimal reads back as the same double. A day's `/readings` writes 86 400 of
/// these; formatting each as a float was a fifth of the answer's time.
pub fn write_milli_json(out: &mut Vec<u8>, raw: i64) {
    // Far beyond any register (they are 32 bits at most): the float path.
    if raw.unsigned_abs() >= 1 << 50 {
        let _ = serde_json::to_writer(&mut *out, &number(raw));
        return;
    }
    // Composed in a fixed-size buffer that is copied whole and the excess cut: a copy of
    // a length known at compile time is two moves, a copy of a variable length is a call,
    // and a day's answer makes 170 000 of them.
    let mut buf = [0u8; 24];
    let a = raw.unsigned_abs();
    let (int, f) = (a / 1000, a % 1000);
    let mut len = usize::from(raw < 0);
    buf[0] = b'-';
    let digits = int.checked_ilog10().map_or(1, |l| l as usize + 1);
    let mut i = int;
    for at in (len..len + digits).rev() {
        buf[at] = b'0' + (i % 10) as u8;
        i /= 10;
    }
    len += digits;
    buf[len] = b'.';
    buf[len + 1] = b'0' + (f / 100) as u8;
    buf[len + 2] = b'0' + (f / 10 % 10) as u8;
    buf[len + 3] = b'0' + (f % 10) as u8;
    len += match (f % 100, f % 10) {
        (0, _) => 2,
        (_, 0) => 3,
        _ => 4,
    };
    let start = out.len();
    out.extend_from_slice(&buf);
    out.truncate(start + len);
}

/// Writes a sample as [`SampleJsonSorted`] serialises it: its keys sorted by name.
pub fn write_sample_json_sorted(out: &mut Vec<u8>, sample: &Sample) {
    // Each key with what comes before it (`{"name":`, then `,"name":`), made once, in a
    // fixed-size buffer for the same reason as the numbers' (a longer one is copied as it is).
    type Key = ([u8; 16], usize, Vec<u8>);
    static KEYS: std::sync::OnceLock<Vec<(Key, Quantity)>> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        columns()[1]
            .iter()
            .enumerate()
            .map(|(i, (name, q))| {
                let lead = if i == 0 { "{" } else { "," };
                // Column names are letters, digits and underscores: nothing to escape.
                let text = format!("{lead}\"{name}\":").into_bytes();
                let mut fixed = [0u8; 16];
                if let Some(head) = fixed.get_mut(..text.len()) {
                    head.copy_from_slice(&text);
                }
                ((fixed, text.len(), text), *q)
            })
            .collect()
    });
    for ((fixed, len, text), q) in keys {
        if *len <= fixed.len() {
            let start = out.len();
            out.extend_from_slice(fixed);
            out.truncate(start + len);
        } else {
            out.extend_from_slice(text);
        }
        write_milli_json(out, q.raw(sample));
    }
    out.push(b'}');
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
    /// The second of the minute of each sample (docs/book/src/FORMAT.md section 6).
    seconds: Vec<u16>,
    /// The relay's signature (hex, the last 64 bytes of `raw`), or null: unsigned.
    signature: Option<String>,
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
        signature: r.signature.map(|s| hex::encode(s.0)),
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
    /// The block exactly as stored and sent: header, signature, records (docs/book/src/FORMAT.md).
    raw: String,
    records: Vec<JsonRecord>,
}

/// A block as the export and `/chain` write it (`docs/book/src/FORMAT.md` section 9).
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
    out.push_str(",signed\n");
    out
}

/// Writes one CSV row per sample of `r`, held by the block `block_id` at `height`.
pub fn write_csv_rows(
    out: &mut dyn Write,
    height: u32,
    block_id: &str,
    r: &MinuteRecord,
    signer: crate::relay_sig::Signer,
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
        writeln!(out, ",{}", signer.as_str())?;
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

    /// The written text is the one `serde_json` writes for the same number, byte for byte,
    /// over every register's range and its edges (the float path beyond them too).
    #[test]
    fn a_number_is_written_as_serde_json_writes_it() {
        let text = |raw| {
            let mut out = Vec::new();
            write_milli_json(&mut out, raw);
            String::from_utf8(out).expect("utf-8")
        };
        let edges = [
            0i64,
            1,
            -1,
            10,
            -10,
            100,
            999,
            1000,
            -1000,
            1001,
            1010,
            1100,
            123_450,
            2_147_483_647,
            i64::from(i32::MIN),
            i64::from(u32::MAX),
            (1 << 50) - 1,
            1 << 50,
            -(1 << 50),
            i64::MAX,
            i64::MIN,
        ];
        let spread = (0..200_000i64).map(|i| i.wrapping_mul(2_654_435_761) % (1 << 33));
        for raw in edges.into_iter().chain(spread).chain(-3000..3000) {
            let want = serde_json::to_string(&number(raw)).expect("json");
            assert_eq!(text(raw), want, "{raw}");
        }
    }

    #[test]
    fn a_sample_is_written_as_serde_json_writes_it() {
        let r = crate::chain::vectors::vectors()
            .and_then(|v| MinuteRecord::decode(&v.blocks[1].records[0]).ok())
            .expect("a record");
        for s in &r.samples {
            let mut out = Vec::new();
            write_sample_json_sorted(&mut out, s);
            let want = serde_json::to_vec(&SampleJsonSorted(s)).expect("json");
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want)
            );
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
