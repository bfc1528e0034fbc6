//! Validation: every rule a block must pass, each failure its own error.
//!
//! Rules are checked cheapest first, and the signature (the one expensive check) last, so a
//! flood of junk costs a hash at most ([`check`], for a block that arrives alone).
//! [`precheck`] runs the rules that need no chain for many blocks at once, on all cores,
//! with each core's signatures checked as one batch ([`crate::signature::Batch`]), and
//! [`check_placed`] the rules that need the chain; [`verify_run`] does both, in order.

use ed25519_dalek::{Signer, SigningKey};
use relay_core::{Minute, MinuteRecord, RecordError, RecordFlags, RelayId};

use super::block::{Block, BlockId, DecodeError, Height, VERSION};
use super::genesis::Network;
use super::merkle;
use super::registry::Registry;
use super::signature::{self, Batch, SignatureError};
use super::tree::{BlockTree, RecordKey};

/// How far ahead of the local clock a block's time may be.
pub const MAX_FUTURE_MS: u64 = 2 * 60 * 1000;

/// Why a block is refused. Each rule has its own variant, so a peer can be told exactly
/// what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The bytes are not a block, or are over the size limits.
    #[error("malformed block: {0}")]
    Malformed(#[from] DecodeError),
    /// Header version other than [`VERSION`].
    #[error("header version {got}, expected {VERSION}")]
    WrongVersion {
        /// The version in the header.
        got: u16,
    },
    /// Difficulty bits other than the network's.
    #[error("difficulty of {got} bits, the network requires {expected}")]
    WrongDifficulty {
        /// Bits in the header.
        got: u8,
        /// The network's bits.
        expected: u8,
    },
    /// The parent is not a known block (the node may need to sync first).
    #[error("unknown parent {0}")]
    UnknownParent(BlockId),
    /// Height is not the parent's plus one.
    #[error("height {got}, expected {expected}")]
    WrongHeight {
        /// Height in the header.
        got: Height,
        /// Parent's height plus one.
        expected: Height,
    },
    /// Time before the median time of the last 11 blocks.
    #[error("time {time_ms} ms is before {median_ms} ms, the median of the last 11 blocks")]
    TimeTooOld {
        /// Block time.
        time_ms: u64,
        /// The median.
        median_ms: u64,
    },
    /// Time more than two minutes ahead of this node's clock.
    #[error("time {time_ms} ms is more than 2 minutes ahead of the local clock ({now_ms} ms)")]
    TimeInFuture {
        /// Block time.
        time_ms: u64,
        /// Local clock.
        now_ms: u64,
    },
    /// The network has an allow-list and the miner's key is not on it.
    #[error("miner {0} is not in the network's allow-list")]
    MinerNotAllowed(String),
    /// The id has fewer leading zero bits than required.
    #[error("id has {zeros} leading zero bits, {bits} required")]
    InsufficientWork {
        /// Leading zero bits of the id.
        zeros: u32,
        /// Bits required.
        bits: u8,
    },
    /// A block must hold at least one record.
    #[error("the block holds no records")]
    EmptyBody,
    /// The header's Merkle root is not the root of the body's records.
    #[error("Merkle root does not match the records")]
    BadMerkleRoot,
    /// A record is not a canonical, valid minute record.
    #[error("record {index} does not decode: {error}")]
    RecordDecode {
        /// Position in the body.
        index: usize,
        /// Why.
        error: RecordError,
    },
    /// A record whose relay clock was not set has no trustworthy minute.
    #[error("record {index} comes from a relay whose clock was not set")]
    ClockNotSet {
        /// Position in the body.
        index: usize,
    },
    /// A record's minute had not closed by the block's time: no relay can have produced it
    /// yet, so the miner invented it (or the relay's clock runs ahead). Without this rule a
    /// single miner could pre-claim minutes, and the honest nodes would later drop the real
    /// records as already on the chain.
    #[error(
        "record {index} for relay {relay} at {minute} is from the future: its minute closes at {closes_ms} ms, after the block's time {time_ms} ms"
    )]
    RecordFromFuture {
        /// Position in the body.
        index: usize,
        /// Relay.
        relay: RelayId,
        /// Minute.
        minute: Minute,
        /// When the minute closes, Unix milliseconds.
        closes_ms: u64,
        /// The block's time.
        time_ms: u64,
    },
    /// The chain (or this block) already holds a record for that relay and minute.
    #[error("record {index} for relay {relay} at {minute} is already in the chain")]
    DuplicateRecord {
        /// Position in the body.
        index: usize,
        /// Relay.
        relay: RelayId,
        /// Minute.
        minute: Minute,
    },
    /// The relay registry names a key for the record's relay at its minute, and the record
    /// carries no signature: whoever put it there cannot show that the relay said it.
    #[error(
        "record {index} for relay {relay} at {minute} is unsigned, but the relay registry says relay {relay} signs its records"
    )]
    UnsignedRecord {
        /// Position in the body.
        index: usize,
        /// Relay.
        relay: RelayId,
        /// Minute.
        minute: Minute,
    },
    /// The record's signature is not its relay's (by the registry's key for that minute)
    /// signature of the record: the record was invented or changed after the relay signed.
    #[error(
        "record {index} for relay {relay} at {minute} is not signed by the relay's registered key"
    )]
    BadRecordSignature {
        /// Position in the body.
        index: usize,
        /// Relay.
        relay: RelayId,
        /// Minute.
        minute: Minute,
    },
    /// The signature is not the miner's signature of the block id.
    #[error("signature is not the miner's signature of the block id")]
    BadSignature,
    /// The miner key is not a canonically encoded point of large order (a small-order key
    /// would let anyone sign for it).
    #[error("miner key is not a canonically encoded point of large order")]
    BadMinerKey,
}

impl From<SignatureError> for ValidationError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::BadKey => ValidationError::BadMinerKey,
            SignatureError::BadSignature => ValidationError::BadSignature,
        }
    }
}

/// A block that passed every rule but, perhaps, the signature.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The block.
    pub block: Block,
    /// Its id.
    pub id: BlockId,
    /// Its records, decoded, in body order.
    pub records: Vec<MinuteRecord>,
}

impl Checked {
    /// The record keys, in body order.
    #[must_use]
    pub fn keys(&self) -> Vec<RecordKey> {
        self.records.iter().map(RecordKey::of).collect()
    }
}

/// The rules about the header alone and its place in the chain: version, difficulty,
/// parent, height, time, allow-list.
fn check_header(
    h: &super::block::Header,
    net: &Network,
    tree: &BlockTree,
    now_ms: u64,
) -> Result<(), ValidationError> {
    check_static_header(h, net)?;
    // The window only: a parent below it is placed by rebuilding the window first.
    let parent_height = tree
        .window_height_of(&h.prev)
        .ok_or(ValidationError::UnknownParent(h.prev))?;
    let expected = parent_height.saturating_add(1);
    if h.height != expected {
        return Err(ValidationError::WrongHeight {
            got: h.height,
            expected,
        });
    }
    let median_ms = tree.median_time_past(&h.prev);
    if h.time_ms < median_ms {
        return Err(ValidationError::TimeTooOld {
            time_ms: h.time_ms,
            median_ms,
        });
    }
    if h.time_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(ValidationError::TimeInFuture {
            time_ms: h.time_ms,
            now_ms,
        });
    }
    if let Some(allowed) = &net.allow_list {
        if !allowed.contains(&h.miner) {
            return Err(ValidationError::MinerNotAllowed(hex::encode(h.miner)));
        }
    }
    Ok(())
}

/// Header rules that need no chain: version and difficulty.
fn check_static_header(h: &super::block::Header, net: &Network) -> Result<(), ValidationError> {
    if h.version != VERSION {
        return Err(ValidationError::WrongVersion { got: h.version });
    }
    if h.bits != net.bits {
        return Err(ValidationError::WrongDifficulty {
            got: h.bits,
            expected: net.bits,
        });
    }
    Ok(())
}

/// Where the relays' signatures of a block's records are checked: at once, one by one, or
/// queued in a batch under a tag (and checked with the miner's signature), or not at all
/// (a block this node verified before it stored it).
enum RelaySignatures<'a> {
    Now,
    Queue(&'a mut Batch, usize),
    Trusted,
}

/// The rules that need nothing but the block and the network: proof of work, Merkle root,
/// records (decode, clock set, minute closed by the block's time, no duplicate within the
/// block, the relay's signature where the registry names the relay's key).
fn check_body(
    block: Block,
    registry: &Registry,
    mut relay_sigs: RelaySignatures<'_>,
) -> Result<Checked, ValidationError> {
    let h = &block.header;
    let id = h.id();
    let zeros = id.leading_zeros();
    if zeros < u32::from(h.bits) {
        return Err(ValidationError::InsufficientWork {
            zeros,
            bits: h.bits,
        });
    }
    if block.records.is_empty() {
        return Err(ValidationError::EmptyBody);
    }
    if merkle::root(&block.records) != h.merkle_root {
        return Err(ValidationError::BadMerkleRoot);
    }
    let mut records = Vec::with_capacity(block.records.len());
    let mut seen = std::collections::HashSet::with_capacity(block.records.len());
    for (index, bytes) in block.records.iter().enumerate() {
        let record = MinuteRecord::decode(bytes)
            .map_err(|error| ValidationError::RecordDecode { index, error })?;
        if !record.flags.contains(RecordFlags::CLOCK_SET) {
            return Err(ValidationError::ClockNotSet { index });
        }
        let closes_ms = minute_closes_ms(record.minute);
        if closes_ms > h.time_ms {
            return Err(ValidationError::RecordFromFuture {
                index,
                relay: record.relay,
                minute: record.minute,
                closes_ms,
                time_ms: h.time_ms,
            });
        }
        if !seen.insert((record.relay, record.minute)) {
            return Err(ValidationError::DuplicateRecord {
                index,
                relay: record.relay,
                minute: record.minute,
            });
        }
        if let Some(key) = registry.key_at(record.relay, record.minute) {
            let Some(sig) = &record.signature else {
                return Err(ValidationError::UnsignedRecord {
                    index,
                    relay: record.relay,
                    minute: record.minute,
                });
            };
            let bad = || ValidationError::BadRecordSignature {
                index,
                relay: record.relay,
                minute: record.minute,
            };
            // The signed bytes are the entry's, before its 64-byte signature: decode has
            // checked they are the canonical encoding, so no second encoding is needed.
            let body = bytes
                .len()
                .checked_sub(relay_core::SIGNATURE_LEN)
                .and_then(|n| bytes.get(..n))
                .ok_or_else(bad)?;
            let ctx = relay_core::SIGNING_CONTEXT;
            let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
            let message = buf.get_mut(..ctx.len() + body.len()).ok_or_else(bad)?;
            message[..ctx.len()].copy_from_slice(ctx);
            message[ctx.len()..].copy_from_slice(body);
            let message = &*message;
            match &mut relay_sigs {
                RelaySignatures::Now => {
                    signature::verify(key, message, &sig.0).map_err(|_| bad())?;
                }
                RelaySignatures::Queue(batch, tag) => {
                    batch
                        .push_message(*tag, key, message, &sig.0)
                        .map_err(|_| bad())?;
                }
                RelaySignatures::Trusted => {}
            }
        }
        records.push(record);
    }
    Ok(Checked { block, id, records })
}

/// The first record of `checked` whose relay signature fails, checked one at a time: what a
/// failed batch names when the miner's signature was not the bad one.
fn first_bad_relay_signature(checked: &Checked, registry: &Registry) -> Option<ValidationError> {
    checked.records.iter().enumerate().find_map(|(index, r)| {
        let key = registry.key_at(r.relay, r.minute)?;
        let sig = r.signature.as_ref()?;
        let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        let ok = r
            .signing_message(&mut buf)
            .is_ok_and(|m| signature::verify(key, m, &sig.0).is_ok());
        (!ok).then_some(ValidationError::BadRecordSignature {
            index,
            relay: r.relay,
            minute: r.minute,
        })
    })
}

/// No record of the block may already be in the chain it extends.
fn check_chain_records(checked: &Checked, tree: &BlockTree) -> Result<(), ValidationError> {
    check_chain_records_keys(&checked.keys(), &checked.block.header.prev, tree)
}

fn check_chain_records_keys(
    keys: &[RecordKey],
    prev: &BlockId,
    tree: &BlockTree,
) -> Result<(), ValidationError> {
    for (index, key) in keys.iter().enumerate() {
        if tree.chain_has_record(prev, key) {
            return Err(ValidationError::DuplicateRecord {
                index,
                relay: key.relay,
                minute: key.minute,
            });
        }
    }
    Ok(())
}

/// Runs every rule except the signature against the chain in `tree` and the clock `now_ms`.
pub fn check_contents(
    block: Block,
    net: &Network,
    tree: &BlockTree,
    now_ms: u64,
) -> Result<Checked, ValidationError> {
    check_header(&block.header, net, tree, now_ms)?;
    let checked = check_body(block, &net.registry, RelaySignatures::Now)?;
    check_chain_records(&checked, tree)?;
    Ok(checked)
}

/// The rules that need no chain, for many blocks at once: header version and difficulty,
/// work, Merkle root, records, and the signatures (of blocks above `trusted_to`), on
/// `threads` threads, each thread checking its share's signatures as one batch. One result
/// per block, in order; what needs the chain ([`check_placed`]) is left to the caller.
#[must_use]
pub fn precheck(
    blocks: Vec<Block>,
    net: &Network,
    threads: usize,
    trusted_to: Height,
) -> Vec<Result<Checked, ValidationError>> {
    let threads = threads.clamp(1, blocks.len().max(1));
    let chunk = blocks.len().div_ceil(threads);
    let mut parts = split(blocks, chunk);
    if parts.len() <= 1 {
        return parts
            .pop()
            .map(|p| precheck_part(p, net, trusted_to))
            .unwrap_or_default();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| s.spawn(move || precheck_part(part, net, trusted_to)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// `blocks` in order, in pieces of `size` (at least one block each).
fn split(blocks: Vec<Block>, size: usize) -> Vec<Vec<Block>> {
    let size = size.max(1);
    let mut pieces = Vec::with_capacity(blocks.len().div_ceil(size));
    let mut it = blocks.into_iter();
    loop {
        let piece: Vec<Block> = it.by_ref().take(size).collect();
        if piece.is_empty() {
            return pieces;
        }
        pieces.push(piece);
    }
}

fn precheck_part(
    part: Vec<Block>,
    net: &Network,
    trusted_to: Height,
) -> Vec<Result<Checked, ValidationError>> {
    let mut sigs = Batch::new();
    let mut out = part
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            check_static_header(&b.header, net)?;
            let trusted = b.header.height <= trusted_to;
            let relay_sigs = if trusted {
                RelaySignatures::Trusted
            } else {
                RelaySignatures::Queue(&mut sigs, i)
            };
            let c = check_body(b, &net.registry, relay_sigs)?;
            if !trusted {
                sigs.push(i, &c.block.header.miner, &c.id.0, &c.block.signature)?;
            }
            Ok(c)
        })
        .collect::<Vec<Result<Checked, ValidationError>>>();
    // One batch check for the part's signatures, the miners' and the relays' together; a
    // failure names the first bad block, and whoever walks the results in order stops
    // there.
    if let Err(bad) = sigs.verify() {
        // A block refused already (a record's rule after its relay signatures were queued)
        // keeps its first error.
        if let Some(r) = out.get_mut(bad).filter(|r| r.is_ok()) {
            let relay = r
                .as_ref()
                .ok()
                .and_then(|c| first_bad_relay_signature(c, &net.registry));
            *r = Err(relay.unwrap_or(ValidationError::BadSignature));
        }
    }
    out
}

/// The rules that need the chain, for a block that passed [`precheck`]: parent, height,
/// time, allow-list, and no record already on the chain it extends.
pub fn check_placed(
    checked: &Checked,
    net: &Network,
    tree: &BlockTree,
    now_ms: u64,
) -> Result<(), ValidationError> {
    check_header(&checked.block.header, net, tree, now_ms)?;
    check_chain_records(checked, tree)
}

/// Verifies a run of blocks that extend each other, from a parent in `tree`, and inserts
/// them into `tree`. Everything that needs no chain ([`precheck`]: decoding, work, Merkle
/// roots, records, signatures in batches) runs on `threads` threads; the links, heights,
/// times and duplicate checks follow in order on the calling thread. Returns the number of
/// records verified; on failure, the index of the first bad block and its error (the blocks
/// before it are in the tree).
pub fn verify_run(
    blocks: Vec<Block>,
    net: &Network,
    tree: &mut BlockTree,
    now_ms: u64,
    threads: usize,
) -> Result<usize, (usize, ValidationError)> {
    verify_run_trusting(blocks, net, tree, now_ms, threads, 0)
}

/// [`verify_run`], but the signatures of blocks at heights up to `trusted_to` are not
/// checked: a caller that knows they were (a node reopening its own store, whose mark says
/// they were verified when stored) skips the one expensive check. Every other rule still
/// runs, the Merkle root and the links by hash included, so a changed byte anywhere but in
/// a signature is still found.
pub fn verify_run_trusting(
    blocks: Vec<Block>,
    net: &Network,
    tree: &mut BlockTree,
    now_ms: u64,
    threads: usize,
    trusted_to: Height,
) -> Result<usize, (usize, ValidationError)> {
    let threads = threads.max(1);
    // Batches of blocks: while this thread runs the in-order checks of one batch, the
    // workers already check the next, so no core waits on the other.
    let batches = split(blocks, threads * 1024);
    std::thread::scope(|s| {
        let spawn =
            |blocks: Vec<Block>| s.spawn(move || precheck(blocks, net, threads, trusted_to));
        let mut batches = batches.into_iter();
        let mut current = batches.next().map(spawn);
        let mut records = 0;
        let mut i = 0;
        while let Some(handle) = current {
            current = batches.next().map(spawn);
            let results = handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            for result in results {
                let checked = result.map_err(|e| (i, e))?;
                check_header(&checked.block.header, net, tree, now_ms).map_err(|e| (i, e))?;
                let keys = checked.keys();
                check_chain_records_keys(&keys, &checked.block.header.prev, tree)
                    .map_err(|e| (i, e))?;
                records += keys.len();
                tree.insert_with_id(checked.id, &checked.block.header, keys);
                i += 1;
            }
        }
        Ok(records)
    })
}

/// When `minute` closes (its last millisecond has passed), in Unix milliseconds: the
/// earliest block time that may hold a record of that minute.
#[must_use]
pub fn minute_closes_ms(minute: Minute) -> u64 {
    (u64::from(minute.0) + 1) * 60_000
}

/// Checks one block's signature: the miner's key (a canonical point of large order) signed
/// the 32-byte block id, under ZIP 215 (see [`signature`]).
pub fn verify_signature(block: &Block, id: &BlockId) -> Result<(), ValidationError> {
    signature::verify(&block.header.miner, &id.0, &block.signature)?;
    Ok(())
}

/// Every rule, the signature included.
pub fn check(
    block: Block,
    net: &Network,
    tree: &BlockTree,
    now_ms: u64,
) -> Result<Checked, ValidationError> {
    let checked = check_contents(block, net, tree, now_ms)?;
    verify_signature(&checked.block, &checked.id)?;
    Ok(checked)
}

/// Signs a block id with the miner's key.
#[must_use]
pub fn sign(key: &SigningKey, id: &BlockId) -> [u8; 64] {
    key.sign(&id.0).to_bytes()
}
