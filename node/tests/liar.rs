//! No peer can stall the node: beside an honest peer, a lying one claims enormous work and
//! answers every `GET /blocks`, slowly, with a block the node already has. The node still
//! follows the honest peer within two sync periods, `POST /peers/resolve` answers within
//! its timeout with a result per peer, and `/peers` shows the liar backed off. Then peers
//! that lie in other ways: a slow link, and a bad batch behind good ones.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use gridledger::chain::Network;
use gridledger::peers::RESOLVE_TIMEOUT;
use gridledger::run::start;

/// A peer that says it holds height 2^32 − 1 with more work than exists, and answers each
/// block request after `delay` with `known` (the raw bytes of one block), or with an empty
/// list if `None`.
async fn liar(known: Option<Vec<u8>>, delay: Duration) -> SocketAddr {
    let status = serde_json::json!({
        "network": "liar",
        "height": u32::MAX,
        "tip": "ab".repeat(32),
        "work": u128::MAX.to_string(),
    });
    let app = axum::Router::new()
        .route(
            "/status",
            get(move || {
                let s = status.clone();
                async move { axum::Json(s) }
            }),
        )
        .route(
            "/blocks",
            get(move || {
                let body = match &known {
                    Some(known) => {
                        let mut body = vec![1u8];
                        body.extend(varint(known.len()));
                        body.extend_from_slice(known);
                        body
                    }
                    None => vec![0u8],
                };
                async move {
                    tokio::time::sleep(delay).await;
                    body
                }
            }),
        );
    common::serve_router(app).await
}

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

async fn height_tip(client: &reqwest::Client, addr: SocketAddr) -> (u64, String) {
    let s = common::get_json(client, format!("http://{addr}/status")).await;
    (
        s["height"].as_u64().unwrap_or(0),
        s["tip"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_neither_stalls_sync_nor_resolve() {
    let net = Network::new("liar", 8);
    let (relay, _stop) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    // The honest peer mines the relay's records; it knows no peers, so the node under test
    // gets its blocks only by pulling.
    let honest_dir = tempfile::tempdir().expect("tempdir");
    let honest = start(
        common::node_config(honest_dir.path(), net.clone(), &[relay], Vec::new()),
        common::key(1),
    )
    .await
    .expect("honest peer starts");
    let client = gridledger::wire::builder().build().expect("http client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while height_tip(&client, honest.addr).await.0 < 2 {
        assert!(Instant::now() < deadline, "the honest peer does not mine");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let block1 = common::get_raw(&client, format!("http://{}/blocks/1", honest.addr)).await;
    let liar = liar(Some(block1), Duration::from_millis(1800)).await;

    // The node under test reads no relay, and has the liar listed first.
    let sync_every = Duration::from_secs(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(
        gridledger::run::NodeConfig {
            sync_every,
            ..common::node_config(
                dir.path(),
                net.clone(),
                &[],
                vec![format!("http://{liar}"), format!("http://{}", honest.addr)],
            )
        },
        common::key(2),
    )
    .await
    .expect("node starts");

    // Five times over: each new block of the honest peer reaches the node within two sync
    // periods (plus a little for the honest peer's own HTTP answer).
    let allowed = 2 * sync_every + Duration::from_millis(700);
    let mut seen = 0;
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 5 {
        assert!(Instant::now() < deadline, "only {seen} blocks followed");
        let (h, tip) = height_tip(&client, honest.addr).await;
        if tip == last {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let since = Instant::now();
        loop {
            let (nh, _) = height_tip(&client, node.addr).await;
            if nh >= h {
                break;
            }
            assert!(
                since.elapsed() <= allowed,
                "the node is at {nh}, the honest peer at {h} for {:?}",
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last = tip;
        seen += 1;
    }

    // Resolve answers within its timeout, with a result for each peer.
    let t0 = Instant::now();
    let r = common::post_json(&client, format!("http://{}/peers/resolve", node.addr)).await;
    assert!(
        t0.elapsed() < RESOLVE_TIMEOUT + Duration::from_secs(2),
        "resolve took {:?}",
        t0.elapsed()
    );
    let peers = r["peers"].as_array().expect("per-peer results");
    assert_eq!(peers.len(), 2, "{r}");
    assert!(peers[0]["error"].as_str().is_some(), "the liar: {r}");
    assert_eq!(
        peers[1]["error"],
        serde_json::Value::Null,
        "the honest peer: {r}"
    );

    // /peers shows the liar caught and backed off, the honest peer fine.
    let p = common::get_json(&client, format!("http://{}/peers", node.addr)).await;
    let health = p["health"].as_array().expect("health");
    assert!(health[0]["lies"].as_u64().unwrap_or(0) >= 1, "{p}");
    assert_eq!(health[0]["state"], "backed off", "{p}");
    assert_eq!(health[1]["state"], "ok", "{p}");
    assert_eq!(health[1]["lies"], 0, "{p}");
    // The liar serves no /tip (a node from before it): it is spoken to over HTTP/1.1; the
    // honest peer over HTTP/2.
    let c = node.shared.lock().expect("lock").client.clone();
    assert!(!c.speaks_h2(&format!("http://{liar}")));
    assert!(c.speaks_h2(&format!("http://{}", honest.addr)));

    node.stop().await;
    honest.stop().await;
}

/// An honest node holding a chain of `blocks` blocks on network `name`, and a proxy in
/// front of it that passes each request's path and query through `shape` (which may wait,
/// or ask for something else) before forwarding it. Returns the node, its data dir and
/// the proxy's URL.
async fn honest_behind<F, Fut>(
    name: &str,
    blocks: u32,
    shape: F,
) -> (gridledger::run::RunningNode, tempfile::TempDir, String)
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    use axum::extract::Request;
    use axum::response::IntoResponse;
    let dir = tempfile::tempdir().expect("tempdir");
    gridledger::offline::debug_append(dir.path(), name, 0, blocks, &mut std::io::sink())
        .expect("chain built");
    let honest = start(
        common::node_config(dir.path(), Network::new(name, 0), &[], Vec::new()),
        common::key(1),
    )
    .await
    .expect("node starts");
    let upstream = honest.addr;
    let client = gridledger::wire::builder().build().expect("http client");
    let app = axum::Router::new().fallback(move |req: Request| {
        let (client, shape) = (client.clone(), shape.clone());
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/".to_owned(), ToString::to_string);
            let path = shape(path).await;
            let mut up = client.get(format!("http://{upstream}{path}"));
            if let Some(accept) = req.headers().get("accept") {
                up = up.header("accept", accept.as_bytes());
            }
            match up.send().await {
                Ok(r) => r.bytes().await.unwrap_or_default().to_vec().into_response(),
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    let proxy = format!("http://{}", common::serve_router(app).await);
    (honest, dir, proxy)
}

/// The value of `name` (`"limit="`) in a `/blocks?` request's query.
fn query_arg(path: &str, name: &str) -> Option<u32> {
    path.strip_prefix("/blocks?")?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name))
        .and_then(|v| v.parse().ok())
}

/// A peer behind a link too slow to carry a full batch within the request timeout: a proxy
/// in front of an honest node holds every `GET /blocks` asking for more than 500 blocks for
/// longer than the timeout. The syncing node asks again for fewer and takes the whole chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_is_asked_for_fewer_blocks_and_the_sync_completes() {
    const BLOCKS: u32 = 1_200;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let seen = std::sync::Arc::clone(&asked);
    let (honest, _da, proxy) = honest_behind("slow-link", BLOCKS, move |path: String| {
        let seen = std::sync::Arc::clone(&seen);
        async move {
            if let Some(limit) = query_arg(&path, "limit=") {
                seen.lock().expect("lock").push(limit);
                if limit > 500 {
                    tokio::time::sleep(gridledger::wire::TIMEOUT + Duration::from_secs(1)).await;
                }
            }
            path
        }
    })
    .await;
    let db = tempfile::tempdir().expect("tempdir");
    let node = start(
        common::node_config(db.path(), Network::new("slow-link", 0), &[], vec![proxy]),
        common::key(2),
    )
    .await
    .expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let h = node.shared.lock().expect("lock").ledger.tree().height();
        if h == BLOCKS {
            break;
        }
        assert!(Instant::now() < deadline, "synced {h} of {BLOCKS}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let limits = asked.lock().expect("lock").clone();
    assert!(
        limits.iter().any(|&l| l > 500) && limits.iter().any(|&l| l <= 500),
        "asked limits {limits:?}"
    );
    node.stop().await;
    honest.stop().await;
}

/// A peer whose batches of a long sync are right until the third, which starts at height 1
/// again instead of where it was asked (and is asked again each round): the node keeps the two good batches (whether they
/// were committed one by one or together), stores nothing of the bad one, and names the
/// fault. A batch fetched ahead and found bad while the one before it is stored is reported
/// in its turn, not lost and not skipped over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_behind_good_ones_stops_the_pull_at_it() {
    const GOOD: u32 = 2 * gridledger::wire::MAX_LIMIT;
    const BLOCKS: u32 = GOOD + gridledger::wire::MAX_LIMIT + 500;
    // Up to GOOD, honest (an answer stops there); above, the blocks from 1.
    let (honest, _da, proxy) = honest_behind("bad-batch", BLOCKS, |path: String| async move {
        match (query_arg(&path, "from="), query_arg(&path, "limit=")) {
            (Some(from), Some(limit)) if from > GOOD => format!("/blocks?from=1&limit={limit}"),
            (Some(from), Some(limit)) => {
                format!("/blocks?from={from}&limit={}", limit.min(GOOD + 1 - from))
            }
            _ => path,
        }
    })
    .await;
    let db = tempfile::tempdir().expect("tempdir");
    let node = start(
        common::node_config(
            db.path(),
            Network::new("bad-batch", 0),
            &[],
            vec![proxy.clone()],
        ),
        common::key(2),
    )
    .await
    .expect("node starts");
    let wanted = format!("asked for blocks from height {}, got height 1", GOOD + 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (h, error) = {
            let mut core = node.shared.lock().expect("lock");
            let error = core.peer_health(&proxy).last_error.clone();
            (core.ledger.tree().height(), error)
        };
        assert!(
            h <= GOOD,
            "stored {h} blocks, past the bad batch at {}",
            GOOD + 1
        );
        if h == GOOD && error.as_deref().is_some_and(|e| e.contains(&wanted)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "height {h} of {GOOD}, the peer's last error {error:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two more sync periods: the node asks again, and still stores nothing past it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        node.shared.lock().expect("lock").ledger.tree().height(),
        GOOD
    );
    node.stop().await;
    honest.stop().await;
}

/// A peer that claims more work than exists and answers every block request with an empty
/// list: each pull ends at its empty answer, with no commit, and is judged a lie (its claim
/// stands, our work does not reach it), counted, and named in its health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_claims_more_and_sends_nothing_is_called_a_liar() {
    let liar = format!("http://{}", liar(None, Duration::ZERO).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(
        common::node_config(dir.path(), Network::new("liar", 0), &[], vec![liar.clone()]),
        common::key(2),
    )
    .await
    .expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (lies, error, height) = {
            let mut core = node.shared.lock().expect("lock");
            let error = core.peer_health(&liar).last_error.clone();
            (core.counters.peer_lies, error, core.ledger.tree().height())
        };
        assert_eq!(height, 0, "nothing was sent, nothing stored");
        if lies >= 1 {
            let error = error.unwrap_or_default();
            assert!(
                error.contains("claimed more work than ours") && error.contains("nothing new"),
                "{error}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not called a liar: {error:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop().await;
}
