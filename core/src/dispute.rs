//! A dispute: a record on this node's main chain that differs from what this node read
//! itself from the relay, and the bytes the data dir keeps it as.

use relay_core::MinuteRecord;

/// A record on this node's main chain that differs from what this node read itself from the
/// relay for the same minute: someone mined words the relay did not say (or this node's path
/// to the relay was tampered with). Never dropped silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispute {
    /// Height of the block holding the chain's version.
    pub height: gridledger_chain::Height,
    /// That block's id.
    pub block: gridledger_chain::BlockId,
    /// The record on the chain.
    pub on_chain: MinuteRecord,
    /// What this node read from the relay.
    pub read: MinuteRecord,
    /// When this node found the difference, Unix milliseconds.
    pub found_ms: u64,
}

impl Dispute {
    /// The bytes it is kept as: height (u32 BE), block id (32), found_ms (u64 BE), the
    /// chain's record's length (u16 BE) and bytes, then this node's read's bytes.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let mut a = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        let mut b = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        let on_chain = self.on_chain.encode(&mut a).ok()?;
        let read = self.read.encode(&mut b).ok()?;
        let mut out = Vec::with_capacity(46 + on_chain.len() + read.len());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.block.0);
        out.extend_from_slice(&self.found_ms.to_be_bytes());
        out.extend_from_slice(&u16::try_from(on_chain.len()).ok()?.to_be_bytes());
        out.extend_from_slice(on_chain);
        out.extend_from_slice(read);
        Some(out)
    }

    /// A dispute from the bytes [`Dispute::to_bytes`] wrote; `None` for anything else (a
    /// damaged row is skipped, never a panic).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let height = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?);
        let block = gridledger_chain::BlockId(b.get(4..36)?.try_into().ok()?);
        let found_ms = u64::from_be_bytes(b.get(36..44)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(b.get(44..46)?.try_into().ok()?));
        let on_chain = MinuteRecord::decode(b.get(46..46 + len)?).ok()?;
        let read = MinuteRecord::decode(b.get(46 + len..)?).ok()?;
        Some(Dispute {
            height,
            block,
            on_chain,
            read,
            found_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::signal::{Profile, SignalModel};
    use relay_core::{Minute, RecordFlags, RelayId};

    fn dispute() -> Dispute {
        let model = SignalModel::new(7, Profile::Realistic);
        let read = model.record(RelayId(3), Minute(29_000_000), 6, RecordFlags(0));
        let on_chain = model.record(RelayId(3), Minute(29_000_000), 6, RecordFlags(1));
        Dispute {
            height: 41,
            block: gridledger_chain::BlockId([9; 32]),
            on_chain,
            read,
            found_ms: 1_796_000_000_000,
        }
    }

    #[test]
    fn a_dispute_round_trips_through_its_bytes() {
        let d = dispute();
        let bytes = d.to_bytes().expect("encodes");
        assert_eq!(Dispute::from_bytes(&bytes), Some(d));
    }

    #[test]
    fn damaged_bytes_are_none_never_a_panic() {
        let bytes = dispute().to_bytes().expect("encodes");
        for cut in 0..bytes.len() {
            let _ = Dispute::from_bytes(&bytes[..cut]);
        }
        assert_eq!(Dispute::from_bytes(&bytes[..45]), None);
        let mut long = bytes.clone();
        long[44] = 0xff;
        long[45] = 0xff;
        assert_eq!(Dispute::from_bytes(&long), None);
    }
}
