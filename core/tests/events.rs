//! The core's decisions driven by events alone, as issue 31 asks of it: no socket, no task,
//! no sleep; every instant is an argument. Each scenario is what a node meets on a network:
//! a block before its parent, the mining turns of one minute, a lying peer and an
//! unreachable one, records that a block takes and a reorg gives back, and three members'
//! cores agreeing on a minute over timed messages while refusing a forged rival.

use std::time::Duration;

use gridledger_chain::{BlockId, RecordKey};
use gridledger_core::health::{Outcome, PeerHealth, MAX_BACKOFF};
use gridledger_core::mempool::Mempool;
use gridledger_core::orphans::{Orphans, KEPT_FOR_MS, MAX_KEPT};
use gridledger_core::policy::{due_ms, turn};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

fn id(n: u8) -> BlockId {
    BlockId([n; 32])
}

#[test]
fn a_block_before_its_parent_waits_for_it_and_no_longer_than_it_should() {
    let mut o = Orphans::default();
    // t=0: a child arrives whose parent (2) is unknown; the same push again is not kept twice.
    o.keep(
        id(3),
        id(2),
        bytes::Bytes::from_static(b"child"),
        Some([7; 32]),
        0,
    );
    o.keep(
        id(3),
        id(2),
        bytes::Bytes::from_static(b"child"),
        Some([7; 32]),
        10,
    );
    assert_eq!(o.len(), 1);
    // t=50: another block is taken: nothing waits for it.
    assert!(o.children_of(&id(9), 50).is_empty());
    // t=100: the parent is taken: the child comes out, with who sent it and when.
    let out = o.children_of(&id(2), 100);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].id, out[0].sender, out[0].at_ms),
        (id(3), Some([7; 32]), 0)
    );
    assert!(o.is_empty());
    // A child whose parent never comes is forgotten after KEPT_FOR_MS.
    o.keep(id(4), id(5), bytes::Bytes::new(), None, 1_000);
    assert!(o.children_of(&id(5), 1_000 + KEPT_FOR_MS + 1).is_empty());
    // A flood of orphans keeps the newest MAX_KEPT.
    for n in 0..(MAX_KEPT as u32 + 10) {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        o.keep(BlockId(b), id(1), bytes::Bytes::new(), None, 2_000);
    }
    assert_eq!(o.len(), MAX_KEPT);
    assert!(!o.holds(&BlockId([0; 32])), "the oldest went first");
}

#[test]
fn one_minute_gives_every_member_its_own_turn_and_a_newcomer_goes_after_them() {
    let members: Vec<[u8; 32]> = (1..=5u8).map(|n| [n; 32]).collect();
    let slot = Duration::from_secs(2);
    for minute in 29_000_000..29_000_050 {
        let key = RecordKey::new(RelayId(1), Minute(minute));
        // Every member computes its turn from the same chain: together, a permutation, so
        // no two members mine the minute at once.
        let mut turns: Vec<usize> = members.iter().map(|m| turn(&key, m, &members)).collect();
        turns.sort_unstable();
        assert_eq!(turns, vec![0, 1, 2, 3, 4], "minute {minute}");
        // Read at t=1000, each mines at its turn's slot; and another relay's record of the
        // same minute gives the same order (one order per minute).
        let other = RecordKey::new(RelayId(9), Minute(minute));
        for m in &members {
            let t = turn(&key, m, &members) as u64;
            assert_eq!(
                due_ms(&key, 1_000, m, &members, &[], slot),
                1_000 + t * 2_000
            );
            assert_eq!(turn(&other, m, &members), turn(&key, m, &members));
        }
        // A newcomer (not among the recent miners) never comes before the last member.
        let newcomer = [99u8; 32];
        assert!(due_ms(&key, 1_000, &newcomer, &members, &[newcomer], slot) >= 1_000 + 5 * 2_000);
    }
}

#[test]
fn a_lying_peer_is_counted_and_backed_off_longer_each_time_an_unreachable_one_is_not() {
    let base = Duration::from_secs(1);
    let mut liar = PeerHealth::default();
    let lie = Outcome::Failed {
        error: "claimed more work and sent nothing".into(),
        lied: true,
        unreachable: false,
    };
    liar.record(&lie, base, 10_000);
    assert_eq!((liar.lies, liar.backoff_until_ms), (1, 11_000));
    assert_eq!(liar.state(10_500), "backed off");
    liar.record(&lie, base, 20_000);
    assert_eq!((liar.lies, liar.backoff_until_ms), (2, 22_000));
    for t in 0..30 {
        liar.record(&lie, base, 30_000 + t);
    }
    let cap = u64::try_from(MAX_BACKOFF.as_millis()).expect("ms");
    assert_eq!(liar.backoff_until_ms, 30_029 + cap, "the backoff is capped");
    // It behaves again: everything but the count of lies is forgiven.
    liar.record(&Outcome::Stored(5), base, 40_000);
    assert_eq!(
        (
            liar.failures_in_a_row,
            liar.backoff_until_ms,
            liar.lies,
            liar.stored
        ),
        (0, 0, 32, 5)
    );
    assert_eq!(liar.state(40_000), "ok");

    // A peer cut off (a partition) is tried again every period, however long it lasts.
    let mut away = PeerHealth::default();
    let gone = Outcome::Failed {
        error: "connection refused".into(),
        lied: false,
        unreachable: true,
    };
    for t in [0u64, 1_000, 2_000, 3_000, 4_000] {
        away.record(&gone, base, t);
        assert_eq!(away.backoff_until_ms, t + 1_000);
    }
    assert_eq!((away.failures_in_a_row, away.lies), (5, 0));
    assert_eq!(away.state(4_500), "backed off");
    assert_eq!(away.state(6_000), "failing");
}

#[test]
fn records_leave_the_mempool_with_their_block_and_come_back_on_a_reorg() {
    let model = SignalModel::new(1, Profile::Realistic);
    let records: Vec<_> = (0..4)
        .map(|i| {
            model.record(
                RelayId(1),
                Minute(29_000_000 + i),
                6,
                RecordFlags::CLOCK_SET,
            )
        })
        .collect();
    let keys: Vec<RecordKey> = records.iter().map(RecordKey::of).collect();
    let mut pool = Mempool::new();
    for (i, r) in records.iter().enumerate() {
        assert!(pool.add_at(r.clone(), 1_000 * i as u64));
    }
    // The same read again (a second poll) is not a second record.
    assert!(!pool.add_at(records[0].clone(), 9_000));
    assert_eq!(pool.len(), 4);
    // A block takes the first two: they leave, with when each arrived (for the
    // record-to-tip latency), oldest minute first in what is left.
    assert_eq!(pool.remove(&keys[..2]), vec![0, 1_000]);
    assert_eq!(pool.peek(10), records[2..].to_vec());
    // A reorg abandons that block: its records come back, and are mined again.
    for r in &records[..2] {
        assert!(pool.add_at(r.clone(), 20_000));
    }
    assert_eq!(pool.peek(10), records);
    assert!(keys.iter().all(|k| pool.contains(k)));
}

/// One node's core, as the runtime holds it: its chain (in memory here), mempool, reads,
/// intake and peers.
struct Node {
    key: ed25519_dalek::SigningKey,
    chain: gridledger_core::memchain::MemChain,
    pool: Mempool,
    witness: gridledger_core::witness::Witness,
    intake: gridledger_core::intake::Intake,
    urls: Vec<String>,
    health: std::collections::HashMap<String, PeerHealth>,
}

/// Three members read one relay minute, take their turns, and agree on one block holding
/// it, every message a timed event (20 ms links) and no socket: the mining jobs
/// (`mining`), the pushes and their relays (`intake`), the checks against each node's reads
/// (`witness`), the fork choice. Then a fourth key pushes a rival block holding a forged
/// record for the same minute: every honest node refuses it by its own read, and the tip
/// stays.
#[test]
fn three_members_agree_on_a_minute_by_events_and_refuse_a_forged_rival() {
    use gridledger_chain::{assemble, Block, Network};
    use gridledger_core::intake::{Action, Peers, Pushed, Verdict};
    use gridledger_core::mining::{next, Settings, Standing};
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    const LINK_MS: u64 = 20;
    let net = Network::new("events", 0);
    let url = |i: usize| format!("http://node-{i}");
    let keys: Vec<ed25519_dalek::SigningKey> = (1..=3u8)
        .map(|k| ed25519_dalek::SigningKey::from_bytes(&[k; 32]))
        .collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let others: Vec<usize> = (0..3).filter(|j| *j != i).collect();
            Node {
                key: keys[i].clone(),
                chain: gridledger_core::memchain::MemChain::new(&net),
                pool: Mempool::new(),
                witness: gridledger_core::witness::Witness::default(),
                intake: gridledger_core::intake::Intake::default(),
                urls: others.iter().map(|j| url(*j)).collect(),
                health: others
                    .iter()
                    .map(|j| {
                        let k = keys[*j].verifying_key().to_bytes();
                        (url(*j), PeerHealth::new(&url(*j), Some(k)))
                    })
                    .collect(),
            }
        })
        .collect();
    let index = |u: &str| (0..3).find(|i| url(*i) == u).expect("a node's url");

    // Every node reads the relay's record for minute M as it closes.
    let m = 29_000_000;
    let record = SignalModel::new(1, Profile::Realistic).record(
        RelayId(1),
        Minute(m),
        6,
        RecordFlags::CLOCK_SET,
    );
    let t0 = gridledger_chain::validate::minute_closes_ms(Minute(m)) + 1_000;
    for n in &mut nodes {
        n.witness.read(record.clone());
        n.pool.add_at(record.clone(), t0);
    }

    // Events: (when, order, what). A push: (to, from, block).
    enum Event {
        Mine(usize),
        Push(usize, usize, std::sync::Arc<Block>),
    }
    // Timed events, in time order (then the order they were made in).
    struct Queue {
        heap: BinaryHeap<Reverse<(u64, u64)>>,
        events: std::collections::HashMap<u64, Event>,
        made: u64,
    }
    impl Queue {
        fn at(&mut self, t: u64, e: Event) {
            self.made += 1;
            self.events.insert(self.made, e);
            self.heap.push(Reverse((t, self.made)));
        }
        fn pop(&mut self) -> Option<(u64, Event)> {
            let Reverse((t, i)) = self.heap.pop()?;
            self.events.remove(&i).map(|e| (t, e))
        }
    }
    let mut queue = Queue {
        heap: BinaryHeap::new(),
        events: std::collections::HashMap::new(),
        made: 0,
    };
    for i in 0..3 {
        queue.at(t0, Event::Mine(i));
    }
    let mut mined = 0;
    let mut handled = 0;
    while let Some((now, event)) = queue.pop() {
        handled += 1;
        assert!(handled < 1_000, "the network settles");
        match event {
            Event::Mine(i) => {
                let n = &mut nodes[i];
                let settings = Settings {
                    own: n.key.verifying_key().to_bytes(),
                    slot: Duration::from_millis(500),
                    max_records: 10,
                };
                let peer_keys: Vec<[u8; 32]> = n.health.values().filter_map(|h| h.miner).collect();
                let tip = n.chain.tip().expect("a tip");
                let step = next(
                    &settings,
                    Standing::default(),
                    &n.pool,
                    n.chain.tree(),
                    &tip,
                    &peer_keys,
                    now,
                );
                match step.job {
                    Some(job) => {
                        let b = std::sync::Arc::new(
                            assemble(
                                &tip,
                                &job.records,
                                &n.key,
                                job.time_ms,
                                0,
                                &std::sync::atomic::AtomicBool::new(false),
                            )
                            .expect("bits 0 mines"),
                        );
                        mined += 1;
                        assert_eq!(
                            n.chain.accept(&b, &n.witness, &mut n.pool, now),
                            Verdict::Best
                        );
                        n.intake.note(b.id(), now);
                        for u in n.urls.clone() {
                            queue.at(
                                now + LINK_MS,
                                Event::Push(index(&u), i, std::sync::Arc::clone(&b)),
                            );
                        }
                    }
                    None if !n.pool.is_empty() => queue.at(now + step.wait_ms, Event::Mine(i)),
                    None => {}
                }
            }
            Event::Push(to, from, b) => {
                let n = &mut nodes[to];
                let verdict = n.chain.accept(&b, &n.witness, &mut n.pool, now);
                let pushed = Pushed {
                    id: b.id(),
                    parent: b.header.prev,
                    height: b.header.height,
                    miner: b.header.miner,
                    sender: Some(keys[from].verifying_key().to_bytes()),
                    bytes: bytes_of(&b),
                };
                let height = n.chain.tree().height();
                let peers = Peers {
                    urls: &n.urls,
                    health: &mut n.health,
                };
                let arrived = n.intake.pushed(pushed, verdict, height, peers, &net, now);
                for a in arrived.actions {
                    if let Action::Relay { to: peers, .. } = a {
                        for u in peers {
                            queue.at(now + LINK_MS, Event::Push(index(&u), to, b.clone()));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(mined, 1, "the turns gave the minute to one member");
    let tip = nodes[0].chain.tree().tip();
    for n in &nodes {
        assert_eq!(n.chain.tree().tip(), tip, "one tip");
        assert_eq!(n.chain.tree().height(), 1);
        assert!(n.chain.tree().has_record(&RecordKey::of(&record)));
        assert!(n.pool.is_empty(), "the record left every mempool");
    }

    // A fourth key's rival at the same height, with the relay's record forged: refused by
    // every honest node's own read, before the fork choice.
    let mut forged = record.clone();
    forged.faults = forged.faults.wrapping_add(1);
    let genesis = net.genesis().header;
    let rival = std::sync::Arc::new(
        assemble(
            &genesis,
            &[forged],
            &ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
            t0,
            0,
            &std::sync::atomic::AtomicBool::new(false),
        )
        .expect("bits 0 mines"),
    );
    for n in &mut nodes {
        assert_eq!(
            n.chain.accept(&rival, &n.witness, &mut n.pool, t0 + 5_000),
            Verdict::Refused
        );
        assert_eq!(n.chain.tree().tip(), tip, "the honest tip stays");
    }
}

fn bytes_of(b: &gridledger_chain::Block) -> bytes::Bytes {
    bytes::Bytes::from(b.to_bytes())
}
