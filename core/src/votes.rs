//! Which peer gets which finality votes: every vote this node sends or passes on goes to
//! every peer but the one it came from, all of a burst in one body per peer (one request per
//! peer per burst, not one per vote).
//!
//! A vote the node holds is gossiped once, when it is first taken in (the finality engine
//! puts it in the outbox then, with the peer it came from); a peer that missed one asks for
//! it at its next pull (`GET /votes`). Sending it back to the peer it came from would only
//! double that link's traffic: that peer holds it.

use gridledger_chain::finality::Vote;

/// The bodies of `POST /votes` for a burst: for each of `peers`, the wire bytes (for the
/// network `origin`) of every vote of `outbox` but those that peer sent; peers with nothing
/// to receive are left out.
#[must_use]
pub fn bodies(
    outbox: Vec<(Vote, Option<String>)>,
    peers: &[String],
    origin: &str,
) -> Vec<(String, Vec<u8>)> {
    let encoded: Vec<(Vec<u8>, Option<String>)> = outbox
        .into_iter()
        .map(|(v, from)| (v.to_bytes(origin), from))
        .collect();
    peers
        .iter()
        .filter_map(|peer| {
            let body: Vec<u8> = encoded
                .iter()
                .filter(|(_, from)| from.as_deref() != Some(peer.as_str()))
                .flat_map(|(b, _)| b.iter().copied())
                .collect();
            (!body.is_empty()).then(|| (peer.clone(), body))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use gridledger_chain::finality::{Checkpoint, Kind};

    use super::*;

    const ORIGIN: &str = "votes-test";

    fn vote(member: u8, size: u64) -> Vote {
        let target = Checkpoint {
            size,
            root: [size as u8; 32],
        };
        Vote::sign(
            Kind::Commit,
            target,
            &SigningKey::from_bytes(&[member; 32]),
            ORIGIN,
        )
        .expect("a commit signs")
    }

    /// Each peer gets every vote of the burst but those it sent, in one body, in order; a
    /// peer with nothing to get gets no request.
    #[test]
    fn every_vote_goes_to_every_peer_but_its_sender() {
        let peers: Vec<String> = ["a", "b", "c"].iter().map(|p| (*p).to_owned()).collect();
        let (own, theirs) = (vote(1, 5), vote(2, 5));
        let out = bodies(
            vec![(own, None), (theirs, Some("a".to_owned()))],
            &peers,
            ORIGIN,
        );
        let both = [own.to_bytes(ORIGIN), theirs.to_bytes(ORIGIN)].concat();
        assert_eq!(
            out,
            vec![
                ("a".to_owned(), own.to_bytes(ORIGIN)),
                ("b".to_owned(), both.clone()),
                ("c".to_owned(), both),
            ]
        );
        let only_theirs = bodies(vec![(theirs, Some("a".to_owned()))], &peers[..1], ORIGIN);
        assert!(only_theirs.is_empty(), "nothing goes back to its sender");
        assert!(bodies(Vec::new(), &peers, ORIGIN).is_empty());
    }
}
