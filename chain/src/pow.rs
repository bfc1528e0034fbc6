//! Proof of work: a nonce search that re-hashes one 64-byte SHA-256 block per nonce.
//!
//! The header is 119 bytes: its first 64 bytes (version … most of the Merkle root) never
//! change while mining, so their compression (the midstate) is computed once. The last 55
//! bytes, with SHA-256's padding, fill exactly one more block, and the nonce is its bytes
//! 47..55. So each nonce costs one compression, which sha2 runs on SHA-NI when the CPU has
//! it.

use std::sync::atomic::{AtomicBool, Ordering};

use sha2::block_api::compress256;

use super::block::{BlockId, Header, HEADER_LEN};

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Where the nonce sits in the second block.
const NONCE_AT: usize = HEADER_LEN - 64 - 8;

/// How many nonces between two looks at the cancel flag (about 0.1 ms with SHA-NI).
const CANCEL_CHECK_EVERY: u64 = 1 << 12;

/// A header prepared for nonce search.
#[derive(Clone, Debug)]
pub struct Midstate {
    state: [u32; 8],
    tail: [u8; 64],
    bits: u8,
}

impl Midstate {
    /// Compresses the fixed first block of `header` and lays out the padded tail.
    #[must_use]
    pub fn new(header: &Header) -> Self {
        let bytes = header.to_bytes();
        let mut state = IV;
        let mut first = [0u8; 64];
        first.copy_from_slice(&bytes[..64]);
        compress256(&mut state, &[first]);
        let mut tail = [0u8; 64];
        tail[..HEADER_LEN - 64].copy_from_slice(&bytes[64..]);
        tail[HEADER_LEN - 64] = 0x80;
        tail[56..].copy_from_slice(&((HEADER_LEN as u64) * 8).to_be_bytes());
        Midstate {
            state,
            tail,
            bits: header.bits,
        }
    }

    /// The id the header would have with `nonce`.
    #[must_use]
    pub fn id_with(&mut self, nonce: u64) -> BlockId {
        let state = self.compress(nonce);
        let mut id = [0u8; 32];
        for (chunk, word) in id.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        BlockId(id)
    }

    fn compress(&mut self, nonce: u64) -> [u32; 8] {
        self.tail[NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_be_bytes());
        let mut state = self.state;
        compress256(&mut state, &[self.tail]);
        state
    }

    /// Tries the nonces in `nonces` and returns the first whose id has `bits` leading zero
    /// bits. Returns `None` when the range is exhausted or `cancel` is set (checked every
    /// few thousand nonces, so cancelling takes well under a millisecond).
    pub fn search(&mut self, nonces: std::ops::Range<u64>, cancel: &AtomicBool) -> Option<u64> {
        let bits = u32::from(self.bits);
        for nonce in nonces {
            if nonce % CANCEL_CHECK_EVERY == 0 && cancel.load(Ordering::Relaxed) {
                return None;
            }
            let state = self.compress(nonce);
            if leading_zeros(&state) >= bits {
                return Some(nonce);
            }
        }
        None
    }
}

fn leading_zeros(state: &[u32; 8]) -> u32 {
    let mut n = 0;
    for w in state {
        if *w != 0 {
            return n + w.leading_zeros();
        }
        n += 32;
    }
    n
}

/// Mines `header` in place: sets the first nonce from `header.nonce` upwards that meets
/// its difficulty and returns the id, or `None` if cancelled first.
pub fn mine(header: &mut Header, cancel: &AtomicBool) -> Option<BlockId> {
    let mut mid = Midstate::new(header);
    let nonce = mid.search(header.nonce..u64::MAX, cancel)?;
    header.nonce = nonce;
    Some(mid.id_with(nonce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::VERSION;

    fn header(bits: u8) -> Header {
        Header {
            version: VERSION,
            height: 1,
            prev: BlockId([7; 32]),
            merkle_root: [8; 32],
            time_ms: 1,
            bits,
            miner: [9; 32],
            nonce: 0,
        }
    }

    #[test]
    fn midstate_id_equals_plain_sha256() {
        let h = header(0);
        let mut mid = Midstate::new(&h);
        for nonce in [0u64, 1, 255, 1 << 40, u64::MAX] {
            let plain = Header { nonce, ..h }.id();
            assert_eq!(mid.id_with(nonce), plain);
        }
    }

    #[test]
    fn mined_header_meets_its_bits() {
        let mut h = header(12);
        let id = mine(&mut h, &AtomicBool::new(false)).expect("found");
        assert_eq!(id, h.id());
        assert!(id.leading_zeros() >= 12);
    }

    #[test]
    fn cancel_stops_the_search() {
        let mut h = header(250);
        assert_eq!(mine(&mut h, &AtomicBool::new(true)), None);
    }
}
