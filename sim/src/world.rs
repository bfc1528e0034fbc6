//! The simulated network: every node's real core (`gridledger-core`: the chain in memory,
//! the mempool, the witness, the intake, the mining turns, finality), driven by timed
//! events in one thread. Links, relays, clocks, crashes and hostile members are the
//! seed's; nothing reads a real clock or a socket, so a seed replays bit for bit.
//!
//! What a node does here is what the runtime (`node/`) does with the core's answers: a
//! pushed block goes through the chain and the intake, whose actions (relay to these
//! peers, place a block that waited, pull, wake at t) become messages and timers; the
//! miner asks the core what to mine and when; finality's votes go to every peer but the
//! one each came from. Knowingly simpler (see `docs/book/src/simulator.md`): the rules
//! that need only a block's bytes (proof of work, signatures, Merkle roots) are taken as
//! passed, and a pull asks one peer for up to 64 main-chain blocks above a locator.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use gridledger_chain::finality::{origin, Checkpoint, Kind, Members, Verified, Vote};
use gridledger_chain::merkle::Hash;
use gridledger_chain::validate::minute_closes_ms;
use gridledger_chain::Change;
use gridledger_chain::{assemble, Block, BlockId, Header, Height, Network, RecordKey};
use gridledger_core::finality::{default_interval, Effects, Finality, FinalityConfig, TICK_MS};
use gridledger_core::health::{self, PeerHealth};
use gridledger_core::intake::{Action, Intake, Peers, Pushed};
use gridledger_core::memchain::MemChain;
use gridledger_core::mempool::Mempool;
use gridledger_core::mining::{self, Settings, Standing};
use gridledger_core::pull::{self, Claim, Pull, Step};
use gridledger_core::verdict::Verdict;
use gridledger_core::witness::Witness;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, RecordFlags, RelayId};

use crate::config::{Config, FaultSpec, Faults};
use crate::cpu::Cpu;
use crate::link::{Links, Partition};
use crate::queue::Queue;
use crate::report::{Figures, Outcome, Traffic};
use crate::topology;
use crate::trace::Trace;

/// The first minute simulated (Unix minutes: late 2025).
const FIRST_MINUTE: u32 = 29_400_000;
/// Minutes after the faults' time in which every fault has healed and the relays go on,
/// before the end's checks.
pub const SETTLE_MINUTES: u32 = 3;
/// The end's checks come this long after a minute closes: no block is being mined then.
const END_IN_MINUTE_MS: u64 = 45_000;
/// What was read this long before the end must be on the chain then, and what was mined
/// this long before the end must be final (a round split by a race waits for the next
/// block, a minute later).
const CUT_MS: u64 = 75_000;
/// Minutes left out of the figures at the start (the chain learns who mines).
pub const WARMUP_MINUTES: u32 = 10;
/// Blocks a pull answer carries at most.
const PULL_BLOCKS: usize = 64;
/// How far ahead of its own chain a liar claims to be, in blocks.
const LIE_AHEAD: u32 = 1_000;
/// Minutes a restarted node reads back from each relay.
const REREAD_MINUTES: u32 = 10;
/// How long a node gathers votes before sending them (the runtime's `VOTE_COALESCE`).
const VOTE_COALESCE_MS: u64 = 10;
/// Votes a pull answer carries at most (`GET /votes`).
const MAX_HELD_VOTES: usize = 4096;
/// Bytes of a vote on the wire (its note line and signature), for the traffic figures.
const VOTE_BYTES: usize = 180;

/// What a hostile member does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Signs a second, different prevote beside each of its prevotes.
    Equivocate,
    /// Keeps the blocks it mines and releases them every two minutes.
    Withhold,
    /// Once, re-mines the last blocks' records as a longer fork below the final block.
    Rewrite,
    /// Pushes valid blocks whose parent it never shows.
    Spam,
    /// Answers every pull with nothing, five seconds late.
    Liar,
}

/// One node: its core's parts, as the runtime holds them.
struct Node {
    key: SigningKey,
    pubkey: [u8; 32],
    member: bool,
    hostile: Option<Hostile>,
    chain: MemChain,
    pool: Mempool,
    witness: Witness,
    intake: Intake,
    health: HashMap<String, PeerHealth>,
    urls: Vec<String>,
    /// The miner keys of its peers that mine, in peer order.
    peer_keys: Vec<[u8; 32]>,
    finality: Option<Finality>,
    up: bool,
    skew_ms: i64,
    /// When its poller reads the relays, after each minute closes by the simulation's
    /// clock (ms); its own clock's skew moves it.
    poll_ms: u64,
    /// The mining wake that counts (older ones are stale).
    mine_gen: u64,
    mine_at: u64,
    tick_at: u64,
    withheld: Vec<Arc<Block>>,
    /// Votes waiting to go out, each with the peer it came from.
    outbox: Vec<(Vote, Option<usize>)>,
    spam_parent: Option<Header>,
    final_height: Height,
}

impl Node {
    fn local(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.skew_ms)
    }

    fn honest(&self) -> bool {
        self.hostile.is_none()
    }

    /// Its records above the final block agree with its reads: it may prevote (the
    /// runtime's `witnessed_above_final`).
    fn witnessed(&self) -> bool {
        !self
            .witness
            .disputed_above(self.chain.final_block().map_or(0, |f| f.0))
    }
}

/// An event.
enum Ev {
    /// Every relay closes a minute.
    Minute(u32),
    /// A member reads a relay's record.
    Read {
        node: usize,
        relay: u16,
        minute: u32,
    },
    /// A member's miner wakes.
    Mine {
        node: usize,
        gen: u64,
    },
    /// A block pushed by a peer.
    Push {
        to: usize,
        from: usize,
        block: Arc<Block>,
    },
    /// Finality votes from a peer.
    Votes {
        to: usize,
        from: usize,
        votes: Vec<Vote>,
    },
    /// The intake's timer.
    Wake {
        node: usize,
    },
    /// A pull: blocks above the first of these main-chain blocks the peer holds, and its
    /// finality if it is ahead (the asker's final size and justified epoch).
    Ask {
        to: usize,
        from: usize,
        locator: Vec<(Height, BlockId)>,
        finality: (u64, u64),
    },
    /// A pull's answer: blocks, the final checkpoint's note and votes if ahead.
    Reply {
        to: usize,
        from: usize,
        /// What the peer says of its chain: its tip, height and work (what the node's
        /// `GET /tip` answers).
        claim: (BlockId, Claim),
        blocks: Vec<Arc<Block>>,
        note: Option<Rc<String>>,
        votes: Vec<Vote>,
    },
    /// A node's sync round.
    Sync {
        node: usize,
    },
    /// Finality's pacing: advance again.
    Tick {
        node: usize,
    },
    /// The votes waiting go out, one message per peer.
    Flush {
        node: usize,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Release {
        node: usize,
    },
    Rewrite {
        node: usize,
    },
    Spam {
        node: usize,
    },
}

impl Ev {
    fn name(&self) -> &'static str {
        match self {
            Ev::Minute(_) => "minute",
            Ev::Read { .. } => "read",
            Ev::Mine { .. } => "mine",
            Ev::Push { .. } => "push",
            Ev::Votes { .. } => "votes",
            Ev::Wake { .. } => "wake",
            Ev::Ask { .. } => "ask",
            Ev::Reply { .. } => "reply",
            Ev::Sync { .. } => "sync",
            Ev::Tick { .. } => "tick",
            Ev::Flush { .. } => "flush",
            Ev::Crash { .. } => "crash",
            Ev::Restart { .. } => "restart",
            Ev::Release { .. } => "release",
            Ev::Rewrite { .. } => "rewrite",
            Ev::Spam { .. } => "spam",
        }
    }
}

/// What the run knows of a block it saw made.
struct Made {
    block: Arc<Block>,
    made_ms: u64,
    /// Honest nodes holding it.
    holders: usize,
    /// When every honest node held it.
    everywhere_ms: Option<u64>,
}

/// The simulated network.
pub struct World {
    cfg: Config,
    faults: Faults,
    rng: ChaCha8Rng,
    net: Network,
    nodes: Vec<Node>,
    honest: usize,
    honest_members: usize,
    links: Links,
    queue: Queue<Ev>,
    trace: Trace,
    now: u64,
    end_minute: u32,
    /// The relays' records.
    records: HashMap<RecordKey, MinuteRecord>,
    /// Records an honest node read.
    read: BTreeSet<RecordKey>,
    /// At the cut: the records read, and the highest honest main chain.
    cut: Option<(BTreeSet<RecordKey>, Height)>,
    made: HashMap<BlockId, Made>,
    /// Final checkpoints honest nodes reached: size → root.
    finals: BTreeMap<u64, Hash>,
    /// Honest members final at each height, and when all were.
    final_count: BTreeMap<Height, (usize, Option<u64>)>,
    /// Each relay's stop (minutes from..to) and lag (ms).
    relay_stop: Vec<Option<(u32, u32)>>,
    relay_lag: Vec<u64>,
    traffic: Traffic,
    /// Finality's settings, the same for every node (`None`: no members).
    finality_config: Option<FinalityConfig>,
    /// Pulls asked, of all and of liars; lies caught (a peer that claimed more work and gave
    /// nothing), of liars and of honest peers.
    pulls: (u64, u64),
    lies: (u64, u64),
    /// The cores the nodes share, if they share any (`--cores`).
    cpu: Cpu,
    /// The last block a node checked in this event, and when it may go on: a block sent to
    /// several peers is checked once.
    checked: Option<(usize, BlockId, u64)>,
    violation: Option<String>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World({} nodes, t={} ms)", self.nodes.len(), self.now)
    }
}

fn url(i: usize) -> String {
    format!("n{i}")
}

fn index_of(url: &str) -> Option<usize> {
    url.strip_prefix('n')?.parse().ok()
}

impl World {
    /// A network as `cfg` says, its faults drawn from the seed.
    #[must_use]
    pub fn new(cfg: Config) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let faults = match cfg.faults {
            FaultSpec::Fixed(f) => f,
            FaultSpec::Mixed => Faults::mixed(rng.random()),
        };
        let n = cfg.nodes.max(1);
        let members = cfg.members.clamp(1, n);
        // Who is a member, and their keys.
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut is_member = vec![false; n];
        for &i in &order[..members] {
            is_member[i] = true;
        }
        let keys: Vec<SigningKey> = (0..n)
            .map(|_| SigningKey::from_bytes(&rng.random::<[u8; 32]>()))
            .collect();
        let mut net = Network::new(&format!("sim-{}", cfg.seed), 0);
        let allow: Vec<[u8; 32]> = (0..n)
            .filter(|i| is_member[*i])
            .map(|i| keys[i].verifying_key().to_bytes())
            .collect();
        net.allow_list = Some(allow.clone());
        // Hostile members: at most a third of the members less one, one per kind.
        let mut hostile = vec![None; n];
        let kinds: Vec<Hostile> = [
            (faults.equivocate, Hostile::Equivocate),
            (faults.withhold, Hostile::Withhold),
            (faults.rewrite, Hostile::Rewrite),
            (faults.spam, Hostile::Spam),
            (faults.liar, Hostile::Liar),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| k)
        .collect();
        let max_hostile = members.saturating_sub(1) / 3;
        for (slot, kind) in kinds.into_iter().take(max_hostile).enumerate() {
            hostile[order[slot]] = Some(kind);
        }
        let peers = topology::build(n, cfg.topology, &mut rng);
        let mut links = Links::new(peers.clone(), cfg.link_ms, cfg.jitter_ms);
        if let Some(kbps) = cfg.slow_uplink_kbps {
            for i in (0..n).step_by(8) {
                links.slow_uplink(i, kbps);
            }
        }
        let origin = origin(&net.name);
        // One cache of verified votes for every node: each vote's signature is checked once
        // in the run, not once per node (the same inputs, the same answer).
        let verified = Verified::default();
        let finality_config = Members::new(&origin, &allow, None)
            .ok()
            .map(|m| FinalityConfig {
                members: m.with_verified(verified),
                interval_ms: u64::try_from(default_interval(members).as_millis()).unwrap_or(500),
                genesis: net.genesis().id(),
                settle_ms: cfg.settle_ms,
            });
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let urls: Vec<String> = peers[i].iter().map(|j| url(*j)).collect();
                let health = peers[i]
                    .iter()
                    .map(|j| {
                        let miner = is_member[*j].then(|| keys[*j].verifying_key().to_bytes());
                        (url(*j), PeerHealth::new(&url(*j), miner))
                    })
                    .collect();
                let peer_keys = peers[i]
                    .iter()
                    .filter(|j| is_member[**j])
                    .map(|j| keys[*j].verifying_key().to_bytes())
                    .collect();
                let skew_ms = if faults.skew {
                    rng.random_range(-5_000..=5_000)
                } else {
                    0
                };
                // The node's default poll offset (2 s after the minute), plus the read's time.
                let poll_ms = 2_000 + rng.random_range(0..50);
                let mut chain = MemChain::new(&net);
                let finality = open_finality(finality_config.as_ref(), &keys[i], &mut chain);
                Node {
                    key: keys[i].clone(),
                    pubkey: keys[i].verifying_key().to_bytes(),
                    member: is_member[i],
                    hostile: hostile[i],
                    chain,
                    pool: Mempool::new(),
                    witness: Witness::default(),
                    intake: Intake::default(),
                    health,
                    urls,
                    peer_keys,
                    finality,
                    up: true,
                    skew_ms,
                    poll_ms,
                    mine_gen: 0,
                    mine_at: u64::MAX,
                    tick_at: 0,
                    withheld: Vec::new(),
                    outbox: Vec::new(),
                    spam_parent: None,
                    final_height: 0,
                }
            })
            .collect();
        let honest = nodes.iter().filter(|n| n.honest()).count();
        let honest_members = nodes.iter().filter(|n| n.honest() && n.member).count();
        let relays = usize::from(cfg.relays);
        let trace = Trace::new(cfg.tail);
        let cpu = Cpu::new(cfg.cores);
        let end_minute = FIRST_MINUTE + cfg.minutes;
        let mut w = World {
            cfg,
            faults,
            rng,
            net,
            nodes,
            honest,
            honest_members,
            links,
            queue: Queue::default(),
            trace,
            now: 0,
            end_minute,
            records: HashMap::new(),
            read: BTreeSet::new(),
            cut: None,
            made: HashMap::new(),
            finals: BTreeMap::new(),
            final_count: BTreeMap::new(),
            relay_stop: vec![None; relays],
            relay_lag: vec![0; relays],
            traffic: Traffic::default(),
            finality_config,
            pulls: (0, 0),
            lies: (0, 0),
            cpu,
            checked: None,
            violation: None,
        };
        w.plan();
        w
    }

    /// The faults in play.
    #[must_use]
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Schedules the relays' minutes, the sync rounds and the faults.
    fn plan(&mut self) {
        let start = minute_closes_ms(Minute(FIRST_MINUTE));
        self.now = start;
        self.queue.at(start, Ev::Minute(FIRST_MINUTE));
        let n = self.nodes.len();
        for i in 0..n {
            let first = start + self.rng.random_range(0..self.cfg.sync_ms.max(1));
            self.queue.at(first, Ev::Sync { node: i });
        }
        let minutes = u64::from(self.cfg.minutes);
        let span = minutes * 60_000;
        let f = self.faults;
        // Faults start within the relays' minutes and heal before they end.
        let window = |rng: &mut ChaCha8Rng, len: u64| -> u64 {
            let room = span.saturating_sub(len).max(1);
            start + rng.random_range(span / 10..=room.max(span / 10))
        };
        if f.loss {
            self.links.set_loss(20_000);
        }
        if f.crash && n > 1 {
            let crashes = (self.honest / 4).clamp(1, 8);
            for _ in 0..crashes {
                let node = self.rng.random_range(0..n);
                if !self.nodes[node].honest() {
                    continue;
                }
                let down = self.rng.random_range(30_000..=240_000);
                let at = window(&mut self.rng, down);
                self.queue.at(at, Ev::Crash { node });
                self.queue.at(at + down, Ev::Restart { node });
            }
        }
        if f.partition && n > 1 {
            let len = self.rng.random_range(60_000..=240_000);
            let at = window(&mut self.rng, len);
            let side_a: Vec<bool> = (0..n).map(|_| self.rng.random()).collect();
            let one_way = self.rng.random();
            self.links.partition(Partition {
                from_ms: at,
                until_ms: at + len,
                side_a,
                one_way,
            });
        }
        if f.relay && !self.relay_stop.is_empty() {
            let len = self.rng.random_range(3..=8);
            let from = FIRST_MINUTE + self.rng.random_range(0..self.cfg.minutes.max(1));
            self.relay_stop[0] = Some((from, from + len));
            let last = self.relay_lag.len() - 1;
            self.relay_lag[last] = self.rng.random_range(5_000..=20_000);
        }
        for i in 0..n {
            match self.nodes[i].hostile {
                Some(Hostile::Withhold) => {
                    self.queue.at(start + 120_000, Ev::Release { node: i });
                }
                Some(Hostile::Rewrite) => {
                    let at = start + span * 2 / 5;
                    self.queue.at(at, Ev::Rewrite { node: i });
                }
                Some(Hostile::Spam) => {
                    self.queue.at(start + 5_000, Ev::Spam { node: i });
                }
                _ => {}
            }
        }
    }

    /// When the run ends: the faults' minutes, the settling time, then mid-minute.
    fn end_ms(&self) -> u64 {
        minute_closes_ms(Minute(self.end_minute + SETTLE_MINUTES)) + END_IN_MINUTE_MS
    }

    /// Runs to the end: the relays' minutes, then the settling time, then the checks.
    pub fn run(&mut self) -> Outcome {
        let end = self.end_ms();
        let cut = end - CUT_MS;
        while let Some((at, ev)) = self.queue.pop() {
            if at > end {
                break;
            }
            if at > cut && self.cut.is_none() {
                self.cut = Some(self.cut_now());
            }
            self.now = at;
            self.checked = None;
            self.step(ev);
            if let Some(v) = self.violation.take() {
                return self.outcome(Some(v));
            }
        }
        self.now = end;
        if self.cut.is_none() {
            self.cut = Some(self.cut_now());
        }
        let v = self.final_checks();
        self.outcome(v)
    }

    fn step(&mut self, ev: Ev) {
        let name = ev.name();
        match ev {
            Ev::Minute(m) => {
                self.trace.event(self.now, name, 0, &m.to_be_bytes());
                self.minute(m);
            }
            Ev::Read {
                node,
                relay,
                minute,
            } => {
                self.trace
                    .event(self.now, name, node, &minute.to_be_bytes());
                self.on_read(node, relay, minute);
            }
            Ev::Mine { node, gen } => {
                if gen == self.nodes[node].mine_gen && self.nodes[node].up {
                    self.trace.event(self.now, name, node, &gen.to_be_bytes());
                    self.nodes[node].mine_at = u64::MAX;
                    self.mine(node);
                }
            }
            Ev::Push { to, from, block } => {
                if self.nodes[to].up {
                    self.trace.event(self.now, name, to, &block.id().0);
                    self.on_push(to, from, &block);
                }
            }
            Ev::Votes { to, from, votes } => {
                if self.nodes[to].up {
                    let sig = votes.first().map_or([0; 64], |v| v.sig);
                    self.trace.event(self.now, name, to, &sig);
                    self.on_votes(to, from, votes);
                }
            }
            Ev::Wake { node } => {
                if self.nodes[node].up {
                    self.trace.event(self.now, name, node, &[]);
                    let local = self.nodes[node].local(self.now);
                    let actions = self.nodes[node].intake.timer(local);
                    self.carry_out(node, None, actions);
                }
            }
            Ev::Ask {
                to,
                from,
                locator,
                finality,
            } => {
                if self.nodes[to].up {
                    self.trace
                        .event(self.now, name, to, &(from as u64).to_be_bytes());
                    self.on_ask(to, from, &locator, finality);
                }
            }
            Ev::Reply {
                to,
                from,
                claim,
                blocks,
                note,
                votes,
            } => {
                if self.nodes[to].up {
                    self.trace
                        .event(self.now, name, to, &(blocks.len() as u64).to_be_bytes());
                    self.on_reply(to, from, claim, &blocks);
                    if let Some(note) = note {
                        self.on_checkpoint(to, from, &note);
                    }
                    if !votes.is_empty() {
                        self.on_votes(to, from, votes);
                    }
                }
            }
            Ev::Sync { node } => {
                self.queue
                    .at(self.now + self.cfg.sync_ms, Ev::Sync { node });
                if self.nodes[node].up {
                    self.trace.event(self.now, name, node, &[]);
                    self.sync(node);
                }
            }
            Ev::Tick { node } => {
                if self.nodes[node].up {
                    self.trace.event(self.now, name, node, &[]);
                    self.advance(node);
                }
            }
            Ev::Flush { node } => {
                if self.nodes[node].up {
                    self.trace.event(self.now, name, node, &[]);
                    self.flush(node);
                } else {
                    self.nodes[node].outbox.clear();
                }
            }
            Ev::Crash { node } => {
                self.trace.event(self.now, name, node, &[]);
                let n = &mut self.nodes[node];
                n.up = false;
                n.mine_gen += 1;
            }
            Ev::Restart { node } => {
                self.trace.event(self.now, name, node, &[]);
                self.restart(node);
            }
            Ev::Release { node } => {
                self.trace.event(self.now, name, node, &[]);
                let held = std::mem::take(&mut self.nodes[node].withheld);
                for b in held {
                    self.push_to_peers(node, &b);
                }
                // Every two minutes, and a last time when the faults heal: from then on it
                // withholds nothing (`mined`).
                let heal = self.heal_ms();
                if self.now < heal {
                    self.queue
                        .at((self.now + 120_000).min(heal), Ev::Release { node });
                }
            }
            Ev::Rewrite { node } => {
                self.trace.event(self.now, name, node, &[]);
                self.rewrite(node);
            }
            Ev::Spam { node } => {
                self.trace.event(self.now, name, node, &[]);
                self.spam(node);
                if self.now + 5_000 < self.heal_ms() {
                    self.queue.at(self.now + 5_000, Ev::Spam { node });
                }
            }
        }
    }

    /// Every relay closes minute `m`: its record, read by every member a little later.
    fn minute(&mut self, m: u32) {
        if m < self.end_minute + SETTLE_MINUTES {
            self.queue
                .at(minute_closes_ms(Minute(m + 1)), Ev::Minute(m + 1));
        }
        for relay in 0..self.cfg.relays {
            let r = usize::from(relay);
            if self.relay_stop[r].is_some_and(|(a, b)| m >= a && m < b) {
                continue;
            }
            let key = RecordKey::new(RelayId(u32::from(relay) + 1), Minute(m));
            let record = SignalModel::new(u64::from(relay) + 1, Profile::Realistic).record(
                RelayId(u32::from(relay) + 1),
                Minute(m),
                6,
                RecordFlags::CLOCK_SET,
            );
            self.records.insert(key, record);
            for node in 0..self.nodes.len() {
                if self.nodes[node].member {
                    // Each poller reads every relay at its offset after the minute closes
                    // (a lagging relay later).
                    let ready = self.now + self.relay_lag[r];
                    let mut at = (self.now + self.nodes[node].poll_ms)
                        .saturating_add_signed(-self.nodes[node].skew_ms);
                    // Polled before the relay closed the minute (a clock ahead, a relay
                    // late): it still serves the minute before; the next poll gets it.
                    while at < ready {
                        at += 60_000;
                    }
                    self.queue.at(
                        at,
                        Ev::Read {
                            node,
                            relay: relay + 1,
                            minute: m,
                        },
                    );
                }
            }
        }
    }

    fn on_read(&mut self, node: usize, relay: u16, minute: u32) {
        if !self.nodes[node].up {
            return;
        }
        let key = RecordKey::new(RelayId(u32::from(relay)), Minute(minute));
        let Some(record) = self.records.get(&key).cloned() else {
            return;
        };
        let n = &mut self.nodes[node];
        if n.chain.tree().has_record(&key) || n.witness.own(&key).is_some() {
            return;
        }
        let local = n.local(self.now);
        n.witness.read(record.clone());
        n.pool.add_at(record, local);
        if n.honest() {
            self.read.insert(key);
        }
        self.wake_miner(node, self.now);
    }

    fn wake_miner(&mut self, node: usize, at: u64) {
        let n = &mut self.nodes[node];
        if !n.member || !n.up || n.mine_at <= at {
            return;
        }
        n.mine_gen += 1;
        n.mine_at = at;
        let gen = n.mine_gen;
        self.queue.at(at, Ev::Mine { node, gen });
    }

    fn mine(&mut self, node: usize) {
        let slot = self.cfg.slot_ms;
        let max_records = self.cfg.max_records;
        let now = self.now;
        let n = &mut self.nodes[node];
        let local = n.local(now);
        let Some(tip) = n.chain.tip() else { return };
        let standing = Standing {
            halted: n
                .finality
                .as_ref()
                .is_some_and(|f| f.safety_failure().is_some()),
            catching_up: false,
        };
        let settings = Settings {
            own: n.pubkey,
            slot: std::time::Duration::from_millis(slot),
            max_records,
        };
        let next = mining::next(
            &settings,
            standing,
            &n.pool,
            n.chain.tree(),
            &tip,
            &n.peer_keys,
            local,
        );
        let Some(job) = next.job else {
            if !n.pool.is_empty() {
                self.wake_miner(node, now + next.wait_ms.max(1));
            }
            return;
        };
        let Some(block) = assemble(
            &tip,
            &job.records,
            &n.key,
            job.time_ms,
            0,
            &AtomicBool::new(false),
        ) else {
            return;
        };
        let block = Arc::new(block);
        self.note_made(&block);
        let verdict = {
            let n = &mut self.nodes[node];
            let v = n.chain.accept(&block, &n.witness, &mut n.pool, local);
            n.intake.note(block.id(), local);
            v
        };
        self.stored(node, &block, verdict);
        if self.nodes[node].hostile == Some(Hostile::Withhold) && self.now < self.heal_ms() {
            self.nodes[node].withheld.push(Arc::clone(&block));
        } else {
            self.push_to_peers(node, &block);
        }
        if !self.nodes[node].pool.is_empty() {
            self.wake_miner(node, now + 1);
        }
    }

    /// When every fault has healed: the relays' last minute closes, and the run settles for
    /// [`SETTLE_MINUTES`] before the end's checks.
    fn heal_ms(&self) -> u64 {
        minute_closes_ms(Minute(self.end_minute))
    }

    /// After `node` stored `block` with `verdict`: the run's counts, finality, the miner.
    fn stored(&mut self, node: usize, block: &Arc<Block>, verdict: Verdict) {
        if !matches!(verdict, Verdict::Best | Verdict::Side) {
            return;
        }
        if self.nodes[node].honest() {
            let all = self.honest;
            if let Some(m) = self.made.get_mut(&block.id()) {
                m.holders += 1;
                if m.holders == all {
                    m.everywhere_ms = Some(self.now);
                }
            }
        }
        self.advance(node);
        if verdict == Verdict::Best {
            self.wake_miner(node, self.now);
        }
        self.check_final_on_main(node);
    }

    /// A block made now (mined, rewritten, spammed): what the run times and hands out.
    fn note_made(&mut self, block: &Arc<Block>) {
        self.made.insert(
            block.id(),
            Made {
                block: Arc::clone(block),
                made_ms: self.now,
                holders: 0,
                everywhere_ms: None,
            },
        );
    }

    fn push_to_peers(&mut self, node: usize, block: &Arc<Block>) {
        let peers = self.links.peers()[node].clone();
        for p in peers {
            self.push(node, p, block);
        }
    }

    fn push(&mut self, from: usize, to: usize, block: &Arc<Block>) {
        let Some(i) = self.links.index(from, to) else {
            return;
        };
        let bytes = block_bytes(block);
        self.traffic.blocks.0 += 1;
        self.traffic.blocks.1 += bytes as u64;
        // A block goes on once checked and stored: the node's time per hop, after a shared
        // core's time if the nodes share cores.
        let id = block.id();
        let leaves = match self.checked {
            Some((n, b, at)) if n == from && b == id => at,
            _ => {
                let at = self.cpu.run(self.now, self.cfg.block_cpu_us) + self.cfg.hop_ms;
                self.checked = Some((from, id, at));
                at
            }
        };
        if let Some(at) = self.links.send(leaves, from, i, bytes, &mut self.rng) {
            self.queue.at(
                at,
                Ev::Push {
                    to,
                    from,
                    block: Arc::clone(block),
                },
            );
        }
    }

    fn on_push(&mut self, to: usize, from: usize, block: &Arc<Block>) {
        let now = self.now;
        let sender = Some(self.nodes[from].pubkey);
        let n = &mut self.nodes[to];
        let local = n.local(now);
        let verdict = n.chain.accept(block, &n.witness, &mut n.pool, local);
        let pushed = Pushed {
            id: block.id(),
            parent: block.header.prev,
            height: block.header.height,
            miner: block.header.miner,
            sender,
            bytes: bytes::Bytes::new(),
        };
        let height = n.chain.tree().height();
        let peers = Peers {
            urls: &n.urls,
            health: &mut n.health,
        };
        let arrived = n
            .intake
            .pushed(pushed, verdict, height, peers, &self.net, local);
        self.stored(to, block, verdict);
        self.carry_out(to, Some(from), arrived.actions);
    }

    /// The intake's actions, as the runtime carries them out.
    fn carry_out(&mut self, node: usize, sender: Option<usize>, actions: Vec<Action>) {
        let mut todo: std::collections::VecDeque<Action> = actions.into();
        let mut pulled = false;
        while let Some(a) = todo.pop_front() {
            match a {
                Action::Relay { id, to, .. } => {
                    let Some(block) = self.made.get(&id).map(|m| Arc::clone(&m.block)) else {
                        continue;
                    };
                    for u in to {
                        if let Some(p) = index_of(&u) {
                            self.push(node, p, &block);
                        }
                    }
                }
                Action::Place(orphan) => {
                    let Some(block) = self.made.get(&orphan.id).map(|m| Arc::clone(&m.block))
                    else {
                        continue;
                    };
                    let now = self.now;
                    let n = &mut self.nodes[node];
                    let local = n.local(now);
                    let verdict = n.chain.accept(&block, &n.witness, &mut n.pool, local);
                    let peers = Peers {
                        urls: &n.urls,
                        health: &mut n.health,
                    };
                    let more = n
                        .intake
                        .placed(orphan, block.header.miner, verdict, peers, local);
                    self.stored(node, &block, verdict);
                    todo.extend(more);
                }
                Action::Pull => {
                    if pulled {
                        continue;
                    }
                    pulled = true;
                    let peers = &self.links.peers()[node];
                    let p = match sender {
                        Some(s) => s,
                        None if !peers.is_empty() => peers[self.rng.random_range(0..peers.len())],
                        None => continue,
                    };
                    self.ask(node, p);
                }
                Action::WakeAt(t) => {
                    let skew = self.nodes[node].skew_ms;
                    let at = t.saturating_add_signed(-skew).max(self.now);
                    self.queue.at(at, Ev::Wake { node });
                }
            }
        }
    }

    /// `node` asks peer `p` for the blocks above its main chain.
    fn ask(&mut self, node: usize, p: usize) {
        let Some(i) = self.links.index(node, p) else {
            return;
        };
        if self.nodes[node].honest() {
            self.pulls.0 += 1;
            if self.nodes[p].hostile == Some(Hostile::Liar) {
                self.pulls.1 += 1;
            }
        }
        let tree = self.nodes[node].chain.tree();
        let mut locator = Vec::new();
        let mut h = tree.height();
        let mut step = 1;
        loop {
            if let Some(id) = tree.main_at(h) {
                locator.push((h, id));
            }
            if h == 0 {
                break;
            }
            h = h.saturating_sub(step);
            if locator.len() > 8 {
                step *= 2;
            }
        }
        let finality = self.nodes[node].finality.as_ref().map_or((0, 0), |f| {
            (f.final_checkpoint().checkpoint.size, f.justified().0.epoch)
        });
        let bytes = 40 * locator.len();
        self.traffic.pulls.0 += 1;
        self.traffic.pulls.1 += bytes as u64;
        if let Some(at) = self.links.send(self.now, node, i, bytes, &mut self.rng) {
            self.queue.at(
                at,
                Ev::Ask {
                    to: p,
                    from: node,
                    locator,
                    finality,
                },
            );
        }
    }

    fn on_ask(
        &mut self,
        node: usize,
        from: usize,
        locator: &[(Height, BlockId)],
        (final_size, justified): (u64, u64),
    ) {
        let Some(i) = self.links.index(node, from) else {
            return;
        };
        let liar = self.nodes[node].hostile == Some(Hostile::Liar);
        let tree = self.nodes[node].chain.tree();
        // A liar claims a chain far ahead, with twice the work, that it never shows.
        let claim = if liar {
            (
                BlockId([0xee; 32]),
                Claim {
                    height: tree.height().saturating_add(LIE_AHEAD),
                    work: Some(tree.tip_work().saturating_mul(2).saturating_add(1)),
                },
            )
        } else {
            (
                tree.tip(),
                Claim {
                    height: tree.height(),
                    work: Some(tree.tip_work()),
                },
            )
        };
        let blocks: Vec<Arc<Block>> = if liar {
            Vec::new()
        } else {
            let start = locator
                .iter()
                .find(|(h, id)| tree.main_at(*h) == Some(*id))
                .map_or(0, |(h, _)| h + 1);
            tree.main_range(start, PULL_BLOCKS)
                .into_iter()
                .filter_map(|(_, id)| self.nodes[node].chain.block(&id).cloned())
                .collect()
        };
        // Its finality, if ahead: the final checkpoint's note, the votes it holds above.
        let (note, votes) = match self.nodes[node].finality.as_ref() {
            Some(f) if !liar => {
                let ours = f.final_checkpoint();
                let note = (ours.checkpoint.size > final_size && !ours.note.is_empty())
                    .then(|| Rc::new(ours.note.clone()));
                let votes =
                    if f.justified().0.epoch > justified || ours.checkpoint.size > final_size {
                        f.held_votes(final_size, MAX_HELD_VOTES)
                    } else {
                        Vec::new()
                    };
                (note, votes)
            }
            _ => (None, Vec::new()),
        };
        let bytes: usize = 16
            + blocks.iter().map(|b| block_bytes(b)).sum::<usize>()
            + note.as_ref().map_or(0, |n| n.len())
            + VOTE_BYTES * votes.len();
        self.traffic.pulls.0 += 1;
        self.traffic.pulls.1 += bytes as u64;
        if let Some(at) = self.links.send(self.now, node, i, bytes, &mut self.rng) {
            let at = if liar { at + 5_000 } else { at };
            self.queue.at(
                at,
                Ev::Reply {
                    to: from,
                    from: node,
                    claim,
                    blocks,
                    note,
                    votes,
                },
            );
        }
    }

    /// A sync round at `node`: the node's own choice of peers (`core::health::due`: none
    /// backed off after a lie or a failure, none that just pushed), and of those one at
    /// random is asked (the node asks every one; one keeps a thousand nodes' rounds cheap).
    fn sync(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let local = n.local(self.now);
        let period = std::time::Duration::from_millis(self.cfg.sync_ms);
        let due = health::due(&n.urls, &mut n.health, local, period);
        // No pull stays under way here: a lost answer is simply not waited for.
        for u in &due {
            if let Some(h) = n.health.get_mut(u) {
                h.in_flight = false;
            }
        }
        if due.is_empty() {
            return;
        }
        let pick = &due[self.rng.random_range(0..due.len())];
        if let Some(p) = index_of(pick) {
            self.ask(node, p);
        }
    }

    /// A peer's answer to a pull: its blocks go through the chain as the node's pull takes
    /// them, and the core's rules (`core::pull`) judge it: a peer that claimed more work
    /// than ours and gave nothing that raised ours lied, and is backed off
    /// (`core::health`).
    fn on_reply(
        &mut self,
        node: usize,
        from: usize,
        (tip, claim): (BlockId, Claim),
        blocks: &[Arc<Block>],
    ) {
        let plan = {
            let tree = self.nodes[node].chain.tree();
            Pull::wanted(
                tree.height(),
                tree.tip_work(),
                claim,
                tree.contains(&tip),
                PULL_BLOCKS as u32,
            )
        };
        let mut outcomes = Vec::with_capacity(blocks.len());
        let mut best = false;
        for b in blocks {
            let now = self.now;
            let n = &mut self.nodes[node];
            let local = n.local(now);
            let verdict = n.chain.accept(b, &n.witness, &mut n.pool, local);
            outcomes.push(pull::Outcome::from(verdict));
            let actions = if matches!(verdict, Verdict::Best | Verdict::Side) {
                n.intake.stored(b.id(), local)
            } else {
                Vec::new()
            };
            best |= verdict == Verdict::Best;
            self.stored(node, b, verdict);
            self.carry_out(node, Some(from), actions);
        }
        if let Some(mut plan) = plan {
            let tree = self.nodes[node].chain.tree();
            let (height_now, work_now) = (tree.height(), tree.tip_work());
            let step = plan.took(blocks.len() as u32, &outcomes, height_now);
            let lied = matches!(step, Step::NoProgress(_)) || plan.lied(true, work_now);
            let outcome = if lied {
                let liar = self.nodes[from].hostile == Some(Hostile::Liar);
                if self.nodes[node].honest() {
                    if liar {
                        self.lies.0 += 1;
                    } else {
                        self.lies.1 += 1;
                        // Invariant: an honest peer whose every block could be taken is
                        // never taken for a liar (it would be backed off, and heard late).
                        // One on a chain this node refuses (a rewrite it took before it
                        // knew the final block) is, as the node would take it.
                        let takeable = outcomes
                            .iter()
                            .all(|o| matches!(o, pull::Outcome::Stored | pull::Outcome::Known));
                        if self.nodes[from].honest() && takeable && self.violation.is_none() {
                            self.violation = Some(format!(
                                "node {node} took honest node {from} for a liar: it claimed height {} work {:?}, and the {} blocks it sent ({outcomes:?}) raised nothing",
                                claim.height,
                                claim.work,
                                blocks.len()
                            ));
                        }
                    }
                }
                health::Outcome::Failed {
                    error: format!("claimed work {}; gave nothing new", claim.work.unwrap_or(0)),
                    lied: true,
                    unreachable: false,
                }
            } else {
                health::Outcome::Stored(plan.stored())
            };
            let n = &mut self.nodes[node];
            let local = n.local(self.now);
            let period = std::time::Duration::from_millis(self.cfg.sync_ms);
            if let Some(h) = n.health.get_mut(&url(from)) {
                h.record(&outcome, period, local);
            }
        }
        if best && blocks.len() == PULL_BLOCKS {
            self.ask(node, from);
        }
    }

    /// Finality moves on at `node` after its chain or the clock moved.
    fn advance(&mut self, node: usize) {
        let now = self.now;
        let n = &mut self.nodes[node];
        let local = n.local(now);
        let witnessed = n.witnessed();
        let Some(f) = n.finality.as_mut() else {
            return;
        };
        let fx = f.advance(&mut n.chain, witnessed, local);
        self.effects(node, fx);
    }

    /// A final checkpoint's note a peer served.
    fn on_checkpoint(&mut self, node: usize, from: usize, note: &str) {
        let now = self.now;
        let n = &mut self.nodes[node];
        let local = n.local(now);
        let Some(f) = n.finality.as_mut() else {
            return;
        };
        // A note that does not verify is refused, as the node refuses it.
        if let Ok(fx) = f.on_checkpoint(&mut n.chain, note.as_bytes(), &url(from), local) {
            self.effects(node, fx);
            self.advance(node);
        }
    }

    fn on_votes(&mut self, node: usize, from: usize, votes: Vec<Vote>) {
        let now = self.now;
        let n = &mut self.nodes[node];
        let local = n.local(now);
        let witnessed = n.witnessed();
        let Some(f) = n.finality.as_mut() else {
            return;
        };
        let from_url = url(from);
        let checked = f.stats.votes + f.stats.votes_refused;
        let fx = f.on_votes(&mut n.chain, votes, Some(&from_url), witnessed, local);
        // Each signature checked holds a shared core: blocks wait behind them (the votes
        // themselves are taken at once; the model is of the blocks' propagation).
        let checks = f.stats.votes + f.stats.votes_refused - checked;
        if checks > 0 {
            self.cpu.run(now, checks * self.cfg.vote_cpu_us);
        }
        self.effects(node, fx);
    }

    /// What finality asked: switches into the mempool, votes to the peers (each but the
    /// one it came from), a tick while the tip waits; and the run's safety checks.
    fn effects(&mut self, node: usize, fx: Effects<Change>) {
        let now = self.now;
        {
            let n = &mut self.nodes[node];
            let local = n.local(now);
            for change in &fx.switched {
                n.chain.switched(change, &n.witness, &mut n.pool, local);
            }
        }
        if let Some(c) = fx.finalized {
            self.finalized(node, c);
        }
        if !fx.send.is_empty() {
            let mut send = fx.send;
            if self.nodes[node].hostile == Some(Hostile::Equivocate) {
                let origin = origin(&self.net.name);
                let twins: Vec<(Vote, Option<String>)> = send
                    .iter()
                    .filter(|(v, from)| from.is_none() && matches!(v.kind, Kind::Prevote(_)))
                    .filter_map(|(v, _)| {
                        let mut root = v.target.root;
                        root[0] ^= 0xff;
                        let target = Checkpoint {
                            size: v.target.size,
                            root,
                        };
                        Vote::sign(v.kind, target, &self.nodes[node].key, &origin)
                            .map(|t| (t, None))
                    })
                    .collect();
                send.extend(twins);
            }
            // Sent after a short wait, a burst in one message per peer (the runtime's
            // coalescing).
            let n = &mut self.nodes[node];
            if n.outbox.is_empty() {
                self.queue.at(now + VOTE_COALESCE_MS, Ev::Flush { node });
            }
            n.outbox.extend(
                send.into_iter()
                    .map(|(v, from)| (v, from.as_deref().and_then(index_of))),
            );
        }
        // While the tip waits above the final block, finality's pacing needs the clock.
        let n = &mut self.nodes[node];
        if n.member && n.up {
            if let Some(f) = &n.finality {
                let waiting = n.chain.tree().height() > n.final_height;
                if waiting && f.votes() && n.tick_at <= now {
                    let at = now + TICK_MS;
                    n.tick_at = at;
                    self.queue.at(at, Ev::Tick { node });
                }
            }
        }
    }

    /// The votes waiting at `node`, to each peer all but those it sent.
    fn flush(&mut self, node: usize) {
        let send = std::mem::take(&mut self.nodes[node].outbox);
        if send.is_empty() {
            return;
        }
        let now = self.now;
        let peers = self.links.peers()[node].clone();
        for (i, p) in peers.into_iter().enumerate() {
            let votes: Vec<Vote> = send
                .iter()
                .filter(|(_, from)| *from != Some(p))
                .map(|(v, _)| *v)
                .collect();
            if votes.is_empty() {
                continue;
            }
            let bytes = VOTE_BYTES * votes.len();
            self.traffic.votes.0 += 1;
            self.traffic.votes.1 += bytes as u64;
            if let Some(at) = self.links.send(now, node, i, bytes, &mut self.rng) {
                self.queue.at(
                    at,
                    Ev::Votes {
                        to: p,
                        from: node,
                        votes,
                    },
                );
            }
        }
    }

    /// `node` made checkpoint `c` final: the same as every other honest node's at that
    /// size, never lower than before, and its block on its main chain.
    fn finalized(&mut self, node: usize, c: Checkpoint) {
        let honest = self.nodes[node].honest();
        let member = self.nodes[node].member;
        let h = u32::try_from(c.size.saturating_sub(1)).unwrap_or(u32::MAX);
        let before = self.nodes[node].final_height;
        if h < before {
            self.fail(format!(
                "node {node}'s final height went back from {before} to {h}"
            ));
            return;
        }
        self.nodes[node].final_height = h;
        if !honest {
            return;
        }
        match self.finals.get(&c.size) {
            Some(root) if *root != c.root => {
                self.fail(format!(
                    "two final checkpoints at size {}: {} and {} (node {node})",
                    c.size,
                    hex::encode(root),
                    hex::encode(c.root)
                ));
                return;
            }
            Some(_) => {}
            None => {
                self.finals.insert(c.size, c.root);
            }
        }
        if member {
            let all = self.honest_members;
            for height in before + 1..=h {
                let e = self.final_count.entry(height).or_insert((0, None));
                e.0 += 1;
                if e.0 == all && e.1.is_none() {
                    e.1 = Some(self.now);
                }
            }
        }
        self.check_final_on_main(node);
    }

    /// An honest node's main chain holds its final block.
    fn check_final_on_main(&mut self, node: usize) {
        let n = &self.nodes[node];
        if !n.honest() {
            return;
        }
        if let Some((h, id)) = n.chain.final_block() {
            if n.chain.tree().main_at(h) != Some(id) {
                let v = format!("node {node}'s main chain lost its final block at height {h}");
                self.fail(v);
            }
        }
    }

    fn fail(&mut self, why: String) {
        if self.violation.is_none() {
            self.violation = Some(why);
        }
    }

    fn restart(&mut self, node: usize) {
        let relays = self.cfg.relays;
        let now = self.now;
        let n = &mut self.nodes[node];
        n.up = true;
        n.outbox.clear();
        n.pool = Mempool::new();
        n.intake = Intake::default();
        n.mine_at = u64::MAX;
        n.tick_at = 0;
        n.health = n
            .health
            .iter()
            .map(|(u, h)| (u.clone(), PeerHealth::new(u, h.miner)))
            .collect();
        // What finality kept comes back; the rest of its state is gone.
        n.finality = open_finality(self.finality_config.as_ref(), &n.key, &mut n.chain);
        // Its poller reads the relays' latest minutes back.
        if n.member {
            let closed = u32::try_from(now / 60_000).unwrap_or(u32::MAX);
            for relay in 1..=relays {
                for m in closed.saturating_sub(REREAD_MINUTES)..closed {
                    if m >= FIRST_MINUTE {
                        self.queue.at(
                            now + 500,
                            Ev::Read {
                                node,
                                relay,
                                minute: m,
                            },
                        );
                    }
                }
            }
        }
        let peers = self.links.peers()[node].clone();
        if let Some(&p) = peers.first() {
            self.ask(node, p);
        }
    }

    /// A member re-mines the records of the main chain's last blocks as a longer fork
    /// from below them, and pushes it.
    fn rewrite(&mut self, node: usize) {
        let n = &self.nodes[node];
        let tree = n.chain.tree();
        let tip = tree.height();
        let base = tip.saturating_sub(20);
        let Some(base_id) = tree.main_at(base) else {
            return;
        };
        let Some(mut parent) = n.chain.header(&base_id).copied() else {
            return;
        };
        let mut fork = Vec::new();
        for h in base + 1..=tip + 5 {
            let records: Vec<MinuteRecord> = tree
                .main_at(h)
                .and_then(|id| n.chain.block(&id))
                .map(|b| {
                    b.records
                        .iter()
                        .filter_map(|r| MinuteRecord::decode(r).ok())
                        .collect()
                })
                .unwrap_or_default();
            let time = parent.time_ms + 1;
            let Some(b) = assemble(&parent, &records, &n.key, time, 0, &AtomicBool::new(false))
            else {
                return;
            };
            parent = b.header;
            fork.push(Arc::new(b));
        }
        for b in fork {
            self.note_made(&b);
            self.push_to_peers(node, &b);
        }
    }

    /// A member pushes a valid block whose parent it never shows.
    fn spam(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let parent = match n.spam_parent {
            Some(p) => p,
            None => match n.chain.tip() {
                Some(t) => t,
                None => return,
            },
        };
        let time = parent.time_ms.max(n.local(self.now));
        let stop = AtomicBool::new(false);
        let Some(hidden) = assemble(&parent, &[], &n.key, time, 0, &stop) else {
            return;
        };
        let Some(shown) = assemble(&hidden.header, &[], &n.key, time + 1, 0, &stop) else {
            return;
        };
        n.spam_parent = Some(shown.header);
        let shown = Arc::new(shown);
        self.note_made(&shown);
        self.push_to_peers(node, &shown);
    }

    fn cut_now(&self) -> (BTreeSet<RecordKey>, Height) {
        let height = self
            .nodes
            .iter()
            .filter(|n| n.honest() && n.up)
            .map(|n| n.chain.tree().height())
            .max()
            .unwrap_or(0);
        (self.read.clone(), height)
    }

    /// After the settling time: one tip, every record read on it exactly once and as its
    /// relay made it, finality caught up.
    fn final_checks(&mut self) -> Option<String> {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].honest() && self.nodes[*i].up)
            .collect();
        let &first = up.first()?;
        let tip = self.nodes[first].chain.tree().tip();
        for &i in &up {
            let other = self.nodes[i].chain.tree().tip();
            if other != tip {
                let a = &self.nodes[first];
                let b = &self.nodes[i];
                return Some(format!(
                    "{} minutes after the last fault healed, node {i} is on tip {other} at height {} (final {}, holds the other: {}), node {first} on {tip} at height {} (final {}, holds the other: {})",
                    SETTLE_MINUTES,
                    b.chain.tree().height(),
                    b.final_height,
                    b.chain.tree().contains(&tip),
                    a.chain.tree().height(),
                    a.final_height,
                    a.chain.tree().contains(&other),
                ));
            }
        }
        // The main chain's records: each once, each as its relay made it.
        let chain = &self.nodes[first].chain;
        let mut on_chain: HashMap<RecordKey, u32> = HashMap::new();
        let height = chain.tree().height();
        let mut at = 0;
        while at <= height {
            let run = chain.tree().main_range(at, 4096);
            if run.is_empty() {
                break;
            }
            for (h, id) in run {
                at = h + 1;
                let Some(b) = chain.block(&id) else { continue };
                for bytes in &b.records {
                    let Ok(r) = MinuteRecord::decode(bytes) else {
                        return Some(format!("block {id} holds a record that does not decode"));
                    };
                    let key = RecordKey::of(&r);
                    if self.records.get(&key) != Some(&r) {
                        return Some(format!(
                            "the main chain holds a record for {key:?} that its relay never made"
                        ));
                    }
                    *on_chain.entry(key).or_default() += 1;
                }
            }
        }
        if let Some((k, c)) = on_chain.iter().find(|(_, c)| **c > 1) {
            return Some(format!("record {k:?} is on the main chain {c} times"));
        }
        let (read, cut_height) = self.cut.clone().unwrap_or_default();
        if let Some(k) = read.iter().find(|k| !on_chain.contains_key(k)) {
            return Some(format!(
                "record {k:?}, read by an honest member {} s before the end, is not on the main chain",
                CUT_MS / 1000
            ));
        }
        // Finality caught up with the chain as it was at the cut, on every honest member.
        for &i in &up {
            let n = &self.nodes[i];
            if n.member && n.finality.is_some() && n.final_height < cut_height {
                return Some(format!(
                    "node {i}'s final height is {} at the end, below {cut_height}, the height {} s before",
                    n.final_height,
                    CUT_MS / 1000
                ));
            }
        }
        // An equivocation is evidence on some honest member.
        if let Some(eq) =
            (0..self.nodes.len()).find(|i| self.nodes[*i].hostile == Some(Hostile::Equivocate))
        {
            let key = self.nodes[eq].pubkey;
            let caught = up.iter().any(|i| {
                self.nodes[*i]
                    .finality
                    .as_ref()
                    .is_some_and(|f| f.evidence().iter().any(|e| e.member == key))
            });
            if !caught {
                return Some(format!(
                    "member {eq} equivocated and no honest node holds the evidence"
                ));
            }
        }
        None
    }

    fn outcome(&self, violation: Option<String>) -> Outcome {
        let reference = (0..self.nodes.len())
            .find(|i| self.nodes[*i].honest() && self.nodes[*i].up)
            .unwrap_or(0);
        let chain = &self.nodes[reference].chain;
        // Figures leave out the warm-up: until the chain has recorded its miners, every
        // member's turn is the first (`gridledger_core::policy`) and they race.
        let warm = minute_closes_ms(Minute(FIRST_MINUTE + WARMUP_MINUTES));
        let honest_made: Vec<&Made> = self
            .made
            .values()
            .filter(|m| m.made_ms >= warm)
            .filter(|m| {
                self.nodes
                    .iter()
                    .find(|n| n.pubkey == m.block.header.miner)
                    .is_some_and(Node::honest)
            })
            .collect();
        let stale = honest_made
            .iter()
            .filter(|m| chain.tree().main_at(m.block.header.height) != Some(m.block.id()))
            .count();
        let mut propagation: Vec<u64> = honest_made
            .iter()
            .filter_map(|m| m.everywhere_ms.map(|t| t - m.made_ms))
            .collect();
        let mut finality = Vec::new();
        let mut record_final = Vec::new();
        for (h, (_, all)) in &self.final_count {
            let Some(all) = all else { continue };
            let Some(id) = chain.tree().main_at(*h) else {
                continue;
            };
            if let Some(m) = self.made.get(&id).filter(|m| m.made_ms >= warm) {
                finality.push(all.saturating_sub(m.made_ms));
                for bytes in &m.block.records {
                    if let Ok(r) = MinuteRecord::decode(bytes) {
                        record_final.push(all.saturating_sub(minute_closes_ms(r.minute)));
                    }
                }
            }
        }
        propagation.sort_unstable();
        finality.sort_unstable();
        record_final.sort_unstable();
        let final_height = self.nodes[reference].final_height;
        Outcome {
            seed: self.cfg.seed,
            faults: self.faults,
            violation,
            tail: self.trace.tail(),
            command: self.cfg.command(),
            hash: self.trace.hash(),
            figures: Figures {
                events: self.trace.events(),
                height: chain.tree().height(),
                final_height,
                blocks: honest_made.len(),
                stale,
                records_read: self.read.len(),
                propagation,
                finality,
                record_final,
                messages: self.links.sent,
                lost: self.links.lost,
                traffic: self.traffic,
                nodes: self.nodes.len(),
                diameter: topology::diameter(self.links.peers()),
                pulls: self.pulls,
                lies: self.lies,
                block_bytes: {
                    let (n, sum) = (1..=chain.tree().height())
                        .filter_map(|h| chain.tree().main_at(h))
                        .filter_map(|id| chain.block(&id))
                        .fold((0u64, 0u64), |(n, s), b| (n + 1, s + block_bytes(b) as u64));
                    sum.checked_div(n).unwrap_or(0)
                },
                sim_ms: self
                    .now
                    .saturating_sub(minute_closes_ms(Minute(FIRST_MINUTE))),
            },
        }
    }
}

/// `key`'s finality over `chain`, from what the chain kept (nothing, at the start).
fn open_finality(
    config: Option<&FinalityConfig>,
    key: &SigningKey,
    chain: &mut MemChain,
) -> Option<Finality> {
    let kept = chain.kept();
    Finality::open(config?.clone(), Some(key.clone()), kept, chain).ok()
}

/// A block's bytes on the wire.
fn block_bytes(b: &Block) -> usize {
    128 + b.records.iter().map(|r| r.len() + 4).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The safety check itself: a second root final at a size an honest node finalised
    /// before is a violation, and so is a final height that goes back.
    #[test]
    fn two_final_roots_at_one_size_or_a_final_height_going_back_break_the_run() {
        let cfg = Config {
            nodes: 4,
            members: 4,
            minutes: 1,
            ..Config::default()
        };
        let mut w = World::new(cfg.clone());
        let honest = (0..4).filter(|i| w.nodes[*i].honest()).collect::<Vec<_>>();
        let (a, b) = (honest[0], honest[1]);
        let c = |r: u8| Checkpoint {
            size: 3,
            root: [r; 32],
        };
        w.finalized(a, c(1));
        assert_eq!(w.violation, None);
        w.finalized(b, c(1));
        assert_eq!(w.violation, None, "the same root again is no conflict");
        w.finalized(b, c(2));
        assert!(w
            .violation
            .take()
            .is_some_and(|v| v.contains("two final checkpoints")));
        let mut w = World::new(cfg);
        w.finalized(a, c(1));
        w.finalized(
            a,
            Checkpoint {
                size: 2,
                root: [1; 32],
            },
        );
        assert!(w.violation.is_some_and(|v| v.contains("went back")));
    }
}
