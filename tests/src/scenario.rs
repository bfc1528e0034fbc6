//! One wide-area scenario: N substations, each a relay-sim (compressed minutes) and a
//! `gridledger run` node polling its own relay and a neighbour's, on a random peer graph
//! whose every link is an emulated WAN link ([`crate::link`]); a disturbance (a satellite
//! site, a partition, churn, a slow line); then the relays stop, the nodes drain, and the
//! [`Report`] is computed from what the nodes logged ([`crate::trace`]), the final chain, the
//! links' byte counters and `/proc`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::link::{Link, Proxy, Shaper, State};
use crate::node::{free_ports, usage, Node, NodeError, NodeSpec};
use crate::topology::{self, Edges};
use crate::trace::{self, ChainBlock, Event};

/// Something that happens to the network during a scenario.
#[derive(Clone, Debug)]
pub enum Disturbance {
    /// Nothing: the steady state.
    None,
    /// Every link of `site` has this one-way delay (a satellite hop) from the start.
    Satellite {
        /// Which site.
        site: usize,
        /// One-way delay of its links.
        one_way: Duration,
    },
    /// The sites split in two halves (first half of the indices, second half) for `lasting`,
    /// starting `after` into the measured time; then healed.
    Partition {
        /// When it starts.
        after: Duration,
        /// How long it lasts.
        lasting: Duration,
    },
    /// `fraction` of the nodes, each killed with SIGKILL once at a random moment of the
    /// measured time and started again after `down`.
    Churn {
        /// Share of the nodes.
        fraction: f64,
        /// How long each stays down.
        down: Duration,
    },
    /// `site`'s access line (all its links, each way) is capped at this rate from the start.
    SlowLine {
        /// Which site.
        site: usize,
        /// Bits per second, each way.
        bits_per_sec: u64,
    },
}

/// A scenario's settings.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name in the table.
    pub name: String,
    /// Sites (one relay and one node each).
    pub nodes: usize,
    /// Peers per node, least and most.
    pub degree: (usize, usize),
    /// One-way delay of every link.
    pub delay: Duration,
    /// Its jitter (uniform ±).
    pub jitter: Duration,
    /// Seconds per relay minute.
    pub minute_secs: f64,
    /// Neighbours' relays each node polls besides its own (witnesses).
    pub witnesses: usize,
    /// Running before measuring (the nodes learn who mines which relay).
    pub warmup: Duration,
    /// Measured time.
    pub measure: Duration,
    /// After the relays stop: how long the nodes may take to mine what they hold and agree.
    pub drain: Duration,
    /// Difficulty, bits.
    pub bits: u8,
    /// `--poll-secs`.
    pub poll_secs: f64,
    /// `--mining-slot-secs`.
    pub slot_secs: f64,
    /// `--sync-secs`.
    pub sync_secs: f64,
    /// `--block-relay`: `adaptive`, `push` or `announce`.
    pub block_relay: String,
    /// What happens.
    pub disturbance: Disturbance,
    /// Seed of the graph, the relays and the churn.
    pub seed: u64,
    /// The nodes' keys are the network's allow-list: members cosign checkpoints, and
    /// blocks become final.
    pub finality: bool,
    /// `--finality-interval-secs` (the node's default if `None`).
    pub finality_interval_secs: Option<f64>,
}

impl Scenario {
    /// Steady state on `nodes` sites, links `delay` ± `jitter`, compressed minutes of 3 s.
    #[must_use]
    pub fn steady(name: &str, nodes: usize, delay: Duration, jitter: Duration) -> Self {
        Self {
            name: name.to_owned(),
            nodes,
            degree: (3, 4),
            delay,
            jitter,
            minute_secs: 3.0,
            witnesses: 1,
            warmup: Duration::from_secs(30),
            measure: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            bits: 8,
            poll_secs: 0.5,
            slot_secs: 1.0,
            sync_secs: 5.0,
            block_relay: "adaptive".to_owned(),
            disturbance: Disturbance::None,
            seed: 1,
            finality: true,
            finality_interval_secs: None,
        }
    }
}

/// A percentile summary, ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    /// Values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Of `values` (any order).
    #[must_use]
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Self {
            count: values.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// What a scenario measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// Sites.
    pub nodes: usize,
    /// Hops across the peer graph.
    pub diameter: usize,
    /// Record readable (first node read it) → every node holds the final chain's block with
    /// it, for records read in the measured time.
    pub record_to_tip: Spread,
    /// Records whose block some node never logged (it was down, or the run ended first).
    pub records_unagreed: usize,
    /// Block mined → stored by every node, for main-chain blocks mined in the measured time.
    pub propagation: Spread,
    /// Block mined → final on every node (its height or a higher one final there), for the
    /// same blocks.
    pub mined_to_final: Spread,
    /// Record readable (first read) → its block final on every node.
    pub record_to_final: Spread,
    /// Blocks of the measured time not final on every node by the end.
    pub unfinal: usize,
    /// Bytes of votes received per node per main-chain block (finality's traffic; HTTP
    /// headers aside, which `bytes_per_node_per_block` counts with the rest).
    pub vote_bytes_per_node_per_block: f64,
    /// Blocks mined in the measured time, by all nodes.
    pub mined: usize,
    /// Of those, not on the final chain.
    pub stale: usize,
    /// Most blocks a single reorg took off a node's main chain.
    pub deepest_reorg: u32,
    /// After a partition heals: until every node's tip is the same.
    pub heal_to_one_tip_ms: Option<f64>,
    /// After each restart (churn): until the node is back at the height the others had.
    pub restart_to_tip: Spread,
    /// Bytes delivered by all links in the measured time, per node, per main-chain block.
    pub bytes_per_node_per_block: f64,
    /// Mean size of those blocks.
    pub block_bytes: f64,
    /// CPU of one node as a share of one core, mean and most.
    pub cpu_mean: f64,
    /// Same, the busiest node.
    pub cpu_max: f64,
    /// Peak RSS of the largest node, bytes.
    pub rss_max: u64,
    /// Distinct (relay, minute) read by any node.
    pub records_read: usize,
    /// Of those, not on the final chain.
    pub lost: usize,
    /// Records on the final chain more than once.
    pub duplicated: usize,
    /// Whether every node ended on the same tip with an empty mempool (and none died).
    pub converged: bool,
    /// Node processes that ended on their own (crashed) during the run.
    pub died: usize,
    /// The final height.
    pub height: u32,
}

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Sockets, files.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A relay-sim.
    #[error("relay-sim: {0}")]
    Relay(#[from] relay_sim::SimError),
    /// A node.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The final chain.
    #[error(transparent)]
    Chain(#[from] trace::ChainError),
    /// An HTTP client.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    /// The nodes' network namespaces.
    #[error("network namespaces: {0}")]
    Netns(String),
}

/// A node's `/status`, the fields the testbed reads.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tip {
    height: u32,
    tip: String,
    mempool: usize,
}

async fn tip(client: &reqwest::Client, url: &str) -> Option<Tip> {
    let r = client.get(format!("{url}/status")).send().await.ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    Some(Tip {
        height: u32::try_from(v.get("height")?.as_u64()?).ok()?,
        tip: v.get("tip")?.as_str()?.to_owned(),
        mempool: usize::try_from(v.get("mempool")?.as_u64()?).ok()?,
    })
}

/// The testbed of one scenario while it runs.
struct Bed {
    client: reqwest::Client,
    nodes: Vec<Node>,
    /// Directed links, (from, to).
    links: BTreeMap<(usize, usize), Link>,
    _proxies: Vec<Proxy>,
    stop_relays: tokio::sync::watch::Sender<bool>,
    relays: Vec<tokio::task::JoinHandle<Result<(), relay_sim::SimError>>>,
    /// Last: the namespaces go after the nodes in them have been killed.
    _netns: Option<crate::netns::Netns>,
}

impl Bed {
    async fn tips(&self) -> Vec<Option<Tip>> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            out.push(if n.running() {
                tip(&self.client, &n.url()).await
            } else {
                None
            });
        }
        out
    }

    /// Waits (at most `within`) until every running node answers with the same tip (and,
    /// if `drained`, an empty mempool); how long it took.
    async fn one_tip(&self, within: Duration, drained: bool) -> Option<Duration> {
        let began = Instant::now();
        while began.elapsed() < within {
            let tips = self.tips().await;
            let running: Vec<&Tip> = tips.iter().flatten().collect();
            let same = running.len() == self.nodes.iter().filter(|n| n.running()).count()
                && running.windows(2).all(|w| w[0].tip == w[1].tip)
                && (!drained || running.iter().all(|t| t.mempool == 0));
            if same {
                return Some(began.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn delivered(&self) -> u64 {
        self.links.values().map(Link::delivered).sum()
    }

    fn set_cut(&self, halves: bool) {
        let half = self.nodes.len() / 2;
        for ((a, b), link) in &self.links {
            if (*a < half) != (*b < half) {
                link.set_state(if halves { State::Cut } else { State::Up });
            }
        }
    }

    async fn shutdown(mut self) {
        self.stop_relays.send_replace(true);
        for n in &mut self.nodes {
            n.kill().await;
        }
        for r in self.relays {
            r.abort();
        }
    }
}

/// The node binary: `TESTBED_GRIDLEDGER` if set, else the `testbed-gridledger` beside this
/// executable (tests run from `target/*/deps`, binaries from `target/*`).
#[must_use]
pub fn node_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("TESTBED_GRIDLEDGER") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().unwrap_or_default();
    let dir = me.parent().unwrap_or(Path::new("."));
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    dir.join("testbed-gridledger")
}

/// Runs `s` in `workdir` with the node binary `exe`.
pub async fn run(s: &Scenario, exe: &Path, workdir: &Path) -> Result<Report, ScenarioError> {
    let bed_start = Instant::now();
    let n = s.nodes;
    let edges: Edges = topology::random_graph(n, s.degree.0, s.degree.1, s.seed);
    let diameter = topology::diameter(n, &edges).unwrap_or(0);
    let adj = topology::neighbours(n, &edges);

    // Substations: one relay each, one clock for all.
    let (stop_relays, stopped) = tokio::sync::watch::channel(false);
    let now_s = gridledger::clock::now_ms() / 1000;
    let start_time = now_s.saturating_sub(relay_sim::clock::headroom_ms(s.minute_secs) / 1000);
    // Inside the testbed's hub namespace: each node in its own namespace.
    let netns = match crate::netns::hub() {
        Some(_) => Some(crate::netns::Netns::create(n).map_err(ScenarioError::Netns)?),
        None => None,
    };
    let mut relay_addrs = Vec::with_capacity(n);
    let mut relays = Vec::with_capacity(n);
    for i in 0..n {
        let sim = relay_sim::Simulator::bind(relay_sim::Config {
            // In namespaces, on every hub address (each node reaches the hub on its own
            // link); otherwise on loopback.
            listen: if netns.is_some() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([127, 0, 0, 1], 0))
            },
            relay_id: u32::try_from(i + 1).unwrap_or(u32::MAX),
            seed: s.seed.wrapping_add(i as u64),
            minute_secs: s.minute_secs,
            start_time: Some(start_time),
            ..relay_sim::Config::default()
        })
        .await?;
        relay_addrs.push(sim.local_addr());
        let mut stopped = stopped.clone();
        relays.push(tokio::spawn(sim.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }

    // Links and the proxies in front of every node, one per peer that reaches it.
    let listens: Vec<SocketAddr> = if netns.is_some() {
        (0..n)
            .map(|i| SocketAddr::from((crate::netns::node_ip(i), 7000)))
            .collect()
    } else {
        free_ports(n)?
    };
    let mut links = BTreeMap::new();
    for &(a, b) in &edges {
        for (from, to) in [(a, b), (b, a)] {
            links.insert((from, to), Link::new(s.delay, s.jitter));
        }
    }
    match &s.disturbance {
        Disturbance::Satellite { site, one_way } => {
            for ((a, b), link) in &links {
                if a == site || b == site {
                    link.set_delay(*one_way, s.jitter);
                }
            }
        }
        Disturbance::SlowLine { site, bits_per_sec } => {
            let (up, down) = (Shaper::new(*bits_per_sec), Shaper::new(*bits_per_sec));
            for ((a, b), link) in &links {
                if a == site {
                    link.add_shaper(Arc::clone(&up));
                }
                if b == site {
                    link.add_shaper(Arc::clone(&down));
                }
            }
        }
        _ => {}
    }
    let mut proxies = Vec::new();
    let mut peers = vec![Vec::new(); n];
    for ((from, to), forward) in &links {
        let back = links[&(*to, *from)].clone();
        let proxy = match &netns {
            Some(_) => {
                let hub = crate::netns::hub_ip(*from).into();
                Proxy::start_on(hub, listens[*to], forward.clone(), back).await?
            }
            None => Proxy::start(listens[*to], forward.clone(), back).await?,
        };
        peers[*from].push(format!("http://{}", proxy.addr()));
        proxies.push(proxy);
    }

    let client = crate::node::http_client()?;
    // Finality: each node's key, and all of them as the allow-list.
    let mut keys = Vec::new();
    let allow_list = if s.finality {
        let mut list = String::new();
        for i in 0..n {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&s.seed.to_be_bytes());
            secret[8..16].copy_from_slice(&(i as u64).to_be_bytes());
            secret[16] = 0x5a;
            let key = ed25519_dalek::SigningKey::from_bytes(&secret);
            let path = workdir.join(format!("key{i}"));
            std::fs::write(&path, hex::encode(key.to_bytes()))?;
            list.push_str(&hex::encode(key.verifying_key().to_bytes()));
            list.push('\n');
            keys.push(Some(path));
        }
        let path = workdir.join("allow-list");
        std::fs::write(&path, list)?;
        Some(path)
    } else {
        keys.resize(n, None);
        None
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        // A node in a namespace reaches every relay through its hub address.
        let reach = |a: SocketAddr| match &netns {
            Some(_) => SocketAddr::from((crate::netns::hub_ip(i), a.port())),
            None => a,
        };
        let mut polled = vec![reach(relay_addrs[i])];
        polled.extend(
            adj[i]
                .iter()
                .take(s.witnesses)
                .map(|j| reach(relay_addrs[*j])),
        );
        let spec = NodeSpec {
            index: i,
            listen: listens[i],
            data_dir: workdir.join(format!("node{i}")),
            relays: polled,
            peers: std::mem::take(&mut peers[i]),
            network: "gridledger-testbed".to_owned(),
            bits: s.bits,
            poll_secs: s.poll_secs,
            slot_secs: s.slot_secs,
            sync_secs: s.sync_secs,
            block_relay: s.block_relay.clone(),
            namespace: netns.as_ref().and_then(|ns| ns.name(i)),
            key_file: keys[i].clone(),
            allow_list: allow_list.clone(),
            finality_interval_secs: s.finality_interval_secs,
        };
        nodes.push(Node::start(exe, spec)?);
    }
    let mut bed = Bed {
        client,
        nodes,
        links,
        _proxies: proxies,
        stop_relays,
        relays,
        _netns: netns,
    };
    for i in 0..n {
        if let Err(e) = bed.nodes[i]
            .wait_up(&bed.client, Duration::from_secs(60))
            .await
        {
            bed.shutdown().await;
            return Err(e.into());
        }
    }

    tokio::time::sleep(s.warmup).await;
    let t0 = gridledger::clock::now_ms();
    let bytes0 = bed.delivered();
    let measured = Instant::now();
    let mut heal_to_one_tip_ms = None;
    let mut restarts = Vec::new();
    match &s.disturbance {
        Disturbance::Partition { after, lasting } => {
            tokio::time::sleep(*after).await;
            bed.set_cut(true);
            tokio::time::sleep(*lasting).await;
            bed.set_cut(false);
            heal_to_one_tip_ms = bed
                .one_tip(Duration::from_secs(60), false)
                .await
                .map(|d| d.as_secs_f64() * 1000.0);
        }
        Disturbance::Churn { fraction, down } => {
            let mut rng = fastrand::Rng::with_seed(s.seed);
            let count = ((n as f64 * fraction).round() as usize).clamp(1, n);
            let mut victims: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut victims);
            let span = s.measure.saturating_sub(*down + Duration::from_secs(15));
            let mut plan: Vec<(Duration, usize)> = victims[..count]
                .iter()
                .map(|v| (span.mul_f64(rng.f64()), *v))
                .collect();
            plan.sort();
            for (at, v) in plan {
                if let Some(wait) = at.checked_sub(measured.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                bed.nodes[v].kill().await;
                tokio::time::sleep(*down).await;
                let others = bed
                    .tips()
                    .await
                    .iter()
                    .flatten()
                    .map(|t| t.height)
                    .max()
                    .unwrap_or(0);
                bed.nodes[v].restart()?;
                // Its start-up counts in the time back on the tip.
                let began = Instant::now();
                let url = bed.nodes[v].url();
                while began.elapsed() < Duration::from_secs(60) {
                    if tip(&bed.client, &url)
                        .await
                        .is_some_and(|t| t.height >= others)
                    {
                        restarts.push(began.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        _ => {}
    }
    if let Some(rest) = s.measure.checked_sub(measured.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let t1 = gridledger::clock::now_ms();
    let bytes = bed.delivered().saturating_sub(bytes0);

    // The relays stop; what the nodes hold gets mined and agreed on.
    bed.stop_relays.send_replace(true);
    let converged = bed.one_tip(s.drain, true).await.is_some();
    let died = bed.nodes.iter_mut().map(Node::died).filter(|d| *d).count();
    let run_secs = bed_start.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    let mut rss_max = 0;
    for node in &bed.nodes {
        if let Some((secs, rss)) = node.pid().and_then(usage) {
            cpu.push(secs / run_secs);
            rss_max = rss_max.max(rss);
        }
    }
    let chain = trace::main_chain(&bed.client, &bed.nodes[0].url()).await;
    let logs: Vec<Vec<Event>> = bed.nodes.iter().map(|n| trace::read_log(n.log())).collect();
    let mut vote_bytes = 0.0;
    for node in &bed.nodes {
        vote_bytes += metric(
            &bed.client,
            &node.url(),
            "gridledger_finality_vote_bytes_received_total",
        )
        .await;
    }
    bed.shutdown().await;
    let chain = chain?;

    let mut report = compute(&chain, &logs, t0, t1);
    report.name = s.name.clone();
    report.nodes = n;
    report.diameter = diameter;
    report.heal_to_one_tip_ms = heal_to_one_tip_ms;
    report.restart_to_tip = Spread::of(restarts);
    report.bytes_per_node_per_block = bytes as f64
        / n as f64
        / chain
            .iter()
            .filter(|b| (t0..t1).contains(&b.time_ms))
            .count()
            .max(1) as f64;
    // Votes over the whole run (a node's counter starts with it), per main-chain block.
    report.vote_bytes_per_node_per_block =
        vote_bytes / n as f64 / f64::from(chain.last().map_or(1, |b| b.height).max(1));
    report.cpu_mean = cpu.iter().sum::<f64>() / cpu.len().max(1) as f64;
    report.cpu_max = cpu.iter().copied().fold(0.0, f64::max);
    report.rss_max = rss_max;
    report.converged = converged && died == 0;
    report.died = died;
    Ok(report)
}

/// A counter of a node's `/metrics` (0 if it cannot be read).
async fn metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    let Ok(r) = client.get(format!("{url}/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The figures that follow from the final chain and the logs; `t0..t1` is the measured time.
#[must_use]
pub fn compute(chain: &[ChainBlock], logs: &[Vec<Event>], t0: u64, t1: u64) -> Report {
    let window = t0..t1;
    // When each node stored each block, and when each record was first read.
    let mut stored: Vec<HashMap<&str, u64>> = Vec::with_capacity(logs.len());
    // Each node's finalisations, in time order: (at, height).
    let mut finals: Vec<Vec<(u64, u32)>> = Vec::with_capacity(logs.len());
    let mut readable: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut mined: BTreeSet<&str> = BTreeSet::new();
    let mut deepest_reorg = 0;
    for events in logs {
        let mut at = HashMap::new();
        let mut fin = Vec::new();
        for e in events {
            match e {
                Event::Read {
                    at_ms,
                    relay,
                    minute,
                } => {
                    let first = readable.entry((*relay, *minute)).or_insert(*at_ms);
                    *first = (*first).min(*at_ms);
                }
                Event::Block {
                    at_ms,
                    id,
                    own,
                    abandoned,
                    ..
                } => {
                    at.entry(id.as_str()).or_insert(*at_ms);
                    if *own && window.contains(at_ms) {
                        mined.insert(id.as_str());
                    }
                    if window.contains(at_ms) {
                        deepest_reorg = deepest_reorg.max(*abandoned);
                    }
                }
                Event::Final { at_ms, height } => fin.push((*at_ms, *height)),
            }
        }
        stored.push(at);
        finals.push(fin);
    }
    // When height `h` was final on every node: for each node the first finalisation at or
    // above `h`, and the latest of those.
    let final_everywhere = |h: u32| -> Option<u64> {
        finals
            .iter()
            .map(|f| f.iter().find(|(_, fh)| *fh >= h).map(|(at, _)| *at))
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().max())
    };
    let everywhere = |id: &str| -> Option<u64> {
        stored
            .iter()
            .map(|s| s.get(id).copied())
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().max())
    };
    let on_chain: BTreeSet<&str> = chain.iter().map(|b| b.id.as_str()).collect();
    let mut holder: BTreeMap<(u32, u32), Vec<&ChainBlock>> = BTreeMap::new();
    for b in chain {
        for r in &b.records {
            holder.entry(*r).or_default().push(b);
        }
    }
    let mut record_to_tip = Vec::new();
    let mut records_unagreed = 0;
    for (key, read_at) in &readable {
        if !window.contains(read_at) {
            continue;
        }
        match holder
            .get(key)
            .and_then(|b| b.first())
            .and_then(|b| everywhere(&b.id))
        {
            Some(all) => record_to_tip.push(all.saturating_sub(*read_at) as f64),
            None => records_unagreed += 1,
        }
    }
    let propagation = chain
        .iter()
        .filter(|b| window.contains(&b.time_ms))
        .filter_map(|b| everywhere(&b.id).map(|all| all.saturating_sub(b.time_ms) as f64))
        .collect();
    let in_window: Vec<&ChainBlock> = chain
        .iter()
        .filter(|b| window.contains(&b.time_ms))
        .collect();
    let any_final = finals.iter().any(|f| !f.is_empty());
    let mut mined_to_final = Vec::new();
    let mut unfinal = 0;
    for b in &in_window {
        match final_everywhere(b.height) {
            Some(at) => mined_to_final.push(at.saturating_sub(b.time_ms) as f64),
            None => unfinal += 1,
        }
    }
    let mut record_to_final = Vec::new();
    for (key, read_at) in &readable {
        if !window.contains(read_at) {
            continue;
        }
        if let Some(at) = holder
            .get(key)
            .and_then(|b| b.first())
            .and_then(|b| final_everywhere(b.height))
        {
            record_to_final.push(at.saturating_sub(*read_at) as f64);
        }
    }
    Report {
        record_to_tip: Spread::of(record_to_tip),
        records_unagreed,
        propagation: Spread::of(propagation),
        mined_to_final: Spread::of(mined_to_final),
        record_to_final: Spread::of(record_to_final),
        unfinal: if any_final { unfinal } else { 0 },
        mined: mined.len(),
        stale: mined.iter().filter(|id| !on_chain.contains(**id)).count(),
        deepest_reorg,
        block_bytes: in_window.iter().map(|b| b.bytes as f64).sum::<f64>()
            / in_window.len().max(1) as f64,
        records_read: readable.len(),
        lost: readable.keys().filter(|k| !holder.contains_key(k)).count(),
        duplicated: holder.values().filter(|v| v.len() > 1).count(),
        height: chain.last().map_or(0, |b| b.height),
        ..Report::default()
    }
}

impl Report {
    /// The table's header.
    #[must_use]
    pub fn header() -> String {
        "| scenario | nodes | diam. | record→all tips p50/p99 ms | propagation p50/p99 ms | mined→final everywhere p50/p99 ms | record→final p50/p99 ms | stale /100 | deepest reorg | heal→one tip | restart→tip p50/max | bytes/node/block (block) | votes B/node/block | CPU/node mean/max | RSS max | read / lost / dup | converged |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_owned()
    }

    /// One row of the table.
    #[must_use]
    pub fn row(&self) -> String {
        let stale = if self.mined == 0 {
            0.0
        } else {
            self.stale as f64 * 100.0 / self.mined as f64
        };
        format!(
            "| {} | {} | {} | {:.0} / {:.0} ({} rec{}) | {:.0} / {:.0} ({} blk) | {} | {} | {:.1} ({}/{}) | {} | {} | {} | {:.0} ({:.0}) | {:.0} | {:.1} % / {:.1} % | {:.0} MB | {} / {} / {} | {} |",
            self.name,
            self.nodes,
            self.diameter,
            self.record_to_tip.p50,
            self.record_to_tip.p99,
            self.record_to_tip.count,
            if self.records_unagreed > 0 {
                format!(", {} unagreed", self.records_unagreed)
            } else {
                String::new()
            },
            self.propagation.p50,
            self.propagation.p99,
            self.propagation.count,
            if self.mined_to_final.count == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.0} / {:.0} ({} blk{})",
                    self.mined_to_final.p50,
                    self.mined_to_final.p99,
                    self.mined_to_final.count,
                    if self.unfinal > 0 {
                        format!(", {} not final", self.unfinal)
                    } else {
                        String::new()
                    }
                )
            },
            if self.record_to_final.count == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.0} / {:.0}",
                    self.record_to_final.p50, self.record_to_final.p99
                )
            },
            stale,
            self.stale,
            self.mined,
            self.deepest_reorg,
            self.heal_to_one_tip_ms
                .map_or("-".to_owned(), |ms| format!("{:.1} s", ms / 1000.0)),
            if self.restart_to_tip.count == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.1} / {:.1} s ({})",
                    self.restart_to_tip.p50 / 1000.0,
                    self.restart_to_tip.max / 1000.0,
                    self.restart_to_tip.count
                )
            },
            self.bytes_per_node_per_block,
            self.block_bytes,
            self.vote_bytes_per_node_per_block,
            self.cpu_mean * 100.0,
            self.cpu_max * 100.0,
            self.rss_max as f64 / 1e6,
            self.records_read,
            self.lost,
            self.duplicated,
            match (self.converged, self.died) {
                (true, _) => "yes".to_owned(),
                (false, 0) => "NO".to_owned(),
                (false, d) => format!("NO ({d} died)"),
            },
        )
    }
}
