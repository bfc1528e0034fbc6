//! What the chain said of a block given to it: the one word the intake (which acts on it)
//! and a ledger (the node's, or [`crate::memchain`] in memory, which say it) share, so that
//! neither imports the other.

/// What the chain said of a pushed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stored, and it changed the main chain (it extended it, or a reorg).
    Best,
    /// Stored on a side branch.
    Side,
    /// Held already.
    Known,
    /// Its parent is unknown here.
    UnknownParent,
    /// Refused by a rule (the runtime answers with it).
    Refused,
}

impl From<Verdict> for crate::pull::Outcome {
    /// What a pull makes of a block the chain took with this verdict.
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Best | Verdict::Side => Self::Stored,
            Verdict::Known => Self::Known,
            Verdict::UnknownParent => Self::UnknownParent,
            Verdict::Refused => Self::Refused,
        }
    }
}
