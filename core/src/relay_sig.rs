//! Relay signatures as the node sees them: whether a reading on the chain is signed by its
//! relay, and whether a record just read from a relay is fit to mine.
//!
//! The rule itself is the chain's (`gridledger_chain::registry`, `docs/book/src/FORMAT.md`
//! section 12): a registered relay's record on the chain always carries a valid signature by
//! the registered key. This module names what that means for one record, for the API, the
//! export and the dashboard, and checks reads before they are mined, so that a relay whose
//! signatures fail is reported at once instead of its records being refused by every peer.

use relay_core::MinuteRecord;

use gridledger_chain::registry::Registry;
use gridledger_chain::signature;

/// Who vouches for a reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The relay is in the network's registry for the record's minute: the record carries
    /// a signature by the registered key (a chain rule, so every such record on the chain
    /// does).
    Relay,
    /// The record carries a signature, but the registry names no key for its relay then:
    /// nothing the network agreed on says whose key it is.
    Unregistered,
    /// No signature: the reading rests on the miner's word and the witnesses'.
    Unsigned,
}

impl Signer {
    /// Of a record, given the network's registry.
    #[must_use]
    pub fn of(record: &MinuteRecord, registry: &Registry) -> Self {
        match (
            registry.key_at(record.relay, record.minute),
            &record.signature,
        ) {
            // The chain's rule checked the signature when the block was taken. (A record of a
            // relay registered only later, from a past minute, has none: it stays unsigned.)
            (Some(_), Some(_)) => Signer::Relay,
            (None, Some(_)) => Signer::Unregistered,
            (_, None) => Signer::Unsigned,
        }
    }

    /// As the API and the export write it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Signer::Relay => "relay",
            Signer::Unregistered => "unregistered",
            Signer::Unsigned => "unsigned",
        }
    }
}

/// Why a record read from a relay is not mined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadSignatureError {
    /// The registry names a key for the relay, and the record read is unsigned.
    #[error(
        "relay {relay} is in the relay registry, but its record of {minute} is unsigned{served}; not mined (every node would refuse it)"
    )]
    Unsigned {
        /// Relay id.
        relay: u32,
        /// The record's minute.
        minute: relay_core::Minute,
        /// What the relay serves as its key, said for the operator.
        served: String,
    },
    /// The signature does not verify under the key it must verify under.
    #[error(
        "the signature of relay {relay}'s record of {minute} does not verify under {whose} key {key}{served}; not mined"
    )]
    Invalid {
        /// Relay id.
        relay: u32,
        /// The record's minute.
        minute: relay_core::Minute,
        /// "its registered" or "the relay's own served".
        whose: &'static str,
        /// The key tried, hex.
        key: String,
        /// What the relay serves as its key, when it differs from the one tried.
        served: String,
    },
}

/// Checks a record just read from a relay that serves `served` as its public key: against
/// the registry's key when the relay is registered for the record's minute, against the
/// served key otherwise (a relay that signs but is not registered yet still gets its
/// signatures checked, so that a broken signer is found before anyone relies on it).
pub fn check_read(
    record: &MinuteRecord,
    served: Option<&[u8; 32]>,
    registry: &Registry,
) -> Result<Signer, ReadSignatureError> {
    let relay = record.relay.0;
    let minute = record.minute;
    let registered = registry.key_at(record.relay, minute);
    let served_note = |against: Option<&[u8; 32]>| match served {
        None => " (the relay serves no public key)".to_owned(),
        Some(k) if Some(k) != against => {
            format!(" (the relay serves key {}, not that one)", hex::encode(k))
        }
        Some(_) => String::new(),
    };
    let Some(key) = registered.or(served) else {
        return Ok(Signer::of(record, registry));
    };
    let Some(sig) = &record.signature else {
        if registered.is_some() {
            return Err(ReadSignatureError::Unsigned {
                relay,
                minute,
                served: served_note(registered),
            });
        }
        return Ok(Signer::Unsigned);
    };
    let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
    let ok = record
        .signing_message(&mut buf)
        .is_ok_and(|m| signature::verify(key, m, &sig.0).is_ok());
    if ok {
        return Ok(Signer::of(record, registry));
    }
    Err(ReadSignatureError::Invalid {
        relay,
        minute,
        whose: if registered.is_some() {
            "its registered"
        } else {
            "the relay's own served"
        },
        key: hex::encode(key),
        served: served_note(Some(key)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use relay_core::signal::{Profile, SignalModel};
    use relay_core::{Minute, RecordFlags, RecordSignature, RelayId};

    use gridledger_chain::registry::Entry;

    fn record() -> MinuteRecord {
        SignalModel::new(1, Profile::Realistic).record(
            RelayId(4),
            Minute(29_943_000),
            6,
            RecordFlags::CLOCK_SET,
        )
    }

    fn sign(mut r: MinuteRecord, k: &SigningKey) -> MinuteRecord {
        let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        let m = r.signing_message(&mut buf).expect("fits");
        r.signature = Some(RecordSignature(k.sign(m).to_bytes()));
        r
    }

    #[test]
    fn reads_are_checked_against_the_registry_then_the_served_key() {
        let relay = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let pk = relay.verifying_key().to_bytes();
        let registry = Registry::new([Entry {
            relay: RelayId(4),
            from: Minute(0),
            key: pk,
        }])
        .expect("valid");
        let empty = Registry::default();
        let good = sign(record(), &relay);
        assert_eq!(check_read(&good, Some(&pk), &registry), Ok(Signer::Relay));
        assert_eq!(
            check_read(&good, Some(&pk), &empty),
            Ok(Signer::Unregistered)
        );
        assert_eq!(check_read(&record(), None, &empty), Ok(Signer::Unsigned));
        assert!(matches!(
            check_read(&record(), None, &registry),
            Err(ReadSignatureError::Unsigned { .. })
        ));
        // Signed by another key: refused against the registry, and against the served key
        // when unregistered.
        let forged = sign(record(), &other);
        assert!(matches!(
            check_read(&forged, Some(&pk), &registry),
            Err(ReadSignatureError::Invalid {
                whose: "its registered",
                ..
            })
        ));
        assert!(matches!(
            check_read(&forged, Some(&pk), &empty),
            Err(ReadSignatureError::Invalid { .. })
        ));
        // A relay serving a key other than the registered one is named in the error.
        let e = check_read(&forged, Some(&other.verifying_key().to_bytes()), &registry)
            .expect_err("refused");
        assert!(e.to_string().contains("serves key"), "{e}");
    }
}
