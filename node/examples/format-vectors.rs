//! Prints the test vectors of docs/FORMAT.md: the genesis block and two mined blocks of a
//! fixed network, key, clock and records. Deterministic: ed25519 signatures are (RFC 8032)
//! and the nonce search starts at 0.
//!
//! `cargo run -p node --example format-vectors`

use std::sync::atomic::AtomicBool;

use ed25519_dalek::SigningKey;
use gridledger::chain::{assemble, Block, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

/// The vectors' network, key and blocks.
fn vectors() -> (Network, SigningKey, Vec<Block>) {
    let net = Network::new("gridledger-vectors", 8);
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let model = SignalModel::new(1, Profile::Realistic);
    let genesis = net.genesis();
    let minute = Minute::containing(1_795_542_600);
    let r = |relay: u32, m: u32| {
        model.record(
            RelayId(relay),
            Minute(minute.0 + m),
            6,
            RecordFlags::CLOCK_SET,
        )
    };
    let cancel = AtomicBool::new(false);
    let b1 = assemble(
        &genesis.header,
        &[r(1, 0)],
        &key,
        1_795_542_665_000,
        net.bits,
        &cancel,
    )
    .expect("mined");
    let b2 = assemble(
        &b1.header,
        &[r(1, 1), r(2, 1), r(3, 1)],
        &key,
        1_795_542_725_000,
        net.bits,
        &cancel,
    )
    .expect("mined");
    (net, key, vec![genesis, b1, b2])
}

fn main() {
    let (net, key, blocks) = vectors();
    println!("network name: {}", net.name);
    println!("difficulty bits: {}", net.bits);
    println!("miner secret key: {}", hex::encode(key.to_bytes()));
    println!(
        "miner public key: {}",
        hex::encode(key.verifying_key().to_bytes())
    );
    for (name, b) in ["genesis", "block 1", "block 2"].iter().zip(&blocks) {
        println!("{name} id: {}", b.id());
        println!("{name} bytes: {}", hex::encode(b.to_bytes()));
    }
}
