//! Finality at run time: which checkpoints this node knows to be justified and final, the
//! votes it holds, its own votes, and what a learned checkpoint does to its chain. The rules
//! are `gridledger_chain::finality`'s; this is the state they act on. No I/O but the store,
//! through the ledger, for what must survive a restart (a vote is kept before it is sent).
//!
//! The node calls [`Finality::on_votes`] with votes from peers, [`Finality::on_checkpoint`]
//! with a final checkpoint a peer serves, and [`Finality::advance`] whenever its chain or
//! the clock moved; each returns [`Effects`]: votes to gossip, switches of the main chain
//! to carry into the mempool, and what happened.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use ed25519_dalek::SigningKey;
use serde_json::json;

use crate::chain::finality::{
    self, epoch_of, offence, Checkpoint, Kind, Members, Offence, OwnVotes, Source, Vote,
};
use crate::chain::merkle::Hash;
use crate::chain::tlog::Frontier;
use crate::chain::BlockId;
use crate::ledger::{Added, Ledger};
use crate::store::kept::Finalised;
use crate::store::StoreError;

/// Votes kept per member to find offences among.
const RECENT_PER_MEMBER: usize = 64;
/// Justified checkpoints remembered as sources.
const KNOWN_JUSTIFIED: usize = 1024;
/// Heights above the final one that votes are held for (a vote further ahead is dropped:
/// no honest member votes for blocks that far above the final one it knows).
const MAX_AHEAD: u64 = 10_000;
/// Checkpoints with votes held at once, at most (the oldest go first).
const MAX_POOLS: usize = 4096;
/// Frontiers of blocks above the final one kept to compute checkpoints from, at most.
const MAX_FRONTIERS: usize = 4096;
/// Final checkpoint notes are kept for good one per this many heights (the first final one
/// at or above each multiple), besides the latest.
pub const KEEP_EVERY: u64 = 1024;

/// Finality's settings.
#[derive(Clone, Debug)]
pub struct FinalityConfig {
    /// The members and the quorum.
    pub members: Members,
    /// The least time between two of this node's prevotes: blocks arriving faster are
    /// finalised together.
    pub interval_ms: u64,
}

/// The latest final checkpoint: its block, the tlog's right edge there, its note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Final {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Its block.
    pub id: BlockId,
    /// The tlog's frontier at its size.
    pub frontier: Frontier,
    /// The checkpoint note with a quorum of commits (empty for the genesis block and an
    /// operator's pin).
    pub note: String,
    /// When this node learned it was final (Unix ms; 0 for genesis).
    pub at_ms: u64,
}

impl Final {
    /// Bytes kept in the store: size (8), root (32), id (32), frontier count (1) and hashes,
    /// at_ms (8), then the note.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.checkpoint.size.to_be_bytes());
        out.extend_from_slice(&self.checkpoint.root);
        out.extend_from_slice(&self.id.0);
        out.push(self.frontier.hashes().len() as u8);
        for h in self.frontier.hashes() {
            out.extend_from_slice(h);
        }
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        out.extend_from_slice(self.note.as_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let size = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
        let root: Hash = b.get(8..40)?.try_into().ok()?;
        let id = BlockId(b.get(40..72)?.try_into().ok()?);
        let n = usize::from(*b.get(72)?);
        let mut hashes = Vec::with_capacity(n);
        for i in 0..n {
            hashes.push(b.get(73 + 32 * i..105 + 32 * i)?.try_into().ok()?);
        }
        let at = 73 + 32 * n;
        let at_ms = u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?);
        let note = String::from_utf8(b.get(at + 8..)?.to_vec()).ok()?;
        let frontier = Frontier::from_parts(size, hashes)?;
        (frontier.root() == root).then_some(Final {
            checkpoint: Checkpoint { size, root },
            id,
            frontier,
            note,
            at_ms,
        })
    }
}

/// Two signed votes of one member that no honest member casts, as kept and served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// What the votes break.
    pub offence: &'static str,
    /// The member.
    pub member: [u8; 32],
    /// Both votes, as signed notes.
    pub notes: [String; 2],
    /// When this node found it (Unix ms).
    pub found_ms: u64,
}

impl Evidence {
    /// JSON, as `/evidence` serves it and the store keeps it.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "offence": self.offence,
            "member": hex::encode(self.member),
            "notes": self.notes,
            "found_ms": self.found_ms,
        })
    }
}

/// A final checkpoint this node learned from a peer before it held its block.
#[derive(Clone, Debug)]
struct Learned {
    checkpoint: Checkpoint,
    commits: Vec<Vote>,
}

/// A quorum-cosigned checkpoint that contradicts this node's final history: a safety
/// failure for people to resolve. The node stops mining and voting.
#[derive(Clone, Debug)]
pub struct SafetyFailure {
    /// This node's final checkpoint note.
    pub ours: String,
    /// The contradicting one.
    pub theirs: String,
    /// Where it came from.
    pub from: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// What a call did and asks the node to do.
#[derive(Debug, Default)]
pub struct Effects {
    /// Votes to send to the peers (a vote and the peer it came from, not to be sent back).
    pub send: Vec<(Vote, Option<String>)>,
    /// Switches of the main chain that finality made (a floor, an exclusion).
    pub switched: Vec<Added>,
    /// The checkpoint that became final, if one did.
    pub finalized: Option<Checkpoint>,
}

pub use crate::metrics::FinalityStats as Stats;

/// Finality's state.
#[derive(Debug)]
pub struct Finality {
    members: Members,
    interval_ms: u64,
    key: Option<SigningKey>,
    own: OwnVotes,
    fin: Final,
    /// The latest justified checkpoint and its block.
    justified: (Source, BlockId),
    known: VecDeque<Source>,
    prevotes: BTreeMap<Checkpoint, BTreeMap<[u8; 32], Vote>>,
    commits: BTreeMap<Checkpoint, BTreeMap<[u8; 32], Vote>>,
    recent: HashMap<[u8; 32], VecDeque<Vote>>,
    seen: HashSet<[u8; 64]>,
    frontiers: HashMap<BlockId, Frontier>,
    learned: Option<Learned>,
    last_prevote_ms: u64,
    /// Since when the tip has been above the final block (`None`: it is final).
    waiting_since_ms: Option<u64>,
    safety: Option<SafetyFailure>,
    evidence: Vec<Evidence>,
    /// Counters.
    pub stats: Stats,
}

/// A store error while keeping finality's state: logged; the node goes on (a vote not kept
/// is not sent).
fn logged(e: &StoreError) {
    tracing::error!("finality: cannot keep its state in the data dir: {e}");
}

impl Finality {
    /// Finality over `ledger`'s chain: the state kept in its store, else the genesis block
    /// final and justified. `key`: this node's key, if it votes (a member's).
    pub fn open(
        config: FinalityConfig,
        key: Option<SigningKey>,
        ledger: &mut Ledger,
    ) -> Result<Self, StoreError> {
        let genesis = ledger.network().genesis().id();
        let mut frontier = Frontier::new();
        frontier.push(&genesis);
        let gen_final = Final {
            checkpoint: Checkpoint {
                size: 1,
                root: frontier.root(),
            },
            id: genesis,
            frontier,
            note: String::new(),
            at_ms: 0,
        };
        let store = ledger.store();
        let fin = match store.finality("final")? {
            Some(b) => Final::from_bytes(&b).unwrap_or_else(|| {
                tracing::error!(
                    "finality: the kept final checkpoint does not decode; starting from genesis"
                );
                gen_final.clone()
            }),
            None => gen_final.clone(),
        };
        let own = store
            .finality("own")?
            .and_then(|b| OwnVotes::from_bytes(&b))
            .unwrap_or_default();
        let mut justified = (
            Source {
                epoch: epoch_of(&fin.checkpoint) + u64::from(fin.checkpoint.size > 1),
                root: fin.checkpoint.root,
            },
            fin.id,
        );
        if let Some(b) = store.finality("justified")? {
            if let (Some(e), Some(r), Some(id)) = (b.get(0..8), b.get(8..40), b.get(40..72)) {
                let s = Source {
                    epoch: u64::from_be_bytes(e.try_into().unwrap_or_default()),
                    root: r.try_into().unwrap_or_default(),
                };
                if s.epoch > justified.0.epoch {
                    justified = (s, BlockId(id.try_into().unwrap_or_default()));
                }
            }
        }
        let evidence = store
            .evidence()?
            .iter()
            .filter_map(|b| evidence_from_json(b))
            .collect();
        let key = key.filter(|k| config.members.contains(&k.verifying_key().to_bytes()));
        let mut f = Finality {
            members: config.members,
            interval_ms: config.interval_ms,
            key,
            own,
            fin,
            justified,
            known: VecDeque::new(),
            prevotes: BTreeMap::new(),
            commits: BTreeMap::new(),
            recent: HashMap::new(),
            seen: HashSet::new(),
            frontiers: HashMap::new(),
            learned: None,
            last_prevote_ms: 0,
            waiting_since_ms: None,
            safety: None,
            evidence,
            stats: Stats::default(),
        };
        f.know(Source::genesis(gen_final.checkpoint.root));
        f.know(Source {
            epoch: epoch_of(&f.fin.checkpoint),
            root: f.fin.checkpoint.root,
        });
        f.know(f.justified.0);
        if f.fin.checkpoint.size > 1 {
            f.know(Source {
                epoch: epoch_of(&f.fin.checkpoint) + 1,
                root: f.fin.checkpoint.root,
            });
        }
        // The chain as kept must hold the final block: the floor holds it from now on. If
        // it does not (a repair that salvaged less than the final chain), the final note is
        // taken again as if a peer had served it: final once the chain holds its block.
        let (h, id) = (f.fin.checkpoint.height(), f.fin.id);
        if ledger.tree().main_at(h) == Some(id) {
            ledger.set_final(h, id);
            let floor = f.floor_block(ledger);
            ledger.set_floor(&floor)?;
        } else {
            tracing::warn!(height = h, block = %id, "finality: the kept final block is not on the kept main chain; it is final again once the chain holds it");
            let note = std::mem::take(&mut f.fin.note);
            f.fin = gen_final.clone();
            f.justified = (Source::genesis(gen_final.checkpoint.root), gen_final.id);
            if let Ok((c, commits)) = f.members.open_checkpoint(note.as_bytes()) {
                f.learned = Some(Learned {
                    checkpoint: c,
                    commits,
                });
            }
        }
        Ok(f)
    }

    /// The members.
    #[must_use]
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The latest final checkpoint.
    #[must_use]
    pub fn final_checkpoint(&self) -> &Final {
        &self.fin
    }

    /// The latest justified checkpoint and its block.
    #[must_use]
    pub fn justified(&self) -> (Source, BlockId) {
        self.justified
    }

    /// Since when the tip has been above the final block, if it is.
    #[must_use]
    pub fn waiting_since_ms(&self) -> Option<u64> {
        self.waiting_since_ms
    }

    /// The safety failure, if this node met one.
    #[must_use]
    pub fn safety_failure(&self) -> Option<&SafetyFailure> {
        self.safety.as_ref()
    }

    /// True if this node votes (its key is a member's).
    #[must_use]
    pub fn votes(&self) -> bool {
        self.key.is_some()
    }

    /// The offences found, oldest first.
    #[must_use]
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    /// The votes held for checkpoints above the final one, for a peer that missed them.
    #[must_use]
    pub fn held_votes(&self, above: u64, max: usize) -> Vec<Vote> {
        self.prevotes
            .range(
                Checkpoint {
                    size: above + 1,
                    root: [0; 32],
                }..,
            )
            .chain(self.commits.range(
                Checkpoint {
                    size: above + 1,
                    root: [0; 32],
                }..,
            ))
            .flat_map(|(_, m)| m.values().copied())
            .take(max)
            .collect()
    }

    /// Counts a block refused for forking below the final block.
    pub fn refused_below_final(&mut self) {
        self.stats.below_final += 1;
    }

    fn know(&mut self, s: Source) {
        if !self.known.contains(&s) {
            self.known.push_back(s);
            while self.known.len() > KNOWN_JUSTIFIED {
                self.known.pop_front();
            }
        }
    }

    fn is_known(&self, s: &Source) -> bool {
        self.known.contains(s)
    }

    /// The block every main chain must hold: the latest justified one if its chain holds the
    /// final block, else the final block.
    fn floor_block(&self, ledger: &Ledger) -> BlockId {
        let (_, j) = self.justified;
        if j != self.fin.id && ledger.tree().chain_contains(&j, &self.fin.id) == Some(true) {
            j
        } else {
            self.fin.id
        }
    }

    /// The tlog frontier of the chain ending at `id`, a block whose chain holds the final
    /// block (`None` otherwise, or if unknown).
    fn frontier_of(&mut self, ledger: &Ledger, id: &BlockId) -> Option<Frontier> {
        if *id == self.fin.id {
            return Some(self.fin.frontier.clone());
        }
        if let Some(f) = self.frontiers.get(id) {
            return Some(f.clone());
        }
        let tree = ledger.tree();
        let final_height = self.fin.checkpoint.height();
        // Down the window to a block whose frontier is known, the final block, or the
        // window's base (below which the chain is the main chain, read from the store).
        let mut path = Vec::new();
        let mut cur = *id;
        let start = loop {
            if cur == self.fin.id {
                break self.fin.frontier.clone();
            }
            if let Some(f) = self.frontiers.get(&cur) {
                break f.clone();
            }
            let h = tree.window_height_of(&cur)?;
            if h <= final_height {
                return None;
            }
            match tree.parent_of(&cur) {
                Some(p) => {
                    path.push(cur);
                    cur = p;
                }
                // The base: the main chain from the final block up to it, from the store (a
                // node that learned a checkpoint far above its final block, once).
                None => {
                    path.push(cur);
                    let mut f = self.fin.frontier.clone();
                    for id in self.main_between_final_and(tree, h)? {
                        f.push(&id);
                    }
                    break f;
                }
            }
        };
        let mut f = start;
        let n = path.len();
        // Bounded however long finality waits: a stall of many blocks refills it from the
        // final block once.
        if self.frontiers.len() > MAX_FRONTIERS {
            self.frontiers.clear();
        }
        for (i, b) in path.iter().rev().enumerate() {
            f.push(b);
            // Kept for the latest blocks of a long path only: each costs a few hundred bytes.
            if n - i <= 256 {
                self.frontiers.insert(*b, f.clone());
            }
        }
        Some(f)
    }

    /// The main chain's ids from just above the final block to just below `height` (the
    /// window's base), lowest first, read in runs (below the window, from the store); `None`
    /// if the main chain does not hold the final block or has a gap.
    fn main_between_final_and(
        &self,
        tree: &crate::chain::BlockTree,
        height: u32,
    ) -> Option<Vec<BlockId>> {
        let final_height = self.fin.checkpoint.height();
        if tree.main_at(final_height) != Some(self.fin.id) {
            return None;
        }
        let mut out = Vec::new();
        let mut at = final_height + 1;
        while at < height {
            let run = tree.main_range(at, 4096);
            if run.is_empty() {
                return None;
            }
            for (rh, rid) in run.into_iter().take_while(|(rh, _)| *rh < height) {
                if rh != at {
                    return None;
                }
                out.push(rid);
                at += 1;
            }
        }
        Some(out)
    }

    /// The ids of the chain ending at `id` above the final block, lowest first.
    fn ids_above_final(&self, ledger: &Ledger, id: &BlockId) -> Option<Vec<BlockId>> {
        let tree = ledger.tree();
        let final_height = self.fin.checkpoint.height();
        let mut ids = Vec::new();
        let mut cur = *id;
        while cur != self.fin.id {
            let h = tree.window_height_of(&cur)?;
            if h <= final_height {
                return None;
            }
            ids.push(cur);
            match tree.parent_of(&cur) {
                Some(p) => cur = p,
                None => {
                    // The base: below it, the main chain.
                    let below = self.main_between_final_and(tree, h)?;
                    ids.extend(below.into_iter().rev());
                    break;
                }
            }
        }
        ids.reverse();
        Some(ids)
    }

    /// The checkpoint of the chain ending at `id`.
    fn checkpoint_of(&mut self, ledger: &Ledger, id: &BlockId) -> Option<Checkpoint> {
        let f = self.frontier_of(ledger, id)?;
        Some(Checkpoint {
            size: f.size(),
            root: f.root(),
        })
    }

    /// The block of checkpoint `c`, among the known blocks at its height whose chain holds
    /// the final block.
    fn block_of(&mut self, ledger: &Ledger, c: &Checkpoint) -> Option<BlockId> {
        if *c == self.fin.checkpoint {
            return Some(self.fin.id);
        }
        let h = c.height();
        if h <= self.fin.checkpoint.height() {
            return None;
        }
        // The main chain's block first: nearly always the one; side blocks only if not.
        if let Some(main) = ledger.tree().main_at(h) {
            if self.checkpoint_of(ledger, &main).as_ref() == Some(c) {
                return Some(main);
            }
        }
        let side: Vec<BlockId> = ledger
            .tree()
            .side_blocks(4096, 64)
            .into_iter()
            .filter(|(_, bh, _)| *bh == h)
            .map(|(id, _, _)| id)
            .collect();
        side.into_iter()
            .find(|id| self.checkpoint_of(ledger, id).as_ref() == Some(c))
    }

    /// Takes votes from a peer (`from`; `None`: from this node or a pull). Each new one is
    /// checked (one batch of signatures), kept, searched for offences, and sent on if it is
    /// among the first quorum for its checkpoint; then the node's state moves as far as the
    /// votes allow.
    pub fn on_votes(
        &mut self,
        ledger: &mut Ledger,
        votes: Vec<Vote>,
        from: Option<&str>,
        witnessed: bool,
        now_ms: u64,
    ) -> Effects {
        let mut fx = Effects::default();
        // Votes seen before, and votes for a checkpoint a quorum has voted for already (this
        // node needs no more of them, and its peers got the first quorum from it), cost no
        // signature check: at 64 members that is a third of a round's votes.
        let q = self.members.quorum();
        let mut redundant = 0;
        let fresh: Vec<Vote> = votes
            .into_iter()
            .filter(|v| !self.seen.contains(&v.sig))
            .filter(|v| {
                let (pools, done) = match v.kind {
                    // A prevote is redundant once its checkpoint is justified here (the
                    // first quorum may hold prevotes from a source this node cannot count).
                    Kind::Prevote(_) => (
                        &self.prevotes,
                        self.is_known(&Source {
                            epoch: epoch_of(&v.target),
                            root: v.target.root,
                        }),
                    ),
                    Kind::Commit => (&self.commits, true),
                };
                let full = done
                    && pools
                        .get(&v.target)
                        .is_some_and(|m| m.len() >= q && !m.contains_key(&v.member));
                redundant += u64::from(full);
                !full
            })
            .collect();
        self.stats.redundant += redundant;
        if fresh.is_empty() {
            return fx;
        }
        // One batch; a bad one is found and dropped, the others kept.
        // One batch. A batch with a bad signature is dropped whole: an honest peer never
        // sends one, and checking each again would let a sender buy two checks per vote;
        // the good votes in it come again from other peers (or `GET /votes`). A small batch
        // (a vote or a few, as gossip sends them) is checked one by one instead.
        let good: Vec<Vote> = match self.members.check_all(&fresh) {
            Ok(()) => fresh,
            Err(_) if fresh.len() <= 4 => fresh
                .into_iter()
                .filter(|v| {
                    let ok = self.members.check(v).is_ok();
                    if !ok {
                        self.stats.votes_refused += 1;
                    }
                    ok
                })
                .collect(),
            Err(_) => {
                self.stats.votes_refused += fresh.len() as u64;
                tracing::debug!(from = ?from, votes = fresh.len(), "a batch of votes with a bad signature: dropped");
                Vec::new()
            }
        };
        for v in good {
            if self.take(ledger, v, now_ms) {
                fx.send.push((v, from.map(str::to_owned)));
            }
        }
        self.advance_into(ledger, witnessed, now_ms, &mut fx);
        fx
    }

    /// Keeps one checked vote; true if it should be sent on.
    fn take(&mut self, ledger: &Ledger, v: Vote, now_ms: u64) -> bool {
        self.seen.insert(v.sig);
        if self.seen.len() > 64 * MAX_POOLS {
            self.seen.clear();
        }
        self.stats.votes += 1;
        // Offences against what this member voted before.
        let recent = self.recent.entry(v.member).or_default();
        let mut found = Vec::new();
        for w in recent.iter() {
            if let Some(o) = offence(w, &v) {
                found.push((o, *w));
            }
        }
        recent.push_back(v);
        while recent.len() > RECENT_PER_MEMBER {
            recent.pop_front();
        }
        for (o, w) in found {
            self.offended(ledger, o, &w, &v, now_ms);
        }
        let final_size = self.fin.checkpoint.size;
        if v.target.size <= final_size || v.target.size > final_size + MAX_AHEAD {
            return false;
        }
        let pools = match v.kind {
            Kind::Prevote(_) => &mut self.prevotes,
            Kind::Commit => &mut self.commits,
        };
        let pool = pools.entry(v.target).or_default();
        let had = pool.len();
        pool.entry(v.member).or_insert(v);
        // Full: the checkpoint with the fewest votes goes (a member filling the pools with
        // checkpoints nobody else votes for loses its own; the lowest would be the live one).
        while pools.len() > MAX_POOLS {
            let Some(least) = pools.iter().min_by_key(|(_, m)| m.len()).map(|(c, _)| *c) else {
                break;
            };
            pools.remove(&least);
        }
        had < self.members.quorum()
    }

    fn offended(&mut self, ledger: &Ledger, o: Offence, a: &Vote, b: &Vote, now_ms: u64) {
        let origin = self.members.origin();
        let e = Evidence {
            offence: match o {
                Offence::DoubleVote => "double vote",
                Offence::Surround => "surround vote",
            },
            member: a.member,
            notes: [a.to_note(origin), b.to_note(origin)],
            found_ms: now_ms,
        };
        if self.evidence.iter().any(|x| x.notes == e.notes) {
            return;
        }
        tracing::warn!(member = %hex::encode(a.member), offence = e.offence, "EQUIVOCATION: a member signed two votes no honest member signs; both are kept as evidence (/evidence)");
        if let Err(err) = ledger
            .store()
            .put_evidence(e.to_json().to_string().as_bytes())
        {
            logged(&err);
        }
        self.stats.offences += 1;
        self.evidence.push(e);
    }

    /// Moves finality on after the chain or the clock changed: votes waiting for a block
    /// are counted, a learned checkpoint matched, and this node votes if it may.
    pub fn advance(&mut self, ledger: &mut Ledger, witnessed: bool, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        self.advance_into(ledger, witnessed, now_ms, &mut fx);
        fx
    }

    fn advance_into(
        &mut self,
        ledger: &mut Ledger,
        witnessed: bool,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        self.match_learned(ledger, now_ms, fx);
        // Justifications, lowest first, then finality; again while either moved.
        for _ in 0..8 {
            let moved = self.justify(ledger, fx) | self.finalize(ledger, now_ms, fx);
            if !moved {
                break;
            }
        }
        let tip_height = ledger.tree().height();
        if tip_height > self.fin.checkpoint.height() {
            self.waiting_since_ms.get_or_insert(now_ms);
        } else {
            self.waiting_since_ms = None;
        }
        if self.safety.is_none() {
            self.vote(ledger, witnessed, now_ms, fx);
        }
    }

    /// Counts the prevotes of checkpoints not yet justified: a prevote counts if its source
    /// is a checkpoint known justified and its target's block descends from the source's.
    fn justify(&mut self, ledger: &mut Ledger, fx: &mut Effects) -> bool {
        let q = self.members.quorum();
        let candidates: Vec<Checkpoint> = self
            .prevotes
            .iter()
            .filter(|(c, m)| {
                m.len() >= q
                    && !self.is_known(&Source {
                        epoch: epoch_of(c),
                        root: c.root,
                    })
            })
            .map(|(c, _)| *c)
            .collect();
        let mut moved = false;
        for c in candidates {
            let Some(block) = self.block_of(ledger, &c) else {
                continue;
            };
            let votes: Vec<Vote> = self.prevotes[&c].values().copied().collect();
            let mut sources: HashMap<Source, bool> = HashMap::new();
            let mut count = 0;
            for v in votes {
                let Kind::Prevote(s) = v.kind else { continue };
                let ok = match sources.get(&s) {
                    Some(ok) => *ok,
                    None => {
                        let ok = self.is_known(&s) && self.links(ledger, &s, &block);
                        sources.insert(s, ok);
                        ok
                    }
                };
                count += usize::from(ok);
            }
            if count < q {
                continue;
            }
            let s = Source {
                epoch: epoch_of(&c),
                root: c.root,
            };
            self.know(s);
            moved = true;
            tracing::debug!(height = c.height(), block = %block, "justified");
            if s.epoch > self.justified.0.epoch {
                self.set_justified(ledger, s, block, fx);
            }
        }
        moved
    }

    /// True if `target` (a block whose chain holds the final block) descends from the block
    /// of source `s`.
    fn links(&mut self, ledger: &Ledger, s: &Source, target: &BlockId) -> bool {
        let sc = s.checkpoint();
        if sc.size <= self.fin.checkpoint.size {
            // At or below the final block, a known justified source is on the final chain,
            // which every block counted here holds.
            return true;
        }
        match self.block_of(ledger, &sc) {
            Some(b) => ledger.tree().chain_contains(target, &b) == Some(true),
            None => false,
        }
    }

    fn set_justified(&mut self, ledger: &mut Ledger, s: Source, block: BlockId, fx: &mut Effects) {
        self.justified = (s, block);
        let mut b = Vec::with_capacity(72);
        b.extend_from_slice(&s.epoch.to_be_bytes());
        b.extend_from_slice(&s.root);
        b.extend_from_slice(&block.0);
        if let Err(e) = ledger.store().put_finality("justified", &b) {
            logged(&e);
        }
        self.set_floor(ledger, fx);
    }

    fn set_floor(&mut self, ledger: &mut Ledger, fx: &mut Effects) {
        let floor = self.floor_block(ledger);
        match ledger.set_floor(&floor) {
            Ok(Some(added)) => fx.switched.push(added),
            Ok(None) => {}
            Err(e) => logged(&e),
        }
    }

    /// Finalises the highest justified checkpoint (at a prevote epoch) that a quorum has
    /// committed.
    fn finalize(&mut self, ledger: &mut Ledger, now_ms: u64, fx: &mut Effects) -> bool {
        let q = self.members.quorum();
        let best = self
            .commits
            .iter()
            .rev()
            .filter(|(c, m)| {
                m.len() >= q
                    && c.size > self.fin.checkpoint.size
                    && self.is_known(&Source {
                        epoch: epoch_of(c),
                        root: c.root,
                    })
            })
            .map(|(c, m)| (*c, m.values().copied().collect::<Vec<Vote>>()))
            .next();
        let Some((c, commits)) = best else {
            return false;
        };
        let Some(block) = self.block_of(ledger, &c) else {
            return false;
        };
        self.make_final(ledger, c, block, &commits, now_ms, fx)
    }

    /// Makes `block` (checkpoint `c`, committed by `commits`) final: kept in one transaction
    /// with its note and the tlog subtrees it completes, then the floor.
    fn make_final(
        &mut self,
        ledger: &mut Ledger,
        c: Checkpoint,
        block: BlockId,
        commits: &[Vote],
        now_ms: u64,
        fx: &mut Effects,
    ) -> bool {
        // The ids from the old final block up, along the block's chain (the window, and
        // below its base the main chain).
        let Some(ids) = self.ids_above_final(ledger, &block) else {
            return false;
        };
        let mut frontier = self.fin.frontier.clone();
        let mut subtrees = Vec::new();
        for id in &ids {
            frontier.push_with(id, |level, index, hash| {
                if level >= crate::store::kept::SUBTREE_LEVEL {
                    subtrees.push((level, index, *hash));
                }
            });
        }
        if frontier.root() != c.root || frontier.size() != c.size {
            tracing::error!(
                height = c.height(),
                "finality: a checkpoint's root does not match its block's chain"
            );
            return false;
        }
        let note = self.members.checkpoint_note(&c, commits);
        let fin = Final {
            checkpoint: c,
            id: block,
            frontier,
            note,
            at_ms: now_ms,
        };
        let state = fin.to_bytes();
        // Kept for good: the first final checkpoint in each run of KEEP_EVERY heights (a
        // note a block would cost more than a block's own bytes).
        let keep = u64::from(c.height()) / KEEP_EVERY
            > u64::from(self.fin.checkpoint.height()) / KEEP_EVERY;
        if let Err(e) = ledger.store().put_final(&Finalised {
            state: &state,
            checkpoint: keep.then(|| (c.height(), fin.note.as_bytes())),
            subtrees: &subtrees,
        }) {
            logged(&e);
            return false;
        }
        let height = c.height();
        tracing::info!(height, block = %block, "final");
        tracing::debug!(target: crate::trace::TRACE, at_ms = now_ms, height, block = %block, "final");
        self.fin = fin;
        self.stats.finalized += 1;
        fx.finalized = Some(c);
        ledger.set_final(height, block);
        let commit_epoch = Source {
            epoch: epoch_of(&c) + 1,
            root: c.root,
        };
        self.know(commit_epoch);
        if commit_epoch.epoch > self.justified.0.epoch {
            self.set_justified(ledger, commit_epoch, block, fx);
        } else {
            self.set_floor(ledger, fx);
        }
        // Nothing at or below the final block is needed any more.
        let keep = Checkpoint {
            size: c.size + 1,
            root: [0; 32],
        };
        self.prevotes = self.prevotes.split_off(&keep);
        self.commits = self.commits.split_off(&keep);
        let tree = ledger.tree();
        self.frontiers
            .retain(|id, _| tree.window_height_of(id).is_some_and(|h| h > height));
        if self
            .learned
            .as_ref()
            .is_some_and(|l| l.checkpoint.size <= c.size)
        {
            self.learned = None;
        }
        true
    }

    /// This node's own votes: a commit of the highest justified checkpoint it may commit,
    /// then a prevote of its tip if it may, each kept durably before it is sent.
    fn vote(&mut self, ledger: &mut Ledger, witnessed: bool, now_ms: u64, fx: &mut Effects) {
        let Some(key) = self.key.clone() else {
            return;
        };
        let origin = self.members.origin().to_owned();
        // Commit: the justified checkpoints above the final one, highest first.
        let commit = self
            .known
            .iter()
            .filter(|s| s.epoch % 2 == 0 && s.checkpoint().size > self.fin.checkpoint.size)
            .max_by_key(|s| s.epoch)
            .copied();
        let q = self.members.quorum();
        if let Some(s) = commit {
            let c = s.checkpoint();
            // A quorum committed already: this node's commit would add nothing.
            let enough = self.commits.get(&c).is_some_and(|m| m.len() >= q);
            if !enough && self.own.may_commit(s.epoch) && self.block_of(ledger, &c).is_some() {
                if let Some(v) = Vote::sign(Kind::Commit, c, &key, &origin) {
                    let mut own = self.own;
                    own.committed(s.epoch);
                    if self.keep_own(ledger, own) {
                        self.cast(ledger, v, now_ms, fx);
                    }
                }
            }
        }
        // Prevote: the tip, if its chain holds the justified block and this node's reads.
        let tip = ledger.tree().tip();
        let h = ledger.tree().height();
        if !witnessed || u64::from(h) < self.fin.checkpoint.size {
            return;
        }
        let (source, jblock) = self.justified;
        let target_epoch = 2 * u64::from(h);
        if !self.own.may_prevote(source.epoch, target_epoch) {
            return;
        }
        // Pacing: at most one prevote per interval; blocks arriving faster are finalised
        // together by the next round (fewer votes; the interval's worth more latency).
        if now_ms < self.last_prevote_ms + self.interval_ms {
            return;
        }
        // Justified at or above this height already: a prevote would add nothing (the commit
        // round is under way).
        if self.known.iter().any(|s| s.epoch >= target_epoch) {
            return;
        }
        if jblock != tip && ledger.tree().chain_contains(&tip, &jblock) != Some(true) {
            return;
        }
        let Some(target) = self.checkpoint_of(ledger, &tip) else {
            return;
        };
        if self.prevotes.get(&target).is_some_and(|m| m.len() >= q) {
            return;
        }
        let Some(v) = Vote::sign(Kind::Prevote(source), target, &key, &origin) else {
            return;
        };
        let mut own = self.own;
        own.prevoted(source.epoch, target_epoch);
        if self.keep_own(ledger, own) {
            self.last_prevote_ms = now_ms;
            self.cast(ledger, v, now_ms, fx);
        }
    }

    /// Keeps `own` durably; only then may the vote it records be sent.
    fn keep_own(&mut self, ledger: &Ledger, own: OwnVotes) -> bool {
        match ledger.store().put_finality("own", &own.to_bytes()) {
            Ok(()) => {
                self.own = own;
                true
            }
            Err(e) => {
                logged(&e);
                false
            }
        }
    }

    fn cast(&mut self, ledger: &mut Ledger, v: Vote, now_ms: u64, fx: &mut Effects) {
        self.stats.cast += 1;
        self.take(ledger, v, now_ms);
        fx.send.push((v, None));
        // A quorum may be complete with this node's own vote.
        for _ in 0..4 {
            if !(self.justify(ledger, fx) | self.finalize(ledger, now_ms, fx)) {
                break;
            }
        }
    }

    /// A final checkpoint note a peer (`from`) serves: checked against the members and the
    /// quorum; if it is above this node's final block it becomes final here as soon as this
    /// node holds its block (a main chain that contradicts it is dropped); if it contradicts
    /// this node's final history, that is a safety failure.
    pub fn on_checkpoint(
        &mut self,
        ledger: &mut Ledger,
        note: &[u8],
        from: &str,
        now_ms: u64,
    ) -> Result<Effects, finality::FinalityError> {
        let (c, commits) = self.members.open_checkpoint(note)?;
        let mut fx = Effects::default();
        if c.size <= self.fin.checkpoint.size {
            let ours = if c.size == self.fin.checkpoint.size {
                Some(self.fin.checkpoint.root)
            } else {
                let reader = ledger.reader();
                crate::chain::tlog::root_of(&crate::tlog::FinalTlog::new(&reader), c.size).ok()
            };
            if ours.is_some_and(|r| r != c.root) {
                self.fail_safety(String::from_utf8_lossy(note).into_owned(), from, now_ms);
            }
            return Ok(fx);
        }
        self.stats.learned += 1;
        for v in &commits {
            self.take(ledger, *v, now_ms);
        }
        self.learned = Some(Learned {
            checkpoint: c,
            commits,
        });
        self.match_learned(ledger, now_ms, &mut fx);
        Ok(fx)
    }

    fn fail_safety(&mut self, theirs: String, from: &str, now_ms: u64) {
        if self.safety.is_some() {
            return;
        }
        tracing::error!(%from, "SAFETY FAILURE: a checkpoint cosigned by a quorum of members contradicts this node's final history. This node stops mining and voting. Both checkpoints are in /status and /evidence: the members must resolve it.");
        self.safety = Some(SafetyFailure {
            ours: self.fin.note.clone(),
            theirs,
            from: from.to_owned(),
            at_ms: now_ms,
        });
    }

    /// A learned checkpoint against the chain: final when its block is here; the main
    /// chain's block at its height dropped if the chain there contradicts it.
    fn match_learned(&mut self, ledger: &mut Ledger, now_ms: u64, fx: &mut Effects) {
        let Some(l) = self.learned.clone() else {
            return;
        };
        if let Some(block) = self.block_of(ledger, &l.checkpoint) {
            // A quorum of commits: taken as final (the prevotes that justified it went
            // before; FORMAT.md section 11 says what a joining node trusts).
            self.know(Source {
                epoch: epoch_of(&l.checkpoint),
                root: l.checkpoint.root,
            });
            self.make_final(ledger, l.checkpoint, block, &l.commits, now_ms, fx);
            return;
        }
        let h = l.checkpoint.height();
        let tree = ledger.tree();
        if tree.height() < h {
            return;
        }
        let Some(main) = tree.main_at(h) else { return };
        if self.checkpoint_of(ledger, &main).as_ref() != Some(&l.checkpoint) {
            tracing::warn!(height = h, block = %main, "the main chain contradicts a final checkpoint learned from a peer: dropping that branch");
            match ledger.exclude(&main) {
                Ok(Some(added)) => fx.switched.push(added),
                Ok(None) => {}
                Err(e) => logged(&e),
            }
        }
    }
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
        Finality::open(
            FinalityConfig {
                members,
                interval_ms: 0,
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
