//! Finality's state machine: which checkpoints this node knows to be justified and final,
//! the votes it holds, its own votes, and what a learned checkpoint does to its chain. The
//! rules (what a vote is, who may cast it, what is an offence) are `gridledger_chain::
//! finality`'s; this is the state they act on, with no I/O: the chain comes in through
//! [`Chain`], a ledger behind a store in the node or [`crate::memchain::MemChain`] in tests
//! and the simulator, and what must survive a restart goes out through [`Chain::keep`]
//! before it counts (a vote is kept before it is sent).
//!
//! The runtime calls [`Finality::on_votes`] with votes from peers, [`Finality::on_checkpoint`]
//! with a final checkpoint a peer serves, and [`Finality::advance`] whenever its chain or
//! the clock moved; each returns [`Effects`]: votes to gossip, switches of the main chain
//! to carry into the mempool, and what happened.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Display;

use ed25519_dalek::SigningKey;

use gridledger_chain::finality::{
    self, epoch_of, offence, Checkpoint, Epoch, Kind, Members, Offence, OwnVotes, Source, Vote,
};
use gridledger_chain::merkle::Hash;
use gridledger_chain::tlog::Frontier;
use gridledger_chain::{BlockId, BlockTree, Height};

/// The tlog subtrees kept at each finalisation: those of `2^SUBTREE_LEVEL` leaves and up
/// (an inclusion proof then reads at most this many ids from the chain per level below).
pub const SUBTREE_LEVEL: u32 = 8;

/// The pacing of a member's prevotes when none is set: 0.5 s up to 16 members, 30 ms a
/// member beyond. A round costs each node about two quorums of signatures to check and to
/// relay, so a bigger network spaces its rounds (64 members: about 2 s): blocks that come
/// faster are finalised together.
#[must_use]
pub fn default_interval(members: usize) -> std::time::Duration {
    std::time::Duration::from_millis(500)
        .max(std::time::Duration::from_millis(30) * u32::try_from(members).unwrap_or(u32::MAX))
}

/// The chain as finality sees it, and where its state is kept.
pub trait Chain {
    /// What a switch of the main chain that finality made did (a floor, an exclusion), for
    /// the runtime to carry into its mempool.
    type Switch;
    /// Why something could not be kept or switched.
    type Error: Display;
    /// The fork choice's blocks.
    fn tree(&self) -> &BlockTree;
    /// Makes `id` (a main-chain block at `height`) final: from now on a chain without it is
    /// refused.
    fn set_final(&mut self, height: Height, id: BlockId);
    /// Makes `id` the tree's floor (`BlockTree::set_floor`), durably.
    ///
    /// # Errors
    /// The store could not keep the switch.
    fn set_floor(&mut self, id: &BlockId) -> Result<Option<Self::Switch>, Self::Error>;
    /// Excludes `id` from every main chain (`BlockTree::exclude`), durably.
    ///
    /// # Errors
    /// The store could not keep the switch.
    fn exclude(&mut self, id: &BlockId) -> Result<Option<Self::Switch>, Self::Error>;
    /// The tlog root of the main chain's first `size` blocks, at or below the final block
    /// (`None` if it cannot be read).
    fn root_at(&self, size: u64) -> Option<Hash>;
    /// Keeps `what` durably. Finality acts on it only once this returns `Ok`.
    ///
    /// # Errors
    /// The store could not keep it.
    fn keep(&mut self, what: Keep<'_>) -> Result<(), Self::Error>;
}

/// What finality keeps, to survive a restart.
#[derive(Debug)]
pub enum Keep<'a> {
    /// The latest justified checkpoint (`epoch`, root, block: 72 bytes).
    Justified(&'a [u8]),
    /// This node's own votes ([`OwnVotes::to_bytes`]).
    Own(&'a [u8]),
    /// A finalisation, in one transaction.
    Final {
        /// The new [`Final`], encoded ([`Final::to_bytes`]).
        state: &'a [u8],
        /// The final checkpoint's height and its note, if it is one to keep for good (one
        /// per [`KEEP_EVERY`] heights); the latest is in `state` anyway.
        checkpoint: Option<(Height, &'a [u8])>,
        /// Whole subtrees the final chain's tlog gained: (level, index, hash).
        subtrees: &'a [(u32, u64, Hash)],
    },
    /// An offence found.
    Evidence(&'a Evidence),
}

/// What finality kept before a restart, as [`Chain::keep`] was given it.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    /// The latest [`Keep::Final`]'s `state`.
    pub final_state: Option<Vec<u8>>,
    /// The latest [`Keep::Own`].
    pub own: Option<Vec<u8>>,
    /// The latest [`Keep::Justified`].
    pub justified: Option<Vec<u8>>,
    /// Every [`Keep::Evidence`], oldest first.
    pub evidence: Vec<Evidence>,
}

/// How many times one member's vote counts towards a quorum: once. The `planted-bug`
/// feature counts it twice: a bug planted on purpose, for the simulator to show that its
/// seeds catch a broken quorum (two final blocks at one height). Never in a release.
const COUNTS: usize = if cfg!(feature = "planted-bug") { 2 } else { 1 };

/// Votes kept per member to find offences among.
const RECENT_PER_MEMBER: usize = 64;
/// One member's votes kept to find offences among, and the highest source and target it
/// ever linked. A vote whose source is at or above every source before and whose target is
/// above every target before can be no offence against any of them (no equal target, and
/// nothing before it surrounds it or is surrounded by it), so an honest member's votes,
/// arriving in order, skip the search of the sixty-four kept (about 1 % of a simulated
/// network's instructions, callgrind, 200 nodes and 16 members).
#[derive(Debug, Default)]
struct Recent {
    votes: VecDeque<Vote>,
    top: Option<(Epoch, Epoch)>,
}

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
    /// The network's genesis block, final from the start.
    pub genesis: BlockId,
    /// How long a tip must stand before this node prevotes it ([`DEFAULT_SETTLE_MS`]).
    pub settle_ms: u64,
}

/// How long a tip stands before a member prevotes it, by default: longer than a block
/// takes to reach most nodes, so that a race at the tip is settled before the round.
pub const DEFAULT_SETTLE_MS: u64 = 300;

/// How often the runtime moves finality on by the clock alone (its pacing and the tip's
/// settling wait for it).
pub const TICK_MS: u64 = 250;

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
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
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

    /// The [`Self::to_bytes`] form read back (`None`: not that form).
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
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
#[derive(Debug)]
pub struct Effects<S> {
    /// Votes to send to the peers (a vote and the peer it came from, not to be sent back).
    pub send: Vec<(Vote, Option<String>)>,
    /// Switches of the main chain that finality made (a floor, an exclusion).
    pub switched: Vec<S>,
    /// The checkpoint that became final, if one did.
    pub finalized: Option<Checkpoint>,
}

impl<S> Default for Effects<S> {
    fn default() -> Self {
        Effects {
            send: Vec::new(),
            switched: Vec::new(),
            finalized: None,
        }
    }
}

/// Finality's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Valid votes taken (new ones).
    pub votes: u64,
    /// Votes refused (malformed, not a member, a bad signature).
    pub votes_refused: u64,
    /// Votes this node cast.
    pub cast: u64,
    /// Finalisations.
    pub finalized: u64,
    /// Offences found.
    pub offences: u64,
    /// Blocks refused for forking below the final block.
    pub below_final: u64,
    /// Checkpoints learned from peers.
    pub learned: u64,
    /// Votes not checked: their checkpoint had a quorum already.
    pub redundant: u64,
}

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
    recent: HashMap<[u8; 32], Recent>,
    seen: HashSet<[u8; 64]>,
    frontiers: HashMap<BlockId, Frontier>,
    learned: Option<Learned>,
    last_prevote_ms: u64,
    /// The tip, and since when it has been the tip.
    tip_since: (BlockId, u64),
    settle_ms: u64,
    /// Since when the tip has been above the final block (`None`: it is final).
    waiting_since_ms: Option<u64>,
    safety: Option<SafetyFailure>,
    evidence: Vec<Evidence>,
    /// Counters.
    pub stats: Stats,
}

/// A store error while keeping finality's state: logged; the node goes on (a vote not kept
/// is not sent).
fn logged(e: &impl Display) {
    tracing::error!("finality: cannot keep its state in the data dir: {e}");
}

impl Finality {
    /// Finality over `ledger`'s chain: the state kept in its store, else the genesis block
    /// final and justified. `key`: this node's key, if it votes (a member's).
    pub fn open<L: Chain>(
        config: FinalityConfig,
        key: Option<SigningKey>,
        kept: Kept,
        ledger: &mut L,
    ) -> Result<Self, L::Error> {
        let genesis = config.genesis;
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
        let fin = match kept.final_state {
            Some(b) => Final::from_bytes(&b).unwrap_or_else(|| {
                tracing::error!(
                    "finality: the kept final checkpoint does not decode; starting from genesis"
                );
                gen_final.clone()
            }),
            None => gen_final.clone(),
        };
        let own = kept
            .own
            .and_then(|b| OwnVotes::from_bytes(&b))
            .unwrap_or_default();
        let mut justified = (
            Source {
                epoch: epoch_of(&fin.checkpoint) + u64::from(fin.checkpoint.size > 1),
                root: fin.checkpoint.root,
            },
            fin.id,
        );
        if let Some(b) = kept.justified {
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
        let evidence = kept.evidence;
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
            tip_since: (BlockId([0; 32]), 0),
            settle_ms: config.settle_ms,
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
    fn floor_block<L: Chain>(&self, ledger: &L) -> BlockId {
        let (_, j) = self.justified;
        if j != self.fin.id && ledger.tree().chain_contains(&j, &self.fin.id) == Some(true) {
            j
        } else {
            self.fin.id
        }
    }

    /// The tlog frontier of the chain ending at `id`, a block whose chain holds the final
    /// block (`None` otherwise, or if unknown).
    fn frontier_of<L: Chain>(&mut self, ledger: &L, id: &BlockId) -> Option<Frontier> {
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
    fn main_between_final_and(&self, tree: &BlockTree, height: u32) -> Option<Vec<BlockId>> {
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
    fn ids_above_final<L: Chain>(&self, ledger: &L, id: &BlockId) -> Option<Vec<BlockId>> {
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
    fn checkpoint_of<L: Chain>(&mut self, ledger: &L, id: &BlockId) -> Option<Checkpoint> {
        let f = self.frontier_of(ledger, id)?;
        Some(Checkpoint {
            size: f.size(),
            root: f.root(),
        })
    }

    /// The block of checkpoint `c`, among the known blocks at its height whose chain holds
    /// the final block.
    fn block_of<L: Chain>(&mut self, ledger: &L, c: &Checkpoint) -> Option<BlockId> {
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
    pub fn on_votes<L: Chain>(
        &mut self,
        ledger: &mut L,
        votes: Vec<Vote>,
        from: Option<&str>,
        witnessed: bool,
        now_ms: u64,
    ) -> Effects<L::Switch> {
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
    fn take<L: Chain>(&mut self, ledger: &mut L, v: Vote, now_ms: u64) -> bool {
        self.seen.insert(v.sig);
        if self.seen.len() > 64 * MAX_POOLS {
            self.seen.clear();
        }
        self.stats.votes += 1;
        // Offences against what this member voted before.
        let recent = self.recent.entry(v.member).or_default();
        let (source, target) = v.link();
        let mut found = Vec::new();
        if recent.top.is_some_and(|(s, t)| source < s || target <= t) {
            for w in &recent.votes {
                if let Some(o) = offence(w, &v) {
                    found.push((o, *w));
                }
            }
        }
        recent.top = Some(
            recent
                .top
                .map_or((source, target), |(s, t)| (s.max(source), t.max(target))),
        );
        recent.votes.push_back(v);
        while recent.votes.len() > RECENT_PER_MEMBER {
            recent.votes.pop_front();
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

    fn offended<L: Chain>(&mut self, ledger: &mut L, o: Offence, a: &Vote, b: &Vote, now_ms: u64) {
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
        if let Err(err) = ledger.keep(Keep::Evidence(&e)) {
            logged(&err);
        }
        self.stats.offences += 1;
        self.evidence.push(e);
    }

    /// Moves finality on after the chain or the clock changed: votes waiting for a block
    /// are counted, a learned checkpoint matched, and this node votes if it may.
    pub fn advance<L: Chain>(
        &mut self,
        ledger: &mut L,
        witnessed: bool,
        now_ms: u64,
    ) -> Effects<L::Switch> {
        let mut fx = Effects::default();
        self.advance_into(ledger, witnessed, now_ms, &mut fx);
        fx
    }

    fn advance_into<L: Chain>(
        &mut self,
        ledger: &mut L,
        witnessed: bool,
        now_ms: u64,
        fx: &mut Effects<L::Switch>,
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
    fn justify<L: Chain>(&mut self, ledger: &mut L, fx: &mut Effects<L::Switch>) -> bool {
        let q = self.members.quorum();
        let candidates: Vec<Checkpoint> = self
            .prevotes
            .iter()
            .filter(|(c, m)| {
                m.len() * COUNTS >= q
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
                count += COUNTS * usize::from(ok);
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
    fn links<L: Chain>(&mut self, ledger: &L, s: &Source, target: &BlockId) -> bool {
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

    fn set_justified<L: Chain>(
        &mut self,
        ledger: &mut L,
        s: Source,
        block: BlockId,
        fx: &mut Effects<L::Switch>,
    ) {
        self.justified = (s, block);
        let mut b = Vec::with_capacity(72);
        b.extend_from_slice(&s.epoch.to_be_bytes());
        b.extend_from_slice(&s.root);
        b.extend_from_slice(&block.0);
        if let Err(e) = ledger.keep(Keep::Justified(&b)) {
            logged(&e);
        }
        self.set_floor(ledger, fx);
    }

    fn set_floor<L: Chain>(&mut self, ledger: &mut L, fx: &mut Effects<L::Switch>) {
        let floor = self.floor_block(ledger);
        match ledger.set_floor(&floor) {
            Ok(Some(added)) => fx.switched.push(added),
            Ok(None) => {}
            Err(e) => logged(&e),
        }
    }

    /// Finalises the highest justified checkpoint (at a prevote epoch) that a quorum has
    /// committed.
    fn finalize<L: Chain>(
        &mut self,
        ledger: &mut L,
        now_ms: u64,
        fx: &mut Effects<L::Switch>,
    ) -> bool {
        let q = self.members.quorum();
        let best = self
            .commits
            .iter()
            .rev()
            .filter(|(c, m)| {
                m.len() * COUNTS >= q
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
    fn make_final<L: Chain>(
        &mut self,
        ledger: &mut L,
        c: Checkpoint,
        block: BlockId,
        commits: &[Vote],
        now_ms: u64,
        fx: &mut Effects<L::Switch>,
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
                if level >= SUBTREE_LEVEL {
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
        if let Err(e) = ledger.keep(Keep::Final {
            state: &state,
            checkpoint: keep.then(|| (c.height(), fin.note.as_bytes())),
            subtrees: &subtrees,
        }) {
            logged(&e);
            return false;
        }
        let height = c.height();
        tracing::info!(height, block = %block, "final");
        tracing::debug!(target: crate::TRACE, at_ms = now_ms, height, block = %block, "final");
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
    fn vote<L: Chain>(
        &mut self,
        ledger: &mut L,
        witnessed: bool,
        now_ms: u64,
        fx: &mut Effects<L::Switch>,
    ) {
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
        // A tip just taken may yet lose a race to a block at its height still in flight:
        // members that prevote the two sides split the round, no side reaches a quorum,
        // and none may prevote that height again (a double vote), so finality would wait
        // for the next block, a minute at one block a minute (the simulator found it). A
        // tip is prevoted once it has stood `settle_ms`.
        if self.tip_since.0 != tip {
            self.tip_since = (tip, now_ms);
        }
        if now_ms < self.tip_since.1.saturating_add(self.settle_ms) {
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
    fn keep_own<L: Chain>(&mut self, ledger: &mut L, own: OwnVotes) -> bool {
        match ledger.keep(Keep::Own(&own.to_bytes())) {
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

    fn cast<L: Chain>(
        &mut self,
        ledger: &mut L,
        v: Vote,
        now_ms: u64,
        fx: &mut Effects<L::Switch>,
    ) {
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
    pub fn on_checkpoint<L: Chain>(
        &mut self,
        ledger: &mut L,
        note: &[u8],
        from: &str,
        now_ms: u64,
    ) -> Result<Effects<L::Switch>, finality::FinalityError> {
        let (c, commits) = self.members.open_checkpoint(note)?;
        let mut fx = Effects::default();
        if c.size <= self.fin.checkpoint.size {
            let ours = if c.size == self.fin.checkpoint.size {
                Some(self.fin.checkpoint.root)
            } else {
                ledger.root_at(c.size)
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
    fn match_learned<L: Chain>(
        &mut self,
        ledger: &mut L,
        now_ms: u64,
        fx: &mut Effects<L::Switch>,
    ) {
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
