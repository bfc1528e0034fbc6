//! Builders shared by the node's tests: keys, records and blocks on demand.

#![allow(dead_code)]

use std::sync::atomic::AtomicBool;

use ed25519_dalek::SigningKey;
use gridledger::chain::{assemble, Block, Header, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, RecordFlags, RelayId};

/// A fixed key, so that test runs are repeatable.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// The record of `relay` for `minute` (realistic profile, seed 1).
pub fn record(relay: u32, minute: u32) -> MinuteRecord {
    SignalModel::new(1, Profile::Realistic).record(
        RelayId(relay),
        Minute(29_925_000 + minute),
        6,
        RecordFlags::CLOCK_SET,
    )
}

/// Mines a block of `records` on `parent`, one second after it.
pub fn block_on(parent: &Header, records: &[MinuteRecord], net: &Network, key_n: u8) -> Block {
    assemble(
        parent,
        records,
        &key(key_n),
        parent.time_ms + 1000,
        net.bits,
        &AtomicBool::new(false),
    )
    .expect("mined")
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
