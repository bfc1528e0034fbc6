//! Monitoring people can adopt: gridledger's Prometheus rules pass `promtool check rules`
//! and their unit tests (every alert firing and not firing), name only series a node
//! serves (or node_exporter's), each have a runbook paragraph in the operating chapter, and
//! a real Prometheus (Debian's) scrapes a demo node, loads the rules and evaluates them.
//!
//! Needs `promtool` and `prometheus`; without them it says so loudly and skips, and
//! GRIDLEDGER_REQUIRE_TOOLS=1 (CI) makes that a failure.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

mod common;

use common::{free_port, http_get, repo, Proc};

fn rules() -> PathBuf {
    repo().join("packaging/prometheus/gridledger.rules.yml")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn skip_or_fail(why: &str) {
    if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
        panic!("the Prometheus tests cannot run: {why} (GRIDLEDGER_REQUIRE_TOOLS is set)");
    }
    eprintln!("SKIPPED: Prometheus test: {why}");
}

/// The alert names and every series name the rules' expressions use.
fn rule_names() -> (Vec<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(rules()).expect("the rules file");
    let alerts: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect();
    let mut series = BTreeSet::new();
    for l in text.lines() {
        let Some(expr) = l.trim().strip_prefix("expr: ") else {
            continue;
        };
        for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("gridledger_") || word.starts_with("node_") {
                series.insert(word.to_owned());
            }
        }
    }
    (alerts, series)
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    if !have("promtool") {
        return skip_or_fail("promtool is not installed (apt-get install prometheus)");
    }
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(rules())
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args(["test", "rules"])
        .arg(repo().join("packaging/prometheus/gridledger.rules.test.yml"))
        .output()
        .expect("promtool");
    assert!(
        test.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // Every alert is unit-tested.
    let tests =
        std::fs::read_to_string(repo().join("packaging/prometheus/gridledger.rules.test.yml"))
            .expect("the tests file");
    let (alerts, _) = rule_names();
    assert!(alerts.len() >= 15, "the rules lost alerts: {alerts:?}");
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "alert {a} has no unit test"
        );
    }
}

#[test]
fn every_alert_has_a_runbook_paragraph() {
    let book = std::fs::read_to_string(repo().join("docs/book/src/operating.md")).expect("chapter");
    let text = std::fs::read_to_string(rules()).expect("the rules file");
    let (alerts, _) = rule_names();
    for a in alerts {
        assert!(
            book.contains(&format!("\n### {a}\n")),
            "alert {a} has no runbook heading in the operating chapter"
        );
        assert!(
            text.contains(&format!("operating.md#{}\"", a.to_lowercase())),
            "alert {a}'s runbook annotation does not point at its heading"
        );
    }
}

#[test]
fn prometheus_scrapes_a_demo_node_and_every_series_the_rules_use_exists() {
    if !have("prometheus") || !have("promtool") {
        return skip_or_fail("prometheus is not installed (apt-get install prometheus)");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = free_port();
    let relay = free_port();
    let _demo = Proc(
        Command::new(BIN)
            .args(["demo", "--fast", "--nodes", "2"])
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
    let node = format!("http://127.0.0.1:{base}");
    let until = Instant::now() + Duration::from_secs(90);
    let metrics = loop {
        if let Some(m) = http_get(&format!("{node}/metrics")) {
            if m.contains("gridledger_final_height ") && !m.contains("gridledger_height 0\n") {
                break m;
            }
        }
        assert!(Instant::now() < until, "the demo served no chain in 90 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    // Every gridledger series the rules name is one the node serves: a renamed metric
    // fails here, not silently in production.
    let (_, series) = rule_names();
    for s in series.iter().filter(|s| s.starts_with("gridledger_")) {
        let base_name = s.trim_end_matches("_bucket");
        assert!(
            metrics.lines().any(|l| l.starts_with(base_name)),
            "the rules use {s}, which the node does not serve"
        );
    }
    // A real Prometheus scrapes it every second with the rules loaded.
    let config = tmp.path().join("prometheus.yml");
    let example =
        std::fs::read_to_string(repo().join("packaging/prometheus/prometheus.example.yml"))
            .expect("example");
    let example = example
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace(
            "/etc/prometheus/gridledger.rules.yml",
            &rules().display().to_string(),
        )
        .replace("127.0.0.1:5004", &format!("127.0.0.1:{base}"));
    std::fs::write(&config, example).expect("write");
    let web = free_port();
    let _prom = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let api = format!("http://127.0.0.1:{web}/api/v1");
    let query = |q: &str| -> Option<f64> {
        let body = http_get(&format!("{api}/query?query={q}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let height = query("gridledger_height");
        let recorded = query("gridledger:height:max");
        let up = query("up%7Bjob%3D%22gridledger%22%7D");
        if height.is_some_and(|h| h > 0.0) && recorded.is_some_and(|h| h > 0.0) && up == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < until,
            "Prometheus did not get the node's series in 90 s: height {height:?}, recorded {recorded:?}, up {up:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The Grafana dashboard's queries run in this Prometheus, each panel on the provisioned
    // data source; those of series a demo has answer with data.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("packaging/grafana/gridledger-nodes.json"))
            .expect("the dashboard"),
    )
    .expect("JSON");
    let provisioned = std::fs::read_to_string(
        repo().join("packaging/grafana/provisioning/datasources/prometheus.yml"),
    )
    .expect("the data source");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "the dashboard lost panels");
    for p in panels {
        let uid = p["datasource"]["uid"].as_str().expect("a data source");
        assert!(
            provisioned.contains(&format!("uid: {uid}")),
            "panel {} names data source {uid}, which is not provisioned",
            p["title"]
        );
        for target in p["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            let out = Command::new("curl")
                .args(["-s", "--fail-with-body", "--max-time", "5", "-G"])
                .arg(format!("{api}/query"))
                .arg("--data-urlencode")
                .arg(format!("query={expr}"))
                .output()
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && body.contains("\"status\":\"success\""),
                "panel {}: {expr}: {body}",
                p["title"]
            );
            if [
                "gridledger_height",
                "gridledger_relay_up",
                "gridledger_mempool_records",
            ]
            .contains(&expr)
            {
                assert!(
                    body.contains("\"value\""),
                    "panel {}: {expr} is empty: {body}",
                    p["title"]
                );
            }
        }
    }
    // The rules loaded and evaluate without error, and a healthy demo fires none.
    let rules_state = http_get(&format!("{api}/rules")).expect("/api/v1/rules");
    let v: serde_json::Value = serde_json::from_str(&rules_state).expect("JSON");
    let groups = v["data"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{rules_state}");
    for g in groups {
        for r in g["rules"].as_array().expect("rules") {
            assert_eq!(r["health"], "ok", "rule {} is not healthy: {r}", r["name"]);
        }
    }
    let firing = http_get(&format!("{api}/alerts")).expect("/api/v1/alerts");
    let v: serde_json::Value = serde_json::from_str(&firing).expect("JSON");
    let names: Vec<&str> = v["data"]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    // (Pending ones may be: a series seconds old has not changed yet, and `for:` is what
    // keeps that from paging anyone.)
    assert!(names.is_empty(), "a healthy demo fires {names:?}");
}
