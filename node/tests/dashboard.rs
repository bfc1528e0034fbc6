//! The dashboard in a real browser (headless Chromium over the DevTools protocol).
//!
//! A node holds a known chain: relay 1's records for 30 minutes, one minute missing (a
//! gap), one minute with fault openings, one record with two slots the device did not
//! answer, a block of three records, and a side branch. Every page must load with no
//! console error (CSP violations included) and no failed request; the relay page's chart
//! must hold exactly the chain's samples of the range, with the gap and the missing slots
//! as gaps and the fault opening marked; the proof page must say "verified" for a real
//! record and name the failing step when a proxy between browser and node changes one byte
//! of the audit path or of the header. Screenshots go to `target/tmp/dashboard/`.
//!
//! Without a browser the test says so loudly and skips; GRIDLEDGER_REQUIRE_TOOLS=1 (CI)
//! turns the skip into a failure.

mod browser;
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use common::{block_on, record};
use gridledger::chain::{Block, Network};
use serde_json::Value;

/// The first minute of the test chain (2026-11-24T06:00Z, as `common::record` counts).
const M0: u32 = 29_925_000;
const GAP: u32 = 10;
const FAULT: u32 = 5;
const SLOTS_MISSING: u32 = 20;
const THREE: u32 = 3;
const MINUTES: u32 = 30;

/// Relay 2 signs its records (the network's registry names this key); relays 1 and 3 do
/// not.
fn relay_2_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[22; 32])
}

fn signed_by_relay_2(mut r: relay_core::MinuteRecord) -> relay_core::MinuteRecord {
    use ed25519_dalek::Signer;
    let mut buf = [0u8; relay_core::MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
    let m = r.signing_message(&mut buf).expect("fits");
    r.signature = Some(relay_core::RecordSignature(
        relay_2_key().sign(m).to_bytes(),
    ));
    r
}

/// The node's chain; returns the side block's id.
fn build_chain(net: &Network) -> (Vec<Block>, Block) {
    let mut blocks = Vec::new();
    let mut parent = net.genesis().header;
    let mut side = None;
    for m in 0..MINUTES {
        if m == GAP {
            continue;
        }
        let mut r = record(1, m);
        if m == FAULT {
            r.faults = 2;
        }
        if m == SLOTS_MISSING {
            // Slots 1 and 4 not answered (seconds 10 and 40): four samples kept.
            r.samples = r
                .samples
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 1 && *i != 4)
                .map(|(_, s)| *s)
                .collect();
            r.flags = r.flags.with_missing(0b01_0010);
        }
        let mut records = vec![r];
        if m == THREE {
            records.push(signed_by_relay_2(record(2, m)));
            records.push(record(3, m));
        }
        let b = block_on(&parent, &records, net, 1);
        if blocks.len() == 2 {
            // A rival of block 3 on block 2, seen after it: a side branch.
            side = Some(block_on(&b.header, &[record(9, m)], net, 2));
        }
        parent = b.header;
        blocks.push(b);
    }
    (blocks, side.expect("side block"))
}

/// What the proxy does to a proof on its way to the browser.
const HONEST: u8 = 0;
const FLIP_PATH: u8 = 1;
const FLIP_HEADER: u8 = 2;
/// The node names another key as the relay's registered one.
const FLIP_KEY: u8 = 3;

/// A proxy in front of the node: passes everything through, and changes one byte of a
/// proof's audit path or header when told to.
async fn proxy(upstream: SocketAddr, mode: Arc<AtomicU8>) -> SocketAddr {
    async fn forward(
        State((upstream, mode)): State<(SocketAddr, Arc<AtomicU8>)>,
        req: axum::extract::Request,
    ) -> Response {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let client = reqwest::Client::new();
        let Ok(r) = client.get(format!("http://{upstream}{path}")).send().await else {
            return axum::http::StatusCode::BAD_GATEWAY.into_response();
        };
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let mut body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let m = mode.load(Ordering::SeqCst);
        if path.ends_with("/proof") && m != HONEST {
            let mut v: Value = serde_json::from_slice(&body).expect("proof JSON");
            let flip = |field: &mut Value, at: usize| {
                let mut bytes = hex::decode(field.as_str().expect("hex")).expect("hex");
                bytes[at] ^= 0x01;
                *field = Value::String(hex::encode(bytes));
            };
            match m {
                FLIP_PATH => flip(&mut v["path"][0], 0),
                // The header's time (bytes 70..78): the Merkle root still matches.
                FLIP_HEADER => flip(&mut v["header"], 70),
                _ => {
                    v["relay_signature"]["registered_key"] = Value::String(hex::encode(
                        ed25519_dalek::SigningKey::from_bytes(&[23; 32])
                            .verifying_key()
                            .to_bytes(),
                    ));
                }
            }
            body = serde_json::to_vec(&v).expect("json");
        }
        (
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
            [("content-type", ctype)],
            body,
        )
            .into_response()
    }
    let app = axum::Router::new()
        .fallback(forward)
        .with_state((upstream, mode));
    let addr = common::serve_router(app).await;
    addr
}

fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// Opens a page and fails on any console error or failed request.
async fn open_clean(page: &browser::Page, url: &str, shot: &str) -> browser::Load {
    let load = page.open(url).await.unwrap_or_else(|e| panic!("{e}"));
    let error = page.eval("window.gl.error").await.expect("gl.error");
    assert!(error.is_null(), "{url}: the page reports an error: {error}");
    assert!(
        load.errors.is_empty(),
        "{url}: console errors: {:?}",
        load.errors
    );
    assert!(
        load.failed.is_empty(),
        "{url}: failed requests: {:?}",
        load.failed
    );
    page.screenshot(&shots().join(format!("{shot}.png")))
        .await
        .expect("screenshot");
    load
}

/// Waits (at most 5 s) until `expr` is true in the page.
async fn wait_for(page: &browser::Page, expr: &str) -> bool {
    for _ in 0..50 {
        if page.eval(expr).await.ok() == Some(Value::Bool(true)) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

async fn text(page: &browser::Page, id: &str) -> String {
    page.eval(&format!("document.getElementById('{id}').textContent"))
        .await
        .expect("eval")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_a_real_browser() {
    let Some(exe) = browser::find() else {
        if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
            panic!("no Chromium for the dashboard tests (GRIDLEDGER_REQUIRE_TOOLS is set)");
        }
        eprintln!(
            "SKIPPED: the dashboard's browser tests: no chromium on PATH (set GRIDLEDGER_CHROMIUM)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = Network::new("dashboard", 4);
    net.registry = gridledger::chain::Registry::parse(&format!(
        "2 {}\n",
        hex::encode(relay_2_key().verifying_key().to_bytes())
    ))
    .expect("a registry");
    let (node, _) = common::serve_api(dir.path(), net.clone()).await;
    let client = gridledger::wire::builder().build().expect("client");
    let (blocks, side) = build_chain(&net);
    for b in blocks.iter().chain([&side]) {
        let r = client
            .post(format!("http://{node}/blocks"))
            .header("content-type", "application/octet-stream")
            .body(b.to_bytes())
            .send()
            .await
            .expect("posted");
        assert_eq!(
            r.status().as_u16(),
            200,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
    let height = blocks.len();
    let mode = Arc::new(AtomicU8::new(HONEST));
    let proxied = proxy(node, mode.clone()).await;

    let chrome = browser::Browser::launch(&exe).await.expect("browser");
    let page = chrome.page().await.expect("page");
    let base = format!("http://{node}");
    let mut weights = Vec::new();

    // Overview: live figures from /status.
    let load = open_clean(&page, &format!("{base}/"), "overview").await;
    weights.push(("overview", load.bytes, load.requests));
    assert_eq!(text(&page, "height").await, height.to_string());
    assert_eq!(text(&page, "records").await, (MINUTES - 1 + 2).to_string());
    // Without an allow-list the page says that nothing is final.
    assert_eq!(text(&page, "final").await, "not final");
    assert!(text(&page, "finalsays")
        .await
        .starts_with("History here is NOT final"));
    // The driver hears a console error and a failed request (else a clean load proves
    // nothing).
    page.eval("console.error('probe'); fetch('/ui/no-such-asset').then(() => 0)")
        .await
        .expect("probe");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let probe = page.load();
    assert!(
        probe.errors.iter().any(|e| e.contains("probe")),
        "{probe:?}"
    );
    assert!(
        probe.failed.iter().any(|e| e.starts_with("404")),
        "{probe:?}"
    );

    // Explorer: recent blocks and the side branch.
    let load = open_clean(&page, &format!("{base}/explorer"), "explorer").await;
    weights.push(("explorer", load.bytes, load.requests));
    let side_id = side.id().to_hex();
    assert!(
        text(&page, "side").await.contains(&side_id[..16]),
        "the explorer lists the side block"
    );
    assert!(text(&page, "recent")
        .await
        .contains(&blocks[height - 1].id().to_hex()[..16]));
    // Search by relay and minute leads to that reading's page.
    let target = format!("/reading/2/{}", M0 + THREE);
    page.eval(&format!(
        "document.getElementById('search').value = '2@{}'; document.querySelector('main form').requestSubmit()",
        M0 + THREE
    ))
    .await
    .expect("search");
    assert!(
        wait_for(
            &page,
            &format!("location.pathname === '{target}' && window.gl && window.gl.ready")
        )
        .await,
        "the search opened {target}"
    );

    // Block pages: a main-chain block of three records, and the side block.
    let load = open_clean(&page, &format!("{base}/block/{}", THREE + 1), "block").await;
    weights.push(("block", load.bytes, load.requests));
    let body = page
        .eval("document.getElementById('app').textContent")
        .await
        .expect("eval");
    let body = body.as_str().unwrap_or_default();
    assert!(body.contains("on this node's main chain"), "{body}");
    assert_eq!(
        page.eval("document.querySelectorAll('#app table')[1].tBodies[0].rows.length")
            .await
            .expect("eval"),
        Value::from(3)
    );
    open_clean(&page, &format!("{base}/block/{side_id}"), "block-side").await;
    let body = page
        .eval("document.getElementById('app').textContent")
        .await
        .expect("eval");
    assert!(body.as_str().unwrap_or_default().contains("side branch"));

    // Relay page: the chart holds exactly the chain's samples of the range.
    let (from, to) = (M0, M0 + MINUTES - 1);
    let load = open_clean(
        &page,
        &format!("{base}/relay/1?from={from}&to={to}"),
        "relay",
    )
    .await;
    weights.push(("relay", load.bytes, load.requests));
    assert!(
        load.bytes <= 300_000,
        "the relay page weighs {} bytes (limit 300 KB)",
        load.bytes
    );
    // Relay 1 is not registered: the page says its records are unsigned.
    assert_eq!(
        page.eval("window.gl.data.signed_by_relay")
            .await
            .expect("eval"),
        Value::from(0)
    );
    assert!(text(&page, "summary")
        .await
        .contains("0 of 29 records signed by the relay's registered key"));
    let first_chart = page.eval("window.gl.firstChartMs").await.expect("eval");
    let charts = page.eval("window.gl.charts.length").await.expect("eval");
    assert_eq!(charts, Value::from(5), "five charts: V, I, f, PF, P/Q");
    let drawn = page
        .eval("window.gl.charts[0].data.map((c) => Array.from(c))")
        .await
        .expect("chart data");
    let drawn: Vec<Vec<Option<f64>>> = serde_json::from_value(drawn).expect("columns");
    let readings = common::get_json(
        &client,
        format!("{base}/readings?relay=1&from={from}&to={to}"),
    )
    .await;
    let mut expected: Vec<(u64, [f64; 3])> = Vec::new();
    for r in readings["readings"].as_array().expect("readings") {
        let minute = r["minute"].as_u64().expect("minute");
        let seconds = r["seconds"].as_array().expect("seconds");
        for (s, sec) in r["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .zip(seconds)
        {
            let v = |k: &str| s[k].as_f64().expect("value");
            expected.push((
                minute * 60 + sec.as_u64().expect("second"),
                [v("Vab_kV"), v("Vbc_kV"), v("Vca_kV")],
            ));
        }
    }
    assert_eq!(expected.len(), (MINUTES as usize - 1) * 6 - 2);
    let t: Vec<u64> = drawn[0].iter().map(|x| x.expect("time") as u64).collect();
    let held: Vec<(u64, [f64; 3])> = (0..t.len())
        .filter_map(|i| Some((t[i], [drawn[1][i]?, drawn[2][i]?, drawn[3][i]?])))
        .collect();
    assert_eq!(
        held.len(),
        expected.len(),
        "one point per sample, no more, no less"
    );
    for (got, want) in held.iter().zip(&expected) {
        assert_eq!(got.0, want.0, "sample time");
        for k in 0..3 {
            assert!((got.1[k] - want.1[k]).abs() < 1e-9, "{got:?} != {want:?}");
        }
    }
    // The gap minute and the unanswered slots break the line: a null point, nothing drawn.
    let null_at = |sec: u64| {
        t.iter()
            .position(|&x| x == sec)
            .is_some_and(|i| drawn[1][i].is_none())
    };
    let gap = u64::from(M0 + GAP) * 60;
    assert!(null_at(gap), "the gap minute is a null point");
    assert!(!held.iter().any(|(x, _)| (gap..gap + 60).contains(x)));
    let slots = u64::from(M0 + SLOTS_MISSING) * 60;
    assert!(
        null_at(slots + 10) && null_at(slots + 40),
        "missing slots are gaps"
    );
    let faults = page.eval("window.gl.faults").await.expect("faults");
    assert_eq!(faults, serde_json::json!([u64::from(M0 + FAULT) * 60]));
    assert_eq!(
        page.eval("document.querySelectorAll('#faultlist a').length")
            .await
            .expect("eval"),
        Value::from(1)
    );
    let csv = page
        .eval("document.getElementById('csv').href")
        .await
        .expect("csv");
    assert!(csv.as_str().unwrap_or_default().contains("format=csv"));

    // Averaged points (forced here with `points=100`: 172 samples), then a zoom into four
    // minutes fetches them again sample by sample, and a double-click shows the whole range.
    open_clean(
        &page,
        &format!("{base}/relay/1?from={from}&to={to}&points=100"),
        "relay-averaged",
    )
    .await;
    let bucket = page.eval("window.gl.data.bucket_s").await.expect("eval");
    assert!(bucket.as_u64().is_some_and(|b| b > 0), "averaged: {bucket}");
    let (z0, z1) = (u64::from(M0 + 12) * 60, u64::from(M0 + 15) * 60 + 59);
    page.eval(&format!(
        "window.gl.charts[0].setScale('x', {{min: {z0}, max: {z1}}})"
    ))
    .await
    .expect("zoom");
    let zoomed = wait_for(&page, "window.gl.data.bucket_s === 0").await;
    assert!(
        zoomed,
        "the zoom fetched the zoomed minutes at full resolution"
    );
    let held = page
        .eval("window.gl.charts[1].data[1].filter((v) => v !== null).length")
        .await
        .expect("eval");
    assert_eq!(
        held,
        Value::from(4 * 6),
        "every sample of the four zoomed minutes"
    );
    page.eval("document.querySelector('.u-over').dispatchEvent(new MouseEvent('dblclick', {bubbles: true}))")
        .await
        .expect("dblclick");
    assert!(
        wait_for(&page, "window.gl.data.bucket_s > 0").await,
        "reset to the whole range"
    );
    let load = page.load();
    assert!(load.errors.is_empty() && load.failed.is_empty(), "{load:?}");

    // The proof, checked in the browser: through the proxy, honest then tampered.
    let minute = M0 + THREE;
    let proof_url = format!("http://{proxied}/reading/2/{minute}");
    let load = open_clean(&page, &proof_url, "proof").await;
    weights.push(("proof", load.bytes, load.requests));
    let proof = page.eval("window.gl.proof").await.expect("proof");
    assert_eq!(proof["ok"], Value::Bool(true), "{proof}");
    assert!(text(&page, "verdict").await.contains("verified"));
    assert!(
        proof["steps"].as_array().is_some_and(|s| s.len() >= 7),
        "record, leaf, two path steps, root, id, work, relay signature: {proof}"
    );
    // Relay 2 is registered: its signature was checked in the page, and the page says so.
    assert_eq!(proof["signed"], "relay", "{proof}");
    assert!(
        proof["steps"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["id"] == "relay-signature" && s["ok"] == true)),
        "{proof}"
    );
    assert!(text(&page, "signer")
        .await
        .starts_with("Signed by the relay"));
    // The values shown are decoded in the page from the proven bytes: the chain's values.
    let shown = &proof["record"]["samples"];
    let want = common::get_json(
        &client,
        format!("{base}/readings?relay=2&from={minute}&to={minute}"),
    )
    .await;
    let want = &want["readings"][0]["samples"];
    for (i, s) in want.as_array().expect("samples").iter().enumerate() {
        let got = shown[i][0].as_f64().expect("Vab") / 1000.0;
        assert!(
            (got - s["Vab_kV"].as_f64().expect("Vab")).abs() < 1e-9,
            "{got} {s}"
        );
        let got = shown[i][9].as_f64().expect("Q") / 1000.0;
        assert!(
            (got - s["Q_kvar"].as_f64().expect("Q")).abs() < 1e-9,
            "{got} {s}"
        );
    }
    // The SHA-256 in script (pages served over plain HTTP to another host have no
    // WebCrypto) agrees with WebCrypto at every padding boundary.
    let agree = page
        .eval(
            "(async () => { const out = []; for (const n of [0, 1, 55, 56, 63, 64, 119, 120, 1000]) {
               const b = new Uint8Array(n).map((_, i) => (i * 7 + n) & 255);
               const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
               const w = new Uint8Array(await crypto.subtle.digest('SHA-256', b));
               const wh = Array.from(w, (x) => x.toString(16).padStart(2, '0')).join('');
               out.push(gl.sha256js(hex) === wh); } return out; })()",
        )
        .await
        .expect("sha256");
    assert_eq!(
        agree,
        Value::Array(vec![Value::Bool(true); 9]),
        "script SHA-256 = WebCrypto"
    );
    // The same for the SHA-512 in script that Ed25519 uses without WebCrypto.
    let agree = page
        .eval(
            "(async () => { const out = []; for (const n of [0, 1, 111, 112, 127, 128, 239, 240, 1000]) {
               const b = new Uint8Array(n).map((_, i) => (i * 7 + n) & 255);
               const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
               const w = new Uint8Array(await crypto.subtle.digest('SHA-512', b));
               const wh = Array.from(w, (x) => x.toString(16).padStart(2, '0')).join('');
               out.push(gl.sha512js(hex) === wh); } return out; })()",
        )
        .await
        .expect("sha512");
    assert_eq!(
        agree,
        Value::Array(vec![Value::Bool(true); 9]),
        "script SHA-512 = WebCrypto"
    );
    // A relay 1 reading (unregistered) says it is unsigned.
    let unsigned_url = format!("http://{proxied}/reading/1/{minute}");
    open_clean(&page, &unsigned_url, "proof-unsigned").await;
    let proof = page.eval("window.gl.proof").await.expect("proof");
    assert_eq!(proof["ok"], Value::Bool(true), "{proof}");
    assert_eq!(proof["signed"], "unsigned", "{proof}");
    assert!(text(&page, "signer").await.starts_with("Unsigned"));
    for (m, step, words, shot) in [
        (FLIP_PATH, "merkle-root", "Merkle root", "proof-bad-path"),
        (FLIP_HEADER, "block-id", "block id", "proof-bad-header"),
        (
            FLIP_KEY,
            "relay-signature",
            "Signed by relay",
            "proof-bad-key",
        ),
    ] {
        mode.store(m, Ordering::SeqCst);
        open_clean(&page, &proof_url, shot).await;
        let proof = page.eval("window.gl.proof").await.expect("proof");
        assert_eq!(proof["ok"], Value::Bool(false), "{proof}");
        assert_eq!(proof["failed"], Value::from(step), "{proof}");
        let verdict = text(&page, "verdict").await;
        assert!(
            verdict.contains("FAILED") && verdict.contains(words),
            "{verdict}"
        );
    }
    mode.store(HONEST, Ordering::SeqCst);

    eprintln!("page weights (bytes received, requests):");
    for (name, bytes, requests) in &weights {
        eprintln!("  {name:<9} {bytes:>7} B  {requests} requests");
    }
    eprintln!("relay page: first chart drawn {first_chart} ms after navigation");
    eprintln!("screenshots: {}", shots().display());
}
