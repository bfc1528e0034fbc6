//! `core-bench`: block arrivals through the node's core without I/O, events a second on one
//! core (issue 31's goal: >= 200 000).
//!
//! A chain of `--blocks` valid blocks (one record each, 8 miners; built first, not timed)
//! arrives at a node with `--peers` peers, as gossip brings it: each block pushed by every
//! peer, the first copy new (its record checked against this node's own read, the fork
//! choice takes it, its record leaves the mempool, the intake relays it to every other peer), the others copies it already holds (answered with
//! how long it held them). Every `--early`th block comes before its parent: the intake checks
//! it by every rule that needs no chain (its signature included) and keeps it, then places
//! and relays it when the parent comes. One event is one push handed to the core.
//!
//! What runs is the real code of `gridledger_core` (`intake`, `witness`, `mempool`,
//! `health`) and
//! `gridledger-chain`'s fork choice (`BlockTree`), in one thread, fed by a loop. Not in it:
//! the rules that need the chain's blocks (the node's ledger checks a new block's proof of
//! work, signature and records before the fork choice: `chain-bench` measures those, about
//! 170 000 blocks/s on two threads) and the store's commit (`sync-bench`). Each figure is
//! printed beside the goal; no figure is asserted.
//!
//! Nor are the blocks kept: keeping them is the ledger's (the node's store). Kept in memory
//! by `gridledger_core::memchain` instead of dropped, the one-peer figure falls by about
//! 15 % (two hash maps growing by a block each): a stand-in's cost, not the core's.
//!
//! `cargo run --release -p gridledger-bench --bin core-bench`

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use ed25519_dalek::SigningKey;
use gridledger_chain::{assemble, Block, BlockTree, Change, Network, RecordKey};
use gridledger_core::health::PeerHealth;
use gridledger_core::intake::{Action, Intake, Peers, Pushed, Verdict};
use gridledger_core::mempool::Mempool;
use gridledger_core::witness::Witness;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, MinuteRecord, RecordFlags, RelayId};

/// The goal of issue 31.
const GOAL: f64 = 200_000.0;

/// Block arrivals through the core, events a second.
#[derive(Debug, Parser)]
#[command(name = "core-bench", about)]
struct Args {
    /// Blocks that arrive.
    #[arg(long, default_value_t = 50_000)]
    blocks: u32,
    /// Peers, each pushing every block (the first copy is new, the rest held already).
    #[arg(long, default_value_t = 8)]
    peers: u8,
    /// Every this many blocks, one comes before its parent (0: none).
    #[arg(long, default_value_t = 25)]
    early: u32,
    /// Rounds (each on a fresh core; the best and the worst are printed).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

fn main() {
    let args = Args::parse();
    let net = Network::new("core-bench", 0);
    let (chain, records) = build(&net, args.blocks);
    println!(
        "[block arrivals] {} blocks of one record, {} peers each pushing every block, one in {} before its parent; {} rounds",
        args.blocks, args.peers, args.early, args.rounds
    );
    let mut shapes = vec![args.peers];
    if args.peers != 1 {
        shapes.push(1);
    }
    for peers in shapes {
        let mut rates = Vec::new();
        let mut last = None;
        for _ in 0..args.rounds {
            let (events, secs, counts) = arrivals(&net, &chain, &records, peers, args.early);
            rates.push(events as f64 / secs);
            last = Some((events, counts));
        }
        let Some((events, counts)) = last else {
            return;
        };
        rates.sort_by(f64::total_cmp);
        let (lo, hi) = (rates[0], rates[rates.len() - 1]);
        println!(
            "  {peers} peer(s): {events} events ({} new, {} copies, {} early, {} placed, {} relays): {lo:.0}-{hi:.0} events/s (goal >= {GOAL:.0}): {}",
            counts.new,
            counts.copies,
            counts.early,
            counts.placed,
            counts.relays,
            if lo >= GOAL { "met" } else { "NOT met" }
        );
    }
}

/// `n` valid blocks, one record each, mined in turn by 8 keys; each block's record.
fn build(net: &Network, n: u32) -> (Vec<(Block, Bytes)>, Vec<MinuteRecord>) {
    let keys: Vec<SigningKey> = (1..=8u8)
        .map(|k| SigningKey::from_bytes(&[k; 32]))
        .collect();
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    let mut parent = net.genesis().header;
    let mut chain = Vec::with_capacity(n as usize);
    let mut records = Vec::with_capacity(n as usize);
    for i in 0..n {
        let minute = 29_000_000 + i;
        let r = model.record(
            RelayId(1 + i % 10),
            Minute(minute),
            6,
            RecordFlags::CLOCK_SET,
        );
        let time = (u64::from(minute) + 1) * 60_000 + 1_000;
        let key = &keys[i as usize % keys.len()];
        let Some(b) = assemble(&parent, std::slice::from_ref(&r), key, time, 0, &cancel) else {
            eprintln!("a block did not assemble");
            std::process::exit(1);
        };
        parent = b.header;
        let bytes = Bytes::from(b.to_bytes());
        chain.push((b, bytes));
        records.push(r);
    }
    (chain, records)
}

#[derive(Default)]
struct Counts {
    new: u64,
    copies: u64,
    early: u64,
    placed: u64,
    relays: u64,
}

/// One node's core: the fork choice, the mempool, the intake, its peers.
struct Node<'a> {
    net: &'a Network,
    tree: BlockTree,
    mempool: Mempool,
    witness: Witness,
    intake: Intake,
    urls: Vec<String>,
    health: HashMap<String, PeerHealth>,
    counts: Counts,
}

impl Node<'_> {
    /// What the node says of `b` (the rules that need its bytes are taken as checked): as
    /// the node's `Core::accept` does, its records against this node's reads first (a copy
    /// too), then the fork choice.
    fn verdict(&mut self, b: &Block) -> Verdict {
        let records: Vec<MinuteRecord> = b
            .records
            .iter()
            .filter_map(|r| MinuteRecord::decode(r).ok())
            .collect();
        // This node read every relay: no record differs here, none needs the store.
        if self.witness.check(&records) != Ok(Vec::new()) {
            return Verdict::Refused;
        }
        if self.tree.contains(&b.id()) {
            return Verdict::Known;
        }
        if !self.tree.contains(&b.header.prev) {
            return Verdict::UnknownParent;
        }
        let keys: Vec<RecordKey> = records.iter().map(RecordKey::of).collect();
        let change = self.tree.insert(&b.header, keys.clone());
        if change == Change::SideBranch {
            return Verdict::Side;
        }
        self.mempool.remove(&keys);
        Verdict::Best
    }

    /// Block `b` pushed by the peer that mines with `sender`.
    fn push(&mut self, b: &Block, bytes: &Bytes, sender: [u8; 32], now: u64) {
        let verdict = self.verdict(b);
        match verdict {
            Verdict::Known => self.counts.copies += 1,
            Verdict::UnknownParent => self.counts.early += 1,
            _ => self.counts.new += 1,
        }
        let pushed = Pushed {
            id: b.id(),
            parent: b.header.prev,
            height: b.header.height,
            miner: b.header.miner,
            sender: Some(sender),
            bytes: bytes.clone(),
        };
        let height = self.tree.height();
        let peers = Peers {
            urls: &self.urls,
            health: &mut self.health,
        };
        let arrived = self
            .intake
            .pushed(pushed, verdict, height, peers, self.net, now);
        self.carry_out(arrived.actions.into(), now);
    }

    fn carry_out(&mut self, mut todo: VecDeque<Action>, now: u64) {
        while let Some(a) = todo.pop_front() {
            match a {
                Action::Relay { to, .. } => self.counts.relays += to.len() as u64,
                Action::Place(orphan) => {
                    let Ok(b) = Block::from_bytes(
                        &orphan.bytes,
                        self.net.max_block_bytes,
                        self.net.max_records,
                    ) else {
                        continue;
                    };
                    let verdict = self.verdict(&b);
                    self.counts.placed += 1;
                    let peers = Peers {
                        urls: &self.urls,
                        health: &mut self.health,
                    };
                    todo.extend(
                        self.intake
                            .placed(orphan, b.header.miner, verdict, peers, now),
                    );
                }
                Action::Pull | Action::WakeAt(_) => {}
            }
        }
    }
}

/// One round on a fresh core: events, seconds, what happened.
fn arrivals(
    net: &Network,
    chain: &[(Block, Bytes)],
    records: &[MinuteRecord],
    peers: u8,
    early: u32,
) -> (u64, f64, Counts) {
    let urls: Vec<String> = (0..peers).map(|p| format!("http://peer-{p}")).collect();
    let health = urls
        .iter()
        .zip(0u8..)
        .map(|(u, p)| (u.clone(), PeerHealth::new(u, Some([p; 32]))))
        .collect();
    let mut node = Node {
        net,
        tree: BlockTree::new(&net.genesis().header),
        mempool: Mempool::new(),
        witness: Witness::default(),
        intake: Intake::default(),
        urls,
        health,
        counts: Counts::default(),
    };
    for r in records {
        node.witness.read(r.clone());
        node.mempool.add_at(r.clone(), 0);
    }
    let start = Instant::now();
    let mut events = 0u64;
    let mut i = 0;
    while i < chain.len() {
        let now = i as u64 * 1_000;
        // A child before its parent: the pair's first copies swapped.
        let pair = early > 0 && (i as u32 + 1) % early == 0 && i + 1 < chain.len();
        let order: &[usize] = if pair { &[i + 1, i] } else { &[i] };
        for p in 0..peers {
            for &j in order {
                let (b, bytes) = &chain[j];
                node.push(b, bytes, [p; 32], now);
                events += 1;
            }
        }
        i += order.len();
    }
    let secs = start.elapsed().as_secs_f64();
    if node.tree.height() as usize != chain.len() || !node.mempool.is_empty() {
        eprintln!(
            "the core did not take the whole chain: height {} of {}, {} records left",
            node.tree.height(),
            chain.len(),
            node.mempool.len()
        );
        std::process::exit(1);
    }
    (events, secs, node.counts)
}
