//! The signature rule, and checking many signatures at once.
//!
//! A block's signature is valid when
//! 1. the miner key is the canonical encoding of a point that is **not of small order**
//!    (a small-order key signs for anybody: with `[8]A = 0` every `(R, s)` with
//!    `[8][s]B = [8]R` passes), and
//! 2. the signature passes **ZIP 215** ed25519 verification of the 32-byte block id: `s`
//!    canonical, `R` any point encoding, and the cofactored equation
//!    `[8][s]B = [8]R + [8][k]A` with `k = SHA-512(R ‖ A ‖ id)`.
//!
//! Why ZIP 215 and not RFC 8032's cofactorless "strict" rule the chain used before: only a
//! cofactored single check agrees with a batch check on every input. With the cofactorless
//! rule, a miner can add a small-order component to `R` and publish a block that a batch
//! accepts and a one-at-a-time check refuses, so a node syncing in batches and a node taking
//! gossip one block at a time would disagree about the chain. Every signature valid under the
//! strict rule is valid here (the cofactorless equation implies the cofactored one, and the
//! strict rule already refused small-order keys); the converse fails only for signatures that
//! only the key's owner can make (a small-order part added to his own `R`), and those change
//! nothing a block commits to: the id is the same.
//!
//! The implementation is `ed25519-zebra`, written for exactly this (Zcash's consensus), whose
//! batch and single checks agree by construction; batches coalesce the terms of one key, and a
//! chain has few miners, so a batch costs far less than its signatures one at a time.

use std::collections::HashMap;

use chacha20::ChaCha8Rng;
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::{batch, Signature, VerificationKey, VerificationKeyBytes};
use rand_core::SeedableRng;

/// Why a signature is refused. Both map to the one block rule ("not the miner's signature").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The miner key is not a point, not canonically encoded, or of small order.
    BadKey,
    /// The equation does not hold.
    BadSignature,
}

/// Checks the key rule alone.
pub fn check_key(miner: &[u8; 32]) -> Result<(), SignatureError> {
    let point = CompressedEdwardsY(*miner)
        .decompress()
        .ok_or(SignatureError::BadKey)?;
    if point.is_small_order() || point.compress().0 != *miner {
        return Err(SignatureError::BadKey);
    }
    Ok(())
}

/// Verifies one signature of `message` by `miner`: the key rule, then ZIP 215.
pub fn verify(
    miner: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    check_key(miner)?;
    verify_equation(miner, message, signature)
}

fn verify_equation(
    miner: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let key = VerificationKey::try_from(VerificationKeyBytes::from(*miner))
        .map_err(|_| SignatureError::BadKey)?;
    key.verify(&Signature::from_bytes(signature), message)
        .map_err(|_| SignatureError::BadSignature)
}

/// Signatures to check together. Keys are checked as they are added (once per distinct key);
/// [`Batch::verify`] then checks every equation in one multiscalar multiplication, and when
/// that fails, one at a time to name the first bad one.
#[derive(Debug, Default)]
pub struct Batch {
    items: Vec<Item>,
    keys: HashMap<[u8; 32], Result<(), SignatureError>>,
}

#[derive(Debug)]
struct Item {
    tag: usize,
    miner: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
}

impl Batch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Signatures queued.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no signature is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues the signature of a 32-byte message (a block id) under a caller's `tag`. A key
    /// that breaks the key rule is refused here, at once.
    pub fn push(
        &mut self,
        tag: usize,
        miner: &[u8; 32],
        message: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), SignatureError> {
        self.push_message(tag, miner, message, signature)
    }

    /// [`Self::push`] for a message of any length (a note's text, `crate::note`).
    pub fn push_message(
        &mut self,
        tag: usize,
        miner: &[u8; 32],
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), SignatureError> {
        let known = match self.keys.get(miner) {
            Some(k) => *k,
            None => {
                let k = check_key(miner);
                self.keys.insert(*miner, k);
                k
            }
        };
        known?;
        self.items.push(Item {
            tag,
            miner: *miner,
            message: message.to_vec(),
            signature: *signature,
        });
        Ok(())
    }

    /// Checks every queued signature. `Err` carries the tag of the first bad one in the
    /// order they were pushed.
    pub fn verify(self) -> Result<(), usize> {
        if self.items.is_empty() {
            return Ok(());
        }
        let all_good = match batch_rng() {
            Some(rng) if self.items.len() > 1 => {
                let mut v = batch::Verifier::new();
                for it in &self.items {
                    v.queue((
                        VerificationKeyBytes::from(it.miner),
                        Signature::from_bytes(&it.signature),
                        &it.message[..],
                    ));
                }
                v.verify(rng).is_ok()
            }
            // Without an unpredictable seed a batch could be fooled: check one at a time.
            _ => false,
        };
        if all_good {
            return Ok(());
        }
        for it in &self.items {
            if verify_equation(&it.miner, &it.message, &it.signature).is_err() {
                return Err(it.tag);
            }
        }
        Ok(())
    }
}

/// The batch's random coefficients must be unknown to whoever made the signatures: seeded
/// from the operating system, fresh for every batch.
fn batch_rng() -> Option<ChaCha8Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).ok()?;
    Some(ChaCha8Rng::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(seed: u8, msg: &[u8; 32]) -> ([u8; 32], [u8; 64]) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        (key.verifying_key().to_bytes(), key.sign(msg).to_bytes())
    }

    /// A signature whose nonce point carries a small-order component: `R = [r]B + T`, made
    /// by the key's owner. Valid under ZIP 215 (cofactored), refused by RFC 8032 strict.
    fn with_torsion(seed: u8, msg: &[u8; 32]) -> ([u8; 32], [u8; 64]) {
        use curve25519_dalek::{constants::ED25519_BASEPOINT_POINT as B, Scalar};
        use sha2::Digest;
        let key = SigningKey::from_bytes(&[seed; 32]);
        let a = key.to_scalar();
        let public = key.verifying_key().to_bytes();
        let r = Scalar::from(123_456_789u64);
        let big_r = (B * r + EIGHT_TORSION[1]).compress().0;
        let mut h = sha2::Sha512::new();
        h.update(big_r);
        h.update(public);
        h.update(msg);
        let wide: [u8; 64] = h.finalize().into();
        let k = Scalar::from_bytes_mod_order_wide(&wide);
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice(s.as_bytes());
        (public, sig)
    }

    #[test]
    fn a_good_signature_passes_alone_and_in_a_batch() {
        let msg = [7u8; 32];
        let (key, sig) = signed(1, &msg);
        assert_eq!(verify(&key, &msg, &sig), Ok(()));
        let mut b = Batch::new();
        for tag in 0..10 {
            b.push(tag, &key, &msg, &sig).expect("good key");
        }
        assert_eq!(b.verify(), Ok(()));
    }

    #[test]
    fn a_bad_signature_in_a_batch_is_named() {
        let mut b = Batch::new();
        for tag in 0..40usize {
            let msg = [tag as u8; 32];
            let (key, mut sig) = signed((tag % 3) as u8 + 1, &msg);
            if tag == 27 || tag == 33 {
                sig[40] ^= 1;
            }
            b.push(tag, &key, &msg, &sig).expect("good key");
        }
        assert_eq!(b.verify(), Err(27));
    }

    #[test]
    fn single_and_batch_agree_on_a_torsion_component_in_r() {
        let msg = [9u8; 32];
        let (key, sig) = signed(2, &msg);
        let (same_key, odd) = with_torsion(2, &msg);
        assert_eq!(same_key, key);
        // The strict rule refuses it; ZIP 215 accepts it, alone and in a batch alike.
        let strict = ed25519_dalek::VerifyingKey::from_bytes(&key).expect("key");
        assert!(strict
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&odd))
            .is_err());
        assert_eq!(verify(&key, &msg, &odd), Ok(()));
        let mut b = Batch::new();
        b.push(0, &key, &msg, &sig).expect("key");
        b.push(1, &key, &msg, &odd).expect("key");
        assert_eq!(b.verify(), Ok(()));
    }

    #[test]
    fn small_order_and_non_canonical_keys_are_refused() {
        let msg = [3u8; 32];
        // A small-order key: anyone can "sign" for it with R = [s]B.
        let small = EIGHT_TORSION[1].compress().0;
        let s = curve25519_dalek::Scalar::from(5u8);
        let r = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * s;
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(&r.compress().0);
        forged[32..].copy_from_slice(s.as_bytes());
        // The bare ZIP 215 equation holds for it: the key rule is what refuses it.
        assert_eq!(verify_equation(&small, &msg, &forged), Ok(()));
        assert_eq!(verify(&small, &msg, &forged), Err(SignatureError::BadKey));
        let mut b = Batch::new();
        assert_eq!(
            b.push(0, &small, &msg, &forged),
            Err(SignatureError::BadKey)
        );
        // y = 3 is a point of large order; y = 3 + p encodes it too, non-canonically.
        let mut noncanon = [0u8; 32];
        noncanon[0] = 0xf0;
        noncanon[1..31].fill(0xff);
        noncanon[31] = 0x7f;
        let point = CompressedEdwardsY(noncanon)
            .decompress()
            .expect("y = 3 is a point");
        assert!(!point.is_small_order());
        assert_eq!(check_key(&noncanon), Err(SignatureError::BadKey));
        assert_eq!(check_key(&point.compress().0), Ok(()));
        let (good, _) = signed(4, &msg);
        assert_eq!(check_key(&good), Ok(()));
        assert_eq!(check_key(&[0xff; 32]), Err(SignatureError::BadKey));
    }

    #[test]
    fn a_strict_valid_signature_stays_valid() {
        for seed in 1..20u8 {
            let msg = [seed.wrapping_mul(13); 32];
            let (key, sig) = signed(seed, &msg);
            let strict = ed25519_dalek::VerifyingKey::from_bytes(&key).expect("key");
            assert!(strict
                .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok());
            assert_eq!(verify(&key, &msg, &sig), Ok(()));
        }
    }

    /// The same at the block level: blocks signed with a torsion part in `R` pass the
    /// one-block check and the batched run alike, so gossip and sync agree on them.
    #[test]
    fn a_block_with_torsion_in_r_passes_both_paths() {
        use crate::{validate, vectors::vectors, BlockTree};
        let v = vectors().expect("vectors");
        let [_, mut b1, mut b2] = v.blocks;
        for b in [&mut b1, &mut b2] {
            let (_, sig) = with_torsion(7, &b.id().0);
            assert_ne!(sig, b.signature);
            b.signature = sig;
        }
        let tree = BlockTree::new(&v.network.genesis().header);
        let one = validate::check(b1.clone(), &v.network, &tree, u64::MAX / 2);
        assert!(one.is_ok(), "{one:?}");
        let mut tree = BlockTree::new(&v.network.genesis().header);
        let run = validate::verify_run(vec![b1, b2], &v.network, &mut tree, u64::MAX / 2, 2);
        assert_eq!(run, Ok(4));
    }
}
