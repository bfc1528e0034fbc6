//! A block a peer pushed, once the chain has had its say: what the pusher hears, to whom the
//! block goes on, whether it waits for its parent, when the node asks its peers for a pull,
//! and which blocks that waited for it come next.
//!
//! The runtime decodes a pushed block, lets the chain validate and store it (the ledger), and
//! hands this the [`Verdict`] with the block's [`Pushed`] essentials; [`Intake::pushed`]
//! answers with an [`Arrived`]: the pusher's answer and a list of [`Action`]s (send these
//! bytes to these peers, validate this block that waited for its parent, pull now, wake me
//! at t). A block that waited and is validated comes back through [`Intake::placed`]; a
//! block stored by a pull through [`Intake::stored`]; the clock through [`Intake::timer`].
//! Nothing here sends, sleeps or reads a clock, so a test (or a simulator) drives all of it
//! by events.
//!
//! The rules, each with its reason:
//! - a block that became this node's best goes on to every peer but the one that sent it
//!   (known by the miner key its `/status` gives): blocks cross a network where not every
//!   node is the miner's peer without waiting for a pull; a block on a side branch goes
//!   nowhere (a node relays only its best, so each block is relayed at most once a node);
//! - a copy of a block held already is answered with how long it was held
//!   ([`crate::fanout::Arrivals`]): the pusher learns whom to stop sending to;
//! - a block whose parent is unknown here is kept ([`crate::orphans`]) if it passes every
//!   rule that needs no chain (the allow-list included), so that a peer cannot fill the pool
//!   with junk for free; else it is refused with the rule it broke. Two above the tip it is
//!   most likely the child of a block on its way (a miner pushed two in a row): the peers
//!   are asked only if the parent has not come within [`crate::orphans::GRACE`]; any other
//!   is a branch this node has not seen (a healed partition), which only a pull brings, so
//!   at once;
//! - the sender of a block taken or held here told its tip ([`crate::health::pushed`]); the
//!   sender of a block whose parent is unknown is reachable, whatever its backoff says
//!   ([`crate::health::reached`]).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use gridledger_chain::{validate, Block, BlockId, Height, Network, ValidationError};

use crate::fanout::Arrivals;
use crate::health::PeerHealth;
use crate::orphans::{Orphan, Orphans, GRACE};

pub use crate::verdict::Verdict;

/// The essentials of a pushed block the intake needs.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// Its id.
    pub id: BlockId,
    /// Its parent's id.
    pub parent: BlockId,
    /// Its height.
    pub height: Height,
    /// Its miner's key.
    pub miner: [u8; 32],
    /// The key of the peer that pushed it, by that peer's own account (only ever used to
    /// not send the block back, and to bring that peer's poll forward or skip it).
    pub sender: Option<[u8; 32]>,
    /// Its bytes, as pushed.
    pub bytes: Bytes,
}

/// The node's peers, as the intake sees them: their URLs, and how each behaves (the miner
/// key each says it mines with, and the marks a push leaves).
#[derive(Debug)]
pub struct Peers<'a> {
    /// Peers' base URLs.
    pub urls: &'a [String],
    /// How each behaves, by URL.
    pub health: &'a mut HashMap<String, PeerHealth>,
}

/// What the runtime does next.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send block `id` (mined by `miner`) to these peers.
    Relay {
        /// Its id.
        id: BlockId,
        /// Its miner's key.
        miner: [u8; 32],
        /// Its bytes.
        bytes: Bytes,
        /// To whom.
        to: Vec<String>,
    },
    /// Validate this block, which waited for its parent (just stored), and hand the verdict
    /// to [`Intake::placed`].
    Place(Orphan),
    /// Ask the peers for blocks now (a pull).
    Pull,
    /// Call [`Intake::timer`] at this time (Unix ms).
    WakeAt(u64),
}

/// What follows a pushed block.
#[derive(Debug, Default)]
pub struct Arrived {
    /// For a block held already: since when, in milliseconds, if this node remembers (the
    /// pusher's answer says it).
    pub held_ms: Option<u64>,
    /// A block whose parent is unknown and which breaks a rule that needs no chain: that
    /// rule (it is not kept; the pusher hears why).
    pub refused: Option<ValidationError>,
    /// What to do, in order.
    pub actions: Vec<Action>,
}

/// Pushed blocks on their way in: those waiting for their parent, when the latest were
/// taken, and the pulls waiting for a grace to end.
#[derive(Debug, Default)]
pub struct Intake {
    orphans: Orphans,
    arrivals: Arrivals,
    /// (when, block): ask the peers then if the block still waits for its parent.
    graces: VecDeque<(u64, BlockId)>,
    early: u64,
    placed: u64,
}

impl Intake {
    /// Blocks that came before their parent and were kept (`gridledger_blocks_early`).
    #[must_use]
    pub fn early(&self) -> u64 {
        self.early
    }

    /// Of those, the ones placed when their parent came (`gridledger_blocks_placed`).
    #[must_use]
    pub fn placed_count(&self) -> u64 {
        self.placed
    }

    /// Whether block `id` waits for its parent here.
    #[must_use]
    pub fn waits(&self, id: &BlockId) -> bool {
        self.orphans.holds(id)
    }

    /// Block `id` was stored at `now_ms`, from whatever source (mined here, pushed, pulled,
    /// brought onto the main chain by finality): a copy of it pushed later is answered with
    /// how long it was held. (The first arrival counts; noting twice changes nothing.)
    pub fn note(&mut self, id: BlockId, now_ms: u64) {
        self.arrivals.note(id, now_ms);
    }

    /// Block `id` was stored by a pull at `now_ms`: its arrival is noted, and the blocks
    /// that waited for it come out to be placed.
    pub fn stored(&mut self, id: BlockId, now_ms: u64) -> Vec<Action> {
        self.arrivals.note(id, now_ms);
        self.orphans
            .children_of(&id, now_ms)
            .into_iter()
            .map(Action::Place)
            .collect()
    }

    /// A block a peer pushed, and what the chain said of it (`tip_height`: the main chain's
    /// height after it; `net`: the network's rules, for a block kept for its parent).
    pub fn pushed(
        &mut self,
        block: Pushed,
        verdict: Verdict,
        tip_height: Height,
        peers: Peers<'_>,
        net: &Network,
        now_ms: u64,
    ) -> Arrived {
        let mut out = Arrived::default();
        match verdict {
            Verdict::Best | Verdict::Side => {
                if let Some(key) = block.sender {
                    crate::health::pushed(peers.health, &key, now_ms);
                }
                if verdict == Verdict::Best {
                    out.actions.push(Action::Relay {
                        id: block.id,
                        miner: block.miner,
                        to: crate::health::relay_peers(peers.urls, peers.health, block.sender),
                        bytes: block.bytes,
                    });
                }
                out.actions.extend(self.stored(block.id, now_ms));
            }
            Verdict::Known => {
                if let Some(key) = block.sender {
                    crate::health::pushed(peers.health, &key, now_ms);
                }
                out.held_ms = self.arrivals.held_ms(&block.id, now_ms);
            }
            Verdict::UnknownParent => {
                if let Some(key) = block.sender {
                    crate::health::reached(peers.health, &key);
                }
                match self.keep(block, tip_height, net, now_ms) {
                    Ok(next) => out.actions.push(next),
                    Err(e) => out.refused = Some(e),
                }
            }
            Verdict::Refused => {}
        }
        out
    }

    /// A block that waited for its parent, validated once the parent was stored: relayed
    /// (as if its sender had just pushed it) if it became this node's best, and the blocks
    /// that waited for it in turn.
    pub fn placed(
        &mut self,
        orphan: Orphan,
        miner: [u8; 32],
        verdict: Verdict,
        peers: Peers<'_>,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(verdict, Verdict::Best | Verdict::Side) {
            self.placed += 1;
            if verdict == Verdict::Best {
                out.push(Action::Relay {
                    id: orphan.id,
                    miner,
                    to: crate::health::relay_peers(peers.urls, peers.health, orphan.sender),
                    bytes: orphan.bytes,
                });
            }
            out.extend(self.stored(orphan.id, now_ms));
        }
        out
    }

    /// The clock reached `now_ms`: a pull for each block whose grace ended while it still
    /// waits for its parent (one pull however many).
    pub fn timer(&mut self, now_ms: u64) -> Vec<Action> {
        let mut pull = false;
        while self.graces.front().is_some_and(|(at, _)| *at <= now_ms) {
            if let Some((_, id)) = self.graces.pop_front() {
                pull |= self.orphans.holds(&id);
            }
        }
        if pull {
            vec![Action::Pull]
        } else {
            Vec::new()
        }
    }

    /// Keeps a block whose parent is unknown here if it passes every rule that needs no
    /// chain; the action that follows: a wake at the grace's end for a block two above the
    /// tip (`tip_height`), a pull now for any other.
    fn keep(
        &mut self,
        block: Pushed,
        tip_height: Height,
        net: &Network,
        now_ms: u64,
    ) -> Result<Action, ValidationError> {
        let decoded = Block::from_bytes(&block.bytes, net.max_block_bytes, net.max_records)?;
        if net
            .allow_list
            .as_ref()
            .is_some_and(|a| !a.contains(&decoded.header.miner))
        {
            return Err(ValidationError::MinerNotAllowed(hex::encode(
                decoded.header.miner,
            )));
        }
        validate::precheck(vec![decoded], net, 1, 0)
            .pop()
            .unwrap_or(Err(ValidationError::UnknownParent(block.parent)))?;
        if !self.orphans.holds(&block.id) {
            self.early += 1;
        }
        let (id, height) = (block.id, block.height);
        self.orphans
            .keep(id, block.parent, block.bytes, block.sender, now_ms);
        if height != tip_height.saturating_add(2) {
            return Ok(Action::Pull);
        }
        let at = now_ms.saturating_add(GRACE_MS);
        self.graces.push_back((at, id));
        // One grace a kept block at most: an older one past that is for a block gone from
        // the pool, or one the next sync round pulls anyway.
        while self.graces.len() > crate::orphans::MAX_KEPT {
            self.graces.pop_front();
        }
        Ok(Action::WakeAt(at))
    }
}

/// [`GRACE`] in milliseconds.
const GRACE_MS: u64 = GRACE.as_millis() as u64;

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use ed25519_dalek::SigningKey;
    use relay_core::signal::{Profile, SignalModel};
    use relay_core::{Minute, RecordFlags, RelayId};

    use super::*;
    use crate::memchain::MemChain;
    use crate::mempool::Mempool;
    use crate::witness::Witness;
    use gridledger_chain::{assemble, Header};

    /// Three peers, A, B and C, whose `/status` gave miner keys 1, 2 and 3.
    fn peers() -> (Vec<String>, HashMap<String, PeerHealth>) {
        let urls: Vec<String> = ["http://a", "http://b", "http://c"]
            .iter()
            .map(|u| (*u).to_owned())
            .collect();
        let health = urls
            .iter()
            .zip(1u8..)
            .map(|(u, k)| {
                let mut h = PeerHealth::new(u, Some([k; 32]));
                h.backoff_until_ms = 99_999;
                (u.clone(), h)
            })
            .collect();
        (urls, health)
    }

    /// A chain with its rules: a chain in memory stands in for the ledger (validation and
    /// the store are the chain's and the runtime's, not the intake's).
    struct World {
        net: Network,
        chain: MemChain,
        urls: Vec<String>,
        health: HashMap<String, PeerHealth>,
        intake: Intake,
        key: SigningKey,
        minute: u32,
    }

    impl World {
        fn new() -> Self {
            let net = Network::new("intake-test", 0);
            let chain = MemChain::new(&net);
            let (urls, health) = peers();
            World {
                net,
                chain,
                urls,
                health,
                intake: Intake::default(),
                key: SigningKey::from_bytes(&[7; 32]),
                minute: 29_943_000,
            }
        }

        /// A valid block on `parent`, one fresh record.
        fn mine(&mut self, parent: &Header) -> Block {
            self.minute += 1;
            let r = SignalModel::new(1, Profile::Realistic).record(
                RelayId(4),
                Minute(self.minute),
                6,
                RecordFlags::CLOCK_SET,
            );
            // After the record's minute closed, as the rules ask.
            let time = (u64::from(self.minute) + 1) * 60_000 + 1_000;
            assert!(time > parent.time_ms);
            assemble(parent, &[r], &self.key, time, 0, &AtomicBool::new(false))
                .expect("bits 0 mines")
        }

        /// What the ledger would say: known, unknown parent, or stored (best or side).
        fn verdict(&mut self, b: &Block) -> Verdict {
            self.chain.accept(
                &std::sync::Arc::new(b.clone()),
                &Witness::default(),
                &mut Mempool::new(),
                0,
            )
        }

        /// Block `b` pushed by the peer with miner key `sender` at `now`.
        fn push(&mut self, b: &Block, sender: Option<u8>, now: u64) -> (Verdict, Arrived) {
            let verdict = self.verdict(b);
            let pushed = Pushed {
                id: b.id(),
                parent: b.header.prev,
                height: b.header.height,
                miner: b.header.miner,
                sender: sender.map(|k| [k; 32]),
                bytes: Bytes::from(b.to_bytes()),
            };
            let peers = Peers {
                urls: &self.urls,
                health: &mut self.health,
            };
            let height = self.chain.tree().height();
            let arrived = self
                .intake
                .pushed(pushed, verdict, height, peers, &self.net, now);
            (verdict, arrived)
        }

        /// Carries out `Place` actions as the runtime does (validate, hand back the
        /// verdict), until none is left; the relays that came of it, and the rest.
        fn carry_out(&mut self, actions: Vec<Action>, now: u64) -> Vec<Action> {
            let mut todo: VecDeque<Action> = actions.into();
            let mut done = Vec::new();
            while let Some(a) = todo.pop_front() {
                let Action::Place(orphan) = a else {
                    done.push(a);
                    continue;
                };
                let b = Block::from_bytes(&orphan.bytes, 1 << 20, 1 << 10).expect("kept whole");
                let verdict = self.verdict(&b);
                let peers = Peers {
                    urls: &self.urls,
                    health: &mut self.health,
                };
                todo.extend(
                    self.intake
                        .placed(orphan, b.header.miner, verdict, peers, now),
                );
            }
            done
        }
    }

    fn relays(actions: &[Action]) -> Vec<(BlockId, Vec<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Relay { id, to, .. } => Some((*id, to.clone())),
                _ => None,
            })
            .collect()
    }

    /// A new best block goes to every peer but its sender; a copy of it is answered with
    /// how long it was held and goes nowhere; a side block goes nowhere; the senders of
    /// blocks taken or held are marked as having pushed.
    #[test]
    fn a_best_block_goes_on_to_every_peer_but_its_sender() {
        let mut w = World::new();
        let genesis = w.net.genesis().header;
        let b1 = w.mine(&genesis);
        let (v, a) = w.push(&b1, Some(2), 1_000);
        assert_eq!(v, Verdict::Best);
        assert_eq!(
            relays(&a.actions),
            vec![(b1.id(), vec!["http://a".to_owned(), "http://c".to_owned()])]
        );
        assert_eq!(a.held_ms, None);
        assert_eq!(w.health["http://b"].pushed_ms, 1_000, "B told its tip");
        assert_eq!(w.health["http://a"].pushed_ms, 0);

        let (v, a) = w.push(&b1, Some(3), 1_040);
        assert_eq!(v, Verdict::Known);
        assert!(a.actions.is_empty(), "a copy goes nowhere");
        assert_eq!(a.held_ms, Some(40), "held for 40 ms");
        assert_eq!(w.health["http://c"].pushed_ms, 1_040);

        // A rival of b1 (same parent, same work, seen second): a side block.
        w.key = SigningKey::from_bytes(&[8; 32]);
        let rival = w.mine(&genesis);
        let (v, a) = w.push(&rival, Some(1), 1_100);
        assert_eq!(v, Verdict::Side);
        assert!(relays(&a.actions).is_empty(), "a side block is not relayed");

        // A push with no sender named goes to every peer.
        let b2 = w.mine(&b1.header);
        let (_, a) = w.push(&b2, None, 1_200);
        assert_eq!(relays(&a.actions)[0].1.len(), 3);
    }

    /// A child pushed before its parent waits (the peers are not asked at once: its
    /// parent is most likely on its way); the parent comes, the child is placed and relayed
    /// as its own sender's push, and the grace's end asks for nothing.
    #[test]
    fn a_child_before_its_parent_waits_and_is_placed_when_it_comes() {
        let mut w = World::new();
        let genesis = w.net.genesis().header;
        let b1 = w.mine(&genesis);
        let b2 = w.mine(&b1.header);
        let (v, a) = w.push(&b2, Some(1), 5_000);
        assert_eq!(v, Verdict::UnknownParent);
        assert!(a.refused.is_none());
        assert!(
            matches!(a.actions[..], [Action::WakeAt(t)] if t == 5_000 + GRACE_MS),
            "{:?}",
            a.actions
        );
        assert!(w.intake.waits(&b2.id()));
        assert_eq!(w.intake.early(), 1);
        assert_eq!(
            w.health["http://a"].backoff_until_ms, 0,
            "its sender is reachable"
        );

        let (_, a) = w.push(&b1, Some(2), 5_010);
        let done = w.carry_out(a.actions, 5_010);
        assert_eq!(
            relays(&done),
            vec![
                (b1.id(), vec!["http://a".to_owned(), "http://c".to_owned()]),
                (b2.id(), vec!["http://b".to_owned(), "http://c".to_owned()]),
            ],
            "the parent, then its child, each to all but its own sender"
        );
        assert_eq!(w.chain.tree().tip(), b2.id());
        assert_eq!(w.intake.placed_count(), 1);
        assert!(!w.intake.waits(&b2.id()));
        assert!(
            w.intake.timer(5_000 + GRACE_MS).is_empty(),
            "nothing to pull"
        );
    }

    /// A child whose parent never comes: the grace's end asks for a pull (once, however
    /// many waited). A block further above the tip (a branch this node has not seen)
    /// asks at once.
    #[test]
    fn a_parent_that_never_comes_is_pulled_after_the_grace() {
        let mut w = World::new();
        let genesis = w.net.genesis().header;
        let b1 = w.mine(&genesis);
        let b2 = w.mine(&b1.header);
        let b3 = w.mine(&b2.header);
        let (_, a) = w.push(&b2, Some(1), 100);
        assert!(matches!(a.actions[..], [Action::WakeAt(_)]));
        assert!(w.intake.timer(100 + GRACE_MS - 1).is_empty(), "not yet");
        assert!(matches!(w.intake.timer(100 + GRACE_MS)[..], [Action::Pull]));
        assert!(w.intake.timer(100 + 2 * GRACE_MS).is_empty(), "asked once");

        let (_, a) = w.push(&b3, Some(1), 200);
        assert!(
            matches!(a.actions[..], [Action::Pull]),
            "three above the tip: at once"
        );
        // Both wait; the pull brings b1 (stored by a pull, not pushed): b2 then b3 follow.
        let v = w.verdict(&b1);
        assert_eq!(v, Verdict::Best);
        let placed = w.intake.stored(b1.id(), 300);
        let done = w.carry_out(placed, 300);
        assert_eq!(relays(&done).len(), 2);
        assert_eq!(w.chain.tree().tip(), b3.id());
    }

    /// A peer that floods the node with valid early blocks (each two above the tip, each
    /// on a parent never sent) fills neither the pool nor the graces past their bound, and
    /// however many graces end at once, one pull is asked for.
    #[test]
    fn a_flood_of_early_blocks_stays_bounded() {
        let mut w = World::new();
        let genesis = w.net.genesis().header;
        let n = crate::orphans::MAX_KEPT + 36;
        let mut early = Vec::new();
        for _ in 0..n {
            let parent = w.mine(&genesis);
            early.push(w.mine(&parent.header));
        }
        for (i, b) in early.iter().enumerate() {
            let (v, a) = w.push(b, Some(3), 1_000 + i as u64);
            assert_eq!(v, Verdict::UnknownParent);
            assert!(matches!(a.actions[..], [Action::WakeAt(_)]));
        }
        assert_eq!(w.intake.early(), n as u64, "each counted");
        assert!(w.intake.graces.len() <= crate::orphans::MAX_KEPT);
        let waiting = early.iter().filter(|b| w.intake.waits(&b.id())).count();
        assert_eq!(waiting, crate::orphans::MAX_KEPT, "the oldest went");
        assert!(matches!(w.intake.timer(10_000)[..], [Action::Pull]));
        assert!(w.intake.graces.is_empty());
    }

    /// A block whose parent is unknown is kept only if it passes every rule that needs no
    /// chain: a broken signature, or a miner off the allow-list, is refused by name and
    /// kept nowhere.
    #[test]
    fn an_early_block_that_breaks_a_rule_is_refused_not_kept() {
        let mut w = World::new();
        let genesis = w.net.genesis().header;
        let b1 = w.mine(&genesis);
        let mut b2 = w.mine(&b1.header);
        b2.signature[0] ^= 1;
        let (_, a) = w.push(&b2, Some(1), 100);
        assert!(
            matches!(a.refused, Some(ValidationError::BadSignature)),
            "{:?}",
            a.refused
        );
        assert!(a.actions.is_empty() && !w.intake.waits(&b2.id()));

        w.net.allow_list = Some(vec![[9; 32]]);
        let b2 = w.mine(&b1.header);
        let (_, a) = w.push(&b2, Some(1), 100);
        assert!(matches!(
            a.refused,
            Some(ValidationError::MinerNotAllowed(_))
        ));
        assert!(!w.intake.waits(&b2.id()));
        assert_eq!(w.intake.early(), 0);
    }
}
