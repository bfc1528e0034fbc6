//! C2SP signed notes (<https://c2sp.org/signed-note>): a text ending in a newline, a blank
//! line, then one line per signature, `— <key name> <base64(key ID ‖ signature)>`.
//! Members' checkpoints and votes are notes signed with Ed25519 (signature type `0x01`), so
//! that Go's `golang.org/x/mod/sumdb/note` and any other note verifier check them with the
//! members' verifier keys (`<name>+<key ID hex>+<base64(0x01 ‖ key)>`).
//!
//! Written here rather than taken from a crate: the one Rust implementation of the spec
//! (`signed_note`) is built on ed25519-dalek 2 while the chain is on 3 and verifies with
//! ZIP 215 rules (`crate::signature`), and the format is a page of code; `node/tests`
//! check it against Go's verifier.
//!
//! Signatures are checked with the chain's rule ([`crate::signature::verify`]: a key not of
//! small order, ZIP 215), so that one signature and a batch of them agree. Every signature
//! an honest signer makes (RFC 8032) passes it and Go's check alike.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

use crate::signature;

/// The signature type byte of an Ed25519 note signature.
pub const ED25519: u8 = 0x01;
/// The most signature lines a note may carry here (Go's verifier takes at most 100).
pub const MAX_SIGNATURES: usize = 1024;
/// The longest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 256 * 1024;
/// The em dash and space that open a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, a name or a verifier key is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is over [`MAX_NOTE_BYTES`] or has over [`MAX_SIGNATURES`] signatures.
    #[error("note too large")]
    TooLarge,
    /// The note is not UTF-8, or has a control character other than newline.
    #[error("note is not valid text (UTF-8 without control characters but newline)")]
    NotText,
    /// No blank line separates text and signatures, or the text is empty or malformed.
    #[error("note is malformed: {0}")]
    Malformed(&'static str),
    /// A signature line is malformed.
    #[error("malformed signature line: {0}")]
    BadSignatureLine(String),
    /// A key name is empty or has a space or a plus.
    #[error("key name {0:?} is not valid (non-empty, no spaces, no '+')")]
    BadName(String),
    /// A verifier key string does not parse.
    #[error("verifier key {0:?} is not <name>+<8 hex digits>+<base64>, type 0x01")]
    BadVerifierKey(String),
    /// A signature by a known key does not verify: the whole note is refused.
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    /// No signature by a known key.
    #[error("no signature by a known key")]
    Unverified,
}

/// True if `name` may name a key: non-empty, no Unicode space, no `+`.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key ID of an Ed25519 key: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]`, big-endian.
#[must_use]
pub fn key_id(name: &str, key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(key);
    let d: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A key that verifies notes: its name, ID and Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub id: u32,
    /// The public key.
    pub key: [u8; 32],
}

impl Verifier {
    /// The verifier for `key` under `name`.
    pub fn new(name: &str, key: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadName(name.to_owned()));
        }
        Ok(Verifier {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Go's verifier key string: `<name>+<key ID, 8 hex digits>+<base64(0x01 ‖ key)>`.
    #[must_use]
    pub fn to_vkey(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ED25519);
        material.extend_from_slice(&self.key);
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(material))
    }

    /// Parses a verifier key string (type `0x01` only); the key ID must be the one the
    /// name and key give.
    pub fn from_vkey(s: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::BadVerifierKey(s.to_owned());
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if id.len() != 8 {
            return Err(bad());
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad())?;
        let material = B64.decode(material).map_err(|_| bad())?;
        let (Some(&ED25519), Some(key)) = (material.first(), material.get(1..)) else {
            return Err(bad());
        };
        let key: [u8; 32] = key.try_into().map_err(|_| bad())?;
        let v = Verifier::new(name, key).map_err(|_| bad())?;
        if v.id != id {
            return Err(bad());
        }
        Ok(v)
    }
}

/// One signature line: the key name, the key ID and the signature bytes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub id: u32,
    /// The signature (64 bytes for Ed25519; any length for other types, which are kept
    /// and ignored).
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, without its newline.
    #[must_use]
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}", self.name, B64.encode(raw))
    }

    fn parse(line: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::BadSignatureLine(line.chars().take(80).collect());
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(bad)?;
        let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
        if !valid_name(name) {
            return Err(bad());
        }
        let raw = B64.decode(b64).map_err(|_| bad())?;
        if raw.len() < 5 {
            return Err(bad());
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            sig: raw[4..].to_vec(),
        })
    }
}

/// Signs `text` (a note's text, ending in a newline) with `key` under `name`.
#[must_use]
pub fn sign(text: &str, name: &str, key: &SigningKey) -> NoteSignature {
    let public = key.verifying_key().to_bytes();
    NoteSignature {
        name: name.to_owned(),
        id: key_id(name, &public),
        sig: key.sign(text.as_bytes()).to_bytes().to_vec(),
    }
}

/// A note: its text and its signature lines, verified or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The text, with its final newline.
    pub text: String,
    /// The signatures, in order.
    pub sigs: Vec<NoteSignature>,
}

/// Checks that `text` may be a note's text: UTF-8 already, no control character but
/// newline, non-empty, ending in a newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::NotText);
    }
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end in a newline"));
    }
    Ok(())
}

impl Note {
    /// A note of `text` with `sigs`.
    pub fn new(text: String, sigs: Vec<NoteSignature>) -> Result<Self, NoteError> {
        check_text(&text)?;
        Ok(Note { text, sigs })
    }

    /// Parses a note's bytes (text, blank line, signature lines). Signatures are not
    /// verified here: see [`Note::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotText)?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::NotText);
        }
        // The text ends at the last blank line.
        let split = s
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&s[..=split], &s[split + 2..]);
        check_text(text)?;
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::Malformed(
                "the last signature line has no newline",
            ));
        };
        let mut out = Vec::new();
        for line in sigs.split('\n') {
            if out.len() == MAX_SIGNATURES {
                return Err(NoteError::TooLarge);
            }
            out.push(NoteSignature::parse(line)?);
        }
        Ok(Note {
            text: text.to_owned(),
            sigs: out,
        })
    }

    /// The note as it is written: text, blank line, one line per signature.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.sigs {
            out.push_str(&s.line());
            out.push('\n');
        }
        out
    }

    /// Verifies the note as the spec says: signatures by unknown keys (no verifier with both
    /// that name and that ID) are ignored; one by a known key that fails refuses the whole
    /// note; at least one must verify. Returns the known keys that signed, each once, in
    /// the order of their first signature.
    pub fn verify(&self, verifiers: &[Verifier]) -> Result<Vec<[u8; 32]>, NoteError> {
        let mut signed: Vec<[u8; 32]> = Vec::new();
        for s in &self.sigs {
            let Some(v) = verifiers.iter().find(|v| v.id == s.id && v.name == s.name) else {
                continue;
            };
            let sig: [u8; 64] = s
                .sig
                .as_slice()
                .try_into()
                .map_err(|_| NoteError::BadSignature(v.name.clone()))?;
            signature::verify(&v.key, self.text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(v.name.clone()))?;
            if !signed.contains(&v.key) {
                signed.push(v.key);
            }
        }
        if signed.is_empty() {
            return Err(NoteError::Unverified);
        }
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of c2sp.org/signed-note: its verifier key verifies its note.
    #[test]
    fn the_spec_example_verifies() {
        let v = Verifier::from_vkey(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .expect("the spec's key");
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let n = Note::parse(note.as_bytes()).expect("parses");
        assert_eq!(n.text, "This is an example message.\n");
        assert_eq!(n.verify(std::slice::from_ref(&v)), Ok(vec![v.key]));
        assert_eq!(n.to_text(), note);
        assert_eq!(
            v.to_vkey(),
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        );
        // One flipped byte of the text: the known key's signature fails, the note is refused.
        let flipped = note.replacen("example", "exbmple", 1);
        let n = Note::parse(flipped.as_bytes()).expect("parses");
        assert!(matches!(n.verify(&[v]), Err(NoteError::BadSignature(_))));
    }

    #[test]
    fn signing_round_trips_and_unknown_keys_are_ignored() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let text = "gridledger/test\n5\nAAAA\n".to_owned();
        let sigs = vec![
            sign(&text, "a.example/x", &a),
            sign(&text, "b.example/y", &b),
        ];
        let note = Note::new(text, sigs).expect("text");
        let parsed = Note::parse(note.to_text().as_bytes()).expect("parses");
        assert_eq!(parsed, note);
        let va = Verifier::new("a.example/x", a.verifying_key().to_bytes()).expect("name");
        assert_eq!(parsed.verify(std::slice::from_ref(&va)), Ok(vec![va.key]));
        // A verifier with the right key but another name does not match: ignored.
        let other = Verifier::new("c.example/z", a.verifying_key().to_bytes()).expect("name");
        assert_eq!(parsed.verify(&[other]), Err(NoteError::Unverified));
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() {
        for bad in [
            &b"no blank line\n\xe2\x80\x94 a AAAA\n"[..],
            b"text\n\n\xe2\x80\x94 a AAAA\n", // 3 bytes: not even a key ID and one byte
            b"text\n\n-- a AAAAAAAAAA==\n",   // not an em dash
            b"text\n\n\xe2\x80\x94 a\tb AAAAAAAAAA==\n", // a control character
            b"text\n\n\xe2\x80\x94 a AAAAAAAAAA==", // no final newline
            b"\xff\n\n\xe2\x80\x94 a AAAAAAAAAA==\n", // not UTF-8
            b"text\n\n\xe2\x80\x94 a+b AAAAAAAAAA==\n", // a plus in the name
            b"text\n\n\xe2\x80\x94 a not-base64!\n",
        ] {
            assert!(
                Note::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(Verifier::from_vkey("name+00000000+AQ==").is_err());
        assert!(Verifier::from_vkey("name+zz+AQ==").is_err());
        assert!(Verifier::new("has space", [0; 32]).is_err());
        assert!(!valid_name(""));
        // A verifier key whose ID does not match its name and key.
        let v = Verifier::new("n", [9; 32]).expect("name");
        let wrong = v
            .to_vkey()
            .replacen(&format!("{:08x}", v.id), "00000000", 1);
        assert!(Verifier::from_vkey(&wrong).is_err());
    }
}
