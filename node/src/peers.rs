//! Talking to peers over HTTP: pushing new blocks, pulling what a peer with more work has
//! and we lack, and resolving against every peer at once (`POST /peers/resolve`).
//!
//! Peers are untrusted: every block they send goes through [`crate::core::Core::accept`], every body is
//! parsed with the network's size limits, and a peer that is down or slow costs at most
//! its timeout.

use std::time::Duration;

use crate::wire::{decode_list, PeerClient, MAX_LIST_ANSWER_BYTES, MAX_STATUS_BYTES};
use tracing::{debug, info, warn};

use crate::chain::{BlockId, ValidationError};
use crate::core::{lock, now_ms, Origin, Shared};
use crate::ledger::{AddError, Incoming};
use gridledger_core::pull::{Claim, Outcome, Pull, Step};

pub use crate::wire::TIMEOUT;

/// Most batches one pull fetches (up to `wire::MAX_LIMIT` blocks each): a peer cannot keep
/// us busy for ever.
const MAX_BATCHES: u32 = 10_000;

/// Longest a pull from one peer may run; what it stored by then stays, and the next sync
/// goes on from there. A peer that keeps a pull busy without adding anything is caught by
/// the checks in [`pull`] long before.
pub const PULL_DEADLINE: Duration = Duration::from_secs(30);

/// A pull at least this many blocks long reports its progress.
const LONG_PULL: u32 = 500;

/// Longest `POST /peers/resolve` waits for any one peer: it answers within this, with a
/// per-peer result, however slow or hostile a peer is.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a response body, refusing one over `cap` bytes (a hostile peer could otherwise
/// stream gigabytes within the timeout).
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, PeerError> {
    if !resp.status().is_success() {
        return Err(PeerError::Http(resp.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Err(PeerError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why talking to a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// No answer, or the connection failed (a refused TLS certificate included: the
    /// message carries the cause, e.g. "invalid peer certificate: UnknownIssuer").
    #[error("unreachable: {}", causes(.0))]
    Unreachable(#[from] reqwest::Error),
    /// It answered with an HTTP error status.
    #[error("bad answer: HTTP {0}")]
    Http(u16),
    /// Its answer was over the size we read.
    #[error("bad answer: over {0} bytes")]
    TooLarge(usize),
    /// Its `/status` did not parse.
    #[error("bad answer: /status: {0}")]
    BadStatus(#[source] serde_json::Error),
    /// Its block list did not parse.
    #[error("bad answer: {0}")]
    BadList(#[from] crate::wire::ListError),
    /// Its answer parsed but is not what was asked.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// The peer sent a block that breaks a rule.
    #[error("sent a block we refuse: {0}")]
    Refused(AddError),
    /// The peer's chain shares no block with ours (another network?).
    #[error("no block in common with our chain (another network or genesis?)")]
    NoCommonBlock,
    /// The peer claimed more work than ours, but what it sent added nothing: it lies about
    /// its chain, or serves one it does not have.
    #[error("claimed more work than ours but sent nothing we could use ({0})")]
    NoProgress(String),
    /// The pull ran past its deadline.
    #[error("no answer within {0:?}")]
    Deadline(Duration),
}

/// An error and its sources, one after the other: `reqwest` says "error sending request"
/// and keeps the reason (a refused certificate, a reset connection) in its sources.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// The file in the data dir that keeps the peer list across restarts.
pub const PEERS_FILE: &str = "peers.json";

/// Reads the kept peer list; a missing file is an empty list. A file that does not parse is
/// an error (the node refuses to start rather than overwrite it).
pub fn load_peers(path: &std::path::Path) -> Result<Vec<String>, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let list: Vec<String> = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a JSON list of peer URLs: {e}", path.display()))?;
            list.iter().map(|p| peer_url(p)).collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Keeps the peer list: written to a temporary file, synced, then renamed over the old one,
/// so that a crash leaves the old list or the new one, never half of either.
pub fn save_peers(path: &std::path::Path, peers: &[String]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(peers).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Longest peer URL accepted.
pub const MAX_PEER_URL: usize = 256;

/// Checks a peer's base URL (`http://host:port` or `https://…`) and returns it without a
/// trailing `/`: the one check for peers from flags, the config file and `POST /peers`.
pub fn peer_url(s: &str) -> Result<String, String> {
    let url = s.trim().trim_end_matches('/');
    let scheme = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match scheme {
        Some(rest) if !rest.is_empty() && url.len() <= MAX_PEER_URL => Ok(url.to_owned()),
        _ => Err(format!(
            "peer '{s}' is not a base URL like http://127.0.0.1:5005 (http:// or https://, at most {MAX_PEER_URL} characters)"
        )),
    }
}

/// True if `url` is a plain `http://` URL to a host other than this one (loopback or
/// `localhost`).
#[must_use]
pub fn plain_remote(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

pub use crate::gossip::{send_block, Sender};
pub use crate::health::PeerHealth;
pub use crate::wire::client;

/// Carries out what the core left to the runtime after a push, a pull or a wake
/// ([`crate::core::Intake`]): the relays sent, a pull asked for at once, and for each wake a
/// task that calls the core back at that time (and carries out what that brings).
pub fn carry_out(shared: &Shared, next: crate::core::Intake) {
    for relay in next.relays {
        relay.send();
    }
    if next.pull {
        lock(shared).sync_wanted.notify_one();
    }
    for at in next.wake_at {
        let shared = std::sync::Arc::clone(shared);
        tokio::spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let next = lock(&shared).intake_timer(now_ms());
            carry_out(&shared, next);
        });
    }
}

/// How a pull went, for the peer's health record.
fn outcome(r: &Result<u32, PeerError>) -> crate::health::Outcome {
    match r {
        Ok(n) => crate::health::Outcome::Stored(*n),
        Err(e) => crate::health::Outcome::Failed {
            error: e.to_string(),
            lied: matches!(e, PeerError::NoProgress(_)),
            unreachable: matches!(e, PeerError::Unreachable(_) | PeerError::Deadline(_)),
        },
    }
}

/// Votes waiting in a node's outbox, ready to go: to each peer, the bytes of every vote but
/// those that peer sent ([`take_votes`], [`send_votes`]).
#[derive(Debug)]
pub struct VoteBatch {
    /// (peer, body of `POST /votes`).
    pub to: Vec<(String, Vec<u8>)>,
    /// This node's key, named as the sender.
    pub sender: Option<String>,
}

/// Takes the votes waiting in the core's outbox, as one body per peer.
pub fn take_votes(core: &mut crate::core::Core) -> Option<VoteBatch> {
    if core.outbox.is_empty() {
        return None;
    }
    let origin = core.finality.as_ref()?.members().origin().to_owned();
    // Who gets which votes is the core's (`gridledger_core::votes`).
    let to = gridledger_core::votes::bodies(std::mem::take(&mut core.outbox), &core.peers, &origin);
    Some(VoteBatch {
        to,
        sender: core.miner_key.map(hex::encode),
    })
}

/// Sends a batch of votes, each peer's on its own task, without waiting; failures are
/// logged only (a peer that missed votes asks for them at its next pull: `GET /votes`).
pub fn send_votes(client: &PeerClient, batch: VoteBatch) {
    for (peer, body) in batch.to {
        let req = crate::gossip::post_raw(client, &peer, "/votes", body, batch.sender.as_deref());
        tokio::spawn(async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => debug!(%peer, status = r.status().as_u16(), "votes refused"),
                Err(e) => debug!(%peer, "sending votes failed: {e}"),
            }
        });
    }
}

/// Finality a peer is ahead in (its `/tip` says): takes its final checkpoint and the votes
/// it holds above ours, so that a node that missed them (it was down, a vote was lost)
/// catches up. Failures are logged only.
async fn pull_finality(client: &PeerClient, peer: &str, shared: &Shared, theirs: &PeerTip) {
    let (final_size, justified) = {
        let core = lock(shared);
        let Some(f) = core.finality.as_ref() else {
            return;
        };
        (f.final_checkpoint().checkpoint.size, f.justified().0.epoch)
    };
    if theirs.final_size > final_size {
        match client
            .to(peer)
            .get(format!("{peer}/checkpoint"))
            .send()
            .await
        {
            Ok(resp) => match read_capped(resp, crate::chain::note::MAX_NOTE_BYTES).await {
                Ok(note) => {
                    let r = lock(shared).on_checkpoint(&note, peer, now_ms());
                    if let Err(e) = r {
                        warn!(%peer, "its final checkpoint is refused: {e}");
                    }
                }
                Err(e) => debug!(%peer, "checkpoint: {e}"),
            },
            Err(e) => debug!(%peer, "checkpoint: {e}"),
        }
    }
    if theirs.justified_epoch > justified || theirs.final_size > final_size {
        let url = format!("{peer}/votes?above={final_size}");
        let body = match client.to(peer).get(url).send().await {
            Ok(resp) => read_capped(resp, MAX_VOTES_ANSWER).await,
            Err(e) => Err(e.into()),
        };
        match body {
            Ok(body) => {
                let mut core = lock(shared);
                core.metrics.vote_bytes_received.inc_by(body.len() as u64);
                let votes = match core.finality.as_ref() {
                    Some(f) => decode_votes(f.members(), &body),
                    None => return,
                };
                match votes {
                    Ok(votes) => core.on_votes(votes, Some(peer), now_ms()),
                    Err(e) => warn!(%peer, "its votes are refused: {e}"),
                }
            }
            Err(e) => debug!(%peer, "votes: {e}"),
        }
    }
}

/// Most bytes of votes read from one answer.
pub const MAX_VOTES_ANSWER: usize = 1 << 20;

/// Decodes a body of votes back to back (`POST /votes`, `GET /votes`). Signatures are
/// checked later, in one batch.
pub fn decode_votes(
    members: &crate::chain::finality::Members,
    mut body: &[u8],
) -> Result<Vec<crate::chain::finality::Vote>, crate::chain::finality::FinalityError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (v, used) = members.decode(body)?;
        out.push(v);
        body = &body[used..];
    }
    Ok(out)
}

/// A peer's tip, as its `GET /status` tells it.
#[derive(Clone, Debug)]
struct PeerTip {
    height: u32,
    tip: Option<BlockId>,
    work: Option<u128>,
    /// The subject of its TLS certificate (`https://` peers).
    subject: Option<String>,
    /// The key it says it mines with (the mining policy's turns).
    miner: Option<[u8; 32]>,
    /// Its final checkpoint's size and its latest justified epoch (0: no finality).
    final_size: u64,
    justified_epoch: u64,
}

/// A peer's tip, from its `GET /tip` (a node from before `/tip` answers 404: then from
/// its `/status`, which carries the same fields among many).
///
/// It is also how this node learns that a peer speaks HTTP/2 (see [`crate::wire::client`]):
/// a peer that serves `/tip` is spoken to over HTTP/2 from then on; one that does not, or
/// whose HTTP/2 connection fails, over HTTP/1.1.
///
/// `ours`, this node's tip (id, height, work), is sent as `If-None-Match`, so that a peer on
/// the same tip answers 304 without a body ([`crate::wire::tip_tag`]); its tip is then ours.
async fn peer_tip(
    client: &PeerClient,
    peer: &str,
    ours: Option<(BlockId, u32, u128, (u64, u64))>,
) -> Result<PeerTip, PeerError> {
    let h2 = client.speaks_h2(peer);
    let mut asked = client.to(peer).get(format!("{peer}/tip"));
    if let Some((tip, _, _, f)) = &ours {
        asked = asked.header(
            reqwest::header::IF_NONE_MATCH,
            crate::wire::tip_tag_with(tip, f.0, f.1),
        );
    }
    let mut resp = match asked.send().await {
        Ok(r) => r,
        Err(e) => {
            if h2 {
                client.set_h2(peer, false);
            }
            return Err(e.into());
        }
    };
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        client.set_h2(peer, false);
        resp = client.to(peer).get(format!("{peer}/status")).send().await?;
    } else if (resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_MODIFIED)
        && !h2
    {
        client.set_h2(peer, true);
    }
    let subject = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .and_then(crate::tls::subject);
    if let (reqwest::StatusCode::NOT_MODIFIED, Some((tip, height, work, f))) = (resp.status(), ours)
    {
        // The tag names the finality too: the peer's is ours.
        return Ok(PeerTip {
            height,
            tip: Some(tip),
            work: Some(work),
            subject,
            miner: None,
            final_size: f.0,
            justified_epoch: f.1,
        });
    }
    let body = read_capped(resp, MAX_STATUS_BYTES).await?;
    let tip: crate::wire::Tip = serde_json::from_slice(&body).map_err(PeerError::BadStatus)?;
    Ok(PeerTip {
        height: tip.height,
        tip: BlockId::from_hex(&tip.tip),
        work: tip.work.parse().ok(),
        subject,
        miner: tip
            .miner
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok()),
        final_size: tip.final_size,
        justified_epoch: tip.justified_epoch,
    })
}

/// A batch being fetched on its own task.
type Fetching = tokio::task::JoinHandle<Result<Fetched, PeerError>>;

/// A batch fetched from a peer, its heights checked and its chain-free rules run.
struct Fetched {
    count: u32,
    pre: Incoming,
}

/// What a batch needs beyond the peer's address: the network's limits and rules, and the
/// threads for its signature batches.
#[derive(Clone)]
struct BatchRules {
    net: std::sync::Arc<crate::chain::Network>,
    threads: usize,
}

async fn fetch(
    client: &PeerClient,
    peer: &str,
    from: u32,
    limit: u32,
    max_bytes: usize,
    max_records: u32,
) -> Result<Vec<crate::chain::Block>, PeerError> {
    let resp = client
        .to(peer)
        .get(format!("{peer}/blocks?from={from}&limit={limit}"))
        .header("accept", "application/octet-stream")
        .send()
        .await?;
    let body = read_capped(resp, MAX_LIST_ANSWER_BYTES).await?;
    Ok(decode_list(&body, max_bytes, max_records)?)
}

/// Fetches the main chain from `from` (at most `limit` blocks), checks that the answer is
/// what was asked (the main chain from `from` up, in order: a peer cannot keep us busy by
/// sending the same known block again and again), then runs the rules that need no chain
/// on every core, off the async workers and without the node's lock
/// ([`Incoming::prechecked`]).
async fn fetch_prechecked(
    client: &PeerClient,
    peer: &str,
    from: u32,
    limit: u32,
    rules: BatchRules,
) -> Result<Fetched, PeerError> {
    let blocks = fetch(
        client,
        peer,
        from,
        limit,
        rules.net.max_block_bytes,
        rules.net.max_records,
    )
    .await?;
    if let Some((i, b)) = blocks
        .iter()
        .enumerate()
        .find(|(i, b)| b.header.height != from.saturating_add(*i as u32))
    {
        return Err(PeerError::BadAnswer(format!(
            "asked for blocks from height {from}, got height {} at position {i}",
            b.header.height
        )));
    }
    let count = blocks.len() as u32;
    let pre = tokio::task::spawn_blocking(move || {
        Incoming::prechecked(blocks, &rules.net, rules.threads)
    })
    .await
    .map_err(|e| PeerError::BadAnswer(format!("precheck task: {e}")))?;
    Ok(Fetched { count, pre })
}

/// Pulls from `peer` the main-chain blocks we lack, if its chain has at least as much work
/// as ours (by its own account; our validation decides). Steps back from our height until the fork
/// point is found, then fetches forward in batches of [`crate::wire::MAX_LIMIT`]. Returns
/// the number of blocks stored.
pub async fn pull(client: &PeerClient, peer: &str, shared: &Shared) -> Result<u32, PeerError> {
    let asked = std::time::Instant::now();
    // Conditional only once the peer's key is known: the full answer carries it, and the
    // mining policy's turns need it.
    let ours = {
        let mut core = lock(shared);
        let known_key = core.peer_health(peer).miner.is_some();
        let f = core.finality_tag();
        let tree = core.ledger.tree();
        known_key.then(|| (tree.tip(), tree.height(), tree.tip_work(), f))
    };
    let theirs = peer_tip(client, peer, ours).await;
    lock(shared).metrics.observe_peer(peer, asked.elapsed());
    let theirs = theirs?;
    pull_finality(client, peer, shared, &theirs).await;
    if theirs.miner.is_some() {
        lock(shared).peer_health(peer).miner = theirs.miner;
    }
    if let Some(subject) = &theirs.subject {
        let mut core = lock(shared);
        let health = core.peer_health(peer);
        if health.tls_subject.as_ref() != Some(subject) {
            tracing::info!(%peer, %subject, "peer's TLS certificate");
            health.tls_subject = Some(subject.clone());
        }
    }
    let (our_height, our_work, known, rules) = {
        let core = lock(shared);
        let tree = core.ledger.tree();
        let known = theirs.tip.is_some_and(|id| tree.contains(&id));
        let rules = BatchRules {
            net: std::sync::Arc::new(core.ledger.network().clone()),
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        };
        (tree.height(), tree.tip_work(), known, rules)
    };
    // Whether to pull, from where, how many, and what each answer means: the core's
    // (`gridledger_core::pull`); what follows carries it out.
    let claim = Claim {
        height: theirs.height,
        work: theirs.work,
    };
    let Some(mut plan) = Pull::wanted(our_height, our_work, claim, known, crate::wire::MAX_LIMIT)
    else {
        return Ok(0);
    };
    // A long pull shows its progress: `/status` `sync`, and a log line every few seconds.
    let long = theirs.height.saturating_sub(our_height) >= LONG_PULL;
    let began = std::time::Instant::now();
    let mut logged = began;
    let mut report = |height: u32, active: bool| {
        let secs = began.elapsed().as_secs_f64().max(1e-3);
        let rate = f64::from(height.saturating_sub(our_height)) / secs;
        let eta = f64::from(theirs.height.saturating_sub(height)) / rate.max(1e-9);
        let view = crate::wire::SyncView {
            peer: peer.to_owned(),
            active,
            from: our_height,
            height,
            target: theirs.height,
            blocks_per_s: (rate * 10.0).round() / 10.0,
            eta_secs: if active { eta.min(1e9).round() } else { 0.0 },
        };
        if active && logged.elapsed() >= std::time::Duration::from_secs(5) {
            logged = std::time::Instant::now();
            info!(%peer, height, target = theirs.height, "syncing: {rate:.0} blocks/s, about {eta:.0} s left");
        }
        lock(shared).sync = Some(view);
    };
    if long {
        report(our_height, true);
    }
    // Once linked, the next batches are fetched and prechecked (signatures included, on
    // every core) while this one is placed on the chain and stored under the node's lock:
    // the network, the peer's reads and our verification overlap our commit. `ahead` holds
    // those tasks and the heights they asked from; they are dropped (aborted) if the pull
    // stops or steps back.
    let mut ahead: std::collections::VecDeque<(u32, Fetching)> = std::collections::VecDeque::new();
    // A batch taken from `ahead` to join a commit that turned out empty or failed: the
    // next round's.
    let mut pending: Option<(u32, Result<Fetched, PeerError>)> = None;
    let result = 'pull: {
        for _ in 0..MAX_BATCHES {
            let (from, limit) = plan.request();
            let fetched = match pending.take() {
                Some((at, r)) if at == from => r,
                _ => match ahead.pop_front() {
                    Some((at, task)) if at == from => match task.await {
                        Ok(r) => r,
                        Err(e) => Err(PeerError::BadAnswer(format!("fetch task: {e}"))),
                    },
                    other => {
                        if let Some((_, task)) = other {
                            task.abort();
                        }
                        for (_, task) in ahead.drain(..) {
                            task.abort();
                        }
                        fetch_prechecked(client, peer, from, limit, rules.clone()).await
                    }
                },
            };
            let Fetched { mut count, mut pre } = match fetched {
                Ok(f) => f,
                Err(PeerError::Unreachable(e)) if e.is_timeout() && plan.timed_out() => {
                    info!(%peer, from, limit = plan.limit(), "a batch timed out; asking for fewer blocks");
                    continue;
                }
                Err(e) => break 'pull Err(e),
            };
            // The peer has nothing from there: the pull ends, with no commit to make.
            if count == 0 {
                break 'pull Ok(plan.stored());
            }
            let mut full = count == limit;
            // Batches right behind this one that are fetched and prechecked already join
            // its commit: one durable commit, and one pass over the index pages their
            // blocks touch, for up to `pull::PREFETCH + 1` batches. (A failed one is kept for
            // the next round, which reports it.)
            while plan.linked() && full {
                let next = from.saturating_add(count);
                if !ahead
                    .front()
                    .is_some_and(|(at, task)| *at == next && task.is_finished())
                {
                    break;
                }
                let Some((at, task)) = ahead.pop_front() else {
                    break;
                };
                match task.await {
                    Ok(Ok(more)) if more.count > 0 => {
                        full = more.count == limit;
                        count = count.saturating_add(more.count);
                        pre.append(more.pre);
                    }
                    Ok(r) => {
                        pending = Some((at, r));
                        break;
                    }
                    Err(e) => {
                        pending = Some((at, Err(PeerError::BadAnswer(format!("fetch task: {e}")))));
                        break;
                    }
                }
            }
            let last = ahead.back().map(|(h, _)| *h);
            for next in plan.ahead(count, full, last, ahead.len()) {
                let (client, peer, rules) = (client.clone(), peer.to_owned(), rules.clone());
                ahead.push_back((
                    next,
                    tokio::spawn(async move {
                        fetch_prechecked(&client, &peer, next, limit, rules).await
                    }),
                ));
            }
            // The links, the duplicate checks and one durable commit for the whole batch,
            // under the lock, off the async workers.
            let (results, placed, height_now) = {
                let shared = std::sync::Arc::clone(shared);
                tokio::task::spawn_blocking(move || {
                    let mut core = lock(&shared);
                    let now = now_ms();
                    let results = core.accept_incoming(pre, now, Origin::Peer);
                    // Pushed blocks that waited for one of these (`crate::orphans`).
                    let stored: Vec<BlockId> = results.iter().flatten().map(|a| a.id).collect();
                    let placed = core.after_pull(&stored, now);
                    let height = core.ledger.tree().height();
                    (results, placed, height)
                })
                .await
                .unwrap_or_default()
            };
            carry_out(shared, placed);
            let outcomes: Vec<Outcome> = results
                .iter()
                .map(|r| match r {
                    Ok(_) => Outcome::Stored,
                    Err(AddError::Known(_)) => Outcome::Known,
                    Err(AddError::Invalid(ValidationError::UnknownParent(_))) => {
                        Outcome::UnknownParent
                    }
                    Err(_) => Outcome::Refused,
                })
                .collect();
            let stored_before = plan.stored();
            let step = plan.took(count, &outcomes, height_now);
            if long && plan.stored() > stored_before {
                report(height_now, true);
            }
            match step {
                Step::More | Step::Back => {}
                Step::Done => break 'pull Ok(plan.stored()),
                Step::NoCommonBlock => break 'pull Err(PeerError::NoCommonBlock),
                Step::Refused(i) => {
                    break 'pull Err(match results.into_iter().nth(i) {
                        Some(Err(e)) => PeerError::Refused(e),
                        _ => PeerError::BadAnswer(format!("block {i} of a batch refused")),
                    })
                }
                Step::NoProgress(from) => {
                    break 'pull Err(PeerError::NoProgress(format!(
                        "blocks from height {from} were all known"
                    )))
                }
            }
        }
        Ok(plan.stored())
    };
    for (_, task) in ahead {
        task.abort();
    }
    if long {
        let height = lock(shared).ledger.tree().height();
        report(height, false);
        info!(%peer, height, stored = plan.stored(), secs = began.elapsed().as_secs_f64(), "sync ended");
    }
    // It said it had more work than ours and gave us nothing: that is a lie (or a chain we
    // refuse), and it is remembered.
    let reachable = !matches!(result, Err(PeerError::Unreachable(_)));
    if plan.lied(reachable, lock(shared).ledger.tree().tip_work()) {
        let what = match &result {
            Ok(_) => "nothing new".to_owned(),
            Err(e) => e.to_string(),
        };
        return Err(PeerError::NoProgress(format!(
            "claimed work {}, ours is {our_work}; got {what}",
            theirs.work.unwrap_or(0)
        )));
    }
    result
}

pub use crate::wire::Resolved;

/// Pulls from every peer at once (the study's "consensus" call): afterwards the node is on
/// the chain with the most work among itself and the peers that answered. A slow peer
/// delays only its own answer. Dropping the future stops every pull.
pub async fn resolve(client: &PeerClient, shared: &Shared) -> Vec<Resolved> {
    let peers = lock(shared).peers.clone();
    let mut set = tokio::task::JoinSet::new();
    for (i, peer) in peers.into_iter().enumerate() {
        let (client, shared) = (client.clone(), std::sync::Arc::clone(shared));
        set.spawn(async move {
            let r = tokio::time::timeout(RESOLVE_TIMEOUT, pull(&client, &peer, &shared))
                .await
                .unwrap_or(Err(PeerError::Deadline(RESOLVE_TIMEOUT)));
            {
                let mut core = lock(&shared);
                if matches!(r, Err(PeerError::NoProgress(_))) {
                    core.counters.peer_lies += 1;
                }
                let health = core.peer_health(&peer);
                health.record(&outcome(&r), RESOLVE_TIMEOUT, now_ms());
            }
            let resolved = Resolved {
                peer,
                stored: r.as_ref().map_or(0, |n| *n),
                error: r.err().map(|e| e.to_string()),
            };
            (i, resolved)
        });
    }
    let mut out: Vec<(usize, Resolved)> = Vec::with_capacity(set.len());
    while let Some(done) = set.join_next().await {
        if let Ok(r) = done {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Starts a pull from every peer that has none under way and is not backed off, each on
/// its own task: a slow or lying peer delays only itself, never the others. `base` is the
/// first backoff after a failure (the sync period).
pub fn sync_round(client: &PeerClient, shared: &Shared, base: Duration) {
    let now = now_ms();
    // Whom to pull from is the core's (`gridledger_core::health::due`).
    let due = {
        let core = &mut *lock(shared);
        crate::health::due(&core.peers, &mut core.peer_health, now, base)
    };
    for peer in due {
        let (client, shared) = (client.clone(), std::sync::Arc::clone(shared));
        tokio::spawn(async move {
            let r = tokio::time::timeout(PULL_DEADLINE, pull(&client, &peer, &shared))
                .await
                .unwrap_or(Err(PeerError::Deadline(PULL_DEADLINE)));
            match &r {
                Ok(0) => {}
                Ok(n) => tracing::info!(%peer, blocks = n, "pulled from a peer"),
                Err(e) => debug!(%peer, "sync: {e}"),
            }
            let mut core = lock(&shared);
            core.pull_ended(&peer, r.is_ok());
            if matches!(r, Err(PeerError::NoProgress(_))) {
                core.counters.peer_lies += 1;
            }
            let health = core.peer_health(&peer);
            health.in_flight = false;
            health.record(&outcome(&r), base, now_ms());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_remote_peers_are_told_apart() {
        assert!(plain_remote("http://10.0.0.7:5004"));
        assert!(plain_remote("http://operator.example"));
        assert!(!plain_remote("http://127.0.0.1:5004"));
        assert!(!plain_remote("http://localhost:5004"));
        assert!(!plain_remote("http://[::1]:5004"));
        assert!(plain_remote("http://[2001:db8::1]:5004"));
        assert!(!plain_remote("https://10.0.0.7:5004"));
    }
}
