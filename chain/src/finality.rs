//! Finality: the members of a network (the keys of its allow-list) vote on checkpoints of
//! the chain, and a checkpoint that a quorum has voted for in two rounds is **final**: no
//! node reorganises below it, whatever the work of another chain. `docs/book/src/FORMAT.md`
//! section 11 is the contract; this module is its rules, with no I/O.
//!
//! The rounds are Casper FFG's (Buterin and Griffith, 2017) with two epochs per height: a
//! checkpoint of the chain at height `h` is the tlog checkpoint of its first `h + 1` block
//! ids ([`crate::tlog`]), and
//! - a **prevote** is the link `source → (2h, checkpoint)`, `source` being the highest
//!   checkpoint the voter knows to be justified;
//! - a **commit** is the link `(2h, checkpoint) → (2h + 1, checkpoint)`: its signed text is
//!   the bare tlog checkpoint, so a quorum of commits is a C2SP checkpoint note that any note
//!   verifier checks with the members' keys;
//! - a checkpoint is *justified* at `2h` by a quorum of prevotes from justified sources, and
//!   *final* once justified and committed by a quorum.
//!
//! Two votes of one member are an **offence** ([`offence`]) if they target the same epoch
//! with different checkpoints (a double vote) or one's span strictly contains the other's (a
//! surround vote). An honest member never commits one ([`OwnVotes`]), and two conflicting
//! final checkpoints need offences by more than a third of the members (FORMAT.md gives the
//! argument), each shown by the two signed votes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;

use crate::block::Height;
use crate::merkle::Hash;
use crate::note::{self, NoteError, NoteSignature, Verifier};

/// The first line of a prevote's text: a prevote is not a tlog checkpoint.
pub const PREVOTE_TAG: &str = "gridledger-prevote/v1";

/// The origin line of a network's checkpoints: `gridledger/` and the network name, with
/// `%`, `+` and whitespace written as `%XX` (UTF-8 bytes, upper-case hex) so that it is a
/// valid key name too.
#[must_use]
pub fn origin(network: &str) -> String {
    let mut out = String::from("gridledger/");
    for c in network.chars() {
        if c == '%' || c == '+' || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A member's key name: the origin, `/`, and the first 8 bytes of its key in hex.
#[must_use]
pub fn member_name(origin: &str, key: &[u8; 32]) -> String {
    format!("{origin}/{}", hex::encode(&key[..8]))
}

/// The chain's first `size` block ids as a tlog checkpoint: `size` is the height of its last
/// block plus one, `root` the RFC 6962 root over the ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checkpoint {
    /// Blocks covered (height of the last + 1); at least 1 (the genesis block).
    pub size: u64,
    /// The tree's root.
    pub root: Hash,
}

impl Checkpoint {
    /// The height of its last block.
    #[must_use]
    pub fn height(&self) -> Height {
        u32::try_from(self.size.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// The tlog checkpoint text: origin, size, base64 root, each ending in a newline. A
    /// commit signs exactly this.
    #[must_use]
    pub fn body(&self, origin: &str) -> String {
        format!("{origin}\n{}\n{}\n", self.size, B64.encode(self.root))
    }

    /// Parses a checkpoint text of `origin` (no extension lines).
    pub fn parse_body(text: &str, origin: &str) -> Result<Self, FinalityError> {
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        let (Some(o), Some(size), Some(root), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(FinalityError::Malformed("a checkpoint has three lines"));
        };
        if o != origin {
            return Err(FinalityError::OtherOrigin(o.to_owned()));
        }
        Ok(Checkpoint {
            size: parse_size(size)?,
            root: parse_root(root)?,
        })
    }
}

fn parse_size(s: &str) -> Result<u64, FinalityError> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(FinalityError::Malformed(
            "a size is a decimal without leading zeros",
        ));
    }
    s.parse()
        .map_err(|_| FinalityError::Malformed("a size is a decimal without leading zeros"))
}

fn parse_root(s: &str) -> Result<Hash, FinalityError> {
    let raw = B64
        .decode(s)
        .map_err(|_| FinalityError::Malformed("a root is base64 of 32 bytes"))?;
    raw.try_into()
        .map_err(|_| FinalityError::Malformed("a root is base64 of 32 bytes"))
}

/// An epoch: `2h` for a prevote's target at height `h`, `2h + 1` for a commit's.
pub type Epoch = u64;

/// The prevote epoch of a checkpoint.
#[must_use]
pub fn epoch_of(c: &Checkpoint) -> Epoch {
    2 * c.size.saturating_sub(1)
}

/// The size of the checkpoint of epoch `e`.
#[must_use]
pub fn size_of_epoch(e: Epoch) -> u64 {
    e / 2 + 1
}

/// A justified checkpoint as a source: its epoch and root (its size follows from the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    /// The epoch at which it is justified.
    pub epoch: Epoch,
    /// Its root.
    pub root: Hash,
}

impl Source {
    /// The checkpoint.
    #[must_use]
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            size: size_of_epoch(self.epoch),
            root: self.root,
        }
    }

    /// The genesis checkpoint of a chain whose genesis block has root `root` (a tree of one
    /// leaf): justified and final by definition, at epoch 0.
    #[must_use]
    pub fn genesis(root: Hash) -> Self {
        Source { epoch: 0, root }
    }
}

/// What a vote says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `source → (2h, target)`.
    Prevote(Source),
    /// `(2h, target) → (2h + 1, target)`.
    Commit,
}

/// A member's signed vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vote {
    /// The member's key.
    pub member: [u8; 32],
    /// Prevote or commit.
    pub kind: Kind,
    /// The checkpoint voted for.
    pub target: Checkpoint,
    /// The Ed25519 signature of [`Vote::text`].
    pub sig: [u8; 64],
}

/// Why a vote or a checkpoint is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FinalityError {
    /// The bytes are not a vote.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A checkpoint of another network.
    #[error("checkpoint of another network ({0})")]
    OtherOrigin(String),
    /// The voter is not a member.
    #[error("the key is not a member (not on the allow-list)")]
    NotMember,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// A prevote whose source is not below its target, or a checkpoint of no block.
    #[error("the vote links nothing: {0}")]
    Invalid(&'static str),
    /// A note is malformed or does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A checkpoint note carries fewer member signatures than the quorum.
    #[error("{got} member signatures, the quorum is {quorum}")]
    NoQuorum {
        /// Distinct members whose signatures verified.
        got: usize,
        /// The quorum.
        quorum: usize,
    },
}

/// Bytes of a commit on the wire.
pub const COMMIT_LEN: usize = 1 + 4 + 8 + 32 + 64;
/// Bytes of a prevote on the wire.
pub const PREVOTE_LEN: usize = COMMIT_LEN + 8 + 32;

const KIND_PREVOTE: u8 = 1;
const KIND_COMMIT: u8 = 2;

impl Vote {
    /// The epochs it links: (source, target).
    #[must_use]
    pub fn link(&self) -> (Epoch, Epoch) {
        let t = epoch_of(&self.target);
        match self.kind {
            Kind::Prevote(s) => (s.epoch, t),
            Kind::Commit => (t, t + 1),
        }
    }

    /// The text it signs: for a commit the tlog checkpoint ([`Checkpoint::body`]); for a
    /// prevote [`PREVOTE_TAG`], the target's checkpoint lines, then the source's epoch,
    /// size and root.
    #[must_use]
    pub fn text(&self, origin: &str) -> String {
        match self.kind {
            Kind::Commit => self.target.body(origin),
            Kind::Prevote(s) => format!(
                "{PREVOTE_TAG}\n{}{}\n{}\n{}\n",
                self.target.body(origin),
                s.epoch,
                size_of_epoch(s.epoch),
                B64.encode(s.root)
            ),
        }
    }

    /// A vote signed by `key`. `None` if it links nothing (a prevote whose source epoch is
    /// not below its target's).
    #[must_use]
    pub fn sign(kind: Kind, target: Checkpoint, key: &SigningKey, origin: &str) -> Option<Self> {
        let mut v = Vote {
            member: key.verifying_key().to_bytes(),
            kind,
            target,
            sig: [0; 64],
        };
        v.well_formed().ok()?;
        let s = note::sign(&v.text(origin), &member_name(origin, &v.member), key);
        v.sig = s.sig.try_into().ok()?;
        Some(v)
    }

    /// The rules a vote must meet before its signature is checked: a target of at least one
    /// block, a prevote's source epoch below its target's.
    pub fn well_formed(&self) -> Result<(), FinalityError> {
        if self.target.size == 0 || self.target.size > u64::from(u32::MAX) + 1 {
            return Err(FinalityError::Invalid("a target covers 1 to 2^32 blocks"));
        }
        if let Kind::Prevote(s) = self.kind {
            if s.epoch >= epoch_of(&self.target) {
                return Err(FinalityError::Invalid("the source is not below the target"));
            }
        }
        Ok(())
    }

    /// The vote as a note signature line (the member's name and key ID).
    #[must_use]
    pub fn note_signature(&self, origin: &str) -> NoteSignature {
        let name = member_name(origin, &self.member);
        NoteSignature {
            id: note::key_id(&name, &self.member),
            name,
            sig: self.sig.to_vec(),
        }
    }

    /// The vote as a signed note (its text and its one signature).
    #[must_use]
    pub fn to_note(&self, origin: &str) -> String {
        let mut out = self.text(origin);
        out.push('\n');
        out.push_str(&self.note_signature(origin).line());
        out.push('\n');
        out
    }

    /// The wire form: kind (1), the member's key ID (4, big-endian), target size (8),
    /// target root (32), for a prevote source epoch (8) and root (32), signature (64).
    #[must_use]
    pub fn to_bytes(&self, origin: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(PREVOTE_LEN);
        out.push(match self.kind {
            Kind::Prevote(_) => KIND_PREVOTE,
            Kind::Commit => KIND_COMMIT,
        });
        let id = note::key_id(&member_name(origin, &self.member), &self.member);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&self.target.size.to_be_bytes());
        out.extend_from_slice(&self.target.root);
        if let Kind::Prevote(s) = self.kind {
            out.extend_from_slice(&s.epoch.to_be_bytes());
            out.extend_from_slice(&s.root);
        }
        out.extend_from_slice(&self.sig);
        out
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], FinalityError> {
    if b.len() < n {
        return Err(FinalityError::Malformed("a vote is cut short"));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn array<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], FinalityError> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(b, N)?);
    Ok(a)
}

/// The network's members: their keys, note verifiers and the quorum.
#[derive(Clone, Debug)]
pub struct Members {
    origin: String,
    verifiers: Vec<Verifier>,
    quorum: usize,
    /// Votes whose signatures verified, shared by the views that hold this cache
    /// ([`Members::with_verified`]); `None`: every vote is checked.
    verified: Option<Verified>,
}

/// Votes known to carry a good signature: the SHA-256 of member, signature and signed text
/// of each. Many views of the same members in one process (a simulator's nodes) check a
/// vote once: the same inputs give the same answer. Only good signatures are kept, so a
/// bad one is checked every time it comes.
#[derive(Clone, Debug, Default)]
pub struct Verified(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>);

impl Verified {
    fn key(v: &Vote, origin: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(v.member);
        h.update(v.sig);
        h.update(v.text(origin).as_bytes());
        h.finalize().into()
    }

    fn holds(&self, k: &[u8; 32]) -> bool {
        self.0.lock().map(|s| s.contains(k)).unwrap_or(false)
    }

    fn keep(&self, keys: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut s) = self.0.lock() {
            s.extend(keys);
        }
    }
}

/// The default quorum of `n` members: `⌊2n/3⌋ + 1`.
#[must_use]
pub fn default_quorum(n: usize) -> usize {
    2 * n / 3 + 1
}

impl Members {
    /// The members `keys` (each once) of the network whose checkpoints have `origin`, with a
    /// quorum of `quorum` (default [`default_quorum`]). A quorum of half the members or
    /// fewer is refused: two disjoint quorums could then finalise conflicting chains with
    /// no member breaking a rule.
    pub fn new(origin: &str, keys: &[[u8; 32]], quorum: Option<usize>) -> Result<Self, String> {
        let mut unique: Vec<[u8; 32]> = Vec::new();
        for k in keys {
            if !unique.contains(k) {
                unique.push(*k);
            }
        }
        let n = unique.len();
        if n == 0 {
            return Err("finality needs at least one member key on the allow-list".into());
        }
        let quorum = quorum.unwrap_or_else(|| default_quorum(n));
        if quorum * 2 <= n || quorum > n {
            return Err(format!(
                "a quorum of {quorum} of {n} members is not allowed: more than half ({}) and at most {n}; the default is {}",
                n / 2 + 1,
                default_quorum(n)
            ));
        }
        let verifiers = unique
            .iter()
            .map(|k| Verifier::new(&member_name(origin, k), *k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Members {
            origin: origin.to_owned(),
            verifiers,
            quorum,
            verified: None,
        })
    }

    /// The checkpoints' origin line.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many votes make a quorum.
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// How many members there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.verifiers.len()
    }

    /// Never true: a network with finality has a member.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.verifiers.is_empty()
    }

    /// The members' note verifiers (Go's verifier keys: [`Verifier::to_vkey`]).
    #[must_use]
    pub fn verifiers(&self) -> &[Verifier] {
        &self.verifiers
    }

    /// True if `key` is a member's.
    #[must_use]
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.verifiers.iter().any(|v| v.key == *key)
    }

    /// Decodes a vote's wire form (the member found by its key ID); the signature is not
    /// checked here ([`Self::check`]). Returns the vote and the bytes it took.
    pub fn decode(&self, bytes: &[u8]) -> Result<(Vote, usize), FinalityError> {
        let mut b = bytes;
        let kind = array::<1>(&mut b)?[0];
        let id = u32::from_be_bytes(array(&mut b)?);
        let size = u64::from_be_bytes(array(&mut b)?);
        let root = array::<32>(&mut b)?;
        let kind = match kind {
            KIND_PREVOTE => Kind::Prevote(Source {
                epoch: u64::from_be_bytes(array(&mut b)?),
                root: array(&mut b)?,
            }),
            KIND_COMMIT => Kind::Commit,
            _ => return Err(FinalityError::Malformed("unknown vote kind")),
        };
        let sig = array::<64>(&mut b)?;
        let used = bytes.len() - b.len();
        // A key ID two members share (one ground for it) is tried as either.
        let mut found = None;
        for v in self.verifiers.iter().filter(|v| v.id == id) {
            let vote = Vote {
                member: v.key,
                kind,
                target: Checkpoint { size, root },
                sig,
            };
            if found.is_none() || self.check(&vote).is_ok() {
                found = Some(vote);
            }
        }
        found.map(|v| (v, used)).ok_or(FinalityError::NotMember)
    }

    /// Checks a vote: well formed, by a member, its signature good.
    pub fn check(&self, vote: &Vote) -> Result<(), FinalityError> {
        vote.well_formed()?;
        if !self.contains(&vote.member) {
            return Err(FinalityError::NotMember);
        }
        let key = self
            .verified
            .as_ref()
            .map(|c| (c, Verified::key(vote, &self.origin)));
        if key.as_ref().is_some_and(|(c, k)| c.holds(k)) {
            return Ok(());
        }
        crate::signature::verify(&vote.member, vote.text(&self.origin).as_bytes(), &vote.sig)
            .map_err(|_| FinalityError::BadSignature)?;
        if let Some((c, k)) = key {
            c.keep([k]);
        }
        Ok(())
    }

    /// Checks many votes at once (one batch of signatures); `Err` names the position of the
    /// first bad one.
    pub fn check_all(&self, votes: &[Vote]) -> Result<(), usize> {
        let mut batch = crate::signature::Batch::new();
        let mut fresh = Vec::new();
        for (i, v) in votes.iter().enumerate() {
            if v.well_formed().is_err() || !self.contains(&v.member) {
                return Err(i);
            }
            if let Some(c) = &self.verified {
                let k = Verified::key(v, &self.origin);
                if c.holds(&k) {
                    continue;
                }
                fresh.push(k);
            }
            batch
                .push_message(i, &v.member, v.text(&self.origin).as_bytes(), &v.sig)
                .map_err(|_| i)?;
        }
        batch.verify()?;
        if let Some(c) = &self.verified {
            c.keep(fresh);
        }
        Ok(())
    }

    /// These members, sharing `cache` of votes whose signatures verified with every other
    /// view given it: a simulator's thousand nodes check each vote once.
    #[must_use]
    pub fn with_verified(mut self, cache: Verified) -> Self {
        self.verified = Some(cache);
        self
    }

    /// A checkpoint note (a commit text with member signatures): its checkpoint and the
    /// members whose commits it carries, if they are a quorum. Signatures by keys that are
    /// not members are ignored; one by a member that fails refuses the note.
    pub fn open_checkpoint(&self, bytes: &[u8]) -> Result<(Checkpoint, Vec<Vote>), FinalityError> {
        let (c, votes) = self.parse_checkpoint(bytes)?;
        if let Err(i) = self.check_all(&votes) {
            let name = votes
                .get(i)
                .map(|v| member_name(&self.origin, &v.member))
                .unwrap_or_default();
            return Err(FinalityError::Note(NoteError::BadSignature(name)));
        }
        Ok((c, votes))
    }

    /// [`Self::open_checkpoint`] without checking the signatures: the checkpoint and each
    /// member's first signature as its commit, if they are a quorum. For a caller that
    /// checks many notes' signatures in one batch ([`Self::check_all`]).
    pub fn parse_checkpoint(&self, bytes: &[u8]) -> Result<(Checkpoint, Vec<Vote>), FinalityError> {
        let n = note::Note::parse(bytes)?;
        let c = Checkpoint::parse_body(&n.text, &self.origin)?;
        let mut votes: Vec<Vote> = Vec::new();
        for s in &n.sigs {
            let Some(v) = self
                .verifiers
                .iter()
                .find(|v| v.id == s.id && v.name == s.name)
            else {
                continue;
            };
            let sig: [u8; 64] = s
                .sig
                .as_slice()
                .try_into()
                .map_err(|_| FinalityError::Note(NoteError::BadSignature(v.name.clone())))?;
            let vote = Vote {
                member: v.key,
                kind: Kind::Commit,
                target: c,
                sig,
            };
            // A second signature by a member must verify too (the spec refuses the note
            // otherwise), but counts once.
            if votes.iter().any(|w| w.member == v.key) {
                self.check(&vote)?;
                continue;
            }
            votes.push(vote);
        }
        if votes.is_empty() {
            return Err(FinalityError::Note(NoteError::Unverified));
        }
        if votes.len() < self.quorum {
            return Err(FinalityError::NoQuorum {
                got: votes.len(),
                quorum: self.quorum,
            });
        }
        Ok((c, votes))
    }

    /// The checkpoint note of `commits` (all commits of one checkpoint): its text and each
    /// member's signature line, in the order of the members.
    #[must_use]
    pub fn checkpoint_note(&self, target: &Checkpoint, commits: &[Vote]) -> String {
        let mut out = target.body(&self.origin);
        out.push('\n');
        for v in &self.verifiers {
            if let Some(c) = commits
                .iter()
                .find(|c| c.member == v.key && c.kind == Kind::Commit && c.target == *target)
            {
                out.push_str(&c.note_signature(&self.origin).line());
                out.push('\n');
            }
        }
        out
    }
}

/// Two votes of one member that no honest member casts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// Both target the same epoch, with different checkpoints.
    DoubleVote,
    /// The first's span strictly contains the second's, or the other way round.
    Surround,
}

/// The offence two votes of one member commit together, if any.
#[must_use]
pub fn offence(a: &Vote, b: &Vote) -> Option<Offence> {
    if a.member != b.member {
        return None;
    }
    let ((s1, t1), (s2, t2)) = (a.link(), b.link());
    if t1 == t2 && a.target != b.target {
        return Some(Offence::DoubleVote);
    }
    if (s1 < s2 && t2 < t1) || (s2 < s1 && t1 < t2) {
        return Some(Offence::Surround);
    }
    None
}

/// What a member has voted, as it needs to remember to never commit an offence: its last
/// prevote's link and its last commit's target epoch. Kept durably before a vote is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnVotes {
    /// The last prevote: (source epoch, target epoch).
    pub prevote: Option<(Epoch, Epoch)>,
    /// The last commit's target epoch (`2h + 1`).
    pub commit: Option<Epoch>,
}

impl OwnVotes {
    /// True if a prevote `source → target` may follow: targets rise, sources never fall,
    /// and no source below a height already committed. (With these, no two of a member's
    /// votes are an [`Offence`]; FORMAT.md section 11 has the argument.)
    #[must_use]
    pub fn may_prevote(&self, source: Epoch, target: Epoch) -> bool {
        if source >= target || target % 2 != 0 {
            return false;
        }
        if let Some((s, t)) = self.prevote {
            if target <= t || source < s {
                return false;
            }
        }
        self.commit.is_none_or(|c| source + 1 >= c && target > c)
    }

    /// True if a commit of the checkpoint at prevote epoch `epoch` (`2h`) may follow: commits
    /// rise, and no prevote so far targets above it (it would surround the commit).
    #[must_use]
    pub fn may_commit(&self, epoch: Epoch) -> bool {
        if epoch % 2 != 0 {
            return false;
        }
        self.commit.is_none_or(|c| epoch + 1 > c) && self.prevote.is_none_or(|(_, t)| t <= epoch)
    }

    /// Notes a prevote cast.
    pub fn prevoted(&mut self, source: Epoch, target: Epoch) {
        self.prevote = Some((source, target));
    }

    /// Notes a commit cast of the checkpoint at prevote epoch `epoch`.
    pub fn committed(&mut self, epoch: Epoch) {
        self.commit = Some(epoch + 1);
    }

    /// 24 bytes: a presence byte and two epochs for the prevote, the same for the commit
    /// (zeros where absent).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26);
        match self.prevote {
            Some((s, t)) => {
                out.push(1);
                out.extend_from_slice(&s.to_be_bytes());
                out.extend_from_slice(&t.to_be_bytes());
            }
            None => out.extend_from_slice(&[0; 17]),
        }
        match self.commit {
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&c.to_be_bytes());
            }
            None => out.extend_from_slice(&[0; 9]),
        }
        out
    }

    /// Parses [`Self::to_bytes`].
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 26 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| -> Option<u64> {
            Some(u64::from_be_bytes(b.get(r)?.try_into().ok()?))
        };
        Some(OwnVotes {
            prevote: (b[0] == 1).then(|| Some((u(1..9)?, u(9..17)?))).flatten(),
            commit: (b[17] == 1).then(|| u(18..26)).flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i; 32])
    }

    fn cp(size: u64, r: u8) -> Checkpoint {
        Checkpoint {
            size,
            root: [r; 32],
        }
    }

    fn members(n: u8) -> (Vec<SigningKey>, Members) {
        let keys: Vec<SigningKey> = (1..=n).map(key).collect();
        let pubs: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
        let m = Members::new(&origin("net"), &pubs, None).expect("members");
        (keys, m)
    }

    /// Views sharing a cache of verified votes answer as views without one: a good vote is
    /// taken (and checked once), a vote with its signature flipped is refused however often
    /// its good twin was taken.
    #[test]
    fn a_shared_cache_of_verified_votes_changes_no_answer() {
        let (keys, m) = members(4);
        let cache = Verified::default();
        let a = m.clone().with_verified(cache.clone());
        let b = m.clone().with_verified(cache.clone());
        let good = Vote::sign(Kind::Commit, cp(5, 1), &keys[0], m.origin()).expect("signs");
        let mut bad = good;
        bad.sig[10] ^= 1;
        for view in [&m, &a, &b, &a] {
            assert_eq!(view.check(&good), Ok(()));
            assert_eq!(view.check_all(&[good]), Ok(()));
            assert_eq!(view.check(&bad), Err(FinalityError::BadSignature));
            assert_eq!(view.check_all(&[good, bad]), Err(1));
        }
        assert_eq!(cache.0.lock().map(|s| s.len()).unwrap_or(0), 1);
    }

    #[test]
    fn origins_and_names_are_valid_note_names() {
        assert_eq!(origin("gridledger-demo"), "gridledger/gridledger-demo");
        assert_eq!(origin("a b+c%"), "gridledger/a%20b%2Bc%25");
        assert!(note::valid_name(&member_name(&origin("x y"), &[7; 32])));
    }

    #[test]
    fn quorums() {
        assert_eq!(default_quorum(4), 3);
        assert_eq!(default_quorum(3), 3);
        assert_eq!(default_quorum(16), 11);
        assert_eq!(default_quorum(64), 43);
        assert_eq!(default_quorum(1), 1);
        let k = [[1u8; 32], [2; 32], [3; 32], [4; 32]];
        assert!(
            Members::new("o", &k, Some(2)).is_err(),
            "half is not a quorum"
        );
        assert!(Members::new("o", &k, Some(5)).is_err());
        assert!(Members::new("o", &k, Some(3)).is_ok());
        assert!(Members::new("o", &[], None).is_err());
    }

    #[test]
    fn votes_round_trip_and_verify_and_a_flipped_byte_fails() {
        let (keys, m) = members(4);
        let o = m.origin().to_owned();
        let source = Source {
            epoch: 4,
            root: [5; 32],
        };
        for kind in [Kind::Commit, Kind::Prevote(source)] {
            let v = Vote::sign(kind, cp(7, 9), &keys[2], &o).expect("links");
            assert_eq!(m.check(&v), Ok(()));
            let bytes = v.to_bytes(&o);
            assert_eq!(
                bytes.len(),
                if kind == Kind::Commit {
                    COMMIT_LEN
                } else {
                    PREVOTE_LEN
                }
            );
            let (back, used) = m.decode(&bytes).expect("decodes");
            assert_eq!((back, used), (v, bytes.len()));
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x10;
                let ok = m
                    .decode(&bad)
                    .ok()
                    .is_some_and(|(v2, _)| m.check(&v2).is_ok());
                assert!(!ok, "a flipped byte {i} still verified");
            }
            assert!(m.decode(&bytes[..bytes.len() - 1]).is_err());
        }
        // A prevote whose source is not below its target links nothing.
        let bad = Kind::Prevote(Source {
            epoch: 12,
            root: [0; 32],
        });
        assert!(Vote::sign(bad, cp(7, 9), &keys[0], &o).is_none());
        // A stranger's vote is no member's.
        let stranger = Vote::sign(Kind::Commit, cp(7, 9), &key(99), &o).expect("links");
        assert_eq!(m.check(&stranger), Err(FinalityError::NotMember));
        assert_eq!(
            m.decode(&stranger.to_bytes(&o)).err(),
            Some(FinalityError::NotMember)
        );
    }

    #[test]
    fn a_quorum_of_commits_is_a_checkpoint_note_and_less_is_not() {
        let (keys, m) = members(4);
        let o = m.origin().to_owned();
        let target = cp(12, 3);
        let commits: Vec<Vote> = keys
            .iter()
            .take(3)
            .filter_map(|k| Vote::sign(Kind::Commit, target, k, &o))
            .collect();
        let note = m.checkpoint_note(&target, &commits);
        let (c, votes) = m.open_checkpoint(note.as_bytes()).expect("a quorum");
        assert_eq!(c, target);
        assert_eq!(votes.len(), 3);
        assert_eq!(m.check_all(&votes), Ok(()));
        let two = m.checkpoint_note(&target, &commits[..2]);
        assert_eq!(
            m.open_checkpoint(two.as_bytes()).err(),
            Some(FinalityError::NoQuorum { got: 2, quorum: 3 })
        );
        // A member's signature that fails refuses the note, however many others verify.
        let forged = note.replacen("\n12\n", "\n13\n", 1);
        assert!(m.open_checkpoint(forged.as_bytes()).is_err());
        // The same signer twice counts once.
        let mut twice = commits[..2].to_vec();
        twice.push(commits[0]);
        let mut text = target.body(&o);
        text.push('\n');
        for v in &twice {
            text.push_str(&v.note_signature(&o).line());
            text.push('\n');
        }
        assert!(matches!(
            m.open_checkpoint(text.as_bytes()),
            Err(FinalityError::NoQuorum { got: 2, .. })
        ));
    }

    #[test]
    fn offences_are_double_and_surround_votes() {
        let k = key(1);
        let o = origin("net");
        let pre = |s: u64, size: u64, r: u8| {
            Vote::sign(
                Kind::Prevote(Source {
                    epoch: s,
                    root: [0; 32],
                }),
                cp(size, r),
                &k,
                &o,
            )
            .expect("links")
        };
        let com = |size: u64, r: u8| Vote::sign(Kind::Commit, cp(size, r), &k, &o).expect("ok");
        // Same target epoch, another checkpoint.
        assert_eq!(
            offence(&pre(0, 5, 1), &pre(2, 5, 2)),
            Some(Offence::DoubleVote)
        );
        assert_eq!(offence(&com(5, 1), &com(5, 2)), Some(Offence::DoubleVote));
        assert_eq!(offence(&pre(0, 5, 1), &pre(0, 5, 1)), None);
        // A prevote from height 1 (epoch 2) to height 9 (epoch 18) surrounds the commit of
        // height 4 (8 -> 9).
        assert_eq!(offence(&pre(2, 10, 1), &com(5, 3)), Some(Offence::Surround));
        assert_eq!(offence(&com(5, 3), &pre(2, 10, 1)), Some(Offence::Surround));
        // From at or above height 4 it does not.
        assert_eq!(offence(&pre(8, 10, 1), &com(5, 3)), None);
        // Two prevotes, one inside the other.
        assert_eq!(
            offence(&pre(0, 10, 1), &pre(4, 6, 2)),
            Some(Offence::Surround)
        );
        // Other members never offend together.
        let other = Vote::sign(Kind::Commit, cp(5, 2), &key(2), &o).expect("ok");
        assert_eq!(offence(&com(5, 1), &other), None);
    }

    /// Whatever order an honest member meets prevote and commit chances in, following
    /// `OwnVotes` never gives two votes that offend.
    #[test]
    fn own_votes_never_offend() {
        let k = key(3);
        let o = origin("net");
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..200 {
            let mut own = OwnVotes::default();
            let mut cast: Vec<Vote> = Vec::new();
            let mut justified = 0u64; // the highest justified epoch known
            for _ in 0..40 {
                let h = next() % 30 + 1;
                let root = (next() % 3) as u8;
                if next() % 3 == 0 {
                    // Learn a justification somewhere at or below h.
                    justified = justified.max(2 * (next() % (h + 1)));
                }
                let (kind, ok) = if next() % 2 == 0 {
                    (
                        Kind::Prevote(Source {
                            epoch: justified,
                            root: [0; 32],
                        }),
                        own.may_prevote(justified, 2 * h),
                    )
                } else {
                    (Kind::Commit, own.may_commit(2 * h) && justified >= 2 * h)
                };
                if !ok {
                    continue;
                }
                let Some(v) = Vote::sign(kind, cp(h + 1, root), &k, &o) else {
                    continue;
                };
                match kind {
                    Kind::Prevote(s) => own.prevoted(s.epoch, 2 * h),
                    Kind::Commit => own.committed(2 * h),
                }
                for w in &cast {
                    assert_eq!(offence(w, &v), None, "{w:?} and {v:?}");
                }
                cast.push(v);
            }
            assert_eq!(OwnVotes::from_bytes(&own.to_bytes()), Some(own));
        }
    }
}
