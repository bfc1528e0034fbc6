//! The relay registry: which key signs each relay's records, from which minute on.
//!
//! A network's registry is shared like its allow-list (a file every node is given), and it
//! is a consensus rule (`docs/book/src/FORMAT.md` section 12): a record of a relay the registry names
//! for the record's minute must carry a valid signature by the key named, or its block is
//! invalid. The key comes from the registry, never from the data checked: a miner who
//! invents a reading cannot also invent the key that vouches for it.
//!
//! A relay may have several entries: each holds from its `from` minute until the next
//! entry's, so a key is replaced without touching the records signed under the old one.
//! Before a relay's first entry its records are unregistered (valid unsigned), so a relay
//! joins the registry without making the history before it invalid.

use std::collections::BTreeMap;
use std::fmt;

use relay_core::{Minute, RelayId};

use super::signature;

/// One line of a registry: from `from` on, `relay` signs with `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The relay.
    pub relay: RelayId,
    /// The first minute the key signs.
    pub from: Minute,
    /// The relay's Ed25519 public key.
    pub key: [u8; 32],
}

/// Why a registry cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A line does not parse; the line number (from 1) and what is wrong.
    #[error("line {line}: {why}")]
    Syntax {
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A key is not a canonically encoded point of large order: nobody could be held to a
    /// signature under it (a small-order key verifies signatures anyone can make).
    #[error("relay {relay} from {from}: the key is not a canonical point of large order")]
    BadKey {
        /// The relay.
        relay: RelayId,
        /// The entry's first minute.
        from: Minute,
    },
    /// Two entries for one relay start at the same minute: which key holds is ambiguous.
    #[error("relay {relay} has two entries from {from}")]
    Duplicate {
        /// The relay.
        relay: RelayId,
        /// The minute both start at.
        from: Minute,
    },
}

/// The registry: for each relay, its keys by the minute each starts at.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Registry {
    relays: BTreeMap<RelayId, BTreeMap<Minute, [u8; 32]>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("relays", &self.relays.len())
            .field("entries", &self.len())
            .finish()
    }
}

impl Registry {
    /// A registry of `entries`, each key checked.
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> Result<Self, RegistryError> {
        let mut relays: BTreeMap<RelayId, BTreeMap<Minute, [u8; 32]>> = BTreeMap::new();
        for e in entries {
            signature::check_key(&e.key).map_err(|_| RegistryError::BadKey {
                relay: e.relay,
                from: e.from,
            })?;
            if relays
                .entry(e.relay)
                .or_default()
                .insert(e.from, e.key)
                .is_some()
            {
                return Err(RegistryError::Duplicate {
                    relay: e.relay,
                    from: e.from,
                });
            }
        }
        Ok(Registry { relays })
    }

    /// Parses a registry file: one entry a line, `RELAY_ID PUBLIC_KEY_HEX [FROM]`, where
    /// `FROM` is a minute as `YYYY-MM-DDTHH:MMZ` (UTC) or as whole minutes since 1970
    /// (default: minute 0, every record of the relay). Blank lines and text after `#` are
    /// skipped.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let mut entries = Vec::new();
        // A file saved by an editor that writes a byte-order mark reads the same.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, line) in text.lines().enumerate() {
            let syntax = |why: String| RegistryError::Syntax { line: n + 1, why };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(relay), Some(key)) = (fields.next(), fields.next()) else {
                return Err(syntax(
                    "expected RELAY_ID PUBLIC_KEY_HEX [FROM_MINUTE]".into(),
                ));
            };
            let relay = relay
                .parse::<u32>()
                .map_err(|_| syntax(format!("relay id {relay:?} is not a number 0 to 2^32-1")))?;
            let mut k = [0u8; 32];
            hex::decode_to_slice(key, &mut k)
                .map_err(|_| syntax(format!("{key:?} is not a public key (64 hex digits)")))?;
            let from = match fields.next() {
                None => Minute(0),
                Some(f) => Minute::parse(f).ok_or_else(|| {
                    syntax(format!(
                        "{f:?} is not a minute (YYYY-MM-DDTHH:MMZ, or minutes since 1970)"
                    ))
                })?,
            };
            if let Some(extra) = fields.next() {
                return Err(syntax(format!("unexpected {extra:?} after the minute")));
            }
            entries.push(Entry {
                relay: RelayId(relay),
                from,
                key: k,
            });
        }
        Self::new(entries)
    }

    /// The key that signs `relay`'s record of `minute`, if the relay is registered then.
    #[must_use]
    pub fn key_at(&self, relay: RelayId, minute: Minute) -> Option<&[u8; 32]> {
        self.relays
            .get(&relay)?
            .range(..=minute)
            .next_back()
            .map(|(_, k)| k)
    }

    /// Whether the registry names no relay.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// Entries in all.
    #[must_use]
    pub fn len(&self) -> usize {
        self.relays.values().map(BTreeMap::len).sum()
    }

    /// The registry as a file [`Registry::parse`] reads back: one entry a line, minutes as
    /// numbers.
    #[must_use]
    pub fn to_text(&self) -> String {
        self.entries()
            .map(|e| format!("{} {} {}\n", e.relay, hex::encode(e.key), e.from.0))
            .collect()
    }

    /// Every entry, by relay and then by first minute.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.relays.iter().flat_map(|(relay, keys)| {
            keys.iter().map(|(from, key)| Entry {
                relay: *relay,
                from: *from,
                key: *key,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> String {
        hex::encode(
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
        )
    }

    #[test]
    fn a_key_holds_from_its_minute_until_the_next() {
        let text = format!(
            "# relays of substation A\n7 {}\n7 {} 2026-12-07T08:00Z  # replaced\n\n9 {} 100\n",
            key(1),
            key(2),
            key(3)
        );
        let r = Registry::parse(&text).expect("parses");
        assert_eq!(r.len(), 3);
        let change = Minute::containing(1_796_630_400); // 2026-12-07T08:00Z
        assert_eq!(Minute::parse("2026-12-07T08:00Z"), Some(change));
        let k = |s: u8| SigningKey::from_bytes(&[s; 32]).verifying_key().to_bytes();
        assert_eq!(r.key_at(RelayId(7), Minute(0)), Some(&k(1)));
        assert_eq!(r.key_at(RelayId(7), Minute(change.0 - 1)), Some(&k(1)));
        assert_eq!(r.key_at(RelayId(7), change), Some(&k(2)));
        assert_eq!(
            r.key_at(RelayId(9), Minute(99)),
            None,
            "before its first entry"
        );
        assert_eq!(r.key_at(RelayId(9), Minute(100)), Some(&k(3)));
        assert_eq!(r.key_at(RelayId(8), Minute(100)), None, "never registered");
        assert_eq!(Registry::parse(&r.to_text()), Ok(r.clone()));
        // Windows line ends and a byte-order mark read the same.
        let crlf = format!("\u{feff}{}", text.replace('\n', "\r\n"));
        assert_eq!(Registry::parse(&crlf), Ok(r.clone()));
    }

    #[test]
    fn bad_lines_and_keys_are_named() {
        let bad = |t: &str| Registry::parse(t).expect_err("refused");
        assert!(matches!(bad("7"), RegistryError::Syntax { line: 1, .. }));
        assert!(matches!(
            bad("\nx abc"),
            RegistryError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            bad("7 abcd"),
            RegistryError::Syntax { line: 1, .. }
        ));
        let k = key(1);
        assert!(matches!(
            bad(&format!("7 {k} 2026-02-30T00:00Z")),
            RegistryError::Syntax { .. }
        ));
        assert!(matches!(
            bad(&format!("7 {k} 5 6")),
            RegistryError::Syntax { .. }
        ));
        assert_eq!(
            bad(&format!("7 {k} 5\n7 {k} 5")),
            RegistryError::Duplicate {
                relay: RelayId(7),
                from: Minute(5)
            }
        );
        // The identity point (small order) is no key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            bad(&format!("7 {}", hex::encode(identity))),
            RegistryError::BadKey { .. }
        ));
    }
}
