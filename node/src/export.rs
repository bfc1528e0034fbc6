//! `gridledger export`: the main chain as JSON (whole blocks, raw bytes included, records
//! decoded) or CSV (one row per sample). Streams block by block, so a long chain never has
//! to fit in memory.

use std::io::{self, Write};

use relay_core::{MinuteRecord, Quantity, RecordFlags};
use serde::Serialize;
use serde_json::Number;

use crate::chain::Block;
use crate::ledger::Ledger;
use crate::store::StoreError;

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Whole blocks with raw hex and decoded records.
    Json,
    /// One row per sample.
    Csv,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the chain failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("cannot write the export: {0}")]
    Io(#[from] io::Error),
}

#[derive(Serialize)]
pub(crate) struct JsonBlock {
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

#[derive(Serialize)]
struct JsonRecord {
    relay: u32,
    minute: u32,
    minute_utc: String,
    faults: u16,
    clock_set: bool,
    /// The record's canonical postcard bytes: the Merkle leaf.
    raw: String,
    samples: Vec<JsonSample>,
}

/// A sample in the export: fields in register-map order (docs/FORMAT.md, section 9).
#[derive(Serialize)]
struct JsonSample {
    #[serde(rename = "Vab_kV")]
    vab: Number,
    #[serde(rename = "Vbc_kV")]
    vbc: Number,
    #[serde(rename = "Vca_kV")]
    vca: Number,
    #[serde(rename = "Ia_A")]
    ia: Number,
    #[serde(rename = "Ib_A")]
    ib: Number,
    #[serde(rename = "Ic_A")]
    ic: Number,
    #[serde(rename = "f_Hz")]
    f: Number,
    #[serde(rename = "PF")]
    pf: Number,
    #[serde(rename = "P_kW")]
    p: Number,
    #[serde(rename = "Q_kvar")]
    q: Number,
}

/// A scaled integer as a JSON number with the value of `raw / 1000`.
pub(crate) fn number(raw: i64) -> Number {
    milli(raw).parse().unwrap_or_else(|_| Number::from(0))
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

pub(crate) fn column(q: Quantity) -> String {
    if q.unit().is_empty() {
        q.name().to_owned()
    } else {
        format!("{}_{}", q.name(), q.unit())
    }
}

fn json_record(bytes: &[u8], r: &MinuteRecord) -> JsonRecord {
    let samples = r
        .samples
        .iter()
        .map(|s| {
            let v = |q: Quantity| number(q.raw(s));
            JsonSample {
                vab: v(Quantity::Vab),
                vbc: v(Quantity::Vbc),
                vca: v(Quantity::Vca),
                ia: v(Quantity::Ia),
                ib: v(Quantity::Ib),
                ic: v(Quantity::Ic),
                f: v(Quantity::Freq),
                pf: v(Quantity::Pf),
                p: v(Quantity::P),
                q: v(Quantity::Q),
            }
        })
        .collect();
    JsonRecord {
        relay: r.relay.0,
        minute: r.minute.0,
        minute_utc: r.minute.to_string(),
        faults: r.faults,
        clock_set: r.flags.contains(RecordFlags::CLOCK_SET),
        raw: hex::encode(bytes),
        samples,
    }
}

/// A record as the JSON export writes it (with its canonical bytes as `raw`).
pub(crate) fn record_json(r: &MinuteRecord) -> serde_json::Value {
    let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
    let bytes = r.encode(&mut buf).map(|b| b.to_vec()).unwrap_or_default();
    serde_json::to_value(json_record(&bytes, r)).unwrap_or_default()
}

pub(crate) fn json_block(height: u32, b: &Block) -> impl Serialize {
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

/// Writes the ledger's main chain, genesis included, to `out`.
pub fn export(ledger: &Ledger, format: Format, out: &mut dyn Write) -> Result<(), ExportError> {
    let tree = ledger.tree();
    match format {
        Format::Json => {
            let net = ledger.network();
            write!(
                out,
                "{{\"network\":{},\"difficulty_bits\":{},\"height\":{},\"blocks\":[",
                serde_json::to_string(&net.name).map_err(io::Error::other)?,
                net.bits,
                tree.height()
            )?;
            for h in 0..=tree.height() {
                let block = ledger.block_at(h)?.ok_or_else(|| StoreError::Corrupt {
                    height: h,
                    reason: "main-chain block missing".into(),
                })?;
                if h > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer(&mut *out, &json_block(h, &block))
                    .map_err(io::Error::other)?;
            }
            out.write_all(b"]}\n")?;
        }
        Format::Csv => {
            write!(
                out,
                "height,block_id,relay,minute,minute_utc,faults,clock_set,sample,second"
            )?;
            for q in Quantity::ALL {
                write!(out, ",{}", column(q))?;
            }
            out.write_all(b"\n")?;
            for h in 1..=tree.height() {
                let block = ledger.block_at(h)?.ok_or_else(|| StoreError::Corrupt {
                    height: h,
                    reason: "main-chain block missing".into(),
                })?;
                let id = block.id().to_hex();
                for bytes in &block.records {
                    let Ok(r) = MinuteRecord::decode(bytes) else {
                        continue;
                    };
                    let step = 60 / r.samples.len().max(1);
                    for (i, s) in r.samples.iter().enumerate() {
                        write!(
                            out,
                            "{h},{id},{},{},{},{},{},{i},{}",
                            r.relay,
                            r.minute.0,
                            r.minute,
                            r.faults,
                            r.flags.contains(RecordFlags::CLOCK_SET),
                            i * step
                        )?;
                        for q in Quantity::ALL {
                            write!(out, ",{}", milli(q.raw(s)))?;
                        }
                        out.write_all(b"\n")?;
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::milli;

    #[test]
    fn milli_is_exact() {
        assert_eq!(milli(114_465), "114.465");
        assert_eq!(milli(5), "0.005");
        assert_eq!(milli(-1500), "-1.500");
        assert_eq!(milli(0), "0.000");
        assert_eq!(milli(i64::from(i32::MIN)), "-2147483.648");
    }
}
