//! The test vectors of `docs/book/src/FORMAT.md`: a fixed network, key, clock and records, and the
//! genesis block and two mined blocks they give. Deterministic: ed25519 signatures are
//! (RFC 8032), and the nonce search starts at 0. `cargo run -p node --example
//! format-vectors` prints them; `node/tests/format.rs` checks the document against them.

use std::sync::atomic::AtomicBool;

use ed25519_dalek::SigningKey;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

use super::{assemble, Block, Network};

/// The vectors' inputs and outputs.
#[derive(Debug)]
pub struct Vectors {
    /// Network `gridledger-vectors`, difficulty 8.
    pub network: Network,
    /// The miner key, from the secret `07` × 32.
    pub key: SigningKey,
    /// Genesis, block 1 (relay 1, 2026-11-24T17:50Z), block 2 (relays 1–3, the next minute).
    pub blocks: [Block; 3],
    /// Rule 9 at its boundary: block 1's record in a block on genesis stamped exactly when
    /// its minute closes (valid), and one stamped a millisecond earlier (invalid: a record
    /// from the future).
    pub boundary: [Block; 2],
    /// A record with missing samples: relay 4's record for block 1's minute with slots 1
    /// and 4 not answered (flags `0x1201`), in a block on genesis stamped as block 1.
    pub gapped: Block,
    /// The relay key of the signed vectors, from the secret `05` × 32: the relay registry
    /// `1 <its public key>` registers relay 1 from minute 0.
    pub relay_key: SigningKey,
    /// Block 1's record signed by the relay key, in a block on genesis stamped as block 1:
    /// valid with the registry (and without it). Block 1 itself, unsigned, is invalid with
    /// the registry.
    pub signed: Block,
}

/// Builds the vectors; `None` only if mining were cancelled, which it is not.
#[must_use]
pub fn vectors() -> Option<Vectors> {
    let network = Network::new("gridledger-vectors", 8);
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let model = SignalModel::new(1, Profile::Realistic);
    let minute = Minute::containing(1_795_542_600).0;
    let r = |relay: u32, m: u32| {
        model.record(
            RelayId(relay),
            Minute(minute + m),
            6,
            RecordFlags::CLOCK_SET,
        )
    };
    let cancel = AtomicBool::new(false);
    let genesis = network.genesis();
    let b1 = assemble(
        &genesis.header,
        &[r(1, 0)],
        &key,
        1_795_542_665_000,
        network.bits,
        &cancel,
    )?;
    let b2 = assemble(
        &b1.header,
        &[r(1, 1), r(2, 1), r(3, 1)],
        &key,
        1_795_542_725_000,
        network.bits,
        &cancel,
    )?;
    let closes = super::validate::minute_closes_ms(Minute(minute));
    let at = |time_ms: u64| {
        assemble(
            &genesis.header,
            &[r(1, 0)],
            &key,
            time_ms,
            network.bits,
            &cancel,
        )
    };
    let boundary = [at(closes)?, at(closes - 1)?];
    let mut gapped_record = r(4, 0);
    let mut slot = 0;
    gapped_record.samples.retain(|_| {
        slot += 1;
        slot != 2 && slot != 5
    });
    gapped_record.flags = gapped_record.flags.with_missing(0b01_0010);
    let gapped = assemble(
        &genesis.header,
        &[gapped_record],
        &key,
        1_795_542_665_000,
        network.bits,
        &cancel,
    )?;
    let relay_key = SigningKey::from_bytes(&[5u8; 32]);
    let mut signed_record = r(1, 0);
    let mut buf = [0u8; relay_core::MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
    let message = signed_record.signing_message(&mut buf).ok()?;
    signed_record.signature = Some(relay_core::RecordSignature(
        ed25519_dalek::Signer::sign(&relay_key, message).to_bytes(),
    ));
    let signed = assemble(
        &genesis.header,
        &[signed_record],
        &key,
        1_795_542_665_000,
        network.bits,
        &cancel,
    )?;
    Some(Vectors {
        network,
        key,
        blocks: [genesis, b1, b2],
        boundary,
        gapped,
        relay_key,
        signed,
    })
}
