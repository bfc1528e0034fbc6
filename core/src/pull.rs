//! A pull from one peer, decided step by step: whether to pull at all, which blocks to ask
//! for and how many, what to fetch ahead, what each answer means (stored, a fork further
//! down, a refusal, a lie) and, at the end, whether the peer lied about its work.
//!
//! The runtime (`node/src/peers.rs`) does the I/O: it asks the peer's tip, fetches the
//! batches this names, has the ledger take them, and tells this what the ledger said. The
//! rules it carries out:
//! - a peer is pulled from if its chain has at least as much work as ours by its own
//!   account (a peer that does not say its work is judged by height), unless its tip is
//!   known already. Equal work is pulled too: its branch is stored on the side, so that
//!   its next block connects and wins, instead of two halves of a healed partition tying
//!   for ever;
//! - until a batch links to our chain, the pull asks from our height, then steps back 16,
//!   32, 64 … blocks (a fork below); a peer whose blocks from height 1 do not link shares
//!   nothing with us;
//! - once linked, it asks forward from where the last answer ended (an answer may stop
//!   short of the limit: the peer caps it by bytes) until the peer's height is passed, and
//!   the next [`PREFETCH`] batches are fetched while one is stored;
//! - a request that timed out is asked again for a quarter as many blocks, down to
//!   [`MIN_LIMIT`] (a slow link); any other failure ends the pull with its own error;
//! - a linked batch above our height that adds nothing is a lie (with one difficulty, a
//!   known branch that high would be our main chain);
//! - a peer that claimed more work than ours and, reachable, gave us nothing while our
//!   work stayed below its claim, lied about its chain.

use gridledger_chain::Height;

/// Fewest blocks asked per request, however slow the link.
pub const MIN_LIMIT: u32 = 16;

/// Batches fetched ahead of the one being stored.
pub const PREFETCH: usize = 2;

/// What a peer says of its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Its height.
    pub height: Height,
    /// Its chain's work, if it says.
    pub work: Option<u128>,
}

/// What the ledger made of one block of a batch, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (on the main chain or a side branch).
    Stored,
    /// Known already.
    Known,
    /// Its parent is unknown.
    UnknownParent,
    /// Refused for any other reason.
    Refused,
}

/// What to do after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ask for the next batch ([`Pull::request`]).
    More,
    /// The peer's height is passed, or it had nothing more: the pull ends well.
    Done,
    /// The batch did not link: ask again further down ([`Pull::request`]).
    Back,
    /// Its blocks from height 1 do not link: another network, or another genesis.
    NoCommonBlock,
    /// The block at this index of the batch was refused: the pull ends with its error.
    Refused(usize),
    /// The batch, asked for from this height above ours, added nothing: a lie.
    NoProgress(Height),
}

/// One pull from one peer.
#[derive(Clone, Debug)]
pub struct Pull {
    our_height: Height,
    our_work: u128,
    theirs: Claim,
    limit: u32,
    back: u32,
    from: Height,
    linked: bool,
    stored: u32,
}

impl Pull {
    /// The pull from a peer that says `theirs`, if one is wanted: our chain is at
    /// `our_height` with `our_work`, `known` says whether we hold the peer's tip, and
    /// `limit` is the most blocks a request may ask for.
    #[must_use]
    pub fn wanted(
        our_height: Height,
        our_work: u128,
        theirs: Claim,
        known: bool,
        limit: u32,
    ) -> Option<Pull> {
        let ahead = theirs
            .work
            .map_or(theirs.height >= our_height, |w| w >= our_work);
        (ahead && !known).then_some(Pull {
            our_height,
            our_work,
            theirs,
            limit: limit.max(MIN_LIMIT),
            back: 0,
            from: our_height.max(1),
            linked: false,
            stored: 0,
        })
    }

    /// The next request: the height to ask from and how many blocks.
    pub fn request(&mut self) -> (Height, u32) {
        if !self.linked {
            self.from = self.our_height.saturating_sub(self.back).max(1);
        }
        (self.from, self.limit)
    }

    /// A request timed out: `true` if it is to be asked again for fewer blocks, `false`
    /// if it asked for the fewest already (the pull ends with the timeout).
    pub fn timed_out(&mut self) -> bool {
        if self.limit <= MIN_LIMIT {
            return false;
        }
        self.limit = (self.limit / 4).max(MIN_LIMIT);
        true
    }

    /// The heights to fetch ahead while the `answered` blocks from the last
    /// [`Self::request`] are stored, the last of their answers `full` (as long as asked),
    /// given the last height already being fetched ahead (if any) and how many are: none
    /// until linked, none after a short answer (the peer's end, or its byte cap: asked
    /// again from where it stopped), none past the peer's height.
    #[must_use]
    pub fn ahead(
        &self,
        answered: u32,
        full: bool,
        last: Option<Height>,
        queued: usize,
    ) -> Vec<Height> {
        let mut out = Vec::new();
        if !self.linked || !full {
            return out;
        }
        let mut at = last.map_or(self.from.saturating_add(answered), |h| {
            h.saturating_add(self.limit)
        });
        while queued + out.len() < PREFETCH && at <= self.theirs.height {
            out.push(at);
            at = at.saturating_add(self.limit);
        }
        out
    }

    /// The ledger took a batch of `count` blocks (answered from the last
    /// [`Self::request`]) with `outcomes`, one per block in order, up to the first
    /// refusal; our chain is now at `height_now`.
    pub fn took(&mut self, count: u32, outcomes: &[Outcome], height_now: Height) -> Step {
        if count == 0 {
            return Step::Done;
        }
        let before = self.stored;
        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Outcome::Stored => {
                    self.stored += 1;
                    self.linked = true;
                }
                Outcome::Known => self.linked = true,
                Outcome::UnknownParent if !self.linked => {
                    if self.from == 1 {
                        return Step::NoCommonBlock;
                    }
                    self.back = (self.back.saturating_mul(2)).max(16);
                    return Step::Back;
                }
                Outcome::UnknownParent | Outcome::Refused => return Step::Refused(i),
            }
        }
        if !self.linked {
            // No block at all (the ledger said nothing): ask again from the same place.
            return Step::More;
        }
        if self.stored == before && self.from > height_now {
            return Step::NoProgress(self.from);
        }
        self.from = self.from.saturating_add(count);
        if self.from > self.theirs.height {
            Step::Done
        } else {
            Step::More
        }
    }

    /// Whether the batches so far linked to our chain.
    #[must_use]
    pub fn linked(&self) -> bool {
        self.linked
    }

    /// Blocks stored so far.
    #[must_use]
    pub fn stored(&self) -> u32 {
        self.stored
    }

    /// Blocks a request asks for now.
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// At the end of the pull: whether the peer lied about its work. It claimed more than
    /// ours, was `reachable` to the end, gave us nothing, and our work (`work_now`) is
    /// still below its claim.
    #[must_use]
    pub fn lied(&self, reachable: bool, work_now: u128) -> bool {
        let claim = self.theirs.work.unwrap_or(0);
        self.stored == 0 && claim > self.our_work && reachable && work_now < claim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u32 = 2000;

    fn claim(height: Height, work: Option<u128>) -> Claim {
        Claim { height, work }
    }

    #[test]
    fn who_is_pulled_from() {
        // More work, equal work (a healed partition's other half): pulled.
        assert!(Pull::wanted(10, 100, claim(10, Some(101)), false, LIMIT).is_some());
        assert!(Pull::wanted(10, 100, claim(9, Some(100)), false, LIMIT).is_some());
        // Less work, however high it says it is; or a tip we hold: not.
        assert!(Pull::wanted(10, 100, claim(99, Some(99)), false, LIMIT).is_none());
        assert!(Pull::wanted(10, 100, claim(11, Some(200)), true, LIMIT).is_none());
        // A peer that does not say its work, by height.
        assert!(Pull::wanted(10, 100, claim(10, None), false, LIMIT).is_some());
        assert!(Pull::wanted(10, 100, claim(9, None), false, LIMIT).is_none());
    }

    #[test]
    fn a_linked_pull_walks_forward_fetching_ahead_until_the_peers_height() {
        let mut p =
            Pull::wanted(100, 100, claim(5_000, Some(5_000)), false, LIMIT).expect("wanted");
        assert_eq!(p.request(), (100, LIMIT));
        // Nothing is fetched ahead before a batch links.
        assert!(p.ahead(LIMIT, true, None, 0).is_empty());
        let mut outcomes = vec![Outcome::Known];
        outcomes.extend(std::iter::repeat_n(Outcome::Stored, LIMIT as usize - 1));
        assert_eq!(p.took(LIMIT, &outcomes, 2_099), Step::More);
        assert!(p.linked());
        assert_eq!(p.stored(), LIMIT - 1);
        assert_eq!(p.request(), (2_100, LIMIT));
        // Two batches ahead, then one more as each is taken; none past the peer's height.
        assert_eq!(p.ahead(LIMIT, true, None, 0), vec![4_100]);
        assert_eq!(p.ahead(LIMIT, true, Some(4_100), 1), Vec::<Height>::new());
        // A short answer (the peer's byte cap): nothing ahead, asked on from its end.
        assert!(p.ahead(500, false, None, 0).is_empty());
        let stored = vec![Outcome::Stored; 500];
        assert_eq!(p.took(500, &stored, 2_599), Step::More);
        assert_eq!(p.request(), (2_600, LIMIT));
        let stored = vec![Outcome::Stored; 2_401];
        assert_eq!(p.took(2_401, &stored, 5_000), Step::Done);
        assert_eq!(p.stored(), LIMIT - 1 + 500 + 2_401);
        assert!(!p.lied(true, 5_000));
    }

    #[test]
    fn a_fork_below_steps_back_further_each_time_down_to_height_one() {
        let mut p = Pull::wanted(100, 100, claim(120, Some(200)), false, LIMIT).expect("wanted");
        let orphan = [Outcome::UnknownParent, Outcome::UnknownParent];
        let mut asked = Vec::new();
        loop {
            let (from, _) = p.request();
            asked.push(from);
            match p.took(2, &orphan, 100) {
                Step::Back => continue,
                Step::NoCommonBlock => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(asked, vec![100, 84, 68, 36, 1]);
        // A batch that links after stepping back goes on from where it was asked.
        let mut p = Pull::wanted(100, 100, claim(120, Some(200)), false, LIMIT).expect("wanted");
        p.request();
        assert_eq!(p.took(1, &[Outcome::UnknownParent], 100), Step::Back);
        assert_eq!(p.request(), (84, LIMIT));
        let outcomes = [vec![Outcome::Known; 10], vec![Outcome::Stored; 27]].concat();
        assert_eq!(p.took(37, &outcomes, 120), Step::Done);
        assert_eq!(p.stored(), 27);
    }

    #[test]
    fn a_slow_link_is_asked_for_fewer_blocks_down_to_the_fewest() {
        let mut p = Pull::wanted(1, 0, claim(9_000, Some(9_000)), false, LIMIT).expect("wanted");
        let mut limits = vec![p.request().1];
        while p.timed_out() {
            limits.push(p.request().1);
        }
        assert_eq!(limits, vec![2000, 500, 125, 31, MIN_LIMIT]);
    }

    #[test]
    fn refusals_and_lies_end_the_pull() {
        let mut p = Pull::wanted(10, 10, claim(50, Some(50)), false, LIMIT).expect("wanted");
        p.request();
        let outcomes = [Outcome::Known, Outcome::Stored, Outcome::Refused];
        assert_eq!(p.took(3, &outcomes, 11), Step::Refused(2));
        // Once linked, an unknown parent is a refusal too (a gap in the peer's answer).
        let mut p = Pull::wanted(10, 10, claim(50, Some(50)), false, LIMIT).expect("wanted");
        p.request();
        let outcomes = [Outcome::Known, Outcome::UnknownParent];
        assert_eq!(p.took(2, &outcomes, 10), Step::Refused(1));
        // Known blocks above our height add nothing: a lie.
        let mut p = Pull::wanted(10, 10, claim(50, Some(50)), false, LIMIT).expect("wanted");
        p.request();
        assert_eq!(p.took(1, &[Outcome::Known], 10), Step::More);
        assert_eq!(p.request(), (11, LIMIT));
        assert_eq!(p.took(2, &[Outcome::Known; 2], 10), Step::NoProgress(11));
        // More work claimed, nothing given, our work still below the claim: it lied;
        // unless it was unreachable, or our work reached its claim another way.
        assert!(p.lied(true, 10));
        assert!(!p.lied(false, 10));
        assert!(!p.lied(true, 50));
        // An empty answer ends the pull without a verdict of its own.
        let mut p = Pull::wanted(10, 10, claim(50, Some(50)), false, LIMIT).expect("wanted");
        p.request();
        assert_eq!(p.took(0, &[], 10), Step::Done);
    }
}
