//! The relay-signature rule (`docs/book/src/FORMAT.md` section 12): every way a miner could put a
//! reading on the chain that its relay did not sign is refused, one block at a time (gossip)
//! and in batches (sync), each with its named error.

use std::sync::atomic::AtomicBool;

use ed25519_dalek::{Signer, SigningKey};
use gridledger_chain::registry::{Entry, Registry};
use gridledger_chain::validate::{self, ValidationError};
use gridledger_chain::{assemble, Block, BlockTree, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, RecordFlags, RecordSignature, RelayId};

const BASE: u32 = 29_943_000;
/// Far ahead of every minute a u32 can name: a flipped minute bit never makes a block too
/// far in the future, so every verdict here is about the records.
const NOW_MS: u64 = 1 << 50;

fn relay_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// Relay 1 signs with key 1 until minute BASE + 10, then with key 2; relays 2 and 3 are
/// not registered.
fn network() -> Network {
    let mut net = Network::new("relay-sigs", 4);
    net.registry = Registry::new([
        Entry {
            relay: RelayId(1),
            from: Minute(0),
            key: relay_key(1).verifying_key().to_bytes(),
        },
        Entry {
            relay: RelayId(1),
            from: Minute(BASE + 10),
            key: relay_key(2).verifying_key().to_bytes(),
        },
    ])
    .expect("valid keys");
    net
}

fn record(relay: u32, minute: u32) -> MinuteRecord {
    SignalModel::new(3, Profile::Realistic).record(
        RelayId(relay),
        Minute(BASE + minute),
        6,
        RecordFlags::CLOCK_SET,
    )
}

fn signed(mut r: MinuteRecord, key: &SigningKey) -> MinuteRecord {
    let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
    let msg = r.signing_message(&mut buf).expect("fits");
    r.signature = Some(RecordSignature(key.sign(msg).to_bytes()));
    r
}

fn block_on(net: &Network, parent: &Block, records: &[MinuteRecord]) -> Block {
    let t = records
        .iter()
        .map(|r| validate::minute_closes_ms(r.minute))
        .max()
        .unwrap_or(0)
        .max(parent.header.time_ms);
    assemble(
        &parent.header,
        records,
        &SigningKey::from_bytes(&[99; 32]),
        t,
        net.bits,
        &AtomicBool::new(false),
    )
    .expect("mined")
}

/// The error one block on genesis gets, alone (gossip) and in a batch (sync), which must
/// agree.
fn verdict(net: &Network, records: &[MinuteRecord]) -> Result<(), ValidationError> {
    let genesis = net.genesis();
    let block = block_on(net, &genesis, records);
    let tree = BlockTree::new(&genesis.header);
    let alone = validate::check(block.clone(), net, &tree, NOW_MS).map(|_| ());
    let mut tree = BlockTree::new(&genesis.header);
    // Two good blocks before it, so that the bad one is inside a batch with others.
    let good1 = block_on(net, &genesis, &[record(3, 50)]);
    let good2 = block_on(net, &good1, &[signed(record(1, 51), &relay_key(2))]);
    let bad = block_on(net, &good2, records);
    let synced = validate::verify_run(vec![good1, good2, bad], net, &mut tree, NOW_MS, 2)
        .map(|_| ())
        .map_err(|(i, e)| {
            assert_eq!(i, 2, "the batch names the third block, not {i}: {e}");
            e
        });
    assert_eq!(alone, synced, "gossip and sync disagree");
    alone
}

#[test]
fn a_signed_record_and_an_unregistered_relays_record_pass() {
    let net = network();
    assert_eq!(
        verdict(&net, &[signed(record(1, 1), &relay_key(1))]),
        Ok(())
    );
    assert_eq!(verdict(&net, &[record(2, 1)]), Ok(()));
    // A signature on an unregistered relay's record is carried, not judged.
    assert_eq!(
        verdict(&net, &[signed(record(2, 1), &relay_key(7))]),
        Ok(())
    );
}

#[test]
fn an_invented_record_of_a_registered_relay_is_refused() {
    let net = network();
    // Unsigned: the miner has no signature to show.
    assert_eq!(
        verdict(&net, &[record(2, 1), record(1, 1)]),
        Err(ValidationError::UnsignedRecord {
            index: 1,
            relay: RelayId(1),
            minute: Minute(BASE + 1)
        })
    );
    // Signed by the miner's own key, or any key but the relay's.
    assert_eq!(
        verdict(&net, &[signed(record(1, 1), &relay_key(7))]),
        Err(ValidationError::BadRecordSignature {
            index: 0,
            relay: RelayId(1),
            minute: Minute(BASE + 1)
        })
    );
    // A genuine signature of another minute's record, copied onto this one.
    let mut copied = record(1, 2);
    copied.signature = signed(record(1, 1), &relay_key(1)).signature;
    assert!(matches!(
        verdict(&net, &[copied]),
        Err(ValidationError::BadRecordSignature { index: 0, .. })
    ));
}

#[test]
fn every_flipped_bit_of_a_signed_record_is_refused() {
    let net = network();
    let genuine = signed(record(1, 3), &relay_key(1));
    let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
    let bytes = genuine.encode(&mut buf).expect("encodes").to_vec();
    let mut refused = 0;
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        // Bytes that are no longer a record fail to decode, as before; those that are get
        // a record the relay did not sign.
        let Ok(changed) = MinuteRecord::decode(&b) else {
            refused += 1;
            continue;
        };
        let flags_ok = changed.flags.contains(RecordFlags::CLOCK_SET);
        let result = verdict(&net, std::slice::from_ref(&changed));
        match result {
            Err(ValidationError::BadRecordSignature { .. }) => refused += 1,
            // A flip in the relay id or the minute moves the record out of relay 1's
            // registration (relay 2 is unregistered) or into the far future: refused or
            // unregistered, never passing as relay 1's.
            Err(_) => refused += 1,
            Ok(()) => {
                assert!(
                    net.registry.key_at(changed.relay, changed.minute).is_none() && flags_ok,
                    "bit {bit}: a changed record of a registered relay passed"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, bytes.len() * 8);
}

#[test]
fn a_replaced_key_keeps_old_records_and_signs_new_ones() {
    let net = network();
    // Minute BASE + 9 is key 1's, BASE + 10 key 2's.
    assert_eq!(
        verdict(&net, &[signed(record(1, 9), &relay_key(1))]),
        Ok(())
    );
    assert_eq!(
        verdict(&net, &[signed(record(1, 10), &relay_key(2))]),
        Ok(())
    );
    assert!(matches!(
        verdict(&net, &[signed(record(1, 10), &relay_key(1))]),
        Err(ValidationError::BadRecordSignature { .. })
    ));
    assert!(matches!(
        verdict(&net, &[signed(record(1, 9), &relay_key(2))]),
        Err(ValidationError::BadRecordSignature { .. })
    ));
}

#[test]
fn a_relay_registered_from_a_minute_leaves_earlier_history_valid() {
    let mut net = network();
    net.registry = Registry::new([Entry {
        relay: RelayId(2),
        from: Minute(BASE + 20),
        key: relay_key(5).verifying_key().to_bytes(),
    }])
    .expect("valid");
    assert_eq!(verdict(&net, &[record(2, 19)]), Ok(()));
    assert!(matches!(
        verdict(&net, &[record(2, 20)]),
        Err(ValidationError::UnsignedRecord { .. })
    ));
}
