//! `GET /readings` and `GET /readings/{relay}/{minute}/proof`: what a relay said, and the proof that the chain holds it.

use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::answer::ApiError;
use crate::core::lock;
use crate::core::Shared;
use crate::ledger::BlockReader;

/// A minute given as minutes since the epoch or as `YYYY-MM-DDTHH:MM[Z]` (UTC).
fn parse_minute(s: &str) -> Option<u32> {
    relay_core::Minute::parse(s).map(|m| m.0)
}

#[derive(Debug, Deserialize)]
pub(super) struct Readings {
    relay: u32,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    /// `format=columns` only: most points per series (buckets beyond it).
    points: Option<u32>,
}

/// Most minutes a `/readings` answer built in memory may span (a week): `format=columns`,
/// and JSON or CSV up to this span.
const MAX_READING_MINUTES: u32 = 7 * 1440;
/// Most minutes a streamed `/readings` (JSON or CSV over more than a week) may span: eleven
/// years, a decade of a deployment with room. It is sent a day at a time, so memory stays
/// bounded whatever the span.
const MAX_STREAM_MINUTES: u32 = 11 * 366 * 1440;
/// Minutes read, rendered and sent at a time when streaming.
const STREAM_CHUNK: u32 = 1440;

/// `format=columns`: points per series when `points` is not given, and the bounds of `points`.
const DEFAULT_POINTS: u32 = 4000;
const POINTS: std::ops::RangeInclusive<u32> = 100..=20_000;

/// A record found on the main chain: its height, its block's id, the record, whether this
/// node read otherwise, and who vouches for it.
type Found = (
    u32,
    String,
    relay_core::MinuteRecord,
    bool,
    crate::relay_sig::Signer,
);

pub(super) async fn readings(
    Extension(reader): Extension<BlockReader>,
    Query(q): Query<Readings>,
) -> Response {
    let now = (crate::core::now_ms() / 60_000) as u32;
    // The bad parameter's name, if any.
    let parse = |v: &Option<String>, default: u32, name: &'static str| match v {
        None => Ok(default),
        Some(s) => parse_minute(s).ok_or((name, s.clone())),
    };
    // Default: the last hour. (No record of a minute after now can be on the chain: rule 9
    // and the two-minute bound on block times.)
    let bounds = parse(&q.to, now, "to")
        .and_then(|to| parse(&q.from, to.saturating_sub(59), "from").map(|from| (from, to)));
    let (from, to) = match bounds {
        Ok(b) => b,
        Err((name, s)) => {
            return ApiError::bad_request(format!(
                "{name}={s} is not a minute (minutes since 1970, or YYYY-MM-DDTHH:MMZ)"
            ))
        }
    };
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "columns") {
        return ApiError::bad_request(format!(
            "format={format}: give json (the default), csv or columns"
        ));
    }
    let max = if format == "columns" {
        MAX_READING_MINUTES
    } else {
        MAX_STREAM_MINUTES
    };
    if from > to || to - from >= max {
        return ApiError::bad_request(format!(
            "from..to must be ordered and span at most {max} minutes with format={format}"
        ));
    }
    if to - from >= MAX_READING_MINUTES {
        return stream(reader, q.relay, from, to, format == "csv");
    }
    let points = match q.points {
        None => DEFAULT_POINTS,
        Some(p) if POINTS.contains(&p) => p,
        Some(p) => {
            return ApiError::bad_request(format!(
                "points={p}: give {} to {}",
                POINTS.start(),
                POINTS.end()
            ))
        }
    };
    let found = match find(reader, q.relay, from, to).await {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    match format {
        "csv" => {
            // The export's columns (crate::render), one row per sample.
            let mut out = crate::render::csv_header().into_bytes();
            for (h, id, r, _, signer) in &found {
                if let Err(e) = crate::render::write_csv_rows(&mut out, *h, id, r, *signer) {
                    return ApiError::internal(e);
                }
            }
            ([(header::CONTENT_TYPE, "text/csv")], out).into_response()
        }
        "columns" => Json(columns(q.relay, from, to, &found, points)).into_response(),
        _ => {
            let mut body = Vec::with_capacity(64 + found.len() * READING_BYTES);
            write_readings(&mut body, q.relay, from, to, &found);
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}

/// About what one record of a day's `/readings` JSON takes (six samples of ten numbers).
const READING_BYTES: usize = 1536;

/// `/readings` as JSON: `{"from":…,"readings":[…],"relay":…,"to":…}`, the keys in the
/// sorted order a `serde_json::Value` has (the form the answer always had). Written
/// straight from the records, numbers included ([`crate::render::write_milli_json`]): a
/// day is 8 640 samples, and serialising them through serde took most of the answer's time.
fn write_readings(out: &mut Vec<u8>, relay: u32, from: u32, to: u32, found: &[Found]) {
    out.extend_from_slice(readings_head(from).as_bytes());
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_reading(out, f);
    }
    out.extend_from_slice(readings_tail(relay, to).as_bytes());
}

fn readings_head(from: u32) -> String {
    format!("{{\"from\":{from},\"readings\":[")
}

fn readings_tail(relay: u32, to: u32) -> String {
    format!("],\"relay\":{relay},\"to\":{to}}}")
}

/// One record of `/readings`, its fields in sorted order: `block_id`, `disputed` (this node
/// read something else from the relay for this minute: see /disputes), `faults`, `height`,
/// `minute`, `minute_utc`, `relay`, `samples`, `seconds` (the second of the minute of each
/// sample; a slot the device did not answer has none), `signed` (`relay`: signed by the
/// relay's registered key, as the chain's rule makes sure; `unregistered`: it carries a
/// signature no registry entry can check; `unsigned`).
fn write_reading(out: &mut Vec<u8>, (height, id, r, disputed, signer): &Found) {
    let mut n = itoa::Buffer::new();
    // `id` is 64 hex digits and `minute_utc` digits, dashes, `T`, `:` and `Z`: nothing to
    // escape in either.
    out.extend_from_slice(b"{\"block_id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"disputed\":");
    out.extend_from_slice(if *disputed { b"true" } else { b"false" });
    out.extend_from_slice(b",\"faults\":");
    out.extend_from_slice(n.format(r.faults).as_bytes());
    out.extend_from_slice(b",\"height\":");
    out.extend_from_slice(n.format(*height).as_bytes());
    out.extend_from_slice(b",\"minute\":");
    out.extend_from_slice(n.format(r.minute.0).as_bytes());
    out.extend_from_slice(b",\"minute_utc\":\"");
    out.extend_from_slice(r.minute.to_string().as_bytes());
    out.extend_from_slice(b"\",\"relay\":");
    out.extend_from_slice(n.format(r.relay.0).as_bytes());
    out.extend_from_slice(b",\"samples\":[");
    for (i, s) in r.samples.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::render::write_sample_json_sorted(out, s);
    }
    out.extend_from_slice(b"],\"seconds\":[");
    for (i, s) in r.sample_seconds().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(n.format(s).as_bytes());
    }
    out.extend_from_slice(b"],\"signed\":\"");
    out.extend_from_slice(signer.as_str().as_bytes());
    out.extend_from_slice(b"\"}");
}

/// The relay's records on the main chain for minutes `from..=to`, in minute order, from
/// one snapshot of the store: its record index, its main chain and its kept disputes (this
/// node read otherwise). Everything the node's tree holds is committed there too, so the
/// answer is the node's, as of its last commit; and a read never waits for the node's
/// lock, which a block's commit holds through its fsync (at 100 blocks/s, a fifth of the
/// time or more).
fn read_range(
    reader: &BlockReader,
    relay: u32,
    from: u32,
    to: u32,
) -> Result<Vec<Found>, crate::store::StoreError> {
    use relay_core::{Minute, MinuteRecord, RelayId};
    let rows = reader.main_records(RelayId(relay), Minute(from), Minute(to))?;
    let disputed = reader.disputed_minutes(RelayId(relay), Minute(from), Minute(to))?;
    let mut found: Vec<Found> = Vec::with_capacity(rows.len());
    // The blocks in runs of a few hundred, each run in one store transaction.
    for run in rows.chunks(READ_RUN) {
        let at: Vec<_> = run.iter().map(|r| (r.1, r.2)).collect();
        let blocks = reader.main_blocks_bytes(&at)?;
        for (&(m, h, id), bytes) in run.iter().zip(&blocks) {
            let Some(bytes) = bytes else { continue };
            // The one record wanted, found by its key and decoded alone (every stored
            // record was decoded and checked when its block was taken).
            let want = Some((RelayId(relay), Minute(m)));
            let record = reader
                .record_slices(&id, bytes)?
                .into_iter()
                .find(|r| MinuteRecord::peek_key(r) == want)
                .and_then(|r| MinuteRecord::decode_stored(r).ok());
            if let Some(r) = record {
                let disputed = disputed.binary_search(&m).is_ok();
                let signer = crate::relay_sig::Signer::of(&r, reader.registry());
                found.push((h, id.to_hex(), r, disputed, signer));
            }
        }
    }
    Ok(found)
}

/// Blocks read per store transaction by [`read_range`]: enough to make the transaction's
/// cost vanish, few enough to bound memory (a few hundred KB of 15-record blocks).
const READ_RUN: usize = 256;

/// The relay's records on the main chain for minutes `from..=to`, in minute order.
async fn find(reader: BlockReader, relay: u32, from: u32, to: u32) -> Result<Vec<Found>, Response> {
    super::answer::read_off_lock(move || read_range(&reader, relay, from, to)).await
}

/// `/readings` over more than a week, JSON or CSV: the same answer as the buffered one,
/// written a day at a time by a blocking task (each day from one store snapshot)
/// into a bounded channel, so that memory stays bounded over years and a client that goes
/// away stops the work. An error part-way ends the body early (the client sees a truncated
/// answer, as with `/chain`).
fn stream(reader: BlockReader, relay: u32, from: u32, to: u32, csv: bool) -> Response {
    use axum::body::Bytes;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let head = if csv {
            crate::render::csv_header()
        } else {
            readings_head(from)
        };
        if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
            return;
        }
        let mut first = true;
        let mut m = from;
        loop {
            let end = m.saturating_add(STREAM_CHUNK - 1).min(to);
            let found = match read_range(&reader, relay, m, end) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let mut buf = Vec::new();
            for f in &found {
                if csv {
                    if let Err(e) = crate::render::write_csv_rows(&mut buf, f.0, &f.1, &f.2, f.4) {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                } else {
                    if !first {
                        buf.push(b',');
                    }
                    write_reading(&mut buf, f);
                }
                first = false;
            }
            if !buf.is_empty() && tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the client went away
            }
            if end >= to {
                break;
            }
            m = end + 1;
        }
        if !csv {
            let _ = tx.blocking_send(Ok(Bytes::from(readings_tail(relay, to))));
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let kind = if csv { "text/csv" } else { "application/json" };
    (
        [(header::CONTENT_TYPE, kind)],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// `format=columns`: the samples as one time column and one column per quantity, ready to
/// plot (the dashboard's relay page). A slot the device did not answer and a minute with no
/// record between the first and the last one found are `null` points, so that a chart
/// breaks its line there instead of drawing through. Over `points` samples, the samples are
/// averaged over equal buckets of `bucket_s` seconds (an empty bucket is `null`); the fault
/// openings and gaps stay exact.
fn columns(relay: u32, from: u32, to: u32, found: &[Found], points: u32) -> serde_json::Value {
    use relay_core::Quantity;
    let samples: usize = found.iter().map(|(_, _, r, ..)| r.samples.len()).sum();
    // Every point as (unix second, values or none).
    let mut all: Vec<(u64, Option<[f64; 10]>)> = Vec::with_capacity(samples + 16);
    let mut gaps: Vec<[u32; 2]> = Vec::new();
    let mut prev: Option<u32> = None;
    for (_, _, r, ..) in found {
        let m = r.minute.0;
        if let Some(p) = prev.filter(|p| m > p + 1) {
            gaps.push([p + 1, m - 1]);
            all.push((u64::from(p + 1) * 60, None));
        }
        prev = Some(m);
        let n = r.slots().max(1);
        let missing = r.flags.missing();
        let mut samples = r.samples.iter();
        for slot in 0..n {
            let t = u64::from(m) * 60 + (slot * 60 / n) as u64;
            if missing & (1 << slot) != 0 {
                all.push((t, None));
            } else if let Some(s) = samples.next() {
                let v = Quantity::ALL.map(|q| q.raw(s) as f64 / 1000.0);
                all.push((t, Some(v)));
            }
        }
    }
    let bucket_s = if samples > points as usize {
        (u64::from(to - from + 1) * 60).div_ceil(u64::from(points))
    } else {
        0
    };
    let points: Vec<(u64, Option<[f64; 10]>)> = if bucket_s == 0 {
        all
    } else {
        let start = u64::from(from) * 60;
        let mut out: Vec<(u64, Option<[f64; 10]>)> = Vec::new();
        let mut sum = [0.0f64; 10];
        let mut count = 0u32;
        let mut current: Option<u64> = None;
        let flush = |out: &mut Vec<_>, b: u64, sum: &[f64; 10], count: u32| {
            let t = start + b * bucket_s;
            if count == 0 {
                out.push((t, None));
            } else {
                // To the thousandth, the samples' own precision: a mean's further digits
                // would only add bytes.
                let mean = sum.map(|v| (v / f64::from(count) * 1000.0).round() / 1000.0);
                out.push((t, Some(mean)));
            }
        };
        for (t, v) in all {
            let b = t.saturating_sub(start).checked_div(bucket_s).unwrap_or(0);
            if current.is_some_and(|c| c != b) {
                if let Some(c) = current {
                    flush(&mut out, c, &sum, count);
                    // Empty buckets between two samples are a gap: one null breaks the line.
                    if b > c + 1 {
                        out.push((start + (c + 1) * bucket_s, None));
                    }
                }
                sum = [0.0; 10];
                count = 0;
            }
            current = Some(b);
            if let Some(v) = v {
                for (s, x) in sum.iter_mut().zip(v) {
                    *s += x;
                }
                count += 1;
            }
        }
        if let Some(c) = current {
            flush(&mut out, c, &sum, count);
        }
        out
    };
    let t: Vec<u64> = points.iter().map(|(t, _)| *t).collect();
    let series: Vec<Vec<Option<f64>>> = (0..Quantity::ALL.len())
        .map(|i| points.iter().map(|(_, v)| v.map(|v| v[i])).collect())
        .collect();
    let faults: Vec<_> = found
        .iter()
        .filter(|(_, _, r, ..)| r.faults > 0)
        .map(|(h, _, r, ..)| {
            json!({"minute": r.minute.0, "t": u64::from(r.minute.0) * 60, "count": r.faults, "height": h})
        })
        .collect();
    let disputed: Vec<u32> = found
        .iter()
        .filter(|(_, _, _, d, _)| *d)
        .map(|(_, _, r, ..)| r.minute.0)
        .collect();
    // Who vouches for the readings shown: how many are signed by their registered relay.
    let signed_by_relay = found
        .iter()
        .filter(|f| f.4 == crate::relay_sig::Signer::Relay)
        .count();
    json!({
        "relay": relay,
        "from": from,
        "to": to,
        "records": found.len(),
        "signed_by_relay": signed_by_relay,
        "samples": samples,
        "bucket_s": bucket_s,
        "columns": Quantity::ALL.map(crate::render::column),
        "t": t,
        "series": series,
        "faults": faults,
        "gaps": gaps,
        "disputed": disputed,
    })
}

pub(super) async fn proof(
    State(shared): State<Shared>,
    Path((relay, minute)): Path<(u32, String)>,
) -> Response {
    use relay_core::{Minute, MinuteRecord, RelayId};
    let Some(minute) = parse_minute(&minute) else {
        return ApiError::bad_request(format!("{minute} is not a minute"));
    };
    let key = crate::chain::RecordKey::new(RelayId(relay), Minute(minute));
    let (found, reader) = {
        let core = lock(&shared);
        let tree = core.ledger.tree();
        let found = tree
            .record_height(&key)
            .and_then(|h| tree.main_at(h).map(|id| (h, id)));
        (found, core.ledger.reader())
    };
    let registry = reader.registry().clone();
    let Some((height, id)) = found else {
        return ApiError::not_found(format!(
            "no record of relay {relay} at minute {minute} on the chain"
        ));
    };
    let block = match super::answer::read_off_lock(move || reader.block(&id)).await {
        Ok(Some(b)) => b,
        Ok(None) => return ApiError::internal("block missing"),
        Err(answer) => return answer,
    };
    let Some((index, record)) = block.records.iter().enumerate().find_map(|(i, b)| {
        MinuteRecord::decode(b)
            .ok()
            .filter(|r| r.relay.0 == relay && r.minute.0 == minute)
            .map(|r| (i, r))
    }) else {
        return ApiError::internal("record index disagrees with the block");
    };
    let Some(p) = crate::chain::merkle::InclusionProof::new(&block.records, index) else {
        return ApiError::internal("no proof");
    };
    Json(json!({
        "relay": relay,
        "minute": minute,
        "height": height,
        "block_id": block.id().to_hex(),
        "header": hex::encode(block.header.to_bytes()),
        "record": hex::encode(&block.records[index]),
        "index": p.index,
        "size": p.size,
        "path": p.path.iter().map(hex::encode).collect::<Vec<_>>(),
        "relay_signature": relay_signature_json(&record, &registry),
        "how_to_verify": "SHA-256(header) = block_id; the record's leaf hash SHA-256(0x00 || record) climbs the RFC 6962 audit path to header bytes 38..70 (docs/book/src/FORMAT.md); a signed record's last 64 bytes are the relay's Ed25519 signature of \"gridledger record v1\\n\" || the bytes before them, checked with the key the relay registry names for the relay and minute, never a key taken from the record (docs/book/src/FORMAT.md section 12)",
    }))
    .into_response()
}

/// What a proof says of the relay's signature: who vouches (`signed`), the signature, the
/// key the network's registry names for the relay at that minute and from when, and the
/// bytes signed.
fn relay_signature_json(
    record: &relay_core::MinuteRecord,
    registry: &crate::chain::Registry,
) -> serde_json::Value {
    let signer = crate::relay_sig::Signer::of(record, registry);
    let entry = registry
        .entries()
        .filter(|e| e.relay == record.relay && e.from <= record.minute)
        .last();
    let mut buf = [0u8; relay_core::MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
    let message = record.signing_message(&mut buf).map(hex::encode).ok();
    json!({
        "signed": signer.as_str(),
        "signature": record.signature.map(|s| hex::encode(s.0)),
        "registered_key": entry.map(|e| hex::encode(e.key)),
        "registered_from": entry.map(|e| e.from.0),
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct writer gives byte for byte what building a `serde_json::Value` gave
    /// (the form `/readings` had before, and that clients read).
    #[test]
    fn readings_json_is_what_a_json_value_gives() {
        let v = crate::chain::vectors::vectors().expect("vectors");
        let mut found: Vec<Found> = Vec::new();
        for (i, b) in [&v.blocks[1], &v.blocks[2], &v.gapped]
            .into_iter()
            .enumerate()
        {
            for bytes in &b.records {
                let r = relay_core::MinuteRecord::decode(bytes).expect("record");
                let signer = crate::relay_sig::Signer::of(&r, &crate::chain::Registry::default());
                found.push((i as u32 + 1, b.id().to_hex(), r, i == 1, signer));
            }
        }
        let list: Vec<_> = found
            .iter()
            .map(|(h, id, r, disputed, signer)| {
                json!({
                    "signed": signer.as_str(),
                    "height": h,
                    "block_id": id,
                    "disputed": disputed,
                    "relay": r.relay.0,
                    "minute": r.minute.0,
                    "minute_utc": r.minute.to_string(),
                    "faults": r.faults,
                    "samples": crate::render::samples_json(r),
                    "seconds": r.sample_seconds().collect::<Vec<u16>>(),
                })
            })
            .collect();
        let old =
            serde_json::to_string(&json!({ "relay": 7, "from": 1, "to": 9, "readings": list }))
                .expect("json");
        let mut new = Vec::new();
        write_readings(&mut new, 7, 1, 9, &found);
        assert!(found.len() >= 5);
        assert_eq!(String::from_utf8_lossy(&new), old);
        // The streamed answer (more than a week) is the same text, written in parts.
        let mut parts = readings_head(1).into_bytes();
        for (i, f) in found.iter().enumerate() {
            if i > 0 {
                parts.push(b',');
            }
            write_reading(&mut parts, f);
        }
        parts.extend_from_slice(readings_tail(7, 9).as_bytes());
        assert_eq!(parts, new);
    }
}
