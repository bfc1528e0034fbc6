//! Signing keys of recorded devices: the recorder is its device's stand-in (a Modbus meter
//! or an IEC 61850 IED that cannot sign), so it signs each record it closes with the key
//! given for that device (`--device ...,key=FILE`), as relay-sim and the firmware sign
//! theirs (docs/book/src/FORMAT.md section 12).
//!
//! A key file holds the 32-byte Ed25519 secret as 64 hex digits (the format of `gridledger
//! keygen`). A missing file is created, readable by its owner only, with a fresh key, and
//! the registry line for it is logged.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use relay_core::{MinuteRecord, RecordSignature};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error("key file {0} does not hold an Ed25519 secret key (64 hex digits)")]
    Malformed(PathBuf),
    /// No randomness for a new key.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// A device's signing key.
#[derive(Clone)]
pub struct DeviceKey(SigningKey);

impl fmt::Debug for DeviceKey {
    /// The public key only: a secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", hex(&self.public()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl DeviceKey {
    /// A key from its 32-byte secret.
    #[must_use]
    pub fn from_seed(seed: [u8; 32]) -> Self {
        DeviceKey(SigningKey::from_bytes(&seed))
    }

    /// Reads the key file at `path`, or creates it with a fresh key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let t = text.trim();
                let mut seed = [0u8; 32];
                if t.len() != 64 || !t.is_ascii() {
                    return Err(KeyError::Malformed(path.to_owned()));
                }
                for (i, b) in seed.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
                        .map_err(|_| KeyError::Malformed(path.to_owned()))?;
                }
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(path).map_err(io)?;
                writeln!(file, "{}", hex(&seed)).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self::from_seed(seed))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public key.
    #[must_use]
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `record` (`SIGNING_CONTEXT ‖ canonical bytes`) and puts the signature in it.
    pub fn sign(&self, record: &mut MinuteRecord) {
        let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        if let Ok(message) = record.signing_message(&mut buf) {
            record.signature = Some(RecordSignature(self.0.sign(message).to_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_reads_back_and_a_bad_file_is_named() {
        let dir = std::env::temp_dir().join(format!("gateway-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("device.key");
        let made = DeviceKey::load_or_create(&path).expect("made");
        let read = DeviceKey::load_or_create(&path).expect("read");
        assert_eq!(made.public(), read.public());
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(
            !format!("{read:?}").contains(text.trim()),
            "no secret in Debug"
        );
        std::fs::write(&path, "xyz\n").expect("write");
        assert!(matches!(
            DeviceKey::load_or_create(&path),
            Err(KeyError::Malformed(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
