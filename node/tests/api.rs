//! The HTTP API on a loopback port: status, chain, blocks both ways, and every kind of
//! refusal with its status code and reason.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{block_on, record};
use gridledger::api::{router, Core};
use gridledger::chain::Network;
use gridledger::ledger::Ledger;
use gridledger::mempool::Mempool;

async fn serve(dir: &std::path::Path, net: Network) -> SocketAddr {
    let ledger = Ledger::open(dir, net).expect("opens");
    let shared = Arc::new(Mutex::new(Core {
        ledger,
        mempool: Mempool::new(),
        tip_changed: Default::default(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(shared)).await;
    });
    addr
}

async fn post(
    client: &reqwest::Client,
    addr: SocketAddr,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let r = client
        .post(format!("http://{addr}/blocks"))
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
    let client = reqwest::Client::new();

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

    // Out of order: unknown parent is a 409 with the reason.
    let b3 = block_on(&b2.header, &[record(1, 2)], &net, 1);
    let (code, body) = post(&client, addr, b3.to_bytes()).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("reason")
        .contains("unknown parent"));
    assert_eq!(post(&client, addr, b2.to_bytes()).await.0, 200);
    assert_eq!(post(&client, addr, b3.to_bytes()).await.0, 200);

    let status = get_json(&client, format!("http://{addr}/status")).await;
    assert_eq!(status["height"], 3);
    assert_eq!(status["records"], 4);
    assert_eq!(status["tip"], b3.id().to_hex());

    let chain = get_json(&client, format!("http://{addr}/chain")).await;
    assert_eq!(chain["length"], 4);
    assert_eq!(chain["chain"][2]["records"][1]["relay"], 2);

    let one = get_json(&client, format!("http://{addr}/blocks/2")).await;
    assert_eq!(one["id"], b2.id().to_hex());
    let by_id = get_json(&client, format!("http://{addr}/blocks/{}", b2.id())).await;
    assert_eq!(by_id, one);
    let raw = client
        .get(format!("http://{addr}/blocks/2"))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .expect("answered")
        .bytes()
        .await
        .expect("bytes");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blocks_get_a_4xx_with_the_reason_and_the_node_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::new("api", 4);
    let addr = serve(dir.path(), net.clone()).await;
    let client = reqwest::Client::new();
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
