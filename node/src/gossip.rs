//! Gossip: sending a block on to the peers, whole or announced, as the node's block-relay
//! mode and what it learned of each peer say ([`crate::fanout`]).
//!
//! Below the core and the peers' pulls: the core hands a [`Sender`] and a block to
//! [`send_block`] and goes on; nothing here reads the node's state.

use tracing::{debug, warn};

use crate::chain::BlockId;
use crate::wire::PeerClient;

/// How a node sends a block it mined or accepted as its best to its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockRelay {
    /// Whole to each peer, except the blocks of a miner that the peer kept holding already
    /// when this node sent them: those are announced ([`crate::fanout`]). About the bytes
    /// of `announce` and the trips of `push`.
    #[default]
    Adaptive,
    /// `POST /blocks` with the whole block to every peer: one trip per hop; a peer that has
    /// it already received its bytes for nothing.
    Push,
    /// `POST /blocks/announce` with the block id; a peer that lacks it says so and gets
    /// `POST /blocks`: fewer bytes for large blocks, two more trips per hop.
    Announce,
}

impl From<BlockRelay> for crate::fanout::Mode {
    fn from(b: BlockRelay) -> Self {
        match b {
            BlockRelay::Adaptive => Self::Adaptive,
            BlockRelay::Push => Self::Push,
            BlockRelay::Announce => Self::Announce,
        }
    }
}

/// Reads at most `cap` bytes of an answer's body: `None` past it or on a failure (a peer's
/// answer to an announcement is a few bytes; a longer one is not read).
async fn read_small(mut resp: reqwest::Response, cap: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if out.len() + chunk.len() > cap {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

/// A `POST` of raw bytes to `path` on `peer`, naming this node (its miner key, hex) as the
/// sender.
pub(crate) fn post_raw(
    client: &PeerClient,
    peer: &str,
    path: &str,
    body: Vec<u8>,
    sender: Option<&str>,
) -> reqwest::RequestBuilder {
    let req = client
        .to(peer)
        .post(format!("{peer}{path}"))
        .header("content-type", "application/octet-stream")
        .body(body);
    match sender {
        Some(s) => req.header(crate::wire::SENDER_HEADER, s),
        None => req,
    }
}

/// A `POST /blocks` of a block to `peer`, asking for an answer without a body (only its
/// status is read: [`crate::wire::PREFER_MINIMAL`]).
fn block_request(
    client: &PeerClient,
    peer: &str,
    body: Vec<u8>,
    sender: Option<&str>,
) -> reqwest::RequestBuilder {
    post_raw(client, peer, "/blocks", body, sender).header("prefer", crate::wire::PREFER_MINIMAL)
}

/// Sends a block to `peer`, logs what went wrong, if anything (a 409, unknown parent, is
/// the peer's to mend by pulling), and says whether the peer already held it and whether
/// the copy was wasted ([`crate::fanout::wasted`]). `None`: no usable answer; a node from
/// before [`crate::wire::RESULT_HEADER`] counts as lacking it.
async fn post_block(req: reqwest::RequestBuilder, peer: &str) -> Option<(bool, bool)> {
    let sent = std::time::Instant::now();
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            let h = r.headers();
            let known = h
                .get(crate::wire::RESULT_HEADER)
                .is_some_and(|v| v.as_bytes() == b"known");
            let held_ms = h
                .get(crate::wire::HELD_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let trip = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
            Some((known, crate::fanout::wasted(known, held_ms, trip)))
        }
        Ok(r) if r.status().as_u16() == 409 => Some((false, false)),
        Ok(r) => {
            warn!(%peer, status = r.status().as_u16(), "peer refused our block");
            None
        }
        Err(e) => {
            debug!(%peer, "push failed: {e}");
            None
        }
    }
}

/// Asks `peer` whether it wants the block `id` (`POST /blocks/announce`): `None` if the
/// answer is not usable (a node without announcements, a failure).
async fn ask(client: &PeerClient, peer: &str, id: BlockId, sender: Option<&str>) -> Option<bool> {
    let asked = post_raw(client, peer, "/blocks/announce", id.0.to_vec(), sender)
        .send()
        .await;
    match asked {
        Ok(r) if r.status().is_success() => read_small(r, 1024)
            .await
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("want").and_then(serde_json::Value::as_bool)),
        Ok(r) => {
            debug!(%peer, status = r.status().as_u16(), "announce refused");
            None
        }
        Err(e) => {
            debug!(%peer, "announce failed: {e}");
            None
        }
    }
}

/// What a node needs to send blocks to its peers ([`send_block`]), taken from the core.
#[derive(Clone, Debug)]
pub struct Sender {
    /// The node's HTTP client.
    pub client: PeerClient,
    /// This node's miner key, named in [`crate::wire::SENDER_HEADER`].
    pub own: Option<[u8; 32]>,
    /// Whole, announced, or as learned.
    pub how: BlockRelay,
    /// What the node learned of which peers already hold which miner's blocks.
    pub fanout: crate::fanout::Fanout,
    /// Where sends are counted.
    pub metrics: crate::metrics::Metrics,
}

/// Sends a block to every peer at once, without waiting, as `sender.how` says: whole,
/// announced (pushed to a peer that answers that it lacks it), or, `adaptive`, whole
/// except where [`crate::fanout::Fanout`] learned that the peer gets this miner's blocks
/// from elsewhere first. `miner` is the block's miner when this node relays it (`None`:
/// this node mined it, so every peer lacks it and gets it whole, `adaptive` or not).
/// Failures are logged only.
pub fn send_block(
    sender: &Sender,
    peers: &[String],
    bytes: Vec<u8>,
    id: BlockId,
    miner: Option<[u8; 32]>,
) {
    use crate::metrics::Sent;
    let named = sender.own.map(hex::encode);
    let bytes = std::sync::Arc::new(bytes);
    for peer in peers {
        // Whole or announced is the core's rule (`gridledger_core::fanout`).
        let announce = sender
            .fanout
            .announces(sender.how.into(), peer, miner.as_ref());
        let (s, peer, bytes, named) = (
            sender.clone(),
            peer.clone(),
            std::sync::Arc::clone(&bytes),
            named.clone(),
        );
        tokio::spawn(async move {
            let learn = |wasted: bool| {
                if let Some(m) = &miner {
                    s.fanout.learn(&peer, m, wasted);
                }
            };
            if announce {
                s.metrics.sent(Sent::Id);
                let asked = std::time::Instant::now();
                match ask(&s.client, &peer, id, named.as_deref()).await {
                    Some(false) => {
                        s.metrics.sent(Sent::IdHeld);
                        let trip = u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX);
                        learn(crate::fanout::announce_wasted(trip));
                        return;
                    }
                    Some(true) => learn(false),
                    // Not understood (an older node) or failed: the block itself.
                    None => {}
                }
            }
            s.metrics.sent(Sent::Whole);
            let req = block_request(&s.client, &peer, bytes.as_ref().clone(), named.as_deref());
            if let Some((held, wasted)) = post_block(req, &peer).await {
                if held {
                    s.metrics.sent(Sent::WholeHeld);
                }
                learn(wasted);
            }
        });
    }
}
