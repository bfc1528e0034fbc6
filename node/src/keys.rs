//! Miner keys: an ed25519 secret key in a file, as 64 hex digits and a newline.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error("key file {0} does not hold an ed25519 secret key (64 hex digits)")]
    Malformed(PathBuf),
    /// The file exists and overwriting was not asked for.
    #[error("key file {0} exists; refusing to overwrite a key (pass --force to replace it)")]
    Exists(PathBuf),
    /// A line of an allow-list is not a public key.
    #[error("allow-list {path} line {line}: not a public key (64 hex digits)")]
    AllowList {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// The system has no randomness to give.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// Reads a key file.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| KeyError::Malformed(path.to_owned()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A fresh key from the operating system's randomness.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key` to `path`, readable by its owner only, refusing to replace a file unless
/// `force`.
pub fn save(key: &SigningKey, path: &Path, force: bool) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(path.to_owned())
        } else {
            io(e)
        }
    })?;
    writeln!(file, "{}", hex::encode(key.to_bytes())).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The miner key at `path`, created (owner-readable only, its directory too if needed) if
/// the file does not exist yet.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    if path.exists() {
        return load(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let key = generate()?;
    save(&key, path, false)?;
    tracing::info!(
        file = %path.display(),
        public_key = %hex::encode(key.verifying_key().to_bytes()),
        "created a miner key"
    );
    Ok(key)
}

/// Reads an allow-list: miner public keys as hex, one per line; blank lines and lines
/// starting with `#` are skipped.
pub fn allow_list(path: &Path) -> Result<Vec<[u8; 32]>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut k = [0u8; 32];
        hex::decode_to_slice(line, &mut k).map_err(|_| KeyError::AllowList {
            path: path.to_owned(),
            line: n + 1,
        })?;
        keys.push(k);
    }
    Ok(keys)
}

/// `gridledger keygen`: a new key written to `out` (an existing file only with `force`);
/// returns the public key, hex, which is what an allow-list holds.
pub fn keygen(out: &Path, force: bool) -> Result<String, KeyError> {
    let key = generate()?;
    save(&key, out, force)?;
    Ok(hex::encode(key.verifying_key().to_bytes()))
}
