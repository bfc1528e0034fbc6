//! The historian (`gridledger sink`) against a real PostgreSQL server that each test starts
//! in a temporary directory (initdb, a Unix socket and a loopback port) and stops.
//!
//! It needs PostgreSQL's server binaries (Debian's `postgresql`) and `psql`; without them
//! it says so loudly and skips, and GRIDLEDGER_REQUIRE_TOOLS=1 (CI) makes that a failure.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

mod common;
mod pg;

use common::{http_get, Proc};

use pg::{free_port, Pg};

fn skip_or_fail(why: &str) {
    if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
        panic!("the historian tests cannot run: {why} (GRIDLEDGER_REQUIRE_TOOLS is set)");
    }
    eprintln!("SKIPPED: historian test: {why}");
}

fn get_json(url: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(url)?).ok()
}

/// A node holding a chain of `blocks` blocks (one record each) that `debug-append` made, on a
/// network without finality: the process, its URL, and how to start it again.
/// The test chain's network, as `debug-append` and `run` take it.
const NET: [&str; 4] = ["--network", "historian-test", "--difficulty-bits", "4"];

fn node_with_chain(dir: &Path, blocks: u32) -> (Proc, String, impl Fn() -> Proc) {
    node_with_chain_and(dir, blocks, Vec::new())
}

/// [`node_with_chain`], the node run with `extra` flags.
fn node_with_chain_and(
    dir: &Path,
    blocks: u32,
    extra: Vec<String>,
) -> (Proc, String, impl Fn() -> Proc) {
    let data = dir.join("chain");
    let out = Command::new(BIN)
        .arg("debug-append")
        .args(NET)
        .arg("--data-dir")
        .arg(&data)
        .args(["--blocks", &blocks.to_string()])
        .stdout(Stdio::null())
        .output()
        .expect("debug-append");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let start = {
        let url = url.clone();
        move || {
            // Killed on drop, whatever happens below.
            let node = Proc(
                Command::new(BIN)
                    .arg("run")
                    .args(NET)
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--listen", &format!("127.0.0.1:{port}")])
                    .args(&extra)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("gridledger run"),
            );
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                if get_json(&format!("{url}/status")).is_some_and(|s| s["height"] == blocks) {
                    return node;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("the node did not serve its chain within 60 s");
        }
    };
    (start(), url, start)
}

fn sink(from: &str, to: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["sink", "--from", from, "--to", to]).args(extra);
    c.env("RUST_LOG", "warn");
    c
}

fn run_sink(from: &str, to: &str, extra: &[&str]) -> Output {
    sink(from, to, extra).output().expect("gridledger sink")
}

#[test]
fn a_demo_chain_lands_in_postgres_as_the_export_has_it() {
    let pg = match Pg::start() {
        Ok(pg) => pg,
        Err(why) => return skip_or_fail(&why),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = free_port();
    let relay = free_port();
    let demo = Proc(
        Command::new(BIN)
            .args(["demo", "--fast", "--nodes", "3"])
            .args([
                "--base-port",
                &base.to_string(),
                "--relay-port",
                &relay.to_string(),
            ])
            .arg("--data-dir")
            .arg(tmp.path().join("demo"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("demo"),
    );
    let url = format!("http://127.0.0.1:{base}");
    let final_height = |url: &str| {
        get_json(&format!("{url}/status"))
            .and_then(|s| s["finality"]["final_height"].as_u64())
            .unwrap_or(0)
    };
    let until = Instant::now() + Duration::from_secs(120);
    while final_height(&url) < 8 {
        assert!(
            Instant::now() < until,
            "the demo made nothing final in 120 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // A back-fill: everything final, then stop.
    let out = run_sink(&url, &pg.url(), &["--once"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sink: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cursor: u64 = pg
        .psql("SELECT height FROM gridledger_sink")
        .trim()
        .parse()
        .expect("a height");
    assert!(cursor >= 8, "{said}");
    // Live: followed, each newly final block lands (a bounded wait, not a timing claim).
    let mut live = Proc(
        sink(&url, &pg.url(), &[])
            .stdout(Stdio::null())
            .spawn()
            .expect("sink"),
    );
    let target = final_height(&url) + 3;
    let until = Instant::now() + Duration::from_secs(120);
    let mut killed_live = false;
    loop {
        let at: u64 = pg
            .psql("SELECT height FROM gridledger_sink")
            .trim()
            .parse()
            .unwrap_or(0);
        if at >= target {
            break;
        }
        // Killed once while following, and started again: it goes on from its cursor.
        if !killed_live && at > cursor {
            killed_live = true;
            drop(live);
            live = Proc(
                sink(&url, &pg.url(), &[])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("sink"),
            );
        }
        assert!(
            Instant::now() < until,
            "the live sink stayed at {at}, below {target}"
        );
        assert!(
            live.0.try_wait().ok().flatten().is_none(),
            "the live sink exited"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(killed_live, "the live sink was never killed");
    drop(live);
    // Stop the demo, and compare row by row with what `gridledger export` says of node 1.
    let mut demo = demo;
    let _ = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status();
    let _ = demo.0.wait();
    let written: u64 = pg
        .psql("SELECT height FROM gridledger_sink")
        .trim()
        .parse()
        .expect("a height");
    let export = Command::new(BIN)
        .args(["export", "--format", "csv", "--data-dir"])
        .arg(tmp.path().join("demo/node1"))
        .output()
        .expect("export");
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let export = String::from_utf8_lossy(&export.stdout);
    let expected: Vec<String> = export
        .lines()
        .skip(1)
        .filter(|l| {
            l.split(',')
                .next()
                .and_then(|h| h.parse::<u64>().ok())
                .is_some_and(|h| h <= written)
        })
        .map(|l| {
            // The database knows whether a record carries its relay's signature, not the
            // registry's verdict on it.
            let (head, signed) = l.rsplit_once(',').expect("a signed column");
            format!("{head},{}", if signed == "unsigned" { "no" } else { "yes" })
        })
        .collect();
    let got = pg.psql(
        "SELECT s.height, encode(b.id, 'hex'), s.relay, \
         (extract(epoch FROM s.minute) / 60)::bigint, \
         to_char(s.minute AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'), r.faults, \
         CASE WHEN r.clock_set THEN 'true' ELSE 'false' END, \
         row_number() OVER (PARTITION BY s.relay, s.minute ORDER BY s.t) - 1, s.second, \
         s.vab_kv, s.vbc_kv, s.vca_kv, s.ia_a, s.ib_a, s.ic_a, s.f_hz, s.pf, s.p_kw, s.q_kvar, \
         CASE WHEN r.relay_signature IS NULL THEN 'no' ELSE 'yes' END \
         FROM samples s JOIN records r USING (relay, minute) JOIN blocks b ON b.height = s.height \
         ORDER BY s.height, r.position, s.t",
    );
    let got: Vec<&str> = got.lines().collect();
    assert!(
        expected.len() >= 8 * 6,
        "only {} export rows",
        expected.len()
    );
    assert_eq!(got.len(), expected.len(), "as many samples as the export");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "a row differs from the export");
    }
    // Every block once, and its records' leaf hashes prove against the node's proofs.
    let blocks = pg.psql("SELECT count(*), min(height), max(height) FROM blocks");
    assert_eq!(blocks.trim(), format!("{written},1,{written}"));
    // The book's queries run and answer.
    for (i, sql) in historian_queries().iter().enumerate() {
        let out = pg.psql(sql);
        assert!(
            !out.trim().is_empty(),
            "the book's query {i} answered nothing:\n{sql}"
        );
    }
    // So do the Grafana dashboard's, with its macros as Grafana expands them over all time.
    for (what, sql) in grafana_queries() {
        let out = pg.psql(&sql);
        assert!(
            !out.trim().is_empty(),
            "Grafana's {what} answered nothing:\n{sql}"
        );
    }
}

/// The SQL of every panel and variable of `docs/grafana/historian.json`, its macros expanded
/// as Grafana does for a range covering all time and every relay; and the provisioned
/// data source is the one the panels name.
fn grafana_queries() -> Vec<(String, String)> {
    let dash: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/historian.json")).expect("JSON");
    let provisioned = include_str!("../../docs/grafana/provisioning/datasources/historian.yml");
    let expand = |sql: &str| -> String {
        let mut s = sql.replace("$relay", "SELECT DISTINCT relay FROM records");
        while let Some(at) = s.find("$__timeFilter(") {
            let rest = &s[at + "$__timeFilter(".len()..];
            let end = rest.find(')').expect("a closing parenthesis");
            let col = rest[..end].to_owned();
            s = format!(
                "{}{col} BETWEEN '-infinity' AND 'infinity'{}",
                &s[..at],
                &rest[end + 1..]
            );
        }
        while let Some(at) = s.find("$__timeGroupAlias(") {
            let rest = &s[at + "$__timeGroupAlias(".len()..];
            let end = rest.find(')').expect("a closing parenthesis");
            let col = rest[..end]
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            s = format!(
                "{}date_trunc('day', {col}) AS time{}",
                &s[..at],
                &rest[end + 1..]
            );
        }
        assert!(
            !s.contains("$__"),
            "a Grafana macro this test does not know: {s}"
        );
        s
    };
    let mut out = Vec::new();
    for v in dash["templating"]["list"].as_array().expect("variables") {
        out.push((
            format!("variable {}", v["name"]),
            expand(v["query"].as_str().expect("a query")),
        ));
    }
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "the dashboard lost panels");
    for p in panels {
        let uid = p["datasource"]["uid"].as_str().expect("a data source");
        assert!(
            provisioned.contains(&format!("uid: {uid}")),
            "panel {} names data source {uid}, which is not provisioned",
            p["title"]
        );
        for target in p["targets"].as_array().expect("targets") {
            out.push((
                format!("panel {}", p["title"]),
                expand(target["rawSql"].as_str().expect("SQL")),
            ));
        }
    }
    out
}

/// The SQL blocks of the historian chapter (`docs/book/src/historian.md`).
fn historian_queries() -> Vec<String> {
    let doc = include_str!("../../docs/book/src/historian.md");
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for l in doc.lines() {
        match (&mut cur, l.trim_start()) {
            (None, "```sql") => cur = Some(String::new()),
            (Some(_), "```") => out.extend(cur.take()),
            (Some(c), _) => {
                c.push_str(l);
                c.push('\n');
            }
            _ => {}
        }
    }
    assert!(out.len() >= 4, "the historian chapter lost its queries");
    out
}

#[test]
fn kill_9_of_the_sink_the_node_or_postgres_leaves_every_record_once() {
    let mut pg = match Pg::start() {
        Ok(pg) => pg,
        Err(why) => return skip_or_fail(&why),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocks = 6000;
    let (node, url, start_node) = node_with_chain(tmp.path(), blocks);
    // Small batches: many transactions, so that kills land between and inside them.
    let args = ["--depth", "0", "--batch-blocks", "5", "--once"];
    let cursor = |pg: &Pg| -> u32 {
        pg.psql("SELECT height FROM gridledger_sink")
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let mut mid_way = 0;
    // The sink killed at seeded moments of its back-fill, five times.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..5 {
        let mut child = sink(&url, &pg.url(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sink");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 300));
        let _ = child.kill();
        let _ = child.wait();
        let at = cursor(&pg);
        eprintln!("round {round}: killed the sink at height {at}");
        if at > 0 && at < blocks {
            mid_way += 1;
        }
    }
    assert!(
        mid_way >= 3,
        "only {mid_way} of 5 kills landed inside the back-fill"
    );
    // The node killed under a running sink, and started again: the sink waits it out.
    let mut child = sink(&url, &pg.url(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sink");
    std::thread::sleep(Duration::from_millis(200));
    drop(node); // SIGKILL
    let at = cursor(&pg);
    eprintln!("the node killed at height {at}");
    assert!(at < blocks, "the node was killed after the back-fill ended");
    std::thread::sleep(Duration::from_millis(1500));
    let _node = start_node();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the sink gave up while the node was away"
    );
    assert!(
        cursor(&pg) > at,
        "the sink did not go on once the node was back"
    );
    let _ = child.kill();
    let _ = child.wait();
    // PostgreSQL killed under a running sink, and started again: the sink waits it out.
    let mut child = sink(&url, &pg.url(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sink");
    std::thread::sleep(Duration::from_millis(200));
    let at = cursor(&pg);
    pg.kill9();
    eprintln!("PostgreSQL killed at height {at}");
    assert!(
        at < blocks,
        "PostgreSQL was killed after the back-fill ended"
    );
    std::thread::sleep(Duration::from_millis(1500));
    pg.boot();
    let until = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < until,
            "the sink did not finish within 180 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.success(),
        "the sink failed after PostgreSQL came back: {err}"
    );
    // Every block, record and sample exactly once: counts equal the chain's, and the
    // keys leave no room for a second copy.
    let counts = pg.psql(
        "SELECT (SELECT count(*) FROM blocks), (SELECT count(DISTINCT height) FROM blocks), \
         (SELECT count(*) FROM records), (SELECT count(*) FROM samples), \
         (SELECT height FROM gridledger_sink)",
    );
    let status = get_json(&format!("{url}/status")).expect("status");
    let records = status["records"].as_u64().expect("records");
    let f: Vec<u64> = counts
        .trim()
        .split(',')
        .map(|x| x.parse().expect("a count"))
        .collect();
    assert_eq!(f[0], u64::from(blocks), "{counts}");
    assert_eq!(f[1], u64::from(blocks), "{counts}");
    assert_eq!(f[2], records, "{counts}");
    assert!(f[3] >= records * 6 - records, "{counts}");
    assert_eq!(f[4], u64::from(blocks), "{counts}");
    let samples_per_record = pg.psql(
        "SELECT count(*) FROM records r WHERE r.slots - r.missing_slots <> \
         (SELECT count(*) FROM samples s WHERE s.relay = r.relay AND s.minute = r.minute)",
    );
    assert_eq!(
        samples_per_record.trim(),
        "0",
        "a record with a sample missing or twice"
    );
}

#[test]
fn bad_databases_get_a_clear_error_and_nothing_is_written_twice() {
    let pg = match Pg::start() {
        Ok(pg) => pg,
        Err(why) => return skip_or_fail(&why),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_node, url, _) = node_with_chain(tmp.path(), 30);
    let once = ["--depth", "0", "--once"];
    let fails = |to: &str, needle: &str| {
        let started = Instant::now();
        let out = run_sink(&url, to, &once);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{to}: {err}");
        assert!(err.contains(needle), "{to}: expected {needle:?} in: {err}");
        assert!(
            err.lines().count() <= 3,
            "a clear error, not a trace: {err}"
        );
        // Said at once, not after retries.
        assert!(started.elapsed() < Duration::from_secs(20), "{to}: {err}");
    };
    // Nothing listens there.
    fails(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=3",
            free_port()
        ),
        "PostgreSQL",
    );
    // A wrong password, over TCP (scram).
    fails(
        &format!("postgres://postgres:wrong@127.0.0.1:{}/postgres", pg.port),
        "password",
    );
    // A user that may not create tables.
    pg.psql("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'");
    pg.psql("CREATE DATABASE hist");
    fails(
        &format!("postgres://reader:reader-pw@127.0.0.1:{}/hist", pg.port),
        "permission denied",
    );
    // The right database: written once; a second run writes nothing more.
    let out = run_sink(&url, &pg.url(), &once);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = pg.psql("SELECT count(*) FROM samples");
    let out = run_sink(&url, &pg.url(), &once);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wrote 0 blocks"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(pg.psql("SELECT count(*) FROM samples"), before);
    // A table someone altered is refused, never written into.
    pg.psql("ALTER TABLE samples ADD COLUMN note text");
    fails(&pg.url(), "altered");
    pg.psql("ALTER TABLE samples DROP COLUMN note");
    // Tables of another schema version are refused, not converted.
    pg.psql("UPDATE gridledger_sink SET schema_version = 2");
    fails(&pg.url(), "schema version 2");
    pg.psql("UPDATE gridledger_sink SET schema_version = 1");
    // A database of another network.
    pg.psql("UPDATE gridledger_sink SET network = 'elsewhere'");
    fails(&pg.url(), "elsewhere");
    pg.psql("UPDATE gridledger_sink SET network = 'historian-test'");
    // A rewritten history: the database's last block is not the node's.
    pg.psql("UPDATE gridledger_sink SET block_id = '\\x00'::bytea || substring(block_id from 2)");
    pg.psql("UPDATE gridledger_sink SET height = height - 1");
    let out = run_sink(&url, &pg.url(), &once);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rewritten"), "{err}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM samples"),
        before,
        "nothing written"
    );
}

/// A node fed its own historian (`[sink]` in its config file): the database fills, and the
/// node's `/metrics` says how far.
#[test]
fn a_node_feeds_its_own_historian_and_says_so_in_metrics() {
    let pg = match Pg::start() {
        Ok(pg) => pg,
        Err(why) => return skip_or_fail(&why),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        format!("[sink]\nto = \"{}\"\ndepth = 0\n", pg.url()),
    )
    .expect("write");
    let blocks = 200;
    let (_node, url, _) = node_with_chain_and(
        tmp.path(),
        blocks,
        vec!["--config".into(), config.display().to_string()],
    );
    let until = Instant::now() + Duration::from_secs(60);
    let metric = |name: &str| -> Option<f64> {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", &format!("{url}/metrics")])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    loop {
        if metric("gridledger_sink_height") == Some(f64::from(blocks)) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the node's historian did not reach {blocks} (metrics say {:?})",
            metric("gridledger_sink_height")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        pg.psql("SELECT height FROM gridledger_sink").trim(),
        blocks.to_string()
    );
    let samples: f64 = pg
        .psql("SELECT count(*) FROM samples")
        .trim()
        .parse()
        .expect("count");
    assert_eq!(metric("gridledger_sink_samples_total"), Some(samples));
    assert_eq!(metric("gridledger_sink_blocks_behind"), Some(0.0));
}
