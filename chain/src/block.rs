//! Blocks: a fixed 119-byte header, the miner's signature, and a body of minute records.
//!
//! The byte layout is the contract of `docs/book/src/FORMAT.md`; change both together.

use std::fmt;

use sha2::{Digest, Sha256};

/// Bytes in a header.
pub const HEADER_LEN: usize = 119;
/// Bytes in a signature.
pub const SIGNATURE_LEN: usize = 64;
/// The only header version this code writes and accepts.
pub const VERSION: u16 = 1;

/// A block's id: SHA-256 of its header bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub [u8; 32]);

impl BlockId {
    /// Number of leading zero bits, reading the id as a big-endian 256-bit number.
    #[must_use]
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }

    /// Lower-case hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        // Into a buffer at once rather than char by char (`hex::encode`): a day's readings
        // name 1 440 blocks.
        let mut buf = [0u8; 64];
        match hex::encode_to_slice(self.0, &mut buf) {
            Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
            Err(_) => hex::encode(self.0),
        }
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(BlockId(id))
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({})", &self.to_hex()[..16])
    }
}

/// A position in a chain: genesis is height 0.
pub type Height = u32;

/// Cumulative proof of work: the sum of `2^bits` over a chain's blocks.
pub type Work = u128;

/// The work a block of difficulty `bits` proves.
#[must_use]
pub fn work_of(bits: u8) -> Work {
    1u128 << bits.min(127)
}

/// A block header, decoded. Its byte form is [`Header::to_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version, [`VERSION`].
    pub version: u16,
    /// Height in the chain.
    pub height: Height,
    /// Id of the parent block.
    pub prev: BlockId,
    /// Merkle root of the body's records (RFC 6962).
    pub merkle_root: [u8; 32],
    /// When the block was mined, Unix milliseconds.
    pub time_ms: u64,
    /// Leading zero bits the id must have.
    pub bits: u8,
    /// The miner's ed25519 public key.
    pub miner: [u8; 32],
    /// The proof-of-work nonce.
    pub nonce: u64,
}

/// Byte offsets of the header fields.
pub(crate) mod offset {
    pub const VERSION: usize = 0;
    pub const HEIGHT: usize = 2;
    pub const PREV: usize = 6;
    pub const MERKLE: usize = 38;
    pub const TIME: usize = 70;
    pub const BITS: usize = 78;
    pub const MINER: usize = 79;
    pub const NONCE: usize = 111;
}

impl Header {
    /// The 119 bytes that are hashed: every integer big-endian, fields in declaration order.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[offset::VERSION..offset::HEIGHT].copy_from_slice(&self.version.to_be_bytes());
        b[offset::HEIGHT..offset::PREV].copy_from_slice(&self.height.to_be_bytes());
        b[offset::PREV..offset::MERKLE].copy_from_slice(&self.prev.0);
        b[offset::MERKLE..offset::TIME].copy_from_slice(&self.merkle_root);
        b[offset::TIME..offset::BITS].copy_from_slice(&self.time_ms.to_be_bytes());
        b[offset::BITS] = self.bits;
        b[offset::MINER..offset::NONCE].copy_from_slice(&self.miner);
        b[offset::NONCE..].copy_from_slice(&self.nonce.to_be_bytes());
        b
    }

    /// Decodes the 119 header bytes.
    #[must_use]
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Self {
        let arr = |r: std::ops::Range<usize>| -> [u8; 32] {
            let mut a = [0u8; 32];
            a.copy_from_slice(&b[r]);
            a
        };
        let mut u16b = [0u8; 2];
        u16b.copy_from_slice(&b[offset::VERSION..offset::HEIGHT]);
        let mut u32b = [0u8; 4];
        u32b.copy_from_slice(&b[offset::HEIGHT..offset::PREV]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&b[offset::TIME..offset::BITS]);
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&b[offset::NONCE..]);
        Header {
            version: u16::from_be_bytes(u16b),
            height: u32::from_be_bytes(u32b),
            prev: BlockId(arr(offset::PREV..offset::MERKLE)),
            merkle_root: arr(offset::MERKLE..offset::TIME),
            time_ms: u64::from_be_bytes(time),
            bits: b[offset::BITS],
            miner: arr(offset::MINER..offset::NONCE),
            nonce: u64::from_be_bytes(nonce),
        }
    }

    /// The block id: SHA-256 of [`Self::to_bytes`].
    #[must_use]
    pub fn id(&self) -> BlockId {
        BlockId(Sha256::digest(self.to_bytes()).into())
    }
}

/// A block as it travels and is stored: header, signature, records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The miner's ed25519 signature of the block id.
    pub signature: [u8; SIGNATURE_LEN],
    /// The records, each in the canonical postcard form of `relay_core::MinuteRecord`.
    pub records: Vec<Vec<u8>>,
}

/// Why bytes are not a block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before the block does.
    #[error("block bytes end early ({0})")]
    Truncated(&'static str),
    /// A length is not a minimal LEB128 varint, or overflows.
    #[error("bad varint in the {0}")]
    BadVarint(&'static str),
    /// Bytes follow the last record.
    #[error("{0} bytes after the last record")]
    TrailingBytes(usize),
    /// The block is larger than the limit.
    #[error("block of {got} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Size of the block.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// More records than the limit.
    #[error("{got} records is over the limit of {limit}")]
    TooManyRecords {
        /// Records announced.
        got: u64,
        /// The limit.
        limit: u32,
    },
}

impl Block {
    /// The block id.
    #[must_use]
    pub fn id(&self) -> BlockId {
        self.header.id()
    }

    /// Wire and storage form: header, signature, record count (varint), then each record
    /// as a varint length and its bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let body: usize = self.records.iter().map(|r| r.len() + 5).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + SIGNATURE_LEN + 5 + body);
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(&self.signature);
        put_varint(&mut out, self.records.len() as u64);
        for r in &self.records {
            put_varint(&mut out, r.len() as u64);
            out.extend_from_slice(r);
        }
        out
    }

    /// Parses the wire form, refusing anything over `max_bytes` or `max_records` before
    /// allocating for it.
    pub fn from_bytes(
        bytes: &[u8],
        max_bytes: usize,
        max_records: u32,
    ) -> Result<Self, DecodeError> {
        if bytes.len() > max_bytes {
            return Err(DecodeError::TooLarge {
                got: bytes.len(),
                limit: max_bytes,
            });
        }
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::Truncated("header"))?;
        let signature: [u8; SIGNATURE_LEN] = bytes
            .get(HEADER_LEN..HEADER_LEN + SIGNATURE_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError::Truncated("signature"))?;
        let records = split_records(&bytes[HEADER_LEN + SIGNATURE_LEN..], max_records)?;
        Ok(Block {
            header: Header::from_bytes(header),
            signature,
            records: records.into_iter().map(<[u8]>::to_vec).collect(),
        })
    }

    /// The records of the block encoded in `bytes`, as slices of it (nothing copied, the
    /// header not decoded): for a reader that wants one record of a stored block. Errors as
    /// [`Block::from_bytes`].
    pub fn record_slices(bytes: &[u8], max_records: u32) -> Result<Vec<&[u8]>, DecodeError> {
        let body = bytes
            .get(HEADER_LEN + SIGNATURE_LEN..)
            .ok_or(DecodeError::Truncated("header"))?;
        split_records(body, max_records)
    }
}

/// A block body: the record count, then each record as its length and bytes.
fn split_records(mut rest: &[u8], max_records: u32) -> Result<Vec<&[u8]>, DecodeError> {
    let count = take_varint(&mut rest, "record count")?;
    if count > u64::from(max_records) {
        return Err(DecodeError::TooManyRecords {
            got: count,
            limit: max_records,
        });
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = take_varint(&mut rest, "record length")?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated("record"))?;
        if rest.len() < len {
            return Err(DecodeError::Truncated("record"));
        }
        let (record, tail) = rest.split_at(len);
        records.push(record);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(records)
}

/// Appends `v` as a minimal unsigned LEB128 varint (postcard's encoding).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Takes a minimal LEB128 varint of at most 64 bits off the front of `bytes` (FORMAT.md
/// section 1); `what` names the field in the error.
pub fn take_varint(bytes: &mut &[u8], what: &'static str) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some((&b, rest)) = bytes.split_first() else {
            return Err(DecodeError::Truncated(what));
        };
        *bytes = rest;
        let chunk = u64::from(b & 0x7F);
        if i == 9 && chunk > 1 {
            return Err(DecodeError::BadVarint(what));
        }
        v |= chunk << (7 * i);
        if b & 0x80 == 0 {
            // Minimal: no trailing zero group (except the value 0 itself).
            if i > 0 && b == 0 {
                return Err(DecodeError::BadVarint(what));
            }
            return Ok(v);
        }
    }
    Err(DecodeError::BadVarint(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            version: VERSION,
            height: 7,
            prev: BlockId([1; 32]),
            merkle_root: [2; 32],
            time_ms: 1_795_542_600_000,
            bits: 12,
            miner: [3; 32],
            nonce: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn header_round_trips_and_nonce_is_last() {
        let h = header();
        let b = h.to_bytes();
        assert_eq!(Header::from_bytes(&b), h);
        assert_eq!(&b[HEADER_LEN - 8..], &h.nonce.to_be_bytes());
        // 119 bytes: the second SHA-256 block holds the tail and the padding, so a miner
        // re-hashes one 64-byte block per nonce.
        assert_eq!(HEADER_LEN, 64 + 55);
    }

    #[test]
    fn block_round_trips_and_refuses_bad_bytes() {
        let block = Block {
            header: header(),
            signature: [9; 64],
            records: vec![vec![1, 2, 3], vec![], vec![7; 200]],
        };
        let bytes = block.to_bytes();
        assert_eq!(Block::from_bytes(&bytes, 1 << 20, 100), Ok(block.clone()));
        let slices = Block::record_slices(&bytes, 100).expect("a block");
        assert_eq!(
            slices,
            block.records.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        for cut in 0..bytes.len() {
            assert!(
                Block::from_bytes(&bytes[..cut], 1 << 20, 100).is_err(),
                "cut at {cut}"
            );
            assert!(
                Block::record_slices(&bytes[..cut], 100).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Block::from_bytes(&longer, 1 << 20, 100),
            Err(DecodeError::TrailingBytes(1))
        );
        assert!(matches!(
            Block::from_bytes(&bytes, 100, 100),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            Block::from_bytes(&bytes, 1 << 20, 2),
            Err(DecodeError::TooManyRecords { .. })
        ));
    }

    #[test]
    fn varints_are_minimal() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut s = &out[..];
            assert_eq!(take_varint(&mut s, "t"), Ok(v));
            assert!(s.is_empty());
        }
        let mut overlong: &[u8] = &[0x80, 0x00];
        assert_eq!(
            take_varint(&mut overlong, "t"),
            Err(DecodeError::BadVarint("t"))
        );
        let mut too_big: &[u8] = &[0xFF; 10];
        assert!(take_varint(&mut too_big, "t").is_err());
    }

    #[test]
    fn leading_zeros_counts_bits() {
        let mut id = [0u8; 32];
        id[2] = 0x10;
        assert_eq!(BlockId(id).leading_zeros(), 19);
        assert_eq!(BlockId([0; 32]).leading_zeros(), 256);
        assert_eq!(BlockId([0xFF; 32]).leading_zeros(), 0);
    }
}
