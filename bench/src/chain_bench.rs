//! `chain-bench`: the chain's numbers, each next to the bound this CPU sets for it.
//!
//! 1. Miner hash rate against the raw single-core SHA-256 compression rate (goal ≥ 0.70).
//! 2. Full verification of N blocks (ids, work, Merkle roots, records, signatures checked in
//!    batches, links, times, duplicates) against the bare single-signature ed25519 rate on
//!    all cores (goal ≥ 1.6, issue 14), blocks signed in turn by `--miners` keys.
//! 3. Full verification with members' cosignatures (issue 29): the blocks and the checkpoint
//!    notes a node keeps (one per 1024 heights, and a worst case of one per block), every
//!    signature checked, against bare ed25519 per signature checked (goal ≥ 1.6).
//! 4. Bytes per minute record on chain against the study's JSON text (goal ≤ 20 %), unsigned
//!    and signed by the relay (issue 30: ≤ 20 %, 267 bytes, with the signature).
//! 5. Full verification with relay signatures (issue 30): blocks of four records of four
//!    registered relays, every miner and relay signature checked, against bare ed25519
//!    per signature checked (goal ≥ 1.6).
//!
//! `cargo run --release -p gridledger-bench --bin chain-bench [-- --blocks 100000]`

use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Parser;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use gridledger_chain::block::VERSION;
use gridledger_chain::pow::Midstate;
use gridledger_chain::validate::verify_run;
use gridledger_chain::{assemble, Block, BlockId, BlockTree, Header, Network};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, Quantity, RecordFlags, RelayId};
use sha2::block_api::compress256;

/// The chain benchmarks.
#[derive(Debug, Parser)]
#[command(name = "chain-bench", about)]
struct Args {
    /// Blocks to verify.
    #[arg(long, default_value_t = 100_000)]
    blocks: u32,
    /// SHA-256 compressions (and nonces) to time.
    #[arg(long, default_value_t = 20_000_000)]
    hashes: u64,
    /// Threads for verification (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Miner keys signing the blocks in turn (a consortium has a few; batches coalesce the
    /// terms of one key, so fewer keys verify faster).
    #[arg(long, default_value_t = 15)]
    miners: u8,
    /// Members cosigning checkpoints (the quorum is ⌊2n/3⌋ + 1 of them).
    #[arg(long, default_value_t = 16)]
    members: u8,
}

fn main() {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    println!("chain-bench: {} cores used for verification", threads);
    mining(args.hashes);
    verification(args.blocks, threads, args.miners.max(1));
    cosignatures(args.blocks, threads, args.members);
    sizes();
    relay_signatures(args.blocks / 4, threads, args.miners.max(1));
}

/// Bare ed25519: `verify_strict` of every `(key, message, signature)`, split over
/// `threads`; whether all verified, and the seconds it took.
fn bare_verify<M: AsRef<[u8]> + Sync>(
    sigs: &[(VerifyingKey, M, Signature)],
    threads: usize,
) -> (bool, f64) {
    let start = Instant::now();
    let chunk = sigs.len().div_ceil(threads).max(1);
    let all_ok = std::thread::scope(|s| {
        sigs.chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .all(|(k, msg, sig)| k.verify_strict(msg.as_ref(), sig).is_ok())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .all(|h| h.join().unwrap_or(false))
    });
    (all_ok, start.elapsed().as_secs_f64())
}

/// A record signed by `key`, as a relay signs it.
fn signed(mut r: MinuteRecord, key: &SigningKey) -> MinuteRecord {
    use ed25519_dalek::Signer;
    let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
    let msg = r.signing_message(&mut buf).expect("fits");
    r.signature = Some(relay_core::RecordSignature(key.sign(msg).to_bytes()));
    r
}

/// Verification of `n` blocks of four records, each record signed by its registered relay
/// (relays 1 to 4), blocks signed in turn by `miners` keys: every signature (5 a block)
/// checked, against bare ed25519 `verify_strict` of the same signatures on the same threads.
fn relay_signatures(n: u32, threads: usize, miners: u8) {
    use gridledger_chain::registry::{Entry, Registry};
    let relay_keys: Vec<SigningKey> = (1..=4u8)
        .map(|r| SigningKey::from_bytes(&[r.wrapping_add(100); 32]))
        .collect();
    let mut net = Network::new("bench", 0);
    net.registry = Registry::new(relay_keys.iter().enumerate().map(|(i, k)| Entry {
        relay: RelayId(i as u32 + 1),
        from: Minute(0),
        key: k.verifying_key().to_bytes(),
    }))
    .expect("valid keys");
    let keys: Vec<SigningKey> = (0..miners)
        .map(|m| SigningKey::from_bytes(&[m.wrapping_add(5); 32]))
        .collect();
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut blocks = Vec::with_capacity(n as usize);
    let mut triples: Vec<(VerifyingKey, Vec<u8>, Signature)> = Vec::new();
    let mut parent = net.genesis().header;
    for i in 0..n {
        let records: Vec<MinuteRecord> = relay_keys
            .iter()
            .enumerate()
            .map(|(r, k)| {
                signed(
                    model.record(
                        RelayId(r as u32 + 1),
                        Minute(29_000_000 + i),
                        6,
                        RecordFlags::CLOCK_SET,
                    ),
                    k,
                )
            })
            .collect();
        let key = &keys[i as usize % keys.len()];
        let time_ms = (u64::from(29_000_000 + i) + 1) * 60_000 + 1_000;
        let b = assemble(&parent, &records, key, time_ms, 0, &cancel).expect("bits 0 mines");
        triples.push((
            key.verifying_key(),
            b.id().0.to_vec(),
            Signature::from_bytes(&b.signature),
        ));
        for (r, k) in records.iter().zip(&relay_keys) {
            let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
            let msg = r.signing_message(&mut buf).expect("fits").to_vec();
            let sig = r.signature.expect("signed").0;
            triples.push((k.verifying_key(), msg, Signature::from_bytes(&sig)));
        }
        parent = b.header;
        blocks.push(b);
    }
    println!(
        "\n[relay signatures] {n} blocks of four records of four registered relays, {miners} miners: {} signatures, 5 interleaved rounds",
        triples.len()
    );
    let rounds = 5usize;
    let per = blocks.len().div_ceil(rounds).max(1);
    let (mut bare_secs, mut full_secs) = (0.0f64, 0.0f64);
    let mut tree = BlockTree::new(&net.genesis().header);
    for (slice, sigs) in blocks.chunks(per).zip(triples.chunks(per * 5)) {
        let (all_ok, took) = bare_verify(sigs, threads);
        bare_secs += took;
        assert!(all_ok);
        let copy: Vec<Block> = slice.to_vec();
        let start = Instant::now();
        let records = verify_run(copy, &net, &mut tree, u64::MAX, threads).expect("valid chain");
        full_secs += start.elapsed().as_secs_f64();
        assert_eq!(records, slice.len() * 4);
    }
    let sigs = triples.len() as f64;
    let bare = sigs / bare_secs;
    let full = sigs / full_secs;
    println!("  bare ed25519 verify_strict, {threads} threads: {bare:>9.0} signatures/s");
    println!(
        "  full verification, {threads} threads:          {full:>9.0} signatures/s ({:.0} blocks/s)",
        full / 5.0
    );
    println!(
        "  ratio full / bare ed25519 per signature: {:.2} (goal >= 1.60)",
        full / bare
    );
}

fn mining(n: u64) {
    let mut state = [0u32; 8];
    let block = [0x5au8; 64];
    let start = Instant::now();
    for i in 0..n {
        let mut b = block;
        b[..8].copy_from_slice(&i.to_be_bytes());
        compress256(&mut state, &[b]);
    }
    black_box(state);
    let raw = n as f64 / start.elapsed().as_secs_f64();

    let header = Header {
        version: VERSION,
        height: 1,
        prev: BlockId([1; 32]),
        merkle_root: [2; 32],
        time_ms: 1,
        bits: 255, // never met: every nonce is tried
        miner: [3; 32],
        nonce: 0,
    };
    let mut mid = Midstate::new(&header);
    let start = Instant::now();
    black_box(mid.search(0..n, &AtomicBool::new(false)));
    let miner = n as f64 / start.elapsed().as_secs_f64();
    println!("\n[mining] {n} hashes, one core");
    println!("  raw SHA-256 compression: {:>8.2} M/s", raw / 1e6);
    println!("  miner (midstate + nonce): {:>7.2} MH/s", miner / 1e6);
    println!(
        "  ratio miner / compression: {:.2} (goal >= 0.70)",
        miner / raw
    );
}

fn verification(n: u32, threads: usize, miners: u8) {
    let net = Network::new("bench", 0);
    let keys: Vec<SigningKey> = (0..miners)
        .map(|m| SigningKey::from_bytes(&[m.wrapping_add(5); 32]))
        .collect();
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let build = Instant::now();
    let mut blocks = Vec::with_capacity(n as usize);
    let mut parent = net.genesis().header;
    for i in 0..n {
        let rec = model.record(
            RelayId(1),
            Minute(29_000_000 + i),
            6,
            RecordFlags::CLOCK_SET,
        );
        let key = &keys[i as usize % keys.len()];
        // Stamped a second after its minute closes (rule 9).
        let time_ms = (u64::from(29_000_000 + i) + 1) * 60_000 + 1_000;
        let b = assemble(&parent, &[rec], key, time_ms, 0, &cancel).expect("bits 0 always mines");
        parent = b.header;
        blocks.push(b);
    }
    println!(
        "\n[verification] {n} blocks of one record each, {miners} miners (built in {:.1} s), 5 interleaved rounds",
        build.elapsed().as_secs_f64()
    );

    // In 5 rounds of n/5 blocks, alternating the baseline and the full verification, so that
    // a noisy machine slows both alike. Baseline: the same signatures with verify_strict,
    // keys decoded beforehand, split over the same threads.
    let triples: Vec<(VerifyingKey, [u8; 32], Signature)> = blocks
        .iter()
        .map(|b| {
            (
                VerifyingKey::from_bytes(&b.header.miner).expect("valid key"),
                b.id().0,
                Signature::from_bytes(&b.signature),
            )
        })
        .collect();
    let rounds = 5usize;
    let per = blocks.len().div_ceil(rounds).max(1);
    let (mut bare_secs, mut full_secs) = (0.0f64, 0.0f64);
    let mut tree = BlockTree::new(&net.genesis().header);
    for (slice, sigs) in blocks.chunks(per).zip(triples.chunks(per)) {
        let (all_ok, took) = bare_verify(sigs, threads);
        bare_secs += took;
        assert!(all_ok);

        let copy: Vec<Block> = slice.to_vec();
        let start = Instant::now();
        let records = verify_run(copy, &net, &mut tree, u64::MAX, threads).expect("valid chain");
        full_secs += start.elapsed().as_secs_f64();
        assert_eq!(records, slice.len());
    }
    assert_eq!(tree.height(), n);
    let bare = f64::from(n) / bare_secs;
    let full = f64::from(n) / full_secs;
    println!("  bare ed25519 verify_strict, {threads} threads: {bare:>9.0} signatures/s");
    println!("  full verification, {threads} threads:          {full:>9.0} blocks/s");
    println!(
        "  ratio full / bare ed25519: {:.2} (goal >= 1.60)",
        full / bare
    );
}

/// Verification with cosignatures: `n` blocks (one record, 15 miners) and checkpoint notes
/// of a quorum of `members`, every `every` heights; all signatures counted, against bare
/// ed25519 `verify_strict` of as many signatures on the same threads.
fn cosignatures(n: u32, threads: usize, members: u8) {
    use gridledger_chain::finality::{self, Checkpoint, Kind, Members, Vote};
    let members = members.max(1);
    let net = Network::new("bench-cosign", 0);
    let keys: Vec<SigningKey> = (1..=15u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let mkeys: Vec<SigningKey> = (0..members)
        .map(|i| SigningKey::from_bytes(&[100u8.wrapping_add(i); 32]))
        .collect();
    let origin = finality::origin(&net.name);
    let pubs: Vec<[u8; 32]> = mkeys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let m = Members::new(&origin, &pubs, None).expect("members");
    let q = m.quorum();
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut blocks = Vec::with_capacity(n as usize);
    let mut parent = net.genesis().header;
    for i in 0..n {
        let rec = model.record(
            RelayId(1),
            Minute(29_000_000 + i),
            6,
            RecordFlags::CLOCK_SET,
        );
        let time_ms = (u64::from(29_000_000 + i) + 1) * 60_000 + 1_000;
        let b = assemble(
            &parent,
            &[rec],
            &keys[i as usize % keys.len()],
            time_ms,
            0,
            &cancel,
        )
        .expect("bits 0 always mines");
        parent = b.header;
        blocks.push(b);
    }
    println!("\n[verification with cosignatures] {n} blocks, {members} members, quorum {q}");
    for every in [1024u32, 1] {
        // The notes: a quorum of commits of the checkpoint every `every` heights.
        let notes: Vec<String> = (1..=n / every)
            .map(|k| {
                let c = Checkpoint {
                    size: u64::from(k * every) + 1,
                    root: [k as u8; 32],
                };
                let commits: Vec<Vote> = mkeys[..q]
                    .iter()
                    .filter_map(|key| Vote::sign(Kind::Commit, c, key, &origin))
                    .collect();
                m.checkpoint_note(&c, &commits)
            })
            .collect();
        let sigs = n as usize + notes.len() * q;
        // Bare: as many signatures, verify_strict, on the same threads.
        let block_triples: Vec<(VerifyingKey, Vec<u8>, Signature)> = blocks
            .iter()
            .map(|b| {
                (
                    VerifyingKey::from_bytes(&b.header.miner).expect("key"),
                    b.id().0.to_vec(),
                    Signature::from_bytes(&b.signature),
                )
            })
            .chain(notes.iter().flat_map(|note| {
                let (_, votes) = m.parse_checkpoint(note.as_bytes()).expect("parses");
                votes.into_iter().map(|v| {
                    (
                        VerifyingKey::from_bytes(&v.member).expect("key"),
                        v.text(&origin).into_bytes(),
                        Signature::from_bytes(&v.sig),
                    )
                })
            }))
            .collect();
        let (ok, bare_secs) = bare_verify(&block_triples, threads);
        assert!(ok);
        // Full: the blocks (every rule) and the notes (parsed, signatures in batches).
        let start = Instant::now();
        let mut tree = BlockTree::new(&net.genesis().header);
        let records =
            verify_run(blocks.clone(), &net, &mut tree, u64::MAX, threads).expect("valid");
        assert_eq!(records, n as usize);
        let per = notes.len().div_ceil(threads).max(1);
        let ok = std::thread::scope(|s| {
            notes
                .chunks(per)
                .map(|part| {
                    let m = &m;
                    s.spawn(move || {
                        let votes: Vec<Vote> = part
                            .iter()
                            .flat_map(|note| {
                                m.parse_checkpoint(note.as_bytes())
                                    .map(|(_, v)| v)
                                    .unwrap_or_default()
                            })
                            .collect();
                        m.check_all(&votes).is_ok()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .all(|h| h.join().unwrap_or(false))
        });
        let full_secs = start.elapsed().as_secs_f64();
        assert!(ok);
        let bare = sigs as f64 / bare_secs;
        let full = sigs as f64 / full_secs;
        println!(
            "  a note every {every:>4} heights: {sigs} signatures ({} cosignatures); bare ed25519 {bare:>7.0}/s, full {full:>7.0}/s: ratio {:.2} (goal >= 1.60)",
            notes.len() * q,
            full / bare
        );
    }
}

/// A record as the published study's nodes wrote it: a JSON object per sample with the
/// quantities as three-decimal numbers, plus the relay, minute and fault count.
fn study_record_json(rec: &MinuteRecord) -> String {
    let samples: Vec<String> = rec
        .samples
        .iter()
        .map(|s| {
            let fields: Vec<String> = Quantity::ALL
                .iter()
                .map(|q| format!("\"{}\": {:.3}", q.name(), q.raw(s) as f64 / 1000.0))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!(
        "{{\"relay\": {}, \"minute\": \"{}\", \"faults\": {}, \"samples\": [{}]}}",
        rec.relay,
        rec.minute,
        rec.faults,
        samples.join(", ")
    )
}

/// A block as the study's nodes wrote it: index, timestamp, data, previous hash, nonce, hash.
fn study_block_json(height: u32, records: &[MinuteRecord]) -> String {
    let data: Vec<String> = records.iter().map(study_record_json).collect();
    format!(
        "{{\"index\": {height}, \"timestamp\": \"2026-11-24 17:51:05.123456\", \"data\": [{}], \"previous_hash\": \"{}\", \"nonce\": 123456, \"hash\": \"{}\"}}",
        data.join(", "),
        "0".repeat(64),
        "0".repeat(64)
    )
}

fn sizes() {
    let net = Network::new("bench", 0);
    let key = SigningKey::from_bytes(&[5; 32]);
    let cancel = AtomicBool::new(false);
    println!(
        "\n[size] bytes per minute record, a day of minutes (1440), realistic and paper profiles"
    );
    let relay_key = SigningKey::from_bytes(&[7; 32]);
    for (profile, sign) in [
        (Profile::Realistic, false),
        (Profile::Paper, false),
        (Profile::Realistic, true),
        (Profile::Paper, true),
    ] {
        let model = SignalModel::new(1, profile);
        for per_block in [1u32, 4] {
            let (mut ours_rec, mut ours_block, mut json_rec, mut json_block) =
                (0usize, 0usize, 0usize, 0usize);
            let mut parent = net.genesis().header;
            let first = Minute::containing(1_795_478_400).0;
            for m in 0..1440 {
                let records: Vec<MinuteRecord> = (1..=per_block)
                    .map(|relay| {
                        let r = model.record(
                            RelayId(relay),
                            Minute(first + m),
                            6,
                            RecordFlags::CLOCK_SET,
                        );
                        if sign {
                            signed(r, &relay_key)
                        } else {
                            r
                        }
                    })
                    .collect();
                let b = assemble(&parent, &records, &key, parent.time_ms + 60_000, 0, &cancel)
                    .expect("mined");
                ours_rec += b.records.iter().map(Vec::len).sum::<usize>();
                ours_block += b.to_bytes().len();
                json_rec += records
                    .iter()
                    .map(|r| study_record_json(r).len())
                    .sum::<usize>();
                json_block += study_block_json(b.header.height, &records).len();
                parent = b.header;
            }
            let n = (1440 * per_block) as f64;
            println!(
                "  {profile:?}{}, {per_block} record(s) per block: record {:.0} B vs JSON {:.0} B ({:.1} %); whole block {:.0} B/record vs JSON block {:.0} B/record ({:.1} %)",
                if sign { " signed" } else { "" },
                ours_rec as f64 / n,
                json_rec as f64 / n,
                100.0 * ours_rec as f64 / json_rec as f64,
                ours_block as f64 / n,
                json_block as f64 / n,
                100.0 * ours_block as f64 / json_block as f64,
            );
        }
    }
    println!("  (goal: <= 20 % of the study's JSON text for the same record; signed: <= 267 B)");
}
