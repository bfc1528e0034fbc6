//! The wide-area testbed's peer graphs: random connected graphs where sites peer with a few
//! others, as a consortium's would, and lines. They live here, and the testbed
//! (`gridledger-testbed`) uses them from here, so that the simulator's `--topology testbed:S`
//! is the very graph the testbed's scenario of seed `S` starts its processes on.

use std::collections::{BTreeSet, VecDeque};

/// Undirected edges `(a, b)`, `a < b`, between `n` sites.
pub type Edges = BTreeSet<(usize, usize)>;

/// A connected graph on `n` sites where every site has `min_degree..=max_degree` peers
/// (as near as `n` allows): a ring through a random order of the sites (connected, degree
/// 2), then random chords until every site has `min_degree`. Same seed, same graph.
#[must_use]
pub fn random_graph(n: usize, min_degree: usize, max_degree: usize, seed: u64) -> Edges {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut edges = Edges::new();
    if n < 2 {
        return edges;
    }
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let add = |edges: &mut Edges, a: usize, b: usize| {
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    };
    for i in 0..n {
        add(&mut edges, order[i], order[(i + 1) % n]);
    }
    let max_degree = max_degree.max(2).min(n - 1);
    let min_degree = min_degree.min(max_degree);
    let degree = |edges: &Edges, v: usize| edges.iter().filter(|(a, b)| *a == v || *b == v).count();
    for _ in 0..n * n * 4 {
        let short: Vec<usize> = (0..n).filter(|v| degree(&edges, *v) < min_degree).collect();
        let Some(&v) = short.first() else { break };
        let candidates: Vec<usize> = (0..n)
            .filter(|u| {
                *u != v
                    && !edges.contains(&(v.min(*u), v.max(*u)))
                    && degree(&edges, *u) < max_degree
            })
            .collect();
        if candidates.is_empty() {
            break;
        }
        let u = candidates[rng.usize(..candidates.len())];
        add(&mut edges, v, u);
    }
    edges
}

/// A line: each site peers with its neighbours only.
#[must_use]
pub fn line(n: usize) -> Edges {
    (1..n).map(|i| (i - 1, i)).collect()
}

/// Each site's peers.
#[must_use]
pub fn neighbours(n: usize, edges: &Edges) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n];
    for &(a, b) in edges {
        out[a].push(b);
        out[b].push(a);
    }
    out
}

/// The longest shortest path, in hops; `None` if the graph is not connected.
#[must_use]
pub fn diameter(n: usize, edges: &Edges) -> Option<usize> {
    let adj = neighbours(n, edges);
    let mut longest = 0;
    for start in 0..n {
        let mut dist = vec![usize::MAX; n];
        dist[start] = 0;
        let mut queue = VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            for &u in &adj[v] {
                if dist[u] == usize::MAX {
                    dist[u] = dist[v] + 1;
                    queue.push_back(u);
                }
            }
        }
        if dist.contains(&usize::MAX) {
            return None;
        }
        longest = longest.max(dist.into_iter().max().unwrap_or(0));
    }
    Some(longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_are_connected_within_their_degrees() {
        for n in [2, 3, 4, 5, 8, 16, 32, 64] {
            for seed in 0..20 {
                let edges = random_graph(n, 3, 4, seed);
                assert!(
                    diameter(n, &edges).is_some(),
                    "n={n} seed={seed} not connected"
                );
                for (v, peers) in neighbours(n, &edges).iter().enumerate() {
                    assert!(
                        peers.len() <= 4.min(n - 1).max(2),
                        "n={n} site {v}: {peers:?}"
                    );
                    assert!(peers.len() >= 3.min(n - 1), "n={n} site {v}: {peers:?}");
                }
            }
        }
    }

    #[test]
    fn a_line_has_the_diameter_of_its_length() {
        assert_eq!(diameter(5, &line(5)), Some(4));
        let mut broken = line(5);
        broken.remove(&(2, 3));
        assert_eq!(diameter(5, &broken), None);
    }
}
