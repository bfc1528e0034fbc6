//! Blocks as rows: the text of PostgreSQL's `COPY … FROM STDIN` for the `blocks`,
//! `records` and `samples` tables ([`super::schema`]). Values are written exactly: the
//! quantities as the decimals `gridledger export` writes (`numeric` columns, no float on
//! the way), times as ISO 8601 in UTC.

use std::fmt::Write as _;

use relay_core::{MinuteRecord, Quantity, RecordFlags};

use crate::chain::merkle::leaf_hash;
use crate::chain::Block;

/// Why a block cannot become rows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// A record of a block that passed validation does not decode: a bug, never silence.
    #[error("block {height}: record {index} does not decode: {error}")]
    Record {
        /// The block's height.
        height: u32,
        /// The record's position in it.
        index: usize,
        /// Why.
        error: relay_core::RecordError,
    },
}

/// The COPY text of some blocks, table by table.
#[derive(Debug, Default)]
pub struct Rows {
    /// `blocks` rows.
    pub blocks: String,
    /// `records` rows.
    pub records: String,
    /// `samples` rows.
    pub samples: String,
    /// Records written.
    pub record_count: u64,
    /// Samples written.
    pub sample_count: u64,
}

/// `bytea` in COPY's text format: `\\x` then hex (the backslash doubled, as COPY text
/// escapes it).
fn bytea(out: &mut String, bytes: &[u8]) {
    out.push_str("\\\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// A Unix time in milliseconds as an ISO 8601 UTC timestamp, to the millisecond.
fn timestamp_ms(out: &mut String, ms: u64) {
    let minute = relay_core::Minute::containing(ms / 1000);
    let secs = ms / 1000 - minute.start_unix_secs();
    timestamp(out, minute, secs, ms % 1000);
}

/// `minute` + `secs` (+ `millis`) as ISO 8601 UTC (`2026-11-08T08:56:10.000Z`).
fn timestamp(out: &mut String, minute: relay_core::Minute, secs: u64, millis: u64) {
    // Minute's own display is `YYYY-MM-DDTHH:MMZ`.
    let m = minute.to_string();
    timestamp_at(out, m.strip_suffix('Z').unwrap_or(&m), secs, millis);
}

/// [`timestamp`] with the minute already written (`YYYY-MM-DDTHH:MM`).
fn timestamp_at(out: &mut String, minute: &str, secs: u64, millis: u64) {
    let _ = write!(out, "{minute}:{secs:02}.{millis:03}Z");
}

/// A scaled integer (thousandths) as the exact decimal `gridledger export` writes
/// ([`crate::render::milli`]), written in place: a back-fill writes ten a sample.
fn milli_into(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    let a = v.unsigned_abs();
    let _ = write!(out, "{}.{:03}", a / 1000, a % 1000);
}

impl Rows {
    /// Adds `block`'s rows.
    pub fn add(&mut self, block: &Block) -> Result<(), RowError> {
        let h = &block.header;
        let height = h.height;
        let id = block.id();
        // blocks: height, id, prev, time, miner, records
        let b = &mut self.blocks;
        let _ = write!(b, "{height}\t");
        bytea(b, &id.0);
        b.push('\t');
        bytea(b, &h.prev.0);
        b.push('\t');
        timestamp_ms(b, h.time_ms);
        b.push('\t');
        bytea(b, &h.miner);
        let _ = writeln!(b, "\t{}", block.records.len());
        for (index, bytes) in block.records.iter().enumerate() {
            let r = MinuteRecord::decode(bytes).map_err(|error| RowError::Record {
                height,
                index,
                error,
            })?;
            self.add_record(height, index, bytes, &r);
        }
        Ok(())
    }

    fn add_record(&mut self, height: u32, index: usize, bytes: &[u8], r: &MinuteRecord) {
        self.record_count += 1;
        // records: relay, minute, height, position, faults, clock_set, slots,
        // missing_slots, relay_signature, leaf_hash
        let o = &mut self.records;
        let _ = write!(o, "{}\t", r.relay.0);
        timestamp(o, r.minute, 0, 0);
        let _ = write!(
            o,
            "\t{height}\t{index}\t{}\t{}\t{}\t{}\t",
            r.faults,
            if r.flags.contains(RecordFlags::CLOCK_SET) {
                "t"
            } else {
                "f"
            },
            r.slots(),
            r.flags.missing().count_ones()
        );
        match &r.signature {
            Some(s) => bytea(o, &s.0),
            None => o.push_str("\\N"),
        }
        o.push('\t');
        bytea(o, &leaf_hash(bytes));
        o.push('\n');
        // samples: relay, t, minute, height, second, then the ten quantities
        let m = r.minute.to_string();
        let m = m.strip_suffix('Z').unwrap_or(&m);
        for (s, second) in r.samples.iter().zip(r.sample_seconds()) {
            self.sample_count += 1;
            let o = &mut self.samples;
            let _ = write!(o, "{}\t", r.relay.0);
            timestamp_at(o, m, u64::from(second), 0);
            o.push('\t');
            timestamp_at(o, m, 0, 0);
            let _ = write!(o, "\t{height}\t{second}");
            for q in Quantity::ALL {
                o.push('\t');
                milli_into(o, q.raw(s));
            }
            o.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_utc_to_the_millisecond() {
        let mut s = String::new();
        timestamp_ms(&mut s, 1_796_637_364_555);
        assert_eq!(s, "2026-12-07T09:56:04.555Z");
        s.clear();
        timestamp(&mut s, relay_core::Minute(29_902_136), 50, 0);
        assert_eq!(s, "2026-11-08T08:56:50.000Z");
    }

    #[test]
    fn decimals_are_the_exports() {
        for v in [
            0i64,
            5,
            -5,
            114_465,
            -1500,
            999,
            1001,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        ] {
            let mut s = String::new();
            milli_into(&mut s, v);
            assert_eq!(s, crate::render::milli(v), "{v}");
        }
    }

    #[test]
    fn bytea_is_escaped_for_copy_text() {
        let mut s = String::new();
        bytea(&mut s, &[0, 0xab]);
        assert_eq!(s, "\\\\x00ab");
    }
}
