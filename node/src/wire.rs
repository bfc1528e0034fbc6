//! The peer protocol: what nodes send each other over HTTP, in one place for both sides.
//!
//! - The raw block list of `GET /blocks?from=H&limit=N` with `Accept:
//!   application/octet-stream` (`docs/book/src/FORMAT.md` section 9a): a varint count, then each block
//!   as varint length + bytes. [`encode_list`] writes it (the API), [`decode_list`] reads it
//!   (the peer client), with the limits both sides share.
//! - The typed answers a peer reads: [`Status`] (`GET /status`), and those of `/peers` and
//!   `/peers/resolve`. The API serialises them, the client deserialises the same types.

use serde::{Deserialize, Serialize};

use crate::chain::block::{put_varint, take_varint, DecodeError};
use crate::chain::Block;

/// The content type of raw blocks and raw block lists.
pub const RAW: &str = "application/octet-stream";
/// Most blocks one `GET /blocks` returns (and a syncing node asks for): a syncing node
/// commits each answer in one durable transaction, so more blocks per answer mean fewer
/// writes per block (500 gave 33 000 blocks/s in `sync-bench`, 2 000 gave 41 000); the
/// answer is capped by [`MAX_LIST_BYTES`] too.
pub const MAX_LIMIT: u32 = 2000;
/// The header a node sends with a block it pushes or relays: its miner key, in hex, so
/// that the receiver relays the block on to its other peers and not back to the sender. A
/// false one only makes the receiver skip the peer with that key (which then gets the block
/// from another peer or a pull).
pub const SENDER_HEADER: &str = "gridledger-sender";
/// What a node asks for with a block it pushes or relays (RFC 7240's `Prefer`): no body in
/// the answer. `POST /blocks` then answers an added or known block with 204 and
/// `Preference-Applied: return=minimal` instead of a JSON body, since the pushing node only
/// reads the status; a refusal keeps its JSON reason. Without it (people, tools) the
/// answer is JSON as before. Per relayed block this saves the ~130 bytes of that body on
/// every link it crosses (measured on the testbed, the book's Benchmarks chapter, "Wide area").
pub const PREFER_MINIMAL: &str = "return=minimal";
/// The header of such a 204: `added` or `known` (the receiver already held the block), which
/// the sender learns from ([`crate::fanout`]).
pub const RESULT_HEADER: &str = "gridledger-result";
/// With `known` in [`RESULT_HEADER`]: for how many milliseconds the receiver had held the
/// block (when it still remembers its arrival), so that the sender can tell a copy that
/// merely crossed another in flight from one that was wasted ([`crate::fanout`]).
pub const HELD_HEADER: &str = "gridledger-held-ms";
/// `GET /blocks` stops adding blocks once it holds about this many bytes (at least one
/// block is always sent), so that an answer stays small whatever the blocks' size.
pub const MAX_LIST_BYTES: usize = 16 << 20;
/// Most bytes a client reads of a `GET /blocks` answer: what the API sends at most plus one
/// block over it.
pub const MAX_LIST_ANSWER_BYTES: usize = MAX_LIST_BYTES + (1 << 20) + 1024;
/// Most bytes a client reads of a peer's `GET /status`.
pub const MAX_STATUS_BYTES: usize = 1 << 20;

/// How long one request to a peer may take.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A `reqwest` client builder for this crate's TLS (rustls with `ring`): the node's client,
/// tests and tools start from it.
pub fn builder() -> reqwest::ClientBuilder {
    crate::tls::install_provider();
    reqwest::Client::builder()
}

/// The node's HTTP client (one per node, kept in the core: connections are pooled across
/// pushes, pulls and resolves), with the peer [`TIMEOUT`]. `tls` verifies `https://` peers
/// and presents the node's certificate ([`crate::tls::Tls::client_config`]); without it,
/// `https://` peers are verified against the system roots.
///
/// Two protocols: a peer is spoken to over HTTP/1.1 until it shows it is a node of this
/// version or newer (it serves `GET /tip`), and over HTTP/2 from then on: one long-lived
/// connection per peer, headers compressed (HPACK), so an announcement or a poll costs
/// tens of bytes of framing instead of hundreds of header bytes. Older nodes, which speak
/// HTTP/1.1 only, keep working with newer ones in both directions (this node's server
/// speaks both).
pub fn client(tls: Option<rustls::ClientConfig>) -> Result<PeerClient, reqwest::Error> {
    let build = |h2: bool| {
        let b = builder().timeout(TIMEOUT).tls_info(true);
        let b = if h2 {
            b.http2_prior_knowledge().http2_adaptive_window(true)
        } else {
            b.http1_only()
        };
        match tls.clone() {
            Some(config) => b.tls_backend_preconfigured(config),
            None => b,
        }
        .build()
    };
    Ok(PeerClient {
        h1: build(false)?,
        h2: build(true)?,
        h2_peers: std::sync::Arc::default(),
    })
}

/// The node's client for its peers (see [`client`]): cheap to clone, shared state inside.
#[derive(Clone, Debug, Default)]
pub struct PeerClient {
    h1: reqwest::Client,
    h2: reqwest::Client,
    /// Peers (base URLs) known to speak HTTP/2.
    h2_peers: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl PeerClient {
    /// The client to use for `peer` (its base URL).
    #[must_use]
    pub fn to(&self, peer: &str) -> &reqwest::Client {
        if self.speaks_h2(peer) {
            &self.h2
        } else {
            &self.h1
        }
    }

    /// Whether `peer` is spoken to over HTTP/2.
    #[must_use]
    pub fn speaks_h2(&self, peer: &str) -> bool {
        self.h2_peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(peer)
    }

    /// Records whether `peer` speaks HTTP/2 (it served `/tip`, or an HTTP/2 request to it
    /// failed and it is to be tried over HTTP/1.1 again).
    pub fn set_h2(&self, peer: &str, h2: bool) {
        let mut peers = self
            .h2_peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if h2 {
            peers.insert(peer.to_owned());
        } else {
            peers.remove(peer);
        }
    }
}

/// Why a raw block list does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The count or a length is not a minimal varint, or the body ends early.
    #[error("malformed block list: {0}")]
    Malformed(DecodeError),
    /// More blocks than one answer may hold.
    #[error("{0} blocks in one answer (at most {MAX_LIMIT})")]
    TooMany(u64),
    /// A length runs past the end of the body.
    #[error("block {0} of the list is truncated")]
    Truncated(u64),
    /// Bytes follow the last block.
    #[error("{0} bytes after the last block")]
    TrailingBytes(usize),
    /// A block in the list is not a block.
    #[error("block {index} of the list: {error}")]
    Block {
        /// Its position in the list.
        index: u64,
        /// Why.
        error: DecodeError,
    },
}

/// Encodes blocks as a raw list.
#[must_use]
pub fn encode_list<'a>(blocks: impl ExactSizeIterator<Item = &'a Block>) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = blocks.map(Block::to_bytes).collect();
    encode_raw_list(bytes.iter().map(Vec::as_slice))
}

/// Encodes blocks already in their byte form (as stored) as a raw list.
#[must_use]
pub fn encode_raw_list<'a>(blocks: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, blocks.len() as u64);
    for bytes in blocks {
        put_varint(&mut body, bytes.len() as u64);
        body.extend_from_slice(bytes);
    }
    body
}

/// Parses a raw block list, each block within the network's limits.
pub fn decode_list(
    body: &[u8],
    max_block_bytes: usize,
    max_records: u32,
) -> Result<Vec<Block>, ListError> {
    let mut rest = body;
    let count = take_varint(&mut rest, "block count").map_err(ListError::Malformed)?;
    if count > u64::from(MAX_LIMIT) {
        return Err(ListError::TooMany(count));
    }
    let mut out = Vec::new();
    for index in 0..count {
        let len = take_varint(&mut rest, "block length").map_err(ListError::Malformed)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= rest.len())
            .ok_or(ListError::Truncated(index))?;
        let (bytes, tail) = rest.split_at(len);
        out.push(
            Block::from_bytes(bytes, max_block_bytes, max_records)
                .map_err(|error| ListError::Block { index, error })?,
        );
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(ListError::TrailingBytes(rest.len()));
    }
    Ok(out)
}

/// The entity tag of a `GET /tip` answer whose tip is `tip`: the id's last 16 hex digits,
/// quoted (its first digits are the proof of work's zeros). The answer for a tip is always
/// the same (height, work and the node's key follow from it), so the tag names it. A poller
/// sends the tag of its own tip in `If-None-Match`: a peer on that tip answers 304 with no
/// body (about 60 bytes where the answer is about 250), since the poller then knows all it
/// would have said. Pushes keep peers on one tip nearly all the time, so most polls end so.
#[must_use]
pub fn tip_tag(tip: &crate::chain::BlockId) -> String {
    tip_tag_with(tip, 0, 0)
}

/// [`tip_tag`] of a node with finality: the tag also names its final checkpoint's size and
/// its justified epoch (`"<16 hex>-<size>-<epoch>"`), so that a peer whose finality moved
/// answers in full and the poller learns of it (size 0: [`tip_tag`]'s form).
#[must_use]
pub fn tip_tag_with(tip: &crate::chain::BlockId, final_size: u64, justified_epoch: u64) -> String {
    let hex = tip.to_hex();
    let short = &hex[hex.len().saturating_sub(16)..];
    if final_size == 0 {
        format!("\"{short}\"")
    } else {
        format!("\"{short}-{final_size}-{justified_epoch}\"")
    }
}

/// Whether an `If-None-Match` value lists `tag` (weak comparison, RFC 9110 13.1.2: a `W/`
/// prefix is ignored; `*` matches any).
#[must_use]
pub fn none_match(value: &str, tag: &str) -> bool {
    value
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// `GET /tip`: what a peer's periodic pull needs to know of a node, and nothing else (about
/// 250 bytes, where `/status` carries relays and disputes and runs to kilobytes). A node
/// asks every peer for it every sync period, so its size is most of a quiet link's traffic.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Tip {
    /// Main-chain height.
    pub height: u32,
    /// The tip's id, hex.
    #[serde(default)]
    pub tip: String,
    /// The main chain's cumulative work, in decimal (absent from very old nodes' `/status`:
    /// then the peer is judged by height).
    #[serde(default)]
    pub work: String,
    /// The node's miner key (hex), if it mines.
    #[serde(default)]
    pub miner: Option<String>,
    /// Its final checkpoint's size (0, and absent: no finality).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub final_size: u64,
    /// Its latest justified epoch (absent without finality).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub justified_epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `GET /status`. A peer reads `height`, `tip` and `work`; every other field may be missing
/// (a node of another version) and then takes its default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Network name.
    #[serde(default)]
    pub network: String,
    /// Difficulty bits.
    #[serde(default)]
    pub difficulty_bits: u8,
    /// Main-chain height.
    pub height: u32,
    /// The tip's id, hex.
    #[serde(default)]
    pub tip: String,
    /// Records on the main chain.
    #[serde(default)]
    pub records: usize,
    /// Valid blocks known, side branches included.
    #[serde(default)]
    pub blocks_known: usize,
    /// The main chain's cumulative work, in decimal (it can pass 2^64).
    #[serde(default)]
    pub work: String,
    /// Records waiting for a block.
    #[serde(default)]
    pub mempool: usize,
    /// Configured peers.
    #[serde(default)]
    pub peers: usize,
    /// Each relay this node polls.
    #[serde(default)]
    pub relays: Vec<RelayView>,
    /// The node's miner key (ed25519, hex): peers use it to order mining turns.
    #[serde(default)]
    pub miner: Option<String>,
    /// The latest long pull from a peer (500 blocks or more behind it), under way or done.
    #[serde(default)]
    pub sync: Option<SyncView>,
    /// Records on the chain that differ from this node's own reads.
    #[serde(default)]
    pub disputes: Disputes,
    /// What is final here, and why it can be trusted (absent from older nodes).
    #[serde(default)]
    pub finality: Option<FinalityView>,
}

/// `/status` `finality`: whether history is final here, up to where, since when it waits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalityView {
    /// True if the network has an allow-list (its members cosign checkpoints).
    pub on: bool,
    /// What it means, in a sentence.
    pub says: String,
    /// Members on the allow-list, and the quorum.
    #[serde(default)]
    pub members: usize,
    #[serde(default)]
    pub quorum: usize,
    /// True if this node is a member (it votes).
    #[serde(default)]
    pub votes: bool,
    /// The latest final block's height and id (the genesis block until a quorum cosigns).
    #[serde(default)]
    pub final_height: u32,
    #[serde(default)]
    pub final_block: String,
    /// When it became final here (Unix ms).
    #[serde(default)]
    pub final_at_ms: u64,
    /// Blocks on the main chain above it.
    #[serde(default)]
    pub lag_blocks: u32,
    /// Since when the tip has been above the final block (Unix ms), if it is.
    #[serde(default)]
    pub waiting_since_ms: Option<u64>,
    /// The latest justified checkpoint's height and epoch.
    #[serde(default)]
    pub justified_height: u32,
    #[serde(default)]
    pub justified_epoch: u64,
    /// Blocks refused for forking below the final block, and when the last one was.
    #[serde(default)]
    pub refused_below_final: u64,
    #[serde(default)]
    pub refused_below_final_last_ms: u64,
    /// Members' offences found (`GET /evidence`).
    #[serde(default)]
    pub offences: u64,
    /// A quorum-cosigned checkpoint that contradicts this node's final history: mining and
    /// voting stopped (`null` if none).
    #[serde(default)]
    pub safety_failure: Option<String>,
}

/// A long pull from a peer, in `/status`: how far, how fast, how long still.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncView {
    /// The peer pulled from.
    pub peer: String,
    /// Still pulling.
    pub active: bool,
    /// Our height when the pull began.
    pub from: u32,
    /// Our height now.
    pub height: u32,
    /// The peer's height when the pull began.
    pub target: u32,
    /// Blocks stored per second since the pull began.
    pub blocks_per_s: f64,
    /// Seconds left at that rate.
    pub eta_secs: f64,
}

/// One relay's polling state, in `/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayView {
    /// `host:port/unit`.
    pub relay: String,
    /// The relay id its records carry, once one was read.
    #[serde(default)]
    pub relay_id: Option<u32>,
    /// The last poll was answered.
    pub up: bool,
    /// Minute of the last record read.
    pub last_minute: Option<u32>,
    /// The same, as `YYYY-MM-DDTHH:MMZ`.
    pub last_minute_utc: Option<String>,
    /// Records read.
    pub records: u64,
    /// Minutes never seen between two records read.
    pub missed_minutes: u64,
    /// Failed polls in a row.
    pub failures_in_a_row: u64,
    /// The last error.
    pub last_error: Option<String>,
    /// Records refused because the relay's clock was not set.
    pub clock_not_set: u64,
    /// How far the relay's clock ran ahead of the node's at the last record.
    pub clock_ahead_ms: u64,
    /// A clock problem, in words.
    pub clock_problem: Option<String>,
    /// Who vouches for the last record read: `relay` (signed, the relay registered),
    /// `unregistered` (signed, its key checked against the key the relay serves, which no
    /// registry entry names), `unsigned`.
    #[serde(default)]
    pub signed: Option<String>,
    /// The public key the relay serves (hex), if it signs.
    #[serde(default)]
    pub key: Option<String>,
    /// Records read whose relay signature failed: reported, not mined.
    #[serde(default)]
    pub bad_signatures: u64,
}

/// The disputes part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Disputes {
    /// Found since start.
    pub total: u64,
    /// Still open.
    pub open: usize,
    /// The latest few (`GET /disputes` lists them all).
    pub latest: Vec<DisputeView>,
}

/// One dispute, with both versions of the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisputeView {
    /// The relay.
    pub relay: u32,
    /// The minute.
    pub minute: u32,
    /// The same, as `YYYY-MM-DDTHH:MMZ`.
    pub minute_utc: String,
    /// Height of the block holding the chain's version.
    pub height: u32,
    /// That block's id.
    pub block_id: String,
    /// When the node found it, Unix ms.
    pub found_ms: u64,
    /// The chain's record, as the export renders records.
    pub on_chain: serde_json::Value,
    /// What the node read, likewise.
    pub read: serde_json::Value,
}

/// `GET /disputes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DisputeList {
    /// Found since start.
    pub total: u64,
    /// Every open dispute, oldest minute first.
    pub disputes: Vec<DisputeView>,
}

/// What resolving against one peer did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The peer's URL.
    pub peer: String,
    /// Blocks stored from it.
    pub stored: u32,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// `POST /peers/resolve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveAnswer {
    /// The main chain's tip changed.
    pub replaced: bool,
    /// Height afterwards.
    pub height: u32,
    /// Tip afterwards, hex.
    pub tip: String,
    /// One result per peer, in the peer list's order.
    pub peers: Vec<Resolved>,
}

#[cfg(test)]
mod tests {

    /// `If-None-Match` lists are read as RFC 9110 says: any listed tag, weak or strong, or
    /// `*`; a tag is the last 16 hex digits of the tip's id, quoted.
    #[test]
    fn tip_tags_and_none_match() {
        let id = crate::chain::BlockId([0xab; 32]);
        let tag = tip_tag(&id);
        assert_eq!(tag, "\"abababababababab\"");
        // With finality, the tag names the final size and justified epoch too: a node whose
        // finality moved on answers a poller on the same tip in full.
        assert_eq!(tip_tag_with(&id, 0, 0), tag);
        assert_eq!(tip_tag_with(&id, 12, 23), "\"abababababababab-12-23\"");
        assert!(!none_match(
            &tip_tag_with(&id, 12, 23),
            &tip_tag_with(&id, 13, 25)
        ));
        assert!(none_match(&tag, &tag));
        assert!(none_match(&format!("\"x\", W/{tag}"), &tag));
        assert!(none_match("*", &tag));
        assert!(!none_match("\"abababababababac\"", &tag));
        assert!(!none_match("", &tag));
    }
    use super::*;

    #[test]
    fn lists_round_trip_and_refuse_junk() {
        let v = crate::chain::vectors::vectors().expect("mined");
        let body = encode_list(v.blocks.iter());
        let back = decode_list(&body, 1 << 20, 4096).expect("decodes");
        assert_eq!(back, v.blocks.to_vec());
        assert_eq!(
            decode_list(&[body.as_slice(), &[0]].concat(), 1 << 20, 4096),
            Err(ListError::TrailingBytes(1))
        );
        assert_eq!(
            decode_list(&body[..body.len() - 1], 1 << 20, 4096),
            Err(ListError::Truncated(2))
        );
        let mut many = Vec::new();
        put_varint(&mut many, u64::from(MAX_LIMIT) + 1);
        assert_eq!(
            decode_list(&many, 1 << 20, 4096),
            Err(ListError::TooMany(u64::from(MAX_LIMIT) + 1))
        );
        assert!(matches!(
            decode_list(&[0x80], 1 << 20, 4096),
            Err(ListError::Malformed(_))
        ));
    }
}
