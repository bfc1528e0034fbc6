//! The HTTP API on a loopback port: status, chain, blocks both ways, and every kind of
//! refusal with its status code and reason.

mod common;

use std::net::SocketAddr;

use common::{block_on, record};
use gridledger::chain::Network;

async fn serve(dir: &std::path::Path, net: Network) -> SocketAddr {
    serve_shared(dir, net).await.0
}

async fn serve_shared(
    dir: &std::path::Path,
    net: Network,
) -> (SocketAddr, gridledger::core::Shared) {
    common::serve_api(dir, net).await
}

/// Two nodes' APIs over fresh ledgers of `net`; their data dirs live as long as the first
/// value.
async fn two_nodes(
    net: &Network,
) -> (
    [tempfile::TempDir; 2],
    (SocketAddr, gridledger::core::Shared),
    (SocketAddr, gridledger::core::Shared),
) {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let a = serve_shared(dirs[0].path(), net.clone()).await;
    let b = serve_shared(dirs[1].path(), net.clone()).await;
    (dirs, a, b)
}

/// Mines blocks on `parent` into the node's ledger, one per minute of `minutes`, each
/// holding that minute's record of `relay`, signed by key `key`; returns the last header.
fn mine_into(
    shared: &gridledger::core::Shared,
    net: &Network,
    mut parent: gridledger::chain::Header,
    minutes: std::ops::Range<u32>,
    relay: u32,
    key: u8,
) -> gridledger::chain::Header {
    let mut core = shared.lock().expect("lock");
    for m in minutes {
        let block = block_on(&parent, &[record(relay, m)], net, key);
        parent = block.header;
        core.accept(block, common::now_ms(), gridledger::core::Origin::Peer)
            .expect("accepted");
    }
    parent
}

/// Gives the node at `node` the peer at `peer` (`POST /peers`).
async fn add_peer(client: &reqwest::Client, node: SocketAddr, peer: SocketAddr) {
    let r = client
        .post(format!("http://{node}/peers"))
        .json(&serde_json::json!({ "url": format!("http://{peer}") }))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);
}

async fn post(
    client: &reqwest::Client,
    addr: SocketAddr,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    post_to(client, addr, "/blocks", body).await
}

async fn post_to(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let r = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("answered");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    let text = client
        .get(url)
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&text).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_go_in_and_come_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("api", 4);
    let addr = serve(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("http client");

    let g = net.genesis().header;
    let b1 = block_on(&g, &[record(1, 0)], &net, 1);
    let b2 = block_on(&b1.header, &[record(1, 1), record(2, 1)], &net, 1);
    let (code, body) = post(&client, addr, b1.to_bytes()).await;
    assert_eq!(
        (code, body["result"].as_str(), body["height"].as_u64()),
        (200, Some("added"), Some(1))
    );
    let (code, body) = post(&client, addr, b1.to_bytes()).await;
    assert_eq!((code, body["result"].as_str()), (200, Some("known")));

    // Out of order: unknown parent is a 409 with the reason, and the block is kept until
    // its parent comes, unless it breaks a rule that needs no chain (then that rule, 422).
    let b3 = block_on(&b2.header, &[record(1, 2)], &net, 1);
    let mut forged = b3.clone();
    forged.signature[0] ^= 1;
    let (code, body) = post(&client, addr, forged.to_bytes()).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("reason")
            .contains("signature"),
        "{body}"
    );
    let (code, body) = post(&client, addr, b3.to_bytes()).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("reason")
        .contains("unknown parent"));
    // What a pushing node asks (`Prefer: return=minimal`): 204, no body, the preference
    // applied, for a block added or known; a refusal keeps its status and JSON reason.
    let minimal = |body: Vec<u8>| {
        client
            .post(format!("http://{addr}/blocks"))
            .header("content-type", "application/octet-stream")
            .header("prefer", "respond-async, return=minimal")
            .body(body)
            .send()
    };
    // The result says which, and a known block since when it was held (what the sender's
    // `fanout` learns from).
    for (block, what) in [(&b2, "added"), (&b2, "known")] {
        let r = minimal(block.to_bytes()).await.expect("answered");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            (
                r.status().as_u16(),
                header("preference-applied").as_deref(),
                header("gridledger-result").as_deref()
            ),
            (204, Some("return=minimal"), Some(what)),
        );
        let held = header("gridledger-held-ms").and_then(|v| v.parse::<u64>().ok());
        assert_eq!(held.is_some(), what == "known", "{what}: held {held:?}");
        assert!(held.is_none_or(|ms| ms < 60_000), "{what}: held {held:?}");
        assert!(r.bytes().await.expect("body").is_empty(), "{what}");
    }
    let r = minimal(vec![1, 2, 3]).await.expect("answered");
    assert_eq!(r.status().as_u16(), 400);
    let reason: serde_json::Value = r.json().await.expect("a JSON reason");
    assert!(reason["error"].is_string(), "{reason}");
    // b3 came before its parent and was placed when b2 was taken.
    let (code, body) = post(&client, addr, b3.to_bytes()).await;
    assert_eq!(
        (code, body["result"].as_str()),
        (200, Some("known")),
        "{body}"
    );
    let metrics = common::get_text(&client, format!("http://{addr}/metrics")).await;
    for line in [
        "gridledger_blocks_early_total 1\n",
        "gridledger_blocks_placed_total 1\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    let status = get_json(&client, format!("http://{addr}/status")).await;
    assert_eq!(status["height"], 3);
    assert_eq!(status["records"], 4);
    assert_eq!(status["tip"], b3.id().to_hex());
    // /tip: what peers poll, the same fields as /status and nothing else.
    let tip = common::get_text(&client, format!("http://{addr}/tip")).await;
    let tip_json: serde_json::Value = serde_json::from_str(&tip).expect("json");
    for field in ["height", "tip", "work", "miner"] {
        assert_eq!(tip_json[field], status[field], "{field}: {tip}");
    }
    assert_eq!(tip_json.as_object().map(|o| o.len()), Some(4), "{tip}");
    assert!(tip.len() < 300, "{} bytes: {tip}", tip.len());
    // Tagged by the tip: a poller on the same tip gets 304 and no body, one on another tip
    // the answer.
    let get_tip = |tag: String| {
        client
            .get(format!("http://{addr}/tip"))
            .header("if-none-match", tag)
            .send()
    };
    let tag = gridledger::wire::tip_tag(&b3.id());
    let same = get_tip(format!("W/\"0\", {tag}")).await.expect("answered");
    assert_eq!(same.status().as_u16(), 304);
    assert_eq!(
        same.headers().get("etag").and_then(|v| v.to_str().ok()),
        Some(tag.as_str())
    );
    assert!(same.bytes().await.expect("body").is_empty());
    let other = get_tip(gridledger::wire::tip_tag(&b2.id()))
        .await
        .expect("answered");
    assert_eq!(other.status().as_u16(), 200);
    assert_eq!(
        other.headers().get("etag").and_then(|v| v.to_str().ok()),
        Some(tag.as_str())
    );
    assert_eq!(other.text().await.expect("body"), tip);

    let chain = get_json(&client, format!("http://{addr}/chain")).await;
    assert_eq!(chain["length"], 4);
    assert_eq!(chain["chain"][2]["records"][1]["relay"], 2);

    let one = get_json(&client, format!("http://{addr}/blocks/2")).await;
    assert_eq!(one["id"], b2.id().to_hex());
    let by_id = get_json(&client, format!("http://{addr}/blocks/{}", b2.id())).await;
    assert_eq!(by_id, one);
    let raw = common::get_raw(&client, format!("http://{addr}/blocks/2")).await;
    assert_eq!(&raw[..], &b2.to_bytes()[..]);

    let list = get_json(&client, format!("http://{addr}/blocks?from=1&limit=2")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(list[1]["height"], 2);
    let missing = client
        .get(format!("http://{addr}/blocks/99"))
        .send()
        .await
        .expect("answered");
    assert_eq!(missing.status().as_u16(), 404);
}

/// `POST /blocks/announce`: a block id this node lacks is wanted, one it holds is not, and
/// anything but 32 bytes is a 400 with the reason; an announcement stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_say_whether_the_block_is_wanted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("announce", 4);
    let addr = serve(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("http client");
    let announce = |body: Vec<u8>| post_to(&client, addr, "/blocks/announce", body);
    let b1 = block_on(&net.genesis().header, &[record(1, 0)], &net, 1);
    let (code, body) = announce(b1.id().0.to_vec()).await;
    assert_eq!((code, body["want"].as_bool()), (200, Some(true)), "{body}");
    let status = get_json(&client, format!("http://{addr}/status")).await;
    assert_eq!(status["height"], 0, "an announcement stored something");
    assert_eq!(post(&client, addr, b1.to_bytes()).await.0, 200);
    let (code, body) = announce(b1.id().0.to_vec()).await;
    assert_eq!((code, body["want"].as_bool()), (200, Some(false)), "{body}");
    for bad in [Vec::new(), vec![0; 31], vec![0; 33], b1.to_bytes()] {
        let len = bad.len();
        let (code, body) = announce(bad).await;
        assert_eq!(code, 400, "{len} bytes: {body}");
        assert!(
            body["error"].as_str().expect("reason").contains("32-byte"),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blocks_get_a_4xx_with_the_reason_and_the_node_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("api", 4);
    let addr = serve(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("http client");
    let g = net.genesis().header;
    let good = block_on(&g, &[record(1, 0)], &net, 1);

    let (code, body) = post(&client, addr, b"not a block".to_vec()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("reason")
        .contains("malformed"));

    let mut bad_sig = good.clone();
    bad_sig.signature[5] ^= 1;
    let (code, body) = post(&client, addr, bad_sig.to_bytes()).await;
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("reason")
        .contains("signature"));

    let too_big = vec![0u8; net.max_block_bytes + 4096];
    let (code, _) = post(&client, addr, too_big).await;
    assert_eq!(code, 413, "an oversized body is refused before it is read");

    // After all that, the good block is accepted.
    let (code, body) = post(&client, addr, good.to_bytes()).await;
    assert_eq!((code, body["result"].as_str()), (200, Some("added")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_proofs_metrics_peers_and_the_witness() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("api", 4);
    let (addr, shared) = serve_shared(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("http client");
    let g = net.genesis().header;
    let b1 = block_on(&g, &[record(1, 0), record(2, 0)], &net, 1);
    let b2 = block_on(
        &b1.header,
        &[record(1, 1), record(2, 1), record(3, 1)],
        &net,
        1,
    );
    assert_eq!(post(&client, addr, b1.to_bytes()).await.0, 200);
    assert_eq!(post(&client, addr, b2.to_bytes()).await.0, 200);
    let m0 = record(1, 0).minute.0;

    // Readings of relay 2, JSON and CSV, by minute number and by date.
    let r = get_json(
        &client,
        format!("http://{addr}/readings?relay=2&from={m0}&to={}", m0 + 5),
    )
    .await;
    let list = r["readings"].as_array().expect("readings");
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0]["minute"].as_u64(), list[1]["height"].as_u64()),
        (Some(u64::from(m0)), Some(2))
    );
    let iso = record(2, 1).minute.to_string();
    let r = get_json(
        &client,
        format!("http://{addr}/readings?relay=2&from={iso}&to={iso}"),
    )
    .await;
    assert_eq!(r["readings"].as_array().map(Vec::len), Some(1));
    let csv = common::get_text(
        &client,
        format!(
            "http://{addr}/readings?relay=1&from={m0}&to={}&format=csv",
            m0 + 1
        ),
    )
    .await;
    assert_eq!(
        csv.lines().count(),
        1 + 2 * 6,
        "header and six samples per record:\n{csv}"
    );
    let bad = client
        .get(format!("http://{addr}/readings?relay=1&from=yesterday"))
        .send()
        .await
        .expect("answered");
    assert_eq!(bad.status().as_u16(), 400);

    // The proof checks out against the header with nothing but SHA-256.
    let p = get_json(
        &client,
        format!("http://{addr}/readings/3/{}/proof", m0 + 1),
    )
    .await;
    let header = hex::decode(p["header"].as_str().expect("header")).expect("hex");
    assert_eq!(
        hex::encode(Sha256::digest(&header)),
        p["block_id"].as_str().expect("id")
    );
    let mut node: [u8; 32] = Sha256::new()
        .chain_update([0u8])
        .chain_update(hex::decode(p["record"].as_str().expect("record")).expect("hex"))
        .finalize()
        .into();
    let (mut index, size) = (
        p["index"].as_u64().expect("index"),
        p["size"].as_u64().expect("size"),
    );
    assert_eq!((index, size), (2, 3));
    let path: Vec<Vec<u8>> = p["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|h| hex::decode(h.as_str().expect("hex")).expect("hex"))
        .collect();
    // Three leaves: leaf 2's path is [root of leaves 0..2]; it is a right child.
    for sibling in &path {
        node = if index % 2 == 1 || index + 1 == size {
            Sha256::new()
                .chain_update([1u8])
                .chain_update(sibling)
                .chain_update(node)
                .finalize()
                .into()
        } else {
            Sha256::new()
                .chain_update([1u8])
                .chain_update(node)
                .chain_update(sibling)
                .finalize()
                .into()
        };
        index /= 2;
    }
    assert_eq!(
        &node[..],
        &header[38..70],
        "the record climbs to the header's Merkle root"
    );
    let none = client
        .get(format!("http://{addr}/readings/9/{m0}/proof"))
        .send()
        .await
        .expect("answered");
    assert_eq!(none.status().as_u16(), 404);

    // Peers.
    let r = client
        .post(format!("http://{addr}/peers"))
        .json(&serde_json::json!({"url": "http://127.0.0.1:9/"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);
    let peers = get_json(&client, format!("http://{addr}/peers")).await;
    assert_eq!(peers["peers"], serde_json::json!(["http://127.0.0.1:9"]));
    let r = client
        .post(format!("http://{addr}/peers"))
        .json(&serde_json::json!({"url": "ftp://x"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 400);

    // Witness: this node read relay 5's record itself; a block claiming other values for
    // that relay and minute is refused.
    let honest = record(5, 2);
    let mut forged = honest.clone();
    forged.samples[0].p.0 += 1;
    assert!(shared.lock().expect("lock").read(honest));
    let lie = block_on(&b2.header, &[forged], &net, 2);
    let (code, body) = post(&client, addr, lie.to_bytes()).await;
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("reason")
        .contains("witness conflict"));

    let metrics = common::get_text(&client, format!("http://{addr}/metrics")).await;
    for line in [
        "gridledger_height 2",
        "gridledger_records 5",
        "gridledger_witness_conflicts_total 1",
        "gridledger_blocks_received_total 2",
        "gridledger_mempool_records 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing '{line}' in:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_resolve_without_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = serve(dir.path(), Network::new("api", 4)).await;
    let client = gridledger::wire::builder().build().expect("http client");
    let page = client
        .get(format!("http://{addr}/"))
        .send()
        .await
        .expect("answered");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    assert!(page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("script-src 'self'")));
    let html = page.text().await.expect("html");
    assert!(html.contains("/ui/app.js"));
    // Every page path is the same shell; an unknown asset is a 404.
    for path in ["/relay/1", "/explorer", "/block/0", "/reading/1/29925000"] {
        let r = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.text().await.expect("html"), html, "{path}");
    }
    let r = client
        .get(format!("http://{addr}/ui/nope.js"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 404);
    let js = common::get_text(&client, format!("http://{addr}/ui/app.js")).await;
    // The pages read the API it documents, and change nothing (admin calls are refused to
    // web pages anyway).
    for path in [
        "/status",
        "/metrics",
        "/blocks?from=",
        "/peers",
        "/forks",
        "/readings",
    ] {
        assert!(js.contains(path), "the dashboard does not use {path}");
    }
    assert!(!js.contains("method:"), "the dashboard only reads");
    let r = common::post_json(&client, format!("http://{addr}/peers/resolve")).await;
    assert_eq!(r["replaced"], false, "{r}");
    assert_eq!(r["peers"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(r["height"], 0, "{r}");
}

/// `POST /peers/resolve` on a node behind: it pulls the missing blocks (in more than one
/// request of `MAX_LIMIT` when it must) and says its chain was replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_pulls_a_longer_chain_in_batches() {
    let net = Network::new("api", 4);
    let (_dirs, (a, shared_a), (b, shared_b)) = two_nodes(&net).await;
    // More blocks than one request carries on A, straight into its ledger.
    let n = gridledger::wire::MAX_LIMIT + 20;
    mine_into(&shared_a, &net, net.genesis().header, 0..n, 1, 1);
    let client = gridledger::wire::builder().build().expect("http client");
    add_peer(&client, b, a).await;
    let r = common::post_json(&client, format!("http://{b}/peers/resolve")).await;
    assert_eq!(r["replaced"], true, "{r}");
    assert_eq!(r["height"], n, "{r}");
    // A pull of 500 blocks or more shows in /status: from 0 to the peer's height, done.
    let s = get_json(&client, format!("http://{b}/status")).await;
    let sync = &s["sync"];
    assert_eq!(
        (
            &sync["from"],
            &sync["height"],
            &sync["target"],
            &sync["active"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(n),
            &serde_json::json!(n),
            &serde_json::json!(false)
        ),
        "{s}"
    );
    assert!(
        sync["blocks_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{s}"
    );
    assert_eq!(r["peers"][0]["stored"], n, "{r}");
    assert_eq!(r["peers"][0]["error"], serde_json::Value::Null, "{r}");
    // A served /tip, so B speaks HTTP/2 to it from the first poll on: the pull above ran
    // over one HTTP/2 connection.
    let client_b = shared_b.lock().expect("lock").client.clone();
    assert!(client_b.speaks_h2(&format!("http://{a}")));

    // /chain streams in chunks of blocks: every block comes out whole, in order, linked.
    let chain = get_json(&client, format!("http://{b}/chain")).await;
    assert_eq!(chain["length"], n + 1);
    let blocks = chain["chain"].as_array().expect("blocks");
    assert_eq!(blocks.len(), n as usize + 1);
    for (h, w) in blocks.windows(2).enumerate() {
        assert_eq!(w[1]["height"], h as u64 + 1);
        assert_eq!(w[1]["prev"], w[0]["id"], "block {} links", h + 1);
    }
}

/// Without `from` and `to`, `/readings` gives the relay's latest hour. (Records ahead of the
/// wall clock, which this default once had to allow for, cannot be on a chain any more:
/// rule 9 refuses a record whose minute has not closed by its block's time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_default_to_the_relays_latest_hour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("api", 4);
    let addr = serve(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("http client");
    // The last closed minute.
    let ahead = (common::now_ms() / 60_000) as u32 - 1 - 29_925_000;
    let b1 = block_on(
        &net.genesis().header,
        &[
            record(5, ahead - 70),
            record(5, ahead - 30),
            record(5, ahead),
        ],
        &net,
        1,
    );
    assert_eq!(post(&client, addr, b1.to_bytes()).await.0, 200);
    let r = get_json(&client, format!("http://{addr}/readings?relay=5")).await;
    let minutes: Vec<u64> = r["readings"]
        .as_array()
        .expect("readings")
        .iter()
        .filter_map(|x| x["minute"].as_u64())
        .collect();
    assert_eq!(
        minutes,
        vec![
            u64::from(record(5, ahead - 30).minute.0),
            u64::from(record(5, ahead).minute.0)
        ],
        "{r}"
    );
}

/// `format=columns` (the relay page's curves): one point per sample, a null where a minute
/// has no record, averaged buckets over `points`, and a 400 for a bad format or `points`.
/// `GET /forks` lists a side block, and `/blocks/{id}` says it is not on the main chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_forks_and_side_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("api", 4);
    let addr = serve(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("http client");
    let mut parent = net.genesis().header;
    let mut main = Vec::new();
    // Minutes 0..40 of relay 1 but 7 (a gap).
    for m in (0..40).filter(|m| *m != 7) {
        let b = block_on(&parent, &[record(1, m)], &net, 1);
        assert_eq!(post(&client, addr, b.to_bytes()).await.0, 200);
        parent = b.header;
        main.push(b);
    }
    let side = block_on(&main[0].header, &[record(5, 1)], &net, 2);
    assert_eq!(post(&client, addr, side.to_bytes()).await.0, 200);
    let m0 = record(1, 0).minute.0;
    let url = |q: &str| {
        format!(
            "http://{addr}/readings?relay=1&from={m0}&to={}&{q}",
            m0 + 39
        )
    };

    let c = get_json(&client, url("format=columns")).await;
    assert_eq!(c["records"], 39);
    assert_eq!(c["samples"], 39 * 6);
    assert_eq!(c["bucket_s"], 0);
    assert_eq!(c["gaps"], serde_json::json!([[m0 + 7, m0 + 7]]));
    let t = c["t"].as_array().expect("t");
    let vab = c["series"][0].as_array().expect("Vab");
    assert_eq!(t.len(), 39 * 6 + 1, "every sample and one null for the gap");
    assert_eq!(vab.iter().filter(|v| v.is_null()).count(), 1);
    let first = record(1, 0).samples[0].vab.0;
    assert_eq!(vab[0].as_f64(), Some(f64::from(first) / 1000.0));
    assert_eq!(t[0].as_u64(), Some(u64::from(m0) * 60));
    assert_eq!(c["columns"][0], "Vab_kV");

    // Over `points` samples: means over buckets, the gap still a null.
    let c = get_json(&client, url("format=columns&points=100")).await;
    let bucket = c["bucket_s"].as_u64().expect("bucket");
    assert_eq!(bucket, (40 * 60u64).div_ceil(100));
    let t = c["t"].as_array().expect("t");
    assert!(t.len() <= 101, "{} points", t.len());
    let vab = c["series"][0].as_array().expect("Vab");
    assert!(
        vab.iter().any(serde_json::Value::is_null),
        "the gap minute is a gap"
    );
    // The first bucket: the samples at seconds 0, 10, 20 (of minute 0) when it spans 24 s.
    let n = (bucket as usize).div_ceil(10);
    let mean = (0..n)
        .map(|i| f64::from(record(1, 0).samples[i].vab.0) / 1000.0)
        .sum::<f64>()
        / n as f64;
    let mean = (mean * 1000.0).round() / 1000.0;
    assert!((vab[0].as_f64().expect("mean") - mean).abs() < 1e-9);

    for bad in [
        "format=xml",
        "format=columns&points=5",
        "format=columns&points=x",
    ] {
        let r = client.get(url(bad)).send().await.expect("answered");
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }

    let f = get_json(&client, format!("http://{addr}/forks")).await;
    let sides = f["side_blocks"].as_array().expect("side blocks");
    assert_eq!(sides.len(), 1);
    assert_eq!(sides[0]["id"], side.id().to_hex());
    assert_eq!(sides[0]["height"], 2);
    assert_eq!(sides[0]["main_at_height"], main[1].id().to_hex());
    let b = get_json(
        &client,
        format!("http://{addr}/blocks/{}", side.id().to_hex()),
    )
    .await;
    assert_eq!(b["main"], false);
    let b = get_json(&client, format!("http://{addr}/blocks/2")).await;
    assert_eq!(b["main"], true);
}

/// `/readings` over more than a week is streamed a day at a time: the same readings, in the
/// same form, as the week-sized answers it replaces, in JSON and in CSV; past eleven years
/// (or a week with `format=columns`) it is refused with the limit named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_over_more_than_a_week_stream_the_same_answer() {
    let net = Network::new("api", 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, shared) = serve_shared(dir.path(), net.clone()).await;
    // Nine days of relay 1 ending yesterday, a record every 20 minutes, relay 2 beside it
    // in the same blocks.
    let base = (common::now_ms() / 60_000) as u32 - 10 * 1440;
    let at = |relay: u32, m: u32| {
        relay_core::signal::SignalModel::new(1, relay_core::signal::Profile::Realistic).record(
            relay_core::RelayId(relay),
            relay_core::Minute(base + m),
            6,
            relay_core::RecordFlags::CLOCK_SET,
        )
    };
    let minutes: Vec<u32> = (0..9 * 1440).step_by(20).collect();
    {
        let mut core = shared.lock().expect("lock");
        let mut parent = net.genesis().header;
        for &m in &minutes {
            let block = block_on(&parent, &[at(1, m), at(2, m)], &net, 1);
            parent = block.header;
            core.accept(block, common::now_ms(), gridledger::core::Origin::Peer)
                .expect("accepted");
        }
    }
    let client = gridledger::wire::builder().build().expect("http client");
    let (from, mid, to) = (base, base + 7 * 1440 - 1, base + 9 * 1440 - 1);
    let url = |from: u32, to: u32, format: &str| {
        format!("http://{a}/readings?relay=1&from={from}&to={to}&format={format}")
    };
    let whole = get_json(&client, url(from, to, "json")).await;
    let first = get_json(&client, url(from, mid, "json")).await;
    let rest = get_json(&client, url(mid + 1, to, "json")).await;
    let mut joined = first["readings"].as_array().expect("readings").clone();
    joined.extend(
        rest["readings"]
            .as_array()
            .expect("readings")
            .iter()
            .cloned(),
    );
    assert_eq!(joined.len(), minutes.len());
    assert_eq!(whole["readings"].as_array(), Some(&joined));
    assert_eq!(
        (&whole["from"], &whole["to"], &whole["relay"]),
        (
            &serde_json::json!(from),
            &serde_json::json!(to),
            &serde_json::json!(1)
        )
    );
    // Byte for byte the form of the buffered answer.
    let text = common::get_text(&client, url(from, to, "json")).await;
    let expected = serde_json::to_string(&serde_json::json!({
        "from": from, "readings": joined, "relay": 1, "to": to
    }))
    .expect("json");
    assert_eq!(text, expected);

    let csv = common::get_text(&client, url(from, to, "csv")).await;
    let csv_first = common::get_text(&client, url(from, mid, "csv")).await;
    let csv_rest = common::get_text(&client, url(mid + 1, to, "csv")).await;
    let rest_rows = csv_rest
        .split_once('\n')
        .map(|(_, rows)| rows)
        .unwrap_or("");
    assert_eq!(csv, format!("{csv_first}{rest_rows}"));
    assert_eq!(csv.lines().count(), 1 + 6 * minutes.len());

    for (f, t, format) in [(from, from + 11 * 366 * 1440, "csv"), (from, to, "columns")] {
        let r = client.get(url(f, t, format)).send().await.expect("answer");
        assert_eq!(r.status().as_u16(), 400, "{format}");
        let said = r.text().await.unwrap_or_default();
        assert!(said.contains("span at most"), "{said}");
    }
}

/// Issue 14: with most of the chain below the tree's window (on disk only), every answer
/// is what it was with the whole chain in memory: readings (JSON, CSV, over window and
/// disk at once), a proof, the chain, block listings and lookups by height and id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_the_same_with_the_chain_below_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("api", 4);
    let (addr, shared) = serve_shared(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("http client");
    let mut parent = net.genesis().header;
    let mut ids = Vec::new();
    for m in 0..80u32 {
        let b = block_on(&parent, &[record(1, m), record(2, m)], &net, 1);
        assert_eq!(post(&client, addr, b.to_bytes()).await.0, 200);
        parent = b.header;
        ids.push(b.id().to_hex());
    }
    let m0 = record(1, 0).minute.0;
    let urls = [
        format!("/readings?relay=1&from={m0}&to={}", m0 + 79),
        format!(
            "/readings?relay=2&from={}&to={}&format=csv",
            m0 + 3,
            m0 + 70
        ),
        format!("/readings?relay=1&from={}&to={}", m0 + 10, m0 + 12),
        format!("/readings/1/{}/proof", m0 + 5),
        "/chain".to_owned(),
        "/blocks?from=0&limit=50".to_owned(),
        "/blocks?from=30&limit=40".to_owned(),
        "/blocks/7".to_owned(),
        format!("/blocks/{}", ids[20]),
        "/status".to_owned(),
    ];
    let mut before = Vec::new();
    for u in &urls {
        before.push(common::get_text(&client, format!("http://{addr}{u}")).await);
    }
    {
        let mut core = shared.lock().expect("lock");
        core.ledger.set_window(12);
        let tree = core.ledger.tree();
        assert!(
            tree.base() >= 56 && tree.window() <= 24,
            "base {}",
            tree.base()
        );
    }
    for (u, was) in urls.iter().zip(&before) {
        let now = common::get_text(&client, format!("http://{addr}{u}")).await;
        assert_eq!(&now, was, "{u} changed once the chain was below the window");
    }
    let r = get_json(&client, format!("http://{addr}{}", urls[0])).await;
    assert_eq!(r["readings"].as_array().map(Vec::len), Some(80));
}

/// Issue 14, over the network: a node whose window holds 12 to 24 blocks pulls from a peer a
/// longer branch forking 250 blocks below its tip (a long partition healing). The pull steps
/// back past the window to the common block, the window is rebuilt from disk there, the node
/// ends on the peer's tip, and every record of its abandoned blocks that the peer's chain
/// lacks is back in its mempool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_follows_a_branch_forking_below_the_window() {
    let net = Network::new("api", 4);
    let (_dirs, (a, shared_a), (b, shared_b)) = two_nodes(&net).await;
    // 50 blocks both hold (the same blocks); then A mines 250 more of relay 1, B 300 of
    // relay 2.
    let g = net.genesis().header;
    let fork = mine_into(&shared_a, &net, g, 0..50, 1, 1);
    assert_eq!(mine_into(&shared_b, &net, g, 0..50, 1, 1), fork);
    mine_into(&shared_a, &net, fork, 50..300, 1, 1);
    {
        let mut core = shared_a.lock().expect("lock");
        core.ledger.set_window(12);
        assert!(
            core.ledger.tree().base() > 250,
            "A's window is above the fork"
        );
        assert_eq!(core.mempool.len(), 0);
    }
    let b_tip = mine_into(&shared_b, &net, fork, 0..300, 2, 2).id();
    let client = gridledger::wire::builder().build().expect("http client");
    add_peer(&client, a, b).await;
    let r = common::post_json(&client, format!("http://{a}/peers/resolve")).await;
    assert_eq!(r["replaced"], true, "{r}");
    assert_eq!(r["height"], 350, "{r}");
    let core = shared_a.lock().expect("lock");
    assert_eq!(core.ledger.tree().tip(), b_tip);
    assert_eq!(core.ledger.summary().records, 350);
    // Relay 1's minutes 50..299 left the main chain and the peer's chain lacks them: all
    // back in the mempool, once each.
    assert_eq!(core.mempool.len(), 250);
    for m in [50, 173, 299] {
        let key = gridledger::chain::RecordKey::of(&record(1, m));
        assert!(core.mempool.contains(&key), "minute {m}");
        assert!(!core.ledger.tree().has_record(&key));
    }
    assert!(
        core.ledger.tree().window() <= 24,
        "pruned again once the branch won"
    );
}
