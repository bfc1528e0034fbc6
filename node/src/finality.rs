//! Finality in the node: the core's state machine ([`gridledger_core::finality`]) over the
//! node's ledger, with its state kept in the store; the checks `gridledger verify` runs on
//! what finality kept.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use serde_json::json;

use crate::chain::finality::Members;
use crate::chain::merkle::Hash;
use crate::chain::tlog::Frontier;
use crate::chain::{BlockId, BlockTree, Height};
use crate::ledger::{Added, Ledger};
use crate::store::kept::Finalised;
use crate::store::StoreError;

pub use gridledger_core::finality::{
    Evidence, Final, Finality, FinalityConfig, Keep, Kept, SafetyFailure, Stats, KEEP_EVERY,
};

/// What finality did, as the node's ledger reports a switch of its main chain.
pub type Effects = gridledger_core::finality::Effects<Added>;

impl gridledger_core::finality::Chain for Ledger {
    type Switch = Added;
    type Error = StoreError;

    fn tree(&self) -> &BlockTree {
        Ledger::tree(self)
    }

    fn set_final(&mut self, height: Height, id: BlockId) {
        Ledger::set_final(self, height, id);
    }

    fn set_floor(&mut self, id: &BlockId) -> Result<Option<Added>, StoreError> {
        Ledger::set_floor(self, id)
    }

    fn exclude(&mut self, id: &BlockId) -> Result<Option<Added>, StoreError> {
        Ledger::exclude(self, id)
    }

    fn root_at(&self, size: u64) -> Option<Hash> {
        let reader = self.reader();
        crate::chain::tlog::root_of(&crate::tlog::FinalTlog::new(&reader), size).ok()
    }

    fn keep(&mut self, what: Keep<'_>) -> Result<(), StoreError> {
        let store = self.store();
        match what {
            Keep::Justified(b) => store.put_finality("justified", b),
            Keep::Own(b) => store.put_finality("own", b),
            Keep::Final {
                state,
                checkpoint,
                subtrees,
            } => store.put_final(&Finalised {
                state,
                checkpoint,
                subtrees,
            }),
            Keep::Evidence(e) => store
                .put_evidence(evidence_json(e).to_string().as_bytes())
                .map(|_| ()),
        }
    }
}

/// Finality over `ledger`'s chain: the state kept in its store, else the genesis block
/// final and justified. `key`: this node's key, if it votes (a member's).
///
/// # Errors
/// The store could not be read, or the floor not kept.
pub fn open(
    config: FinalityConfig,
    key: Option<SigningKey>,
    ledger: &mut Ledger,
) -> Result<Finality, StoreError> {
    let store = ledger.store();
    let kept = Kept {
        final_state: store.finality("final")?,
        own: store.finality("own")?,
        justified: store.finality("justified")?,
        evidence: store
            .evidence()?
            .iter()
            .filter_map(|b| evidence_from_json(b))
            .collect(),
    };
    Finality::open(config, key, kept, ledger)
}

/// An offence as JSON, as `/evidence` serves it and the store keeps it.
#[must_use]
pub fn evidence_json(e: &Evidence) -> serde_json::Value {
    json!({
        "offence": e.offence,
        "member": hex::encode(e.member),
        "notes": e.notes,
        "found_ms": e.found_ms,
    })
}

fn evidence_from_json(b: &[u8]) -> Option<Evidence> {
    let v: serde_json::Value = serde_json::from_slice(b).ok()?;
    let offence = match v.get("offence")?.as_str()? {
        "double vote" => "double vote",
        "surround vote" => "surround vote",
        _ => "offence",
    };
    let member = <[u8; 32]>::try_from(hex::decode(v.get("member")?.as_str()?).ok()?).ok()?;
    let notes = v.get("notes")?.as_array()?;
    Some(Evidence {
        offence,
        member,
        notes: [
            notes.first()?.as_str()?.to_owned(),
            notes.get(1)?.as_str()?.to_owned(),
        ],
        found_ms: v.get("found_ms")?.as_u64()?,
    })
}

/// The members as kept in the store (`members`), so that `gridledger verify` can check the
/// kept checkpoints without the node's flags: JSON with the origin, quorum and keys.
pub fn keep_members(ledger: &Ledger, members: &Members) -> Result<(), StoreError> {
    let doc = json!({
        "origin": members.origin(),
        "quorum": members.quorum(),
        "keys": members.verifiers().iter().map(|v| hex::encode(v.key)).collect::<Vec<_>>(),
    });
    ledger
        .store()
        .put_finality("members", doc.to_string().as_bytes())
}

fn kept_members(ledger: &Ledger) -> Result<Option<Members>, StoreError> {
    let Some(b) = ledger.store().finality("members")? else {
        return Ok(None);
    };
    let bad = |why: &str| StoreError::Corrupt {
        height: 0,
        reason: format!("the kept members do not read: {why}"),
    };
    let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| bad(&e.to_string()))?;
    let origin = v["origin"].as_str().ok_or_else(|| bad("no origin"))?;
    let quorum = v["quorum"].as_u64().ok_or_else(|| bad("no quorum"))?;
    let keys = v["keys"]
        .as_array()
        .ok_or_else(|| bad("no keys"))?
        .iter()
        .map(|k| {
            k.as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| bad("a key is not 64 hex digits"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Members::new(origin, &keys, usize::try_from(quorum).ok())
        .map(Some)
        .map_err(|e| bad(&e))
}

/// `gridledger verify`'s check of what finality kept: every kept checkpoint note carries a
/// quorum of valid member signatures (checked in one batch), its root is the tlog root of
/// the stored main chain at its size, the final block is on the main chain, and every kept
/// tlog subtree is the main chain's. One pass over the main chain's ids. `None` if the data
/// dir has no finality (a network without an allow-list).
pub fn verify_kept(ledger: &Ledger) -> Result<Option<String>, StoreError> {
    let Some(members) = kept_members(ledger)? else {
        return Ok(None);
    };
    let store = ledger.store();
    let corrupt = |height: u32, reason: String| StoreError::Corrupt { height, reason };
    let fin = match store.finality("final")? {
        None => return Ok(Some("finality: only the genesis block is final".into())),
        Some(b) => Final::from_bytes(&b)
            .ok_or_else(|| corrupt(0, "the kept final checkpoint does not decode".into()))?,
    };
    let mut notes: Vec<(u32, Vec<u8>)> = Vec::new();
    for h in store.checkpoint_heights(0, usize::MAX)? {
        if let Some(n) = store.checkpoint(h)? {
            notes.push((h, n));
        }
    }
    if !fin.note.is_empty() {
        notes.push((fin.checkpoint.height(), fin.note.as_bytes().to_vec()));
    }
    // The notes, then every signature in one batch.
    let mut want: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut votes = Vec::new();
    for (h, n) in &notes {
        let (c, v) = members
            .parse_checkpoint(n)
            .map_err(|e| corrupt(*h, format!("the kept checkpoint note: {e}")))?;
        if c.height() != *h {
            return Err(corrupt(
                *h,
                "a kept checkpoint note of another height".into(),
            ));
        }
        want.insert(c.size, c.root);
        votes.extend(v);
    }
    want.insert(fin.checkpoint.size, fin.checkpoint.root);
    if let Err(i) = members.check_all(&votes) {
        let h = votes.get(i).map_or(0, |v| v.target.height());
        return Err(corrupt(
            h,
            "a kept checkpoint note has a bad member signature".into(),
        ));
    }
    // The main chain's tlog, against the roots and the kept subtrees.
    let tree = ledger.tree();
    if tree.main_at(fin.checkpoint.height()) != Some(fin.id) {
        return Err(corrupt(
            fin.checkpoint.height(),
            "the final block is not on the main chain".into(),
        ));
    }
    let mut f = Frontier::new();
    let mut bad_subtree: Option<(u32, u64)> = None;
    let mut at: u32 = 0;
    while u64::from(at) < fin.checkpoint.size {
        let run = tree.main_range(at, 4096);
        if run.is_empty() {
            return Err(corrupt(at, "missing from the main chain".into()));
        }
        for (h, id) in run {
            if u64::from(h) >= fin.checkpoint.size {
                break;
            }
            f.push_with(&id, |level, index, hash| {
                if level >= crate::store::kept::SUBTREE_LEVEL && bad_subtree.is_none() {
                    match store.subtree(level, index) {
                        Ok(Some(kept)) if kept != *hash => bad_subtree = Some((level, index)),
                        _ => {}
                    }
                }
            });
            if let Some(root) = want.get(&f.size()) {
                if f.root() != *root {
                    return Err(corrupt(
                        h,
                        "a kept checkpoint's root is not the main chain's".into(),
                    ));
                }
            }
            at = h + 1;
        }
    }
    if let Some((level, index)) = bad_subtree {
        let h = u32::try_from((index + 1) << level)
            .unwrap_or(u32::MAX)
            .saturating_sub(1);
        return Err(corrupt(
            h,
            "a kept tlog subtree is not the main chain's".into(),
        ));
    }
    Ok(Some(format!(
        "finality: height {} final, {} checkpoint notes with {} member signatures verified (quorum {} of {})",
        fin.checkpoint.height(),
        notes.len(),
        votes.len(),
        members.quorum(),
        members.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::finality::{self, Checkpoint, Kind, Source, Vote};
    use crate::chain::{assemble, Block, Network};
    use relay_core::signal::{Profile, SignalModel};
    use relay_core::{Minute, RecordFlags, RelayId};
    use std::sync::atomic::AtomicBool;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn network() -> Network {
        let mut net = Network::new("finality-unit", 4);
        net.allow_list = Some((1..=4).map(|k| key(k).verifying_key().to_bytes()).collect());
        net
    }

    /// A ledger in `dir` with `n` blocks on genesis, each of one record, mined by key 1.
    fn ledger_with(dir: &std::path::Path, n: u32) -> (Ledger, Vec<Block>) {
        let net = network();
        let mut ledger = Ledger::open(dir, net.clone()).expect("opens");
        let mut blocks = Vec::new();
        for i in 0..n {
            let parent = ledger.tip_header().expect("tip");
            let r = SignalModel::new(1, Profile::Realistic).record(
                RelayId(1),
                Minute(29_000_000 + i),
                6,
                RecordFlags::CLOCK_SET,
            );
            let time = (u64::from(29_000_000 + i) + 1) * 60_000;
            let b = assemble(
                &parent,
                &[r],
                &key(1),
                time,
                net.bits,
                &AtomicBool::new(false),
            )
            .expect("mined");
            ledger.add(b.clone(), time + 1000).expect("valid");
            blocks.push(b);
        }
        (ledger, blocks)
    }

    fn finality(ledger: &mut Ledger, own: u8) -> Finality {
        let net = network();
        let origin = finality::origin(&net.name);
        let members =
            Members::new(&origin, net.allow_list.as_deref().unwrap_or(&[]), None).expect("members");
        open(
            FinalityConfig {
                members,
                interval_ms: 0,
                genesis: net.genesis().id(),
                settle_ms: 0,
            },
            Some(key(own)),
            ledger,
        )
        .expect("opens")
    }

    fn checkpoint(ids: &[BlockId]) -> Checkpoint {
        Checkpoint {
            size: ids.len() as u64,
            root: crate::chain::tlog::root(ids),
        }
    }

    fn ids(ledger: &Ledger) -> Vec<BlockId> {
        let tree = ledger.tree();
        (0..=tree.height())
            .filter_map(|h| tree.main_at(h))
            .collect()
    }

    /// Prevotes from a justified source and commits of three members make the tip final, and
    /// the node's own votes go out with them; a block forking below is then refused.
    #[test]
    fn a_quorum_of_prevotes_then_commits_makes_a_block_final() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ledger, _) = ledger_with(dir.path(), 3);
        let mut f = finality(&mut ledger, 1);
        let origin = f.members().origin().to_owned();
        let all = ids(&ledger);
        let c = checkpoint(&all);
        let genesis = Source::genesis(crate::chain::tlog::root(&all[..1]));
        // The node prevotes its tip by itself.
        let fx = f.advance(&mut ledger, true, 1_000);
        assert_eq!(fx.send.len(), 1);
        assert_eq!(fx.send[0].0.kind, Kind::Prevote(genesis));
        assert_eq!(fx.send[0].0.target, c);
        let pre: Vec<Vote> = (2..=3)
            .filter_map(|k| Vote::sign(Kind::Prevote(genesis), c, &key(k), &origin))
            .collect();
        let fx = f.on_votes(&mut ledger, pre, Some("peer"), true, 2_000);
        // Justified: the node commits at once.
        assert!(fx
            .send
            .iter()
            .any(|(v, _)| v.kind == Kind::Commit && v.target == c));
        assert_eq!(f.justified().0.epoch, finality::epoch_of(&c));
        assert_eq!(f.final_checkpoint().checkpoint.size, 1);
        let commits: Vec<Vote> = (2..=3)
            .filter_map(|k| Vote::sign(Kind::Commit, c, &key(k), &origin))
            .collect();
        let fx = f.on_votes(&mut ledger, commits, Some("peer"), true, 3_000);
        assert_eq!(fx.finalized, Some(c));
        assert_eq!(f.final_checkpoint().checkpoint, c);
        assert_eq!(ledger.final_block(), Some((3, all[3])));
        // A branch from height 1 is a rewrite of final history now.
        let parent = ledger.block_at(1).expect("read").expect("block").header;
        let r = SignalModel::new(9, Profile::Paper).record(
            RelayId(1),
            Minute(29_000_001),
            6,
            RecordFlags::CLOCK_SET,
        );
        let fork = assemble(
            &parent,
            &[r],
            &key(4),
            29_000_002 * 60_000,
            4,
            &AtomicBool::new(false),
        )
        .expect("mined");
        // What verify checks of it: the kept note, its root against the chain.
        keep_members(&ledger, f.members()).expect("kept");
        let line = verify_kept(&ledger).expect("verifies").expect("finality");
        assert!(line.starts_with("finality: height 3 final"), "{line}");
        // A byte of the kept note's last signature flipped: corruption, named.
        let mut state = ledger
            .store()
            .finality("final")
            .expect("read")
            .expect("kept");
        let n = state.len();
        state[n - 5] ^= 0x01;
        ledger.store().put_finality("final", &state).expect("write");
        assert!(matches!(
            verify_kept(&ledger),
            Err(StoreError::Corrupt { .. })
        ));
        let got = ledger.add(fork, 29_000_010 * 60_000);
        assert!(
            matches!(
                got,
                Err(crate::ledger::AddError::BelowFinal {
                    final_height: 3,
                    ..
                })
            ),
            "{got:?}"
        );
    }

    /// Prevotes from a source this node does not know to be justified do not justify.
    #[test]
    fn prevotes_from_an_unknown_source_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ledger, _) = ledger_with(dir.path(), 3);
        let mut f = finality(&mut ledger, 4);
        let origin = f.members().origin().to_owned();
        let all = ids(&ledger);
        let c = checkpoint(&all);
        // A "source" of size 2 that nobody justified.
        let made_up = Source {
            epoch: 2,
            root: crate::chain::tlog::root(&all[..2]),
        };
        let pre: Vec<Vote> = (1..=3)
            .filter_map(|k| Vote::sign(Kind::Prevote(made_up), c, &key(k), &origin))
            .collect();
        let fx = f.on_votes(&mut ledger, pre, None, false, 1_000);
        assert!(fx.send.iter().all(|(v, _)| v.kind != Kind::Commit));
        assert_eq!(f.justified().0.epoch, 0, "not justified");
    }

    /// A node that voted and restarts keeps its votes: it never prevotes the same height
    /// again (a double vote), and the others would have caught it if it did.
    #[test]
    fn own_votes_survive_a_restart_and_a_double_vote_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut ledger, _) = ledger_with(dir.path(), 3);
        let mut f = finality(&mut ledger, 1);
        let fx = f.advance(&mut ledger, true, 1_000);
        assert_eq!(fx.send.len(), 1, "a prevote of the tip");
        let first = fx.send[0].0;
        drop(f);
        drop(ledger);
        let mut ledger = Ledger::open(dir.path(), network()).expect("reopens");
        let mut f = finality(&mut ledger, 1);
        let fx = f.advance(&mut ledger, true, 10_000);
        assert!(
            fx.send.is_empty(),
            "voted again after a restart: {:?}",
            fx.send
        );
        // Another node's view: key 1's vote and a forged second one at the same height.
        let mut g = finality(&mut ledger, 3);
        let origin = g.members().origin().to_owned();
        let other = Vote::sign(
            first.kind,
            Checkpoint {
                size: first.target.size,
                root: [7; 32],
            },
            &key(1),
            &origin,
        )
        .expect("links");
        g.on_votes(&mut ledger, vec![first, other], None, true, 20_000);
        assert_eq!(g.evidence().len(), 1);
        assert_eq!(g.evidence()[0].offence, "double vote");
        assert_eq!(g.stats.offences, 1);
    }
}
