//! Building a new block on a parent: encode the records, root them, mine, sign.

use std::sync::atomic::AtomicBool;

use ed25519_dalek::SigningKey;
use relay_core::MinuteRecord;

use super::block::{Block, Header, VERSION};
use super::{merkle, pow, validate};

/// Mines and signs a block of `records` (each with its relay's signature, if it has one)
/// on `parent`. Returns `None` if `cancel` is set
/// before a nonce is found, or if a record does not encode (never for a valid record).
#[must_use]
pub fn assemble(
    parent: &Header,
    records: &[MinuteRecord],
    key: &SigningKey,
    time_ms: u64,
    bits: u8,
    cancel: &AtomicBool,
) -> Option<Block> {
    let mut encoded = Vec::with_capacity(records.len());
    for r in records {
        let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        encoded.push(r.encode(&mut buf).ok()?.to_vec());
    }
    let mut header = Header {
        version: VERSION,
        height: parent.height.checked_add(1)?,
        prev: parent.id(),
        merkle_root: merkle::root(&encoded),
        time_ms,
        bits,
        miner: key.verifying_key().to_bytes(),
        nonce: 0,
    };
    let id = pow::mine(&mut header, cancel)?;
    Some(Block {
        header,
        signature: validate::sign(key, &id),
        records: encoded,
    })
}
