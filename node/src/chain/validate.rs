//! Validation: every rule a block must pass, each failure its own error.
//!
//! Rules are checked cheapest first, and the signature (the one expensive check) last, so a
//! flood of junk costs a hash at most. [`check_contents`] runs every rule but the signature,
//! so that [`verify_signatures`] can check many blocks' signatures on all cores at once.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use relay_core::{Minute, MinuteRecord, RecordError, RecordFlags, RelayId};

use super::block::{Block, BlockId, DecodeError, Height, VERSION};
use super::genesis::Network;
use super::merkle;
use super::tree::{BlockTree, RecordKey};

/// How far ahead of the local clock a block's time may be.
pub const MAX_FUTURE_MS: u64 = 2 * 60 * 1000;

/// Why a block is refused. Each rule has its own variant, so a peer can be told exactly
/// what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
    /// The signature is not the miner's signature of the block id.
    #[error("signature is not the miner's signature of the block id")]
    BadSignature,
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
        self.records
            .iter()
            .map(|r| RecordKey {
                relay: r.relay,
                minute: r.minute,
            })
            .collect()
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
    let parent_height = tree
        .height_of(&h.prev)
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

/// The rules that need nothing but the block: proof of work, Merkle root, records (decode,
/// clock set, no duplicate within the block).
fn check_body(block: Block) -> Result<Checked, ValidationError> {
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
        if !seen.insert((record.relay, record.minute)) {
            return Err(ValidationError::DuplicateRecord {
                index,
                relay: record.relay,
                minute: record.minute,
            });
        }
        records.push(record);
    }
    Ok(Checked { block, id, records })
}

/// No record of the block may already be in the chain it extends.
fn check_chain_records(checked: &Checked, tree: &BlockTree) -> Result<(), ValidationError> {
    let prev = checked.block.header.prev;
    for (index, key) in checked.keys().iter().enumerate() {
        if tree.chain_has_record(&prev, key) {
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
    let checked = check_body(block)?;
    check_chain_records(&checked, tree)?;
    Ok(checked)
}

/// Verifies a run of blocks that extend each other, from a parent in `tree`, and inserts
/// them into `tree`. Everything that needs no chain (decoding, work, Merkle roots, records,
/// signatures) runs on `threads` threads; the links, heights, times and duplicate checks
/// follow in order on the calling thread. On failure returns the index of the first bad
/// block and its error; the blocks before it are in the tree.
pub fn verify_run(
    blocks: Vec<Block>,
    net: &Network,
    tree: &mut BlockTree,
    now_ms: u64,
    threads: usize,
) -> Result<Vec<Checked>, (usize, ValidationError)> {
    let threads = threads.max(1);
    let chunk = blocks.len().div_ceil(threads).max(1);
    let mut parts: Vec<Vec<Block>> = Vec::new();
    let mut it = blocks.into_iter();
    loop {
        let part: Vec<Block> = it.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let results: Vec<Vec<Result<Checked, ValidationError>>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                s.spawn(move || {
                    part.into_iter()
                        .map(|b| {
                            check_static_header(&b.header, net)?;
                            let c = check_body(b)?;
                            verify_signature(&c.block, &c.id)?;
                            Ok(c)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::new();
    for (i, result) in results.into_iter().flatten().enumerate() {
        let checked = result.map_err(|e| (i, e))?;
        check_header(&checked.block.header, net, tree, now_ms).map_err(|e| (i, e))?;
        check_chain_records(&checked, tree).map_err(|e| (i, e))?;
        tree.insert(&checked.block.header, checked.keys());
        out.push(checked);
    }
    Ok(out)
}

/// Checks one block's signature: the miner's key signed the 32-byte block id.
pub fn verify_signature(block: &Block, id: &BlockId) -> Result<(), ValidationError> {
    let key =
        VerifyingKey::from_bytes(&block.header.miner).map_err(|_| ValidationError::BadSignature)?;
    let sig = Signature::from_bytes(&block.signature);
    key.verify_strict(&id.0, &sig)
        .map_err(|_| ValidationError::BadSignature)
}

/// Checks many blocks' signatures on `threads` threads; returns the index of the first
/// block (in slice order) whose signature fails.
pub fn verify_signatures(blocks: &[(&Block, BlockId)], threads: usize) -> Result<(), usize> {
    let threads = threads.max(1);
    let chunk = blocks.len().div_ceil(threads).max(1);
    let first_bad = std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    part.iter()
                        .position(|(b, id)| verify_signature(b, id).is_err())
                        .map(|i| c * chunk + i)
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .min()
    });
    match first_bad {
        Some(i) => Err(i),
        None => Ok(()),
    }
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
