//! The ledger's rules, fork choice and persistence, on real data dirs.

mod common;

use common::{block_on, now_ms, record};
use gridledger::chain::block::HEADER_LEN;
use gridledger::chain::{Block, BlockTree, Change, Header, Network, ValidationError};
use gridledger::ledger::{AddError, Incoming, Ledger};
use gridledger::store::StoreError;

fn net() -> Network {
    Network::new("test", 4)
}

/// A data dir in `dir` holding `n` blocks, block `m` holding `records(m)`; the blocks.
fn stored_chain(
    dir: &std::path::Path,
    n: u32,
    records: impl Fn(u32) -> Vec<relay_core::MinuteRecord>,
) -> Vec<Block> {
    let net = net();
    let mut ledger = Ledger::open(dir, net.clone()).expect("opens");
    let mut parent = net.genesis().header;
    let mut blocks = Vec::new();
    for m in 0..n {
        let b = block_on(&parent, &records(m), &net, 1);
        ledger.add(b.clone(), now_ms()).expect("valid");
        parent = b.header;
        blocks.push(b);
    }
    blocks
}

/// Flips one byte inside a block's stored signature, in every stored copy, and reseals the
/// block file's checksums: the block reads back with a bad signature, which only the
/// signature check finds (a plain flip is caught by the checksum first).
fn flip_stored_signature(dir: &std::path::Path, signature: &[u8; 64]) {
    let n = common::flip_stored(dir, signature, 10, 0x01);
    assert!(n > 0, "signature is in the files");
    common::reseal_block_file(dir);
}

#[test]
fn a_chain_survives_reopen_and_refuses_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net();
    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
    let mut parent = net.genesis().header;
    for m in 0..5 {
        let b = block_on(&parent, &[record(1, m), record(2, m)], &net, 1);
        let added = ledger.add(b.clone(), now_ms()).expect("valid");
        assert_eq!(added.change, Change::Extended);
        assert_eq!(added.height, m + 1);
        parent = b.header;
    }
    let again = block_on(&parent, &[record(1, 3)], &net, 1);
    assert!(matches!(
        ledger.add(again, now_ms()),
        Err(AddError::Invalid(ValidationError::DuplicateRecord {
            index: 0,
            ..
        }))
    ));
    let summary = ledger.summary();
    assert_eq!((summary.height, summary.records), (5, 10));
    drop(ledger);
    let reopened = Ledger::open(dir.path(), net.clone()).expect("reopens and verifies");
    assert_eq!(reopened.summary(), summary);
    // One process at a time: a second open of a data dir in use is refused clearly.
    assert!(matches!(
        Ledger::open_existing(dir.path()),
        Err(StoreError::InUse(_))
    ));
    drop(reopened);
    let existing = Ledger::open_existing(dir.path()).expect("opens by its own stamp");
    assert_eq!(existing.summary(), summary);
    drop(existing);
    // Another network's node refuses the data dir.
    let err = Ledger::open(dir.path(), Network::new("other", 4)).expect_err("refused");
    assert!(matches!(err, StoreError::NetworkMismatch { .. }));
    assert_eq!(
        err.to_string(),
        "data dir is for network 'test' (4 bits), not 'other' (4 bits)"
    );
}

#[test]
fn deep_reorg_keeps_every_record_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net();
    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
    let g = net.genesis().header;
    // Main: A1 (r0, r1), A2 (r2, shared), A3 (r3).
    let shared = record(9, 9);
    let a1 = block_on(&g, &[record(1, 0), record(1, 1)], &net, 1);
    let a2 = block_on(&a1.header, &[record(1, 2), shared.clone()], &net, 1);
    let a3 = block_on(&a2.header, &[record(1, 3)], &net, 1);
    // Branch: B1 (shared), B2 (r1), B3 (b0), B4 (b1) — one block more.
    let b1 = block_on(&g, std::slice::from_ref(&shared), &net, 2);
    let b2 = block_on(&b1.header, &[record(1, 1)], &net, 2);
    let b3 = block_on(&b2.header, &[record(2, 0)], &net, 2);
    let b4 = block_on(&b3.header, &[record(2, 1)], &net, 2);
    for b in [&a1, &a2, &a3] {
        ledger.add(b.clone(), now_ms()).expect("main");
    }
    for b in [&b1, &b2, &b3] {
        assert_eq!(
            ledger.add(b.clone(), now_ms()).expect("side").change,
            Change::SideBranch
        );
    }
    let added = ledger.add(b4.clone(), now_ms()).expect("reorg");
    assert_eq!(
        added.change,
        Change::Reorg {
            abandoned: vec![a1.id(), a2.id(), a3.id()],
            adopted: vec![b1.id(), b2.id(), b3.id(), b4.id()],
        }
    );
    // Returned: only what the new chain lacks (r0, r2, r3), not r1 nor the shared one.
    let mut returned: Vec<_> = added
        .returned
        .iter()
        .map(|r| (r.relay.0, r.minute.0))
        .collect();
    returned.sort_unstable();
    let want = |r: &relay_core::MinuteRecord| (r.relay.0, r.minute.0);
    assert_eq!(
        returned,
        vec![
            want(&record(1, 0)),
            want(&record(1, 2)),
            want(&record(1, 3))
        ]
    );
    // The shared record is on the main chain once, at B1's height.
    let key = gridledger::chain::RecordKey {
        relay: shared.relay,
        minute: shared.minute,
    };
    assert_eq!(ledger.tree().record_height(&key), Some(1));
    // The main chain B1..B4 holds four records, whatever A held before the reorg.
    assert_eq!(ledger.summary().records, 4);
    // The same holds after a restart.
    let summary = ledger.summary();
    drop(ledger);
    let reopened = Ledger::open(dir.path(), net).expect("reopens");
    assert_eq!(reopened.summary(), summary);
    assert_eq!(reopened.tree().tip(), b4.id());
    assert_eq!(reopened.tree().record_height(&key), Some(1));
    // Every block reads back by its id, those the reorg left behind too: a main-chain
    // row carries its block's location, and a block leaving the main chain takes its
    // location to `locs`.
    for b in [&a1, &a2, &a3, &b1, &b2, &b3, &b4] {
        let got = reopened.block(&b.id()).expect("reads").expect("stored");
        assert_eq!(got.id(), b.id());
    }
    drop(reopened);
    let (lens, locs) = main_and_locs(dir.path());
    assert_eq!(lens, vec![44; 4], "every main row carries its location");
    for b in [&a1, &a2, &a3] {
        assert!(locs.contains(&b.id().0), "left the main chain: in locs");
    }
    assert!(!locs.contains(&b4.id().0), "never off the main chain");
}

/// A data dir from before the main chain's rows carried their blocks' locations (every
/// location in `locs`): read-only opens read it as it is; the first writable open writes
/// each main-chain block's location into its row and takes it out of `locs`, which keeps
/// only the blocks off the main chain. Every block reads back by id and by height.
#[test]
fn a_data_dir_with_every_location_in_locs_is_read_and_moved_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net();
    let mut main = stored_chain(dir.path(), 5, |m| vec![record(1, m), record(2, m)]);
    // A branch off block 3 that stays on the side.
    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
    let side = block_on(&main[2].header, &[record(3, 1)], &net, 2);
    assert_eq!(
        ledger.add(side.clone(), now_ms()).expect("side").change,
        Change::SideBranch
    );
    let before = ledger.summary();
    drop(ledger);
    make_pre_ids_format(dir.path());
    assert_eq!(main_and_locs(dir.path()).0, vec![32; 5]);

    let old = Ledger::open_read_only(dir.path()).expect("an old dir verifies");
    assert_eq!(old.summary(), before);
    for b in main.iter().chain([&side]) {
        assert_eq!(
            old.block(&b.id()).expect("reads").expect("stored").id(),
            b.id()
        );
    }
    drop(old);
    assert_eq!(
        main_and_locs(dir.path()).0,
        vec![32; 5],
        "read-only: untouched"
    );

    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens and moves");
    assert_eq!(ledger.summary(), before);
    let next = block_on(&main[4].header, &[record(1, 99)], &net, 1);
    ledger
        .add(next.clone(), now_ms())
        .expect("a new block after");
    main.push(next);
    drop(ledger);
    let (lens, locs) = main_and_locs(dir.path());
    assert_eq!(lens, vec![44; 6]);
    assert_eq!(locs, vec![side.id().0], "only the side block");
    let after = Ledger::open_read_only(dir.path()).expect("verifies");
    assert_eq!(after.summary().height, 6);
    for (h, b) in main.iter().enumerate() {
        assert_eq!(
            after.block(&b.id()).expect("reads").expect("stored").id(),
            b.id()
        );
        let at = after
            .block_at(h as u32 + 1)
            .expect("reads")
            .expect("exists");
        assert_eq!(at.id(), b.id(), "height {}", h + 1);
    }
    assert_eq!(
        after
            .block(&side.id())
            .expect("reads")
            .expect("stored")
            .id(),
        side.id()
    );
}

#[test]
fn a_longer_chain_with_less_work_loses() {
    // Fixed-difficulty networks never mix bits, so this is fork choice alone, on the tree.
    let genesis = net().genesis().header;
    let mut tree = BlockTree::new(&genesis);
    let child = |parent: &Header, bits: u8, nonce: u64| Header {
        height: parent.height + 1,
        prev: parent.id(),
        bits,
        nonce,
        time_ms: parent.time_ms + 1,
        ..*parent
    };
    let heavy = child(&genesis, 10, 1);
    assert_eq!(tree.insert(&heavy, vec![]), Change::Extended);
    let mut light = child(&genesis, 2, 2);
    for n in 0..5 {
        assert_eq!(
            tree.insert(&light, vec![]),
            Change::SideBranch,
            "light block {n}"
        );
        light = child(&light, 2, 3 + n);
    }
    assert_eq!(tree.tip(), heavy.id());
    assert_eq!(tree.tip_work(), 1024);
}

/// Every single-bit flip anywhere in a block is refused, with the error of the rule that
/// the flipped field breaks.
#[test]
fn every_flipped_bit_is_refused_with_its_own_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net();
    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
    let g = net.genesis().header;
    let b1 = block_on(&g, &[record(1, 0)], &net, 1);
    ledger.add(b1.clone(), now_ms()).expect("b1");
    let b2 = block_on(&b1.header, &[record(1, 1), record(2, 1)], &net, 1);
    let bytes = b2.to_bytes();
    let now = now_ms();
    let mut seen = std::collections::HashSet::new();
    for bit in 0..bytes.len() * 8 {
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let result = Block::from_bytes(&bad, net.max_block_bytes, net.max_records)
            .map_err(ValidationError::from)
            .and_then(|b| gridledger::chain::validate::check(b, &net, ledger.tree(), now));
        let err = match result {
            Ok(_) => panic!("bit {bit} flipped and the block still validates"),
            Err(e) => e,
        };
        let byte = bit / 8;
        use ValidationError as E;
        let ok = match byte {
            0..=1 => matches!(err, E::WrongVersion { .. }),
            2..=5 => matches!(err, E::WrongHeight { .. }),
            6..=37 => matches!(err, E::UnknownParent(_)),
            38..=69 => matches!(err, E::BadMerkleRoot | E::InsufficientWork { .. }),
            70..=77 => matches!(
                err,
                E::TimeTooOld { .. }
                    | E::TimeInFuture { .. }
                    | E::RecordFromFuture { .. }
                    | E::InsufficientWork { .. }
                    | E::BadSignature
            ),
            78 => matches!(err, E::WrongDifficulty { .. }),
            79..=118 => matches!(
                err,
                E::InsufficientWork { .. } | E::BadSignature | E::BadMinerKey
            ),
            119..=182 => matches!(err, E::BadSignature),
            _ => matches!(err, E::Malformed(_) | E::BadMerkleRoot),
        };
        assert!(ok, "bit {bit} (byte {byte}) gave {err:?}");
        seen.insert(std::mem::discriminant(&err));
    }
    assert!(bytes.len() > HEADER_LEN + 64);
    assert!(seen.len() >= 9, "only {} distinct errors", seen.len());
    // And the untouched block is fine.
    ledger.add(b2, now).expect("valid");
}

#[test]
fn content_rules_each_have_their_error() {
    use gridledger::chain::validate::{check, sign};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = Network::new("rules", 0);
    let ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
    let g = net.genesis().header;
    let now = now_ms();
    let resign = |mut b: Block| {
        b.header.merkle_root = gridledger::chain::merkle::root(&b.records);
        b.signature = sign(&common::key(1), &b.id());
        b
    };
    let good = block_on(&g, &[record(1, 0)], &net, 1);
    assert!(check(good.clone(), &net, ledger.tree(), now).is_ok());

    let mut empty = good.clone();
    empty.records.clear();
    assert_eq!(
        check(resign(empty), &net, ledger.tree(), now).err(),
        Some(ValidationError::EmptyBody)
    );

    let mut dup = good.clone();
    dup.records.push(dup.records[0].clone());
    assert!(matches!(
        check(resign(dup), &net, ledger.tree(), now),
        Err(ValidationError::DuplicateRecord { index: 1, .. })
    ));

    let mut junk = good.clone();
    junk.records[0] = vec![1, 2, 3];
    assert!(matches!(
        check(resign(junk), &net, ledger.tree(), now),
        Err(ValidationError::RecordDecode { index: 0, .. })
    ));

    let mut unset = record(1, 0);
    unset.flags = relay_core::RecordFlags(0);
    let unset = block_on(&g, &[unset], &net, 1);
    assert_eq!(
        check(unset, &net, ledger.tree(), now).err(),
        Some(ValidationError::ClockNotSet { index: 0 })
    );

    // Rule 9: a record's minute must have closed by the block's time. Exactly at the close
    // is valid; a millisecond earlier, or a whole minute ahead, is a record from the future.
    let r = record(1, 0);
    let closes = gridledger::chain::validate::minute_closes_ms(r.minute);
    let at = |time_ms: u64| {
        let mut b = good.clone();
        b.header.time_ms = time_ms;
        check(resign(b), &net, ledger.tree(), now)
    };
    assert!(at(closes).is_ok(), "{:?}", at(closes).err());
    for early in [closes - 1, closes - 60_000] {
        assert_eq!(
            at(early).err(),
            Some(ValidationError::RecordFromFuture {
                index: 0,
                relay: r.relay,
                minute: r.minute,
                closes_ms: closes,
                time_ms: early
            })
        );
    }

    let mut future = good.clone();
    future.header.time_ms = now + 3 * 60 * 1000;
    assert!(matches!(
        check(resign(future), &net, ledger.tree(), now),
        Err(ValidationError::TimeInFuture { .. })
    ));

    net.allow_list = Some(vec![common::key(2).verifying_key().to_bytes()]);
    assert!(matches!(
        check(good.clone(), &net, ledger.tree(), now),
        Err(ValidationError::MinerNotAllowed(_))
    ));

    let hard = Network::new("rules", 20);
    assert!(matches!(
        check(good, &hard, ledger.tree(), now),
        Err(ValidationError::WrongDifficulty {
            got: 0,
            expected: 20
        })
    ));
}

#[test]
fn a_tampered_block_in_the_data_dir_is_named_by_height() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = stored_chain(dir.path(), 4, |m| vec![record(1, m)]);
    // Flip one byte inside the stored signature of the block at height 3.
    flip_stored_signature(dir.path(), &blocks[2].signature);
    // The full check (`gridledger verify`, `export`) names it; a node's own start-up does
    // not check signatures under the verified mark (see the mark's tests below).
    match Ledger::open_read_only(dir.path()) {
        Err(StoreError::Corrupt { height: 3, .. }) => {}
        other => panic!("expected corruption at height 3, got {other:?}"),
    }
    assert!(Ledger::open_existing(dir.path()).is_ok());
    // A byte flipped without resealing: the block file's checksum finds it at start-up
    // too, under the mark, and names the height.
    let n = common::flip_stored(dir.path(), &blocks[1].signature, 3, 0x04);
    assert!(n > 0);
    match Ledger::open_existing(dir.path()) {
        Err(StoreError::Corrupt { height: 2, reason }) => {
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected a checksum failure at height 2, got {other:?}"),
    }
}

/// Writes the verified mark of the data dir in `dir` by hand: `None` deletes it.
fn set_mark(dir: &std::path::Path, mark: Option<(u32, [u8; 32])>) {
    use redb::TableDefinition;
    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("redb opens");
    let txn = db.begin_write().expect("txn");
    {
        let mut t = txn.open_table(META).expect("table");
        match mark {
            Some((h, id)) => {
                let mut v = h.to_be_bytes().to_vec();
                v.extend_from_slice(&id);
                t.insert("verified", v.as_slice()).expect("insert");
            }
            None => {
                t.remove("verified").expect("remove");
            }
        }
    }
    txn.commit().expect("commit");
}

/// Every commit writes the verified mark (the tip it leaves), reorgs included; the mark
/// covers exactly the blocks verified: a signature flipped below it is not checked again
/// at a node's start-up, one above it is, and so is every block when the mark is missing
/// or names a block the stored main chain does not hold there. A changed record under the
/// mark is still found at start-up (its Merkle root is recomputed).
#[test]
fn the_verified_mark_covers_exactly_the_verified_blocks() {
    use gridledger::store::Store;
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = stored_chain(dir.path(), 5, |m| vec![record(1, m)]);
    let mark = Store::open_read_only(dir.path())
        .expect("store")
        .verified_mark()
        .expect("read");
    assert_eq!(mark, Some((5, blocks[4].id())), "the mark is the tip");

    // A reorg moves it to the new tip.
    {
        let net = net();
        let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
        let mut parent = blocks[2].header;
        for m in 10..13 {
            let b = block_on(&parent, &[record(3, m)], &net, 2);
            ledger.add(b.clone(), now_ms()).expect("valid");
            parent = b.header;
        }
        assert_eq!(ledger.tree().height(), 6);
        let tip = ledger.tree().tip();
        drop(ledger);
        let mark = Store::open_read_only(dir.path())
            .expect("store")
            .verified_mark();
        assert_eq!(mark.expect("read"), Some((6, tip)));
    }

    // Below and above: the mark at height 2, signatures flipped at heights 1 and 4.
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = stored_chain(dir.path(), 5, |m| vec![record(1, m)]);
    set_mark(dir.path(), Some((2, blocks[1].id().0)));
    flip_stored_signature(dir.path(), &blocks[0].signature);
    assert!(
        Ledger::open_existing(dir.path()).is_ok(),
        "height 1 is under the mark"
    );
    flip_stored_signature(dir.path(), &blocks[3].signature);
    match Ledger::open_existing(dir.path()) {
        Err(StoreError::Corrupt { height: 4, .. }) => {}
        other => panic!("expected corruption at height 4 (above the mark), got {other:?}"),
    }
    // No mark, or a mark naming another block: everything is checked again. (The mark is
    // written first: redb copies pages on write, and a flip must hit the live copy.)
    for mark in [Some((5, [7; 32])), None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocks = stored_chain(dir.path(), 5, |m| vec![record(1, m)]);
        set_mark(dir.path(), mark);
        flip_stored_signature(dir.path(), &blocks[0].signature);
        match Ledger::open_existing(dir.path()) {
            Err(StoreError::Corrupt { height: 1, .. }) => {}
            other => panic!("mark {mark:?}: expected corruption at height 1, got {other:?}"),
        }
    }
    // Under the mark, a changed record is still found.
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = stored_chain(dir.path(), 5, |m| vec![record(1, m)]);
    let rec = &blocks[1].records[0];
    let n = common::flip_stored(dir.path(), rec, rec.len() - 1, 0x01);
    assert!(n > 0, "record in the files");
    match Ledger::open_existing(dir.path()) {
        Err(StoreError::Corrupt { height: 2, .. }) => {}
        other => panic!("expected corruption at height 2, got {other:?}"),
    }
}

#[test]
fn inclusion_proofs_check_against_the_header() {
    use gridledger::chain::merkle::InclusionProof;
    let net = net();
    let g = net.genesis().header;
    let records: Vec<_> = (1..=5).map(|relay| record(relay, 0)).collect();
    let b = block_on(&g, &records, &net, 1);
    for i in 0..b.records.len() {
        let proof = InclusionProof::new(&b.records, i).expect("in range");
        assert!(proof.verify(&b.records[i], &b.header));
        let other = (i + 1) % b.records.len();
        assert!(!proof.verify(&b.records[other], &b.header));
        let mut forged = b.header;
        forged.merkle_root[0] ^= 1;
        assert!(!proof.verify(&b.records[i], &forged));
    }
}

/// Big blocks are verified at open in several batches (bounded by bytes, not only by
/// count): the chain still opens whole, and a tampered block in a later batch is still named
/// by its height.
#[test]
fn big_blocks_verify_across_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 48 blocks of 800 records: about 5 MB, more than one batch of 4 MiB.
    let blocks = stored_chain(dir.path(), 48, |m| {
        (0..800).map(|relay| record(relay + 1, m)).collect()
    });
    let total: usize = blocks.iter().map(|b| b.to_bytes().len()).sum();
    assert!(total > 4 << 20, "{total} bytes fit one batch");
    let ledger = Ledger::open_existing(dir.path()).expect("reopens");
    let s = ledger.summary();
    assert_eq!((s.height, s.records), (48, 48 * 800));
    drop(ledger);

    flip_stored_signature(dir.path(), &blocks[45].signature);
    match Ledger::open_read_only(dir.path()) {
        Err(StoreError::Corrupt { height: 46, .. }) => {}
        other => panic!("expected corruption at height 46, got {other:?}"),
    }
}

/// The record index on disk must say what the blocks say: a row moved to another height or
/// a row deleted is found at open, naming the height.
#[test]
fn a_tampered_record_index_is_found_at_open() {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    const RECORDS: TableDefinition<u64, u32> = TableDefinition::new("records");
    let dir = tempfile::tempdir().expect("tempdir");
    stored_chain(dir.path(), 4, |m| vec![record(1, m), record(2, m)]);
    let file = dir.path().join(gridledger::store::DB_FILE);
    let key = gridledger::chain::RecordKey {
        relay: record(2, 2).relay,
        minute: record(2, 2).minute,
    }
    .to_u64();
    let edit = |f: &dyn Fn(&mut redb::Table<u64, u32>)| {
        let db = redb::Database::open(&file).expect("redb opens");
        let txn = db.begin_write().expect("txn");
        {
            let mut t = txn.open_table(RECORDS).expect("table");
            f(&mut t);
        }
        txn.commit().expect("commit");
        db.begin_read()
            .expect("read")
            .open_table(RECORDS)
            .expect("table")
            .len()
            .expect("len")
    };
    let rows = edit(&|t| {
        t.insert(key, 1).expect("moved");
    });
    assert_eq!(rows, 8);
    // Named at the height of the block that holds the record (the row says 1).
    match Ledger::open_existing(dir.path()) {
        Err(StoreError::Corrupt { height: 3, reason }) => {
            assert!(reason.contains("disagrees"), "{reason}");
        }
        other => panic!("expected the moved row to be found, got {other:?}"),
    }
    let rows = edit(&|t| {
        t.remove(key).expect("removed");
    });
    assert_eq!(rows, 7);
    match Ledger::open_existing(dir.path()) {
        Err(StoreError::Corrupt { height: 3, reason }) => {
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected the missing row to be found, got {other:?}"),
    }
}

/// A main-chain row deleted from the data dir is named at open by its height.
#[test]
fn a_missing_main_chain_row_is_found_at_open() {
    use redb::TableDefinition;
    const MAIN: TableDefinition<u32, &[u8]> = TableDefinition::new("main");
    let dir = tempfile::tempdir().expect("tempdir");
    stored_chain(dir.path(), 5, |m| vec![record(1, m)]);
    {
        let db =
            redb::Database::open(dir.path().join(gridledger::store::DB_FILE)).expect("redb opens");
        let txn = db.begin_write().expect("txn");
        txn.open_table(MAIN)
            .expect("table")
            .remove(3)
            .expect("removed")
            .expect("row 3 was there");
        txn.commit().expect("commit");
    }
    match Ledger::open_existing(dir.path()) {
        Err(StoreError::Corrupt { height: 3, reason }) => {
            assert!(reason.contains("missing from the main chain"), "{reason}");
        }
        other => panic!("expected height 3 missing, got {other:?}"),
    }
}

/// Many blocks at once have their signatures checked in batches (one per thread and 1 024
/// blocks): a bad signature deep inside a batch is named by its position, every block
/// before it is in the tree and none after, with one thread or two.
#[test]
fn a_bad_signature_inside_a_batch_is_named() {
    let net = net();
    let mut parent = net.genesis().header;
    let mut blocks = Vec::new();
    for m in 0..2_600u32 {
        // Three miners, so a batch holds several keys.
        let b = block_on(&parent, &[record(1, m)], &net, (m % 3) as u8 + 1);
        parent = b.header;
        blocks.push(b);
    }
    let run = |blocks: Vec<Block>, threads: usize| {
        let mut tree = BlockTree::new(&net.genesis().header);
        let result =
            gridledger::chain::validate::verify_run(blocks, &net, &mut tree, now_ms(), threads);
        (result, tree.height())
    };
    let (good, height) = run(blocks.clone(), 2);
    assert_eq!((good, height), (Ok(2_600), 2_600));
    for (bad_at, threads) in [(2_100usize, 2usize), (2_100, 1), (5, 2), (2_599, 2)] {
        let mut bad = blocks.clone();
        bad[bad_at].signature[50] ^= 0x10;
        let (result, height) = run(bad, threads);
        assert_eq!(
            result,
            Err((bad_at, ValidationError::BadSignature)),
            "bad at {bad_at}, {threads} threads"
        );
        assert_eq!(height as usize, bad_at, "the blocks before it are kept");
    }
}

#[test]
fn a_batch_is_one_commit_and_stops_at_the_first_bad_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net();
    let g = net.genesis().header;
    let a1 = block_on(&g, &[record(1, 0)], &net, 1);
    let a2 = block_on(&a1.header, &[record(1, 1)], &net, 1);
    let mut bad = block_on(&a2.header, &[record(1, 2)], &net, 1);
    bad.signature[0] ^= 1;
    let a4 = block_on(&bad.header, &[record(1, 3)], &net, 1);
    {
        let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
        let results = ledger.add_batch(vec![a1.clone(), a1.clone(), a2.clone(), bad, a4], now_ms());
        assert_eq!(
            results.len(),
            4,
            "up to and including the first bad block: {results:?}"
        );
        assert!(matches!(&results[0], Ok(added) if added.change == Change::Extended));
        assert!(matches!(results[1], Err(AddError::Known(_))));
        assert!(matches!(&results[2], Ok(added) if added.height == 2));
        assert!(
            matches!(results[3], Err(AddError::Invalid(_))),
            "{:?}",
            results[3]
        );
        assert_eq!(ledger.tree().height(), 2);
    }
    // What the batch stored is durable.
    let ledger = Ledger::open(dir.path(), net).expect("reopens");
    assert_eq!(ledger.tree().height(), 2);
    assert_eq!(ledger.tree().tip(), a2.id());
}

#[test]
fn a_batch_ends_where_one_block_at_a_time_ends() {
    let net = net();
    let g = net.genesis().header;
    // Main A1-A3 stored first; then a batch holding a longer branch B1-B4 that shares a
    // record with A2 and takes A1's record again.
    let shared = record(9, 9);
    let a1 = block_on(&g, &[record(1, 0)], &net, 1);
    let a2 = block_on(&a1.header, &[record(1, 1), shared.clone()], &net, 1);
    let a3 = block_on(&a2.header, &[record(1, 2)], &net, 1);
    let b1 = block_on(&g, std::slice::from_ref(&shared), &net, 2);
    let b2 = block_on(&b1.header, &[record(1, 0)], &net, 2);
    let b3 = block_on(&b2.header, &[record(2, 0)], &net, 2);
    let b4 = block_on(&b3.header, &[record(2, 1)], &net, 2);
    let branch = vec![b1, b2, b3, b4];
    let run = |batch: bool| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
        for b in [&a1, &a2, &a3] {
            ledger.add(b.clone(), now_ms()).expect("main");
        }
        let mut returned = Vec::new();
        if batch {
            for r in ledger.add_batch(branch.clone(), now_ms()) {
                returned.extend(r.expect("valid").returned);
            }
        } else {
            for b in &branch {
                returned.extend(ledger.add(b.clone(), now_ms()).expect("valid").returned);
            }
        }
        returned.sort_by_key(|r| (r.relay, r.minute));
        returned.dedup();
        // A record that a later block of the branch holds again is not lost either way.
        returned.retain(|r| {
            ledger
                .tree()
                .record_height(&gridledger::chain::RecordKey::of(r))
                .is_none()
        });
        drop(ledger);
        let reopened = Ledger::open(dir.path(), net.clone()).expect("reopens");
        let main: Vec<_> = (0..=reopened.tree().height())
            .map(|h| reopened.tree().main_at(h))
            .collect();
        (reopened.tree().tip(), main, returned)
    };
    let (tip_one, main_one, returned_one) = run(false);
    let (tip_batch, main_batch, returned_batch) = run(true);
    assert_eq!(tip_one, tip_batch);
    assert_eq!(main_one, main_batch);
    assert_eq!(returned_one, returned_batch);
    assert_eq!(
        returned_batch.len(),
        2,
        "A2's and A3's own records come back: {returned_batch:?}"
    );
}

/// Between two blocks of equal work, every node picks the lower id, whichever it saw first
/// (docs/book/src/FORMAT.md section 3), and keeps it across a restart.
#[test]
fn equal_work_goes_to_the_lower_id_in_either_order() {
    let net = net();
    let g = net.genesis().header;
    let a = block_on(&g, &[record(1, 0)], &net, 1);
    let b = block_on(&g, &[record(1, 0)], &net, 2);
    let (low, high) = if a.id() < b.id() { (a, b) } else { (b, a) };
    for order in [[low.clone(), high.clone()], [high.clone(), low.clone()]] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
            for blk in order {
                ledger.add(blk, now_ms()).expect("valid");
            }
            assert_eq!(ledger.tree().tip(), low.id());
        }
        let ledger = Ledger::open(dir.path(), net.clone()).expect("reopens");
        assert_eq!(ledger.tree().tip(), low.id(), "after a restart");
        assert_eq!(ledger.summary().blocks, 3);
    }
}

/// A side block's records stay in the mempool: the main chain lacks them, so they must
/// still be mined onto it. A block that joins the main chain takes its records out.
#[test]
fn a_side_blocks_records_stay_pending() {
    use gridledger::core::{Core, Origin};
    let net = net();
    let g = net.genesis().header;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = Core::new(Ledger::open(dir.path(), net.clone()).expect("opens"));
    let main = block_on(&g, &[record(1, 0)], &net, 1);
    core.accept(main.clone(), now_ms(), Origin::Peer)
        .expect("valid");
    assert!(core.read(record(1, 1)), "pending");
    // A rival of `main` (equal work, a higher id) that holds minute 1.
    let side = (2u8..40)
        .map(|k| block_on(&g, &[record(1, 1)], &net, k))
        .find(|b| b.id() > main.id())
        .expect("a higher id among 38 tries");
    let added = core.accept(side, now_ms(), Origin::Peer).expect("valid");
    assert_eq!(added.change, Change::SideBranch);
    let key = gridledger::chain::RecordKey::of(&record(1, 1));
    assert!(core.mempool.contains(&key), "still pending");
    let next = block_on(&main.header, &[record(1, 1)], &net, 1);
    core.accept(next, now_ms(), Origin::Peer).expect("valid");
    assert!(!core.mempool.contains(&key), "on the main chain now");
}

/// What this node read itself is checked against every block, whichever way it comes: as
/// gossip (records decoded for the check) and as a sync batch (records the precheck decoded
/// already). A record that differs from the node's own read is refused on both paths and
/// the batch stops there; the same record, or another minute, goes in.
#[test]
fn a_block_that_contradicts_the_nodes_own_read_is_refused_as_gossip_and_as_a_sync() {
    use gridledger::core::{Core, Origin};
    let net = net();
    let g = net.genesis().header;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = Core::new(Ledger::open(dir.path(), net.clone()).expect("opens"));
    let read = record(1, 1);
    assert!(core.read(read.clone()), "pending");
    // The same relay and minute, other readings (another signal seed).
    let forged = relay_core::signal::SignalModel::new(7, relay_core::signal::Profile::Realistic)
        .record(read.relay, read.minute, 6, read.flags);
    assert_ne!(forged, read);

    let first = block_on(&g, &[record(1, 0)], &net, 1);
    let liar = block_on(&first.header, &[forged.clone(), record(2, 1)], &net, 2);
    let conflict = |e: Option<&AddError>| {
        matches!(e, Some(AddError::WitnessConflict { relay, minute })
            if *relay == read.relay && *minute == read.minute)
    };
    // A sync batch: the block before the liar goes in, the liar is refused, nothing after.
    let after = block_on(&liar.header, &[record(1, 2)], &net, 1);
    let results = core.accept_incoming(
        Incoming::prechecked(vec![first.clone(), liar.clone(), after], &net, 1),
        now_ms(),
        Origin::Peer,
    );
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].is_ok(), "{results:?}");
    assert!(conflict(results[1].as_ref().err()), "{results:?}");
    assert_eq!(core.ledger.tree().tip(), first.id());
    // As gossip: the same refusal.
    assert!(conflict(
        core.accept(liar, now_ms(), Origin::Peer).err().as_ref()
    ));
    // The true record goes in, by either path.
    let honest = block_on(&first.header, std::slice::from_ref(&read), &net, 2);
    let results = core.accept_incoming(
        Incoming::prechecked(vec![honest.clone()], &net, 1),
        now_ms(),
        Origin::Peer,
    );
    assert!(matches!(results.as_slice(), [Ok(_)]), "{results:?}");
    assert_eq!(core.ledger.tree().tip(), honest.id());
}

/// Issue 14: a branch forking below the in-memory window (the ledger keeps 12 to 24
/// main-chain blocks here) is followed from disk: its blocks are placed, fork choice
/// switches to it, every record of the abandoned blocks that the new chain lacks comes
/// back, and the ledger reopens (window only, and fully verified) on the new chain.
#[test]
fn a_reorg_deeper_than_the_window_is_followed_and_returns_every_record() {
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net();
    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
    ledger.set_window(12);
    let g = net.genesis().header;
    // Main: 60 blocks; block m holds relay 1's minute m and, from height 6 on, relay 3's.
    let mut a = vec![g];
    for m in 0..60u32 {
        let mut records = vec![record(1, m)];
        if m >= 5 {
            records.push(record(3, m));
        }
        let b = block_on(&a[m as usize], &records, &net, 1);
        ledger.add(b.clone(), now_ms()).expect("main");
        a.push(b.header);
    }
    assert_eq!(ledger.tree().height(), 60);
    assert!(
        ledger.tree().base() >= 36 && ledger.tree().window() <= 24,
        "pruned: base {} window {}",
        ledger.tree().base(),
        ledger.tree().window()
    );
    // Below the window, from disk: the main chain, a record's height, a block's keys.
    assert_eq!(ledger.tree().main_at(3), Some(a[3].id()));
    let deep_key = gridledger::chain::RecordKey::of(&record(1, 2));
    assert_eq!(ledger.tree().record_height(&deep_key), Some(3));
    assert!(ledger.tree().has_record(&deep_key));
    assert!(ledger.tree().is_main(&a[3].id()));
    assert_eq!(ledger.tree().keys_of(&a[3].id()).len(), 1);
    let listed = ledger.tree().main_range(0, 100);
    assert_eq!(listed.len(), 61);
    assert!(listed.iter().all(|(h, id)| a[*h as usize].id() == *id));

    // A branch from height 5 (A5), 60 blocks: relay 1's minutes 5..40 again (so A's copies
    // of those are not returned) and relay 2's, one block more than the main chain.
    let summary_before = ledger.summary();
    let mut b = vec![a[5]];
    let mut reorgs = Vec::new();
    for i in 0..56u32 {
        let records = if i < 35 {
            vec![record(1, 5 + i), record(2, i)]
        } else {
            vec![record(2, i)]
        };
        let blk = block_on(&b[i as usize], &records, &net, 2);
        if i == 0 {
            // As gossip (unchecked), a block on a parent below the window does not make the
            // window deeper: its parent is unknown here (the node syncs from its sender).
            let base = ledger.tree().base();
            assert!(matches!(
                ledger.add(blk.clone(), now_ms()),
                Err(AddError::Invalid(ValidationError::UnknownParent(_)))
            ));
            assert_eq!(ledger.tree().base(), base);
        }
        // As a sync takes it: prechecked (work, signature) before it may rebuild the window.
        let incoming = Incoming::prechecked(vec![blk.clone()], &net, 1);
        let added = ledger
            .add_incoming(incoming, now_ms())
            .pop()
            .expect("a result")
            .expect("branch block placed");
        b.push(blk.header);
        if matches!(added.change, Change::Reorg { .. }) {
            reorgs.push(added);
        }
    }
    assert_eq!(ledger.tree().tip(), b[56].id(), "the longer branch won");
    assert_eq!(ledger.tree().height(), 61);
    // One switch: at equal work (height 60) if the branch's tip id is lower, else at 61.
    assert_eq!(reorgs.len(), 1);
    let added = &reorgs[0];
    let Change::Reorg { abandoned, adopted } = &added.change else {
        unreachable!();
    };
    assert_eq!(abandoned.len(), 55);
    assert_eq!(abandoned[0], a[6].id());
    assert_eq!(adopted.len(), added.height as usize - 5);
    // Returned: A6..A60's records the new chain lacks: relay 1's minutes 40..59 and every
    // relay 3 record (minutes 5..59).
    let returned: BTreeSet<(u32, u32)> = added
        .returned
        .iter()
        .map(|r| (r.relay.0, r.minute.0))
        .collect();
    let key = |relay, m| {
        let r = record(relay, m);
        (r.relay.0, r.minute.0)
    };
    let mut want: BTreeSet<(u32, u32)> = (40..60).map(|m| key(1, m)).collect();
    want.extend((5..60).map(|m| key(3, m)));
    assert_eq!(returned, want);
    assert_eq!(added.returned.len(), want.len(), "each record once");
    let summary = ledger.summary();
    assert_eq!(summary.records, 5 + 35 * 2 + 21);
    assert_ne!(summary.tip, summary_before.tip);
    assert!(ledger.tree().window() <= 24, "pruned again after the reorg");
    assert_eq!(ledger.tree().record_height(&deep_key), Some(3));
    let moved = gridledger::chain::RecordKey::of(&record(1, 5));
    assert_eq!(ledger.tree().record_height(&moved), Some(6));
    drop(ledger);

    // Reopened: from the window (the mark), and fully verified (read-only): the same chain.
    let reopened = Ledger::open_with_window(dir.path(), net.clone(), 12).expect("reopens");
    // The window starts at the base of the last prune (its keys were kept), at most 3 × 12
    // below the tip.
    let base = reopened.tree().base();
    assert!((61 - 36..=61 - 12).contains(&base), "base {base}");
    assert_eq!(reopened.summary().tip, summary.tip);
    assert_eq!(reopened.summary().records, summary.records);
    assert_eq!(reopened.tree().record_height(&moved), Some(6));
    assert!(reopened.tree().has_record(&deep_key));
    drop(reopened);
    let verified = Ledger::open_read_only(dir.path()).expect("verifies");
    assert_eq!(verified.summary().tip, summary.tip);
    assert_eq!(verified.summary().records, summary.records);
}

/// A start checks the window again, not the chain below it (verified when stored, under the
/// mark): a signature flipped below the window is not looked at by a start; `verify` (a
/// read-only open) checks every block and names it. A record index row changed above the
/// base is found at start.
#[test]
fn a_start_checks_the_window_and_verify_checks_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = stored_chain(dir.path(), 40, |m| vec![record(1, m)]);
    flip_stored_signature(dir.path(), &blocks[2].signature);
    let ledger = Ledger::open_with_window(dir.path(), net(), 12).expect("a start trusts it");
    assert_eq!((ledger.tree().base(), ledger.tree().height()), (28, 40));
    assert_eq!(ledger.summary().records, 40);
    drop(ledger);
    match Ledger::open_read_only(dir.path()) {
        Err(StoreError::Corrupt { height: 3, .. }) => {}
        other => panic!("expected corruption at height 3, got {other:?}"),
    }
}

/// The `deep` row of the data dir in `dir`: `(height, id, bitmap bytes)`, read by hand.
fn read_deep(dir: &std::path::Path) -> Option<(u32, [u8; 32], Vec<u8>)> {
    use redb::{ReadableDatabase, TableDefinition};
    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("redb opens");
    let txn = db.begin_read().expect("txn");
    let t = txn.open_table(META).expect("table");
    let v = t.get("deep").expect("get")?.value().to_vec();
    let h = u32::from_be_bytes(v[..4].try_into().expect("4 bytes"));
    let id: [u8; 32] = v[4..36].try_into().expect("32 bytes");
    Some((h, id, v[68..].to_vec()))
}

/// Writes the `deep` row by hand, with a right checksum unless `bad_sum`.
fn write_deep(dir: &std::path::Path, h: u32, id: &[u8; 32], bytes: &[u8], bad_sum: bool) {
    use redb::TableDefinition;
    use sha2::Digest;
    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let mut v = h.to_be_bytes().to_vec();
    v.extend_from_slice(id);
    let mut sum: [u8; 32] = sha2::Sha256::digest(bytes).into();
    if bad_sum {
        sum[0] ^= 1;
    }
    v.extend_from_slice(&sum);
    v.extend_from_slice(bytes);
    let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("redb opens");
    let txn = db.begin_write().expect("txn");
    {
        let mut t = txn.open_table(META).expect("table");
        t.insert("deep", v.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

/// A start takes the record keys below the window as the node kept them at its last prune
/// (not the whole record index), if they still fit; kept keys that fail their checksum, or
/// that disagree with the index, are read again from the index (and kept anew): a stale
/// cache never stops a node nor is trusted over the index.
#[test]
fn a_start_takes_the_kept_keys_below_the_window_and_checks_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = net();
    {
        let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
        ledger.set_window(12);
        let mut parent = net.genesis().header;
        for m in 0..60 {
            let b = block_on(&parent, &[record(1, m), record(2, m)], &net, 1);
            ledger.add(b.clone(), now_ms()).expect("valid");
            parent = b.header;
        }
        // Pruned at heights 25, 38 and 51: the base is 39, and so are the kept keys.
        assert_eq!(ledger.tree().base(), 39);
    }
    let (h, id, bytes) = read_deep(dir.path()).expect("kept at the last prune");
    assert_eq!(h, 39);
    let kept = roaring::RoaringTreemap::deserialize_from(bytes.as_slice()).expect("a bitmap");
    assert_eq!(kept.len(), 39 * 2);

    // Used: the window starts at the kept base, not at the mark minus 12.
    let ledger = Ledger::open_with_window(dir.path(), net.clone(), 12).expect("opens");
    assert_eq!(ledger.tree().base(), 39);
    let summary = ledger.summary();
    assert_eq!(summary.records, 120);
    drop(ledger);

    // Kept by an older node, key by key (array containers, not runs): used, and kept
    // again in the smaller form.
    let mut plain = roaring::RoaringTreemap::new();
    for k in kept.iter() {
        plain.insert(k);
    }
    let mut plain_bytes = Vec::new();
    plain.serialize_into(&mut plain_bytes).expect("serialised");
    assert!(plain_bytes.len() > bytes.len(), "kept as runs at the prune");
    write_deep(dir.path(), h, &id, &plain_bytes, false);
    let ledger = Ledger::open_with_window(dir.path(), net.clone(), 12).expect("opens");
    assert_eq!(ledger.tree().base(), 39);
    assert_eq!(ledger.summary(), summary);
    drop(ledger);
    assert_eq!(read_deep(dir.path()), Some((h, id, bytes.clone())));

    // A bad checksum: read from the index again, the same chain, and kept anew.
    write_deep(dir.path(), h, &id, &bytes, true);
    let ledger = Ledger::open_with_window(dir.path(), net.clone(), 12).expect("opens");
    assert_eq!(ledger.tree().base(), 48);
    assert_eq!(ledger.summary(), summary);
    drop(ledger);
    assert_eq!(read_deep(dir.path()).map(|d| d.0), Some(48));

    // Kept keys that lack one record (checksum right): the index disagrees; read again.
    let (h, id, bytes) = read_deep(dir.path()).expect("kept");
    assert_eq!(h, 48);
    let mut short = roaring::RoaringTreemap::deserialize_from(bytes.as_slice()).expect("bitmap");
    let first = short.min().expect("a key");
    short.remove(first);
    let mut out = Vec::new();
    short.serialize_into(&mut out).expect("serialised");
    write_deep(dir.path(), h, &id, &out, false);
    let ledger = Ledger::open_with_window(dir.path(), net.clone(), 12).expect("opens");
    assert_eq!(ledger.summary(), summary);
    let gone = gridledger::chain::RecordKey::from_u64(first);
    assert!(
        ledger.tree().has_record(&gone),
        "the index's answer, not the cache's"
    );
    drop(ledger);
    let (_, _, again) = read_deep(dir.path()).expect("kept anew");
    assert_eq!(again, bytes);
    // `verify` does not use them, and finds the chain whole.
    let verified = Ledger::open_read_only(dir.path()).expect("verifies");
    assert_eq!(verified.summary(), summary);
}

/// `verify` checks the id index against the main chain: a block whose row is gone, a row
/// that names another height, and a row no block has are each named; an intact index
/// verifies. A start (which trusts its verified mark) does not read the index through.
#[test]
fn verify_names_a_damaged_id_index() {
    use redb::ReadableTable;
    let dir = tempfile::tempdir().expect("tempdir");
    stored_chain(dir.path(), 5, |m| vec![record(1, m)]);
    Ledger::open_read_only(dir.path()).expect("an intact index verifies");
    // (key, height) of every row.
    let rows = |dir: &std::path::Path| -> Vec<(u64, u32)> {
        use redb::ReadableDatabase;
        let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("opens");
        let txn = db.begin_read().expect("txn");
        let ids = txn.open_table(IDS).expect("ids");
        ids.iter()
            .expect("iter")
            .map(|r| r.expect("row"))
            .map(|(k, v)| (k.value(), v.value()))
            .collect()
    };
    let edit = |dir: &std::path::Path, f: &dyn Fn(&mut redb::Table<u64, u32>)| {
        let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("opens");
        let txn = db.begin_write().expect("txn");
        f(&mut txn.open_table(IDS).expect("ids"));
        txn.commit().expect("commit");
    };
    let intact = rows(dir.path());
    assert_eq!(intact.len(), 5);
    let (key3, _) = *intact.iter().find(|r| r.1 == 3).expect("block 3's row");
    let verify_err = |dir: &std::path::Path| match Ledger::open_read_only(dir) {
        Ok(_) => panic!("a damaged id index verified"),
        Err(e) => e.to_string(),
    };
    type Damage<'a> = &'a dyn Fn(&mut redb::Table<u64, u32>);
    let cases: [(Damage, &str); 3] = [
        (
            &|t| {
                t.remove(key3).expect("remove");
            },
            "missing from the id index",
        ),
        (
            &|t| {
                t.insert(key3, 4).expect("insert");
            },
            "at another height",
        ),
        (
            &|t| {
                t.insert(key3 ^ 1, 2).expect("insert");
            },
            "a row no main-chain block has",
        ),
    ];
    for (damage, named) in cases {
        edit(dir.path(), damage);
        let err = verify_err(dir.path());
        assert!(err.contains(named), "{named}: {err}");
        // Put back.
        edit(dir.path(), &|t| {
            let rows: Vec<u64> = t
                .iter()
                .expect("iter")
                .map(|r| r.expect("row").0.value())
                .collect();
            for k in rows {
                t.remove(k).expect("remove");
            }
            for (k, h) in &intact {
                t.insert(*k, *h).expect("insert");
            }
        });
        assert_eq!(rows(dir.path()), intact);
        Ledger::open_read_only(dir.path()).expect("put back, it verifies");
    }
}

const LOCS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("locs");
const MAIN: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("main");
const IDS: redb::TableDefinition<u64, u32> = redb::TableDefinition::new("ids");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

/// Turns a data dir into one from before the main chain's rows carried their blocks'
/// locations: every location in `locs`, main rows of the id alone, no `ids` table.
fn make_pre_ids_format(dir: &std::path::Path) {
    use redb::ReadableTable;
    let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("redb opens");
    let txn = db.begin_write().expect("txn");
    {
        let mut meta = txn.open_table(META).expect("meta");
        assert!(meta.remove("main-locs").expect("remove").is_some());
        let mut main = txn.open_table(MAIN).expect("main");
        let mut locs = txn.open_table(LOCS).expect("locs");
        let rows: Vec<(u32, Vec<u8>)> = main
            .iter()
            .expect("iter")
            .map(|r| r.expect("row"))
            .map(|(h, v)| (h.value(), v.value().to_vec()))
            .collect();
        for (h, v) in rows {
            assert_eq!(v.len(), 44, "a row with its location");
            locs.insert(&v[..32], &v[32..]).expect("insert");
            main.insert(h, &v[..32]).expect("insert");
        }
    }
    txn.delete_table(IDS).expect("delete");
    txn.commit().expect("commit");
}

/// The rows of a data dir's `main` and `locs` tables: (lengths of the main rows, ids in
/// `locs`).
fn main_and_locs(dir: &std::path::Path) -> (Vec<usize>, Vec<[u8; 32]>) {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("redb opens");
    let txn = db.begin_read().expect("txn");
    let main = txn.open_table(MAIN).expect("main");
    let locs = txn.open_table(LOCS).expect("locs");
    let lens = main
        .iter()
        .expect("iter")
        .map(|r| r.expect("row").1.value().len())
        .collect();
    let ids = locs
        .iter()
        .expect("iter")
        .map(|r| <[u8; 32]>::try_from(r.expect("row").0.value()).expect("an id"))
        .collect();
    (lens, ids)
}

/// Turns a data dir into one from before the block file: every block back in the database's
/// `blocks` table, no `locs` table, no committed end, no `blocks.dat`.
fn make_old_format(dir: &std::path::Path) {
    use gridledger::blockfile::{BlockFile, Location};
    use redb::{ReadableTable, TableDefinition};
    const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
    make_pre_ids_format(dir);
    let db = redb::Database::open(dir.join(gridledger::store::DB_FILE)).expect("redb opens");
    let txn = db.begin_write().expect("txn");
    {
        let mut meta = txn.open_table(META).expect("meta");
        let end = meta
            .remove("blockfile-end")
            .expect("remove")
            .map(|v| gridledger::blockfile::Committed::from_bytes(v.value()).expect("16 bytes"));
        let file = BlockFile::open(dir, end, false, false).expect("block file");
        let locs = txn.open_table(LOCS).expect("locs");
        let mut blocks = txn.open_table(BLOCKS).expect("blocks");
        for row in locs.iter().expect("iter") {
            let (id, loc) = row.expect("row");
            let loc = Location::from_bytes(loc.value()).expect("location");
            let bytes = file.read(loc).expect("read");
            blocks.insert(id.value(), bytes.as_slice()).expect("insert");
        }
    }
    txn.delete_table(LOCS).expect("delete");
    txn.commit().expect("commit");
    std::fs::remove_file(dir.join(gridledger::blockfile::FILE)).expect("removed");
}

/// A data dir from before the block file: read-only opens (`verify`, `export`) read it as
/// it is, without writing; the first writable open moves every block into `blocks.dat`,
/// after which the chain is the same, fully verified, and new blocks go on.
#[test]
fn an_old_data_dir_is_read_as_it_is_and_moved_to_the_block_file_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = stored_chain(dir.path(), 6, |m| vec![record(1, m), record(2, m)]);
    let before = Ledger::open_read_only(dir.path()).expect("opens").summary();
    make_old_format(dir.path());
    let block_file = dir.path().join(gridledger::blockfile::FILE);
    assert!(!block_file.exists());

    let old = Ledger::open_read_only(dir.path()).expect("an old dir verifies");
    assert_eq!(old.summary(), before);
    drop(old);
    assert!(!block_file.exists(), "a read-only open writes nothing");

    {
        let mut ledger = Ledger::open(dir.path(), net()).expect("opens and moves");
        assert_eq!(ledger.summary(), before);
        let next = block_on(&blocks[5].header, &[record(1, 99)], &net(), 1);
        ledger
            .add(next, now_ms())
            .expect("a new block after the move");
    }
    assert!(block_file.exists());
    let after = Ledger::open_read_only(dir.path()).expect("verifies");
    assert_eq!(after.summary().height, 7);
    assert_eq!(after.summary().records, before.records + 1);
    for (h, b) in blocks.iter().enumerate() {
        let got = after
            .block_at(h as u32 + 1)
            .expect("reads")
            .expect("exists");
        assert_eq!(got.id(), b.id(), "height {}", h + 1);
    }
}

/// A node killed while it creates its data dir leaves nothing a later open refuses: the
/// database is made under another name and renamed when stamped (a leftover of that is
/// ignored, then replaced), and a block file cut short before its magic is empty.
#[test]
fn a_data_dir_whose_creation_was_cut_short_opens() {
    use gridledger::{blockfile, store};
    let net = net();
    // Killed while the database was being made: only the unfinished file.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(format!("{}.new", store::DB_FILE)), b"red").expect("write");
    assert!(matches!(
        Ledger::open_read_only(dir.path()),
        Err(StoreError::NoChain(_))
    ));
    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("a new data dir");
    let b = block_on(&net.genesis().header, &[record(1, 0)], &net, 1);
    ledger.add(b.clone(), now_ms()).expect("valid");
    drop(ledger);
    assert!(!dir.path().join(format!("{}.new", store::DB_FILE)).exists());
    assert_eq!(
        Ledger::open_read_only(dir.path())
            .expect("verifies")
            .tree()
            .tip(),
        b.id()
    );

    // Killed after the database, before the block file's magic was written.
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Ledger::open(dir.path(), net.clone()).expect("a new data dir"));
    for cut in [0usize, 3] {
        let magic = std::fs::read(dir.path().join(blockfile::FILE)).expect("block file");
        std::fs::write(dir.path().join(blockfile::FILE), &magic[..cut]).expect("cut");
        let read = Ledger::open_read_only(dir.path()).expect("an empty chain reads");
        assert_eq!(read.tree().height(), 0);
        drop(read);
        let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens for writing");
        assert_eq!(ledger.tree().height(), 0);
        if cut == 3 {
            ledger.add(b.clone(), now_ms()).expect("valid");
        }
    }
    let ledger = Ledger::open_read_only(dir.path()).expect("verifies");
    assert_eq!(ledger.tree().tip(), b.id());
    // Bytes that are no part of the magic stay a refusal: that is not a block file.
    drop(ledger);
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Ledger::open(dir.path(), net.clone()).expect("a new data dir"));
    std::fs::write(dir.path().join(blockfile::FILE), b"abc").expect("write");
    assert!(Ledger::open_read_only(dir.path()).is_err());
    assert!(Ledger::open(dir.path(), net).is_err());
}

/// Blocks appended to `blocks.dat` whose transaction never committed (a crash between the
/// two) are cut off at the next writable open; the chain is as committed, and goes on.
/// A block file shorter than what the index committed is damage, named.
#[test]
fn an_uncommitted_tail_of_the_block_file_is_cut_and_a_cut_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks = stored_chain(dir.path(), 4, |m| vec![record(1, m)]);
    let file = dir.path().join(gridledger::blockfile::FILE);
    let committed = std::fs::metadata(&file).expect("meta").len();
    {
        // What a crash after the append's sync, before the commit, leaves.
        let mut raw = std::fs::read(&file).expect("read");
        raw.extend_from_slice(&[9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        std::fs::write(&file, &raw).expect("write");
    }
    let summary = {
        let mut ledger = Ledger::open(dir.path(), net()).expect("opens");
        assert_eq!(
            std::fs::metadata(&file).expect("meta").len(),
            committed,
            "the tail is cut"
        );
        let next = block_on(&blocks[3].header, &[record(1, 50)], &net(), 1);
        ledger.add(next, now_ms()).expect("goes on");
        ledger.summary()
    };
    assert_eq!(summary.height, 5);
    assert_eq!(
        Ledger::open_read_only(dir.path())
            .expect("verifies")
            .summary(),
        summary
    );
    // Cut below the committed end: damage, never silently shortened further.
    let raw = std::fs::read(&file).expect("read");
    std::fs::write(&file, &raw[..raw.len() - 5]).expect("write");
    for opened in [
        Ledger::open_read_only(dir.path()).map(|_| ()),
        Ledger::open_existing(dir.path()).map(|_| ()),
    ] {
        match opened {
            Err(StoreError::BlockFile(e)) => {
                assert!(e.to_string().contains("was cut"), "{e}");
            }
            other => panic!("expected a cut block file, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&file).expect("read").len(), raw.len() - 5);
}
