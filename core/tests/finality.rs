//! Finality in the core, driven by events alone: four members' cores over chains in memory,
//! votes handed from one to the others until none is left to send, no socket and no store.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use gridledger_chain::finality::{origin, Checkpoint, Kind, Members, Source, Vote};
use gridledger_chain::{assemble, Block, BlockId, Header, Network};
use gridledger_core::finality::{Finality, FinalityConfig};
use gridledger_core::memchain::MemChain;
use gridledger_core::mempool::Mempool;
use gridledger_core::verdict::Verdict;
use gridledger_core::witness::Witness;
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

const MEMBERS: u8 = 4;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn network() -> Network {
    let mut net = Network::new("finality-events", 0);
    net.allow_list = Some(
        (1..=MEMBERS)
            .map(|k| key(k).verifying_key().to_bytes())
            .collect(),
    );
    net
}

fn members(net: &Network) -> Members {
    Members::new(
        &origin(&net.name),
        net.allow_list.as_deref().unwrap_or(&[]),
        None,
    )
    .expect("members")
}

/// One member's core: its chain, mempool, reads and finality.
struct Node {
    chain: MemChain,
    pool: Mempool,
    witness: Witness,
    finality: Finality,
    up: bool,
}

impl Node {
    fn new(net: &Network, k: u8) -> Self {
        let mut chain = MemChain::new(net);
        let finality = open(net, k, &mut chain);
        Node {
            chain,
            pool: Mempool::new(),
            witness: Witness::default(),
            finality,
            up: true,
        }
    }

    fn final_height(&self) -> u64 {
        self.finality.final_checkpoint().checkpoint.size - 1
    }
}

fn open(net: &Network, k: u8, chain: &mut MemChain) -> Finality {
    let kept = chain.kept();
    Finality::open(
        FinalityConfig {
            members: members(net),
            interval_ms: 0,
            genesis: net.genesis().id(),
            settle_ms: 0,
        },
        Some(key(k)),
        kept,
        chain,
    )
    .expect("opens")
}

/// A block of one record for `minute` on `parent`, mined by `miner`.
fn block(parent: &Header, minute: u32, miner: u8, seed: u64) -> Arc<Block> {
    let r = SignalModel::new(seed, Profile::Realistic).record(
        RelayId(1),
        Minute(minute),
        6,
        RecordFlags::CLOCK_SET,
    );
    let time = (u64::from(minute) + 1) * 60_000;
    Arc::new(
        assemble(parent, &[r], &key(miner), time, 0, &AtomicBool::new(false))
            .expect("bits 0 mines"),
    )
}

/// Votes sent, each handed to every other node that is up (not back to its sender), until
/// none is left: what the runtime's gossip does, in one order. Returns the votes handed on.
fn gossip(nodes: &mut [Node], mut queue: Vec<(usize, Vote)>, now: u64) -> usize {
    let mut handed = 0;
    while let Some((from, v)) = queue.pop() {
        handed += 1;
        assert!(handed < 10_000, "the gossip settles");
        for (to, n) in nodes.iter_mut().enumerate() {
            if to == from || !n.up {
                continue;
            }
            let fx = n
                .finality
                .on_votes(&mut n.chain, vec![v], Some("peer"), true, now);
            for change in &fx.switched {
                n.chain.switched(change, &n.witness, &mut n.pool, now);
            }
            queue.extend(fx.send.into_iter().map(|(v, _)| (to, v)));
        }
    }
    handed
}

/// Every node that is up moves finality on after its chain moved; their votes gossiped.
fn advance(nodes: &mut [Node], now: u64) {
    let mut queue = Vec::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        if n.up {
            let fx = n.finality.advance(&mut n.chain, true, now);
            queue.extend(fx.send.into_iter().map(|(v, _)| (i, v)));
        }
    }
    gossip(nodes, queue, now);
}

/// Gives `b` to every node that is up; each must take it as its best block.
fn give(nodes: &mut [Node], b: &Arc<Block>, now: u64) {
    for n in nodes.iter_mut().filter(|n| n.up) {
        assert_eq!(
            n.chain.accept(b, &n.witness, &mut n.pool, now),
            Verdict::Best
        );
    }
}

/// Four members finalise the chain by their votes alone; a rewrite from genesis with more
/// work is then refused by every one of them, and a restarted member keeps its final block.
/// Two members down (more than a third): blocks still come, finality waits, and resumes
/// when they are back. A member that votes twice at one height is caught by every other.
#[test]
fn four_members_finalise_by_votes_refuse_a_rewrite_wait_without_a_quorum_and_catch_a_double_vote() {
    let net = network();
    let mut nodes: Vec<Node> = (1..=MEMBERS).map(|k| Node::new(&net, k)).collect();
    let m = 29_000_000;
    let mut now = (u64::from(m) + 2) * 60_000;
    let mut tip = net.genesis().header;
    let mut honest: Vec<BlockId> = Vec::new();
    for i in 0..5 {
        let b = block(&tip, m + i, 1, 1);
        give(&mut nodes, &b, now);
        tip = b.header;
        honest.push(b.id());
        now += 1_000;
    }
    advance(&mut nodes, now);
    for n in &nodes {
        assert_eq!(n.final_height(), 5, "the tip is final on every member");
        assert_eq!(n.chain.final_block(), Some((5, tip.id())));
        assert_eq!(n.finality.waiting_since_ms(), None);
    }

    // A rewrite from genesis by member 4's key, longer than the honest chain: its first
    // block forks below the final one, and every member refuses it, whatever its work.
    let mut rival = net.genesis().header;
    for i in 0..8 {
        let b = block(&rival, m + i, 4, 9);
        for n in &mut nodes {
            let got = n.chain.accept(&b, &n.witness, &mut n.pool, now);
            assert_ne!(got, Verdict::Best, "a rewrite below the final block");
            assert_eq!(n.chain.tree().tip(), tip.id(), "the honest tip stays");
        }
        rival = b.header;
    }

    // A restart: finality opened again from what it kept comes back final at height 5.
    let n0 = &mut nodes[0];
    let kept_final = n0.finality.final_checkpoint().clone();
    n0.finality = open(&net, 1, &mut n0.chain);
    assert_eq!(*n0.finality.final_checkpoint(), kept_final);

    // Two of four members down: a quorum (3) is out of reach. Blocks still come; finality
    // waits, and says since when.
    nodes[2].up = false;
    nodes[3].up = false;
    let mut late = Vec::new();
    for i in 5..8 {
        let b = block(&tip, m + i, 1, 1);
        give(&mut nodes, &b, now);
        late.push(b.clone());
        tip = b.header;
        advance(&mut nodes, now);
        now += 1_000;
    }
    for n in &nodes[..2] {
        assert_eq!(n.chain.tree().height(), 8, "blocks still come");
        assert_eq!(n.final_height(), 5, "finality waits");
        assert!(n.finality.waiting_since_ms().is_some());
    }
    // They are back: they take the blocks they missed, and finality resumes by itself.
    for n in &mut nodes[2..] {
        n.up = true;
        for b in &late {
            assert_eq!(
                n.chain.accept(b, &n.witness, &mut n.pool, now),
                Verdict::Best
            );
        }
    }
    advance(&mut nodes, now);
    // The votes the waiting members held are handed to those that were down, as a pull of
    // `/votes` would.
    let held: Vec<(usize, Vote)> = nodes[..2]
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.finality
                .held_votes(5, 1_000)
                .into_iter()
                .map(move |v| (i, v))
        })
        .collect();
    gossip(&mut nodes, held, now);
    for n in &nodes {
        assert_eq!(n.final_height(), 8, "finality resumed");
        assert_eq!(n.finality.waiting_since_ms(), None);
    }

    // Member 4 prevotes two different checkpoints for one height: every other member keeps
    // both as evidence naming it.
    let origin = origin(&net.name);
    let source = nodes[0].finality.justified().0;
    let a = Checkpoint {
        size: 10,
        root: [1; 32],
    };
    let b = Checkpoint {
        size: 10,
        root: [2; 32],
    };
    let votes: Vec<(usize, Vote)> = [a, b]
        .iter()
        .filter_map(|c| Vote::sign(Kind::Prevote(source), *c, &key(4), &origin))
        .map(|v| (3, v))
        .collect();
    assert_eq!(votes.len(), 2);
    gossip(&mut nodes, votes, now);
    for n in &nodes[..3] {
        let e = n.finality.evidence();
        assert_eq!(e.len(), 1, "the double vote is caught");
        assert_eq!(e[0].member, key(4).verifying_key().to_bytes());
    }
    // And kept: a restart still holds it.
    let n1 = &mut nodes[1];
    n1.finality = open(&net, 2, &mut n1.chain);
    assert_eq!(n1.finality.evidence().len(), 1);

    // Member 3 prevotes source 40 → target 78, then source 20 → target 98, which surrounds
    // it. The second comes with a target above every one before (the order an honest
    // member's votes come in, where the core skips the search), but with a lower source:
    // it is caught.
    let surround: Vec<(usize, Vote)> = [(20, 40), (10, 50)]
        .iter()
        .filter_map(|&(source, size)| {
            let s = Source {
                epoch: 2 * source,
                root: [3; 32],
            };
            let c = Checkpoint {
                size,
                root: [4; 32],
            };
            Vote::sign(Kind::Prevote(s), c, &key(3), &origin)
        })
        .map(|v| (2, v))
        .collect();
    assert_eq!(surround.len(), 2);
    for v in surround {
        gossip(&mut nodes, vec![v], now);
    }
    for (i, n) in nodes.iter().enumerate() {
        if i == 2 {
            continue;
        }
        let e = n.finality.evidence();
        let by3: Vec<_> = e
            .iter()
            .filter(|e| e.member == key(3).verifying_key().to_bytes())
            .collect();
        assert_eq!(by3.len(), 1, "node {i} catches the surround vote");
        assert_eq!(by3[0].offence, "surround vote");
    }
}
