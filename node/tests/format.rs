//! The test vectors of docs/book/src/FORMAT.md: the document's bytes are what the code produces and
//! accepts.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use gridledger::chain::{Block, Network};
use gridledger::ledger::Ledger;

fn vectors() -> HashMap<String, String> {
    let doc = include_str!("../../docs/book/src/FORMAT.md");
    let section = doc
        .split("## 10. Test vectors")
        .nth(1)
        .expect("vectors section");
    let block = section
        .split("```text")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("code block");
    block
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn format_vectors_match_the_code() {
    let v = vectors();
    let net = Network::new(
        &v["network name"],
        v["difficulty bits"].parse().expect("bits"),
    );
    let mut secret = [0u8; 32];
    hex::decode_to_slice(&v["miner secret key"], &mut secret).expect("hex key");
    let key = SigningKey::from_bytes(&secret);
    assert_eq!(
        hex::encode(key.verifying_key().to_bytes()),
        v["miner public key"]
    );

    // Genesis is derived from the name and difficulty alone.
    let genesis = net.genesis();
    assert_eq!(hex::encode(genesis.to_bytes()), v["genesis bytes"]);
    assert_eq!(genesis.id().to_hex(), v["genesis id"]);

    // The blocks decode, have the stated ids, and validate on a fresh ledger.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ledger = Ledger::open(dir.path(), net.clone()).expect("opens");
    let mut blocks = Vec::new();
    for name in ["block 1", "block 2"] {
        let bytes = hex::decode(&v[&format!("{name} bytes")]).expect("hex");
        let block =
            Block::from_bytes(&bytes, net.max_block_bytes, net.max_records).expect("decodes");
        assert_eq!(block.id().to_hex(), v[&format!("{name} id")], "{name}");
        assert_eq!(
            block.to_bytes(),
            bytes,
            "{name} re-encodes to the same bytes"
        );
        ledger
            .add(block.clone(), block.header.time_ms + 60_000)
            .expect("valid");
        blocks.push(block);
    }

    // The code that makes the vectors gives exactly these blocks.
    let built = gridledger::chain::vectors::vectors().expect("mined");
    assert_eq!(built.network, net);
    assert_eq!(built.key.to_bytes(), key.to_bytes());
    assert_eq!(built.blocks[0], genesis);
    assert_eq!(&built.blocks[1..], &blocks[..]);

    // A record with missing samples: decodes, keeps its slots, and is valid.
    let bytes = hex::decode(&v["gapped record bytes"]).expect("hex");
    let block = Block::from_bytes(&bytes, net.max_block_bytes, net.max_records).expect("decodes");
    assert_eq!(block, built.gapped);
    assert_eq!(block.id().to_hex(), v["gapped record id"]);
    let record = relay_core::MinuteRecord::decode(&block.records[0]).expect("record decodes");
    assert_eq!(record.flags.0, 0x1201);
    assert_eq!(record.samples.len(), 4);
    assert_eq!(record.sample_seconds().collect::<Vec<_>>(), [0, 20, 30, 50]);
    let fresh = tempfile::tempdir().expect("tempdir");
    let mut gapped_ledger = Ledger::open(fresh.path(), net.clone()).expect("opens");
    gapped_ledger
        .add(block, 1_795_542_725_000)
        .expect("a record with missing samples is valid");

    // Rule 9 at its boundary: stamped when the record's minute closes, valid; a millisecond
    // earlier, a record from the future.
    for (i, name) in ["rule 9 at the close", "rule 9 one ms early"]
        .iter()
        .enumerate()
    {
        let bytes = hex::decode(&v[&format!("{name} bytes")]).expect("hex");
        let block =
            Block::from_bytes(&bytes, net.max_block_bytes, net.max_records).expect("decodes");
        assert_eq!(block, built.boundary[i], "{name}");
        assert_eq!(block.id().to_hex(), v[&format!("{name} id")], "{name}");
        assert_eq!(
            block.header.time_ms.to_string(),
            v[&format!("{name} time")],
            "{name}"
        );
        let fresh = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::open(fresh.path(), net.clone()).expect("opens");
        let result = ledger.add(block, 1_795_542_665_000);
        match i {
            0 => assert!(result.is_ok(), "{name}: {result:?}"),
            _ => assert!(
                matches!(
                    result,
                    Err(gridledger::ledger::AddError::Invalid(
                        gridledger::chain::ValidationError::RecordFromFuture { .. }
                    ))
                ),
                "{name}: {result:?}"
            ),
        }
    }

    // Section 12: a record signed by its relay. With the registry `1 <relay public key>`
    // the signed block is valid, block 1 (the same record unsigned) is not, and a flipped
    // bit in the signature or the record is refused.
    let mut relay_secret = [0u8; 32];
    hex::decode_to_slice(&v["relay secret key"], &mut relay_secret).expect("hex key");
    let relay_key = SigningKey::from_bytes(&relay_secret);
    assert_eq!(built.relay_key.to_bytes(), relay_secret);
    let relay_pk = relay_key.verifying_key().to_bytes();
    assert_eq!(hex::encode(relay_pk), v["relay public key"]);
    let bytes = hex::decode(&v["signed record bytes"]).expect("hex");
    let signed = Block::from_bytes(&bytes, net.max_block_bytes, net.max_records).expect("decodes");
    assert_eq!(signed, built.signed);
    assert_eq!(signed.id().to_hex(), v["signed record id"]);
    let record = relay_core::MinuteRecord::decode(&signed.records[0]).expect("decodes");
    assert!(record.signature.is_some());
    // The record's bytes are block 1's record's, then the 64 bytes of the signature.
    assert_eq!(
        &signed.records[0][..blocks[0].records[0].len()],
        &blocks[0].records[0][..]
    );
    assert_eq!(signed.records[0].len(), blocks[0].records[0].len() + 64);
    let mut registered = net.clone();
    registered.registry =
        gridledger::chain::Registry::parse(&format!("1 {}\n", hex::encode(relay_pk)))
            .expect("a registry");
    let on_fresh = |b: Block| {
        let fresh = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::open(fresh.path(), registered.clone()).expect("opens");
        ledger.add(b, 1_795_542_725_000).map(|_| ())
    };
    assert!(on_fresh(signed.clone()).is_ok());
    assert!(matches!(
        on_fresh(blocks[0].clone()),
        Err(gridledger::ledger::AddError::Invalid(
            gridledger::chain::ValidationError::UnsignedRecord { index: 0, .. }
        ))
    ));
    for at in [signed.records[0].len() - 1, 5] {
        let mut r = signed.records[0].clone();
        r[at] ^= 1;
        let mut forged = relay_core::MinuteRecord::decode(&r).expect("still decodes");
        let sig = forged.signature.take();
        forged.signature = sig;
        let b = gridledger::chain::assemble(
            &genesis.header,
            &[forged],
            &built.key,
            signed.header.time_ms,
            net.bits,
            &std::sync::atomic::AtomicBool::new(false),
        )
        .expect("mined");
        assert!(
            matches!(
                on_fresh(b),
                Err(gridledger::ledger::AddError::Invalid(
                    gridledger::chain::ValidationError::BadRecordSignature { index: 0, .. }
                ))
            ),
            "byte {at} flipped"
        );
    }
}

/// Section 11's vectors: the checkpoint of the vectors chain, the members' names, key IDs
/// and verifier keys, a commit note, a prevote, their wire forms, and the inclusion and
/// consistency proofs.
#[test]
fn finality_vectors_match_the_code() {
    use gridledger::chain::finality::{self, Checkpoint, Kind, Members, Source, Vote};
    use gridledger::chain::tlog;
    let doc = include_str!("../../docs/book/src/FORMAT.md");
    let section = doc
        .split("### 11.8 Test vectors")
        .nth(1)
        .expect("section 11 vectors");
    let block = section
        .split("```text")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("code block");
    let mut v: HashMap<String, String> = HashMap::new();
    let mut note_lines: Vec<String> = Vec::new();
    let mut in_note = false;
    for line in block.lines() {
        if line == "commit note:" {
            in_note = true;
            continue;
        }
        if in_note {
            if line == "end of note" {
                in_note = false;
            } else {
                note_lines.push(line.to_owned());
            }
            continue;
        }
        if let Some((k, val)) = line.split_once(": ") {
            v.insert(k.trim().to_owned(), val.trim().to_owned());
        }
    }
    let built = gridledger::chain::vectors::vectors().expect("mined");
    let ids: Vec<_> = built.blocks.iter().map(Block::id).collect();
    let net = &built.network;
    let origin = finality::origin(&net.name);
    assert_eq!(origin, v["origin"]);
    let keys: Vec<SigningKey> = [7u8, 8, 9]
        .iter()
        .map(|b| SigningKey::from_bytes(&[*b; 32]))
        .collect();
    let pubs: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let members = Members::new(&origin, &pubs, None).expect("members");
    assert_eq!(members.quorum().to_string(), v["quorum"]);
    for (i, m) in members.verifiers().iter().enumerate() {
        assert_eq!(m.name, v[&format!("member {} name", i + 1)]);
        assert_eq!(
            format!("{:08x}", m.id),
            v[&format!("member {} key id", i + 1)]
        );
        assert_eq!(m.to_vkey(), v[&format!("member {} vkey", i + 1)]);
    }
    let c = Checkpoint {
        size: 3,
        root: tlog::root(&ids),
    };
    assert_eq!(hex::encode(c.root), v["checkpoint root"]);
    let commits: Vec<Vote> = keys
        .iter()
        .map(|k| Vote::sign(Kind::Commit, c, k, &origin).expect("links"))
        .collect();
    let note = members.checkpoint_note(&c, &commits);
    assert_eq!(note, note_lines.join("\n") + "\n");
    assert_eq!(
        members.open_checkpoint(note.as_bytes()).map(|(x, _)| x),
        Ok(c)
    );
    assert_eq!(
        hex::encode(commits[0].to_bytes(&origin)),
        v["member 1 commit wire"]
    );
    let source = Source::genesis(tlog::root(&ids[..1]));
    let prevote = Vote::sign(Kind::Prevote(source), c, &keys[0], &origin).expect("links");
    assert_eq!(
        prevote.text(&origin).replace('\n', "\\n"),
        v["member 1 prevote text"]
    );
    assert_eq!(
        hex::encode(prevote.to_bytes(&origin)),
        v["member 1 prevote wire"]
    );
    assert_eq!(
        members.decode(&prevote.to_bytes(&origin)).map(|(x, _)| x),
        Ok(prevote)
    );
    let path = tlog::inclusion_proof(&ids[..], 1, 3)
        .ok()
        .flatten()
        .expect("proof");
    let joined: Vec<String> = path.iter().map(hex::encode).collect();
    assert_eq!(joined.join(" "), v["inclusion proof of block 1 in size 3"]);
    assert!(tlog::verify_inclusion(&ids[1], 1, 3, &path, &c.root));
    let cons = tlog::consistency_proof(&ids[..], 2, 3)
        .ok()
        .flatten()
        .expect("proof");
    let joined: Vec<String> = cons.iter().map(hex::encode).collect();
    assert_eq!(joined.join(" "), v["consistency proof from size 2 to 3"]);
    assert!(tlog::verify_consistency(
        2,
        3,
        &tlog::root(&ids[..2]),
        &c.root,
        &cons
    ));
}
