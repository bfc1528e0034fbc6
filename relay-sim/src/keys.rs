//! Relay signing keys: each simulated relay signs the records it closes with its own
//! Ed25519 key, as a signing meter does (docs/book/src/FORMAT.md section 12).
//!
//! The key file holds one relay a line, `RELAY_ID SECRET_KEY_HEX` (the 32-byte seed as 64
//! hex digits); blank lines and text after `#` are skipped. A relay without a line does not
//! sign. [`RelayKeys::registry`] gives the lines of a relay registry (public keys only) for
//! the nodes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use relay_core::{MinuteRecord, RecordSignature, RelayId};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `RELAY_ID SECRET_KEY_HEX`.
    #[error("key file {path} line {line}: expected RELAY_ID and a 64-hex-digit secret key")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// Two lines for one relay.
    #[error("key file {path}: two keys for relay {relay}")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The relay.
        relay: RelayId,
    },
    /// The system gave no randomness for a new key.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// The signing keys of the relays, by relay id.
#[derive(Clone, Default)]
pub struct RelayKeys {
    keys: BTreeMap<RelayId, SigningKey>,
}

impl fmt::Debug for RelayKeys {
    /// Public keys only: a secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.keys
                    .iter()
                    .map(|(r, k)| (r.0, hex_of(&k.verifying_key().to_bytes()))),
            )
            .finish()
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl RelayKeys {
    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let syntax = || KeyFileError::Syntax {
                path: path.to_owned(),
                line: n + 1,
            };
            let mut f = line.split_whitespace();
            let relay = f
                .next()
                .and_then(|r| r.parse::<u32>().ok())
                .ok_or_else(syntax)?;
            let seed = f.next().and_then(parse_hex32).ok_or_else(syntax)?;
            if f.next().is_some() {
                return Err(syntax());
            }
            if keys
                .insert(RelayId(relay), SigningKey::from_bytes(&seed))
                .is_some()
            {
                return Err(KeyFileError::Duplicate {
                    path: path.to_owned(),
                    relay: RelayId(relay),
                });
            }
        }
        Ok(RelayKeys { keys })
    }

    /// Reads the key file at `path`, or, if there is none, creates it (readable by its
    /// owner only) with a fresh key for each of `relays`.
    pub fn load_or_create(
        path: &Path,
        relays: impl IntoIterator<Item = RelayId>,
    ) -> Result<Self, KeyFileError> {
        if path.exists() {
            return Self::load(path);
        }
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut keys = BTreeMap::new();
        let mut text = String::from(
            "# relay-sim signing keys: RELAY_ID SECRET_KEY_HEX. Keep secret; the public keys\n\
             # go in the network's relay registry (relay-sim --print-registry).\n",
        );
        for relay in relays {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
            text.push_str(&format!("{} {}\n", relay.0, hex_of(&seed)));
            keys.insert(relay, SigningKey::from_bytes(&seed));
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(RelayKeys { keys })
    }

    /// Keys from seeds given in code (tests).
    #[must_use]
    pub fn from_seeds(seeds: impl IntoIterator<Item = (RelayId, [u8; 32])>) -> Self {
        RelayKeys {
            keys: seeds
                .into_iter()
                .map(|(r, s)| (r, SigningKey::from_bytes(&s)))
                .collect(),
        }
    }

    /// The public key of `relay`, if it signs.
    #[must_use]
    pub fn public(&self, relay: RelayId) -> Option<[u8; 32]> {
        self.keys.get(&relay).map(|k| k.verifying_key().to_bytes())
    }

    /// Signs `record` with its relay's key, if the relay has one: the signature of
    /// `SIGNING_CONTEXT ‖ canonical record bytes`, put in the record.
    pub fn sign(&self, record: &mut MinuteRecord) {
        let Some(key) = self.keys.get(&record.relay) else {
            return;
        };
        let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        if let Ok(message) = record.signing_message(&mut buf) {
            record.signature = Some(RecordSignature(key.sign(message).to_bytes()));
        }
    }

    /// Lines of a relay registry (`RELAY_ID PUBLIC_KEY_HEX`) for these keys.
    #[must_use]
    pub fn registry(&self) -> String {
        self.keys
            .iter()
            .map(|(r, k)| format!("{} {}\n", r.0, hex_of(&k.verifying_key().to_bytes())))
            .collect()
    }

    /// Whether no relay signs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_file_reads_back_and_bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("relay-sim-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("relays.key");
        let made = RelayKeys::load_or_create(&path, [RelayId(1), RelayId(2)]).expect("made");
        let read = RelayKeys::load(&path).expect("reads");
        assert_eq!(made.registry(), read.registry());
        assert_eq!(read.registry().lines().count(), 2);
        // No secret in the debug form.
        let text = std::fs::read_to_string(&path).expect("text");
        let shown = format!("{read:?}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let secret = line.split_whitespace().nth(1).expect("a secret");
            assert!(!shown.contains(secret), "{shown}");
        }
        std::fs::write(&path, "1 abc\n").expect("write");
        assert!(matches!(
            RelayKeys::load(&path),
            Err(KeyFileError::Syntax { line: 1, .. })
        ));
        let seed = "11".repeat(32);
        std::fs::write(&path, format!("1 {seed}\n1 {seed}\n")).expect("write");
        assert!(matches!(
            RelayKeys::load(&path),
            Err(KeyFileError::Duplicate { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
