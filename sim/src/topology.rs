//! The peers' graph: who talks to whom.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::Topology;

/// Each node's peers, in ascending order.
pub type Peers = Vec<Vec<usize>>;

/// The graph of `n` nodes: a ring (so it is connected) plus random chords until every node
/// has `d` peers, or as near as the seed allows; or every pair; or the testbed's graph.
#[must_use]
pub fn build(n: usize, topology: Topology, rng: &mut ChaCha8Rng) -> Peers {
    let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let link = |adj: &mut Vec<BTreeSet<usize>>, a: usize, b: usize| {
        if a != b {
            adj[a].insert(b);
            adj[b].insert(a);
        }
    };
    match topology {
        Topology::Full => {
            for a in 0..n {
                for b in a + 1..n {
                    link(&mut adj, a, b);
                }
            }
        }
        Topology::Testbed(seed) => {
            for (a, b) in crate::graph::random_graph(n, 3, 4, seed) {
                link(&mut adj, a, b);
            }
        }
        Topology::Random(d) => {
            if n > 1 {
                for a in 0..n {
                    link(&mut adj, a, (a + 1) % n);
                }
            }
            let d = d.min(n.saturating_sub(1));
            for a in 0..n {
                let mut tries = 0;
                while adj[a].len() < d && tries < 64 {
                    tries += 1;
                    let b = rng.random_range(0..n);
                    if b != a && adj[b].len() < d && !adj[a].contains(&b) {
                        link(&mut adj, a, b);
                    }
                }
            }
            // The few left short: among every node still short, at random.
            for a in 0..n {
                while adj[a].len() < d {
                    let short: Vec<usize> = (0..n)
                        .filter(|b| *b != a && adj[*b].len() < d && !adj[a].contains(b))
                        .collect();
                    if short.is_empty() {
                        // Two peers short and none to pair with: an edge x–y of two others
                        // becomes a–x and a–y (their degrees stay, a's grows by two).
                        if adj[a].len() + 2 > d {
                            break;
                        }
                        let far: Vec<usize> =
                            (0..n).filter(|x| *x != a && !adj[a].contains(x)).collect();
                        let edge = far.iter().find_map(|&x| {
                            adj[x]
                                .iter()
                                .find(|y| **y != a && !adj[a].contains(*y))
                                .map(|&y| (x, y))
                        });
                        let Some((x, y)) = edge else { break };
                        adj[x].remove(&y);
                        adj[y].remove(&x);
                        link(&mut adj, a, x);
                        link(&mut adj, a, y);
                        continue;
                    }
                    let b = short[rng.random_range(0..short.len())];
                    link(&mut adj, a, b);
                }
            }
        }
    }
    adj.into_iter().map(|s| s.into_iter().collect()).collect()
}

/// The graph's diameter in hops (`None`: not connected), as the testbed reports it.
#[must_use]
pub fn diameter(peers: &Peers) -> Option<usize> {
    let edges: crate::graph::Edges = peers
        .iter()
        .enumerate()
        .flat_map(|(a, p)| p.iter().map(move |&b| (a.min(b), a.max(b))))
        .collect();
    crate::graph::diameter(peers.len(), &edges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn connected(peers: &Peers) -> bool {
        let mut seen = vec![false; peers.len()];
        let mut stack = vec![0];
        while let Some(v) = stack.pop() {
            if !std::mem::replace(&mut seen[v], true) {
                stack.extend(&peers[v]);
            }
        }
        seen.iter().all(|s| *s)
    }

    #[test]
    fn random_graphs_are_connected_near_their_degree_and_the_same_for_a_seed() {
        for n in [2, 3, 16, 64, 1000] {
            for seed in 0..5 {
                let g = build(n, Topology::Random(8), &mut ChaCha8Rng::seed_from_u64(seed));
                assert!(connected(&g), "n={n} seed={seed}");
                let d = 8.min(n - 1);
                // A pair of short nodes may already be peers: at most a few, one peer short.
                let short = g.iter().filter(|p| p.len() < d).count();
                assert!(
                    short <= 2.max(n / 50),
                    "n={n}: {short} nodes short of {d} peers"
                );
                assert!(g.iter().all(|p| p.len() + 1 >= d), "n={n}");
                assert!(g.iter().all(|p| p.len() <= d.max(2)));
                let again = build(n, Topology::Random(8), &mut ChaCha8Rng::seed_from_u64(seed));
                assert_eq!(g, again);
            }
        }
        let full = build(5, Topology::Full, &mut ChaCha8Rng::seed_from_u64(0));
        assert!(full.iter().all(|p| p.len() == 4));
    }

    #[test]
    fn the_testbed_topology_is_the_testbeds_graph_for_its_seed() {
        for (n, seed) in [(16, 1), (64, 1), (64, 2)] {
            let g = build(
                n,
                Topology::Testbed(seed),
                &mut ChaCha8Rng::seed_from_u64(9),
            );
            let edges = crate::graph::random_graph(n, 3, 4, seed);
            assert_eq!(
                g,
                crate::graph::neighbours(n, &edges)
                    .into_iter()
                    .map(|mut p| {
                        p.sort_unstable();
                        p
                    })
                    .collect::<Peers>()
            );
            assert!(connected(&g));
            assert!(g.iter().all(|p| (3..=4).contains(&p.len())), "n={n}: {g:?}");
            // The sim's own rng plays no part: the graph is the testbed's.
            let other = build(
                n,
                Topology::Testbed(seed),
                &mut ChaCha8Rng::seed_from_u64(10),
            );
            assert_eq!(g, other);
        }
        // The diameters the testbed printed for its steady scenario (seed 1) in
        // bench/results/wan.md: 4 hops at 16 nodes, 6 at 64.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            diameter(&build(16, Topology::Testbed(1), &mut rng)),
            Some(4)
        );
        assert_eq!(
            diameter(&build(64, Topology::Testbed(1), &mut rng)),
            Some(6)
        );
        assert_eq!(diameter(&vec![vec![1], vec![0], vec![]]), None);
        assert_ne!(
            build(16, Topology::Testbed(1), &mut ChaCha8Rng::seed_from_u64(0)),
            build(16, Topology::Testbed(2), &mut ChaCha8Rng::seed_from_u64(0))
        );
        assert_eq!("testbed:1".parse::<Topology>(), Ok(Topology::Testbed(1)));
        assert_eq!(Topology::Testbed(7).to_string(), "testbed:7");
    }
}
