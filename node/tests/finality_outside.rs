//! Outside checks of finality (issue 29): Go's own signed-note verifier
//! (`golang.org/x/mod/sumdb/note`, built by `tools/checkpoint-verify`) verifies a checkpoint
//! a node serves with the members' verifier keys, and refuses it with one signature byte
//! flipped; `tools/verify_export.py` (Python, written from FORMAT.md) checks a block's
//! inclusion proof against the checkpoint and an export against its root.
//!
//! Without `go` (and Debian's golang-golang-x-mod-dev) or `python3` the parts that need them
//! say so loudly and skip; `GRIDLEDGER_REQUIRE_TOOLS=1` (CI) makes a missing tool a failure.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gridledger::chain::Network;
use gridledger::run::start;

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

fn missing(tool: &str) {
    if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
        panic!("{tool} is required (GRIDLEDGER_REQUIRE_TOOLS=1) but not usable");
    }
    eprintln!("\n**** SKIPPED: {tool} is not usable here; this outside check cannot run ****\n");
}

/// Builds `tools/checkpoint-verify` with Debian's Go and x/mod (GOPATH mode, no network).
fn go_verifier() -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/checkpoint-verify/main.go");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint-verify");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache");
    let built = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", &cache)
        .output();
    match built {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => {
            eprintln!("go build: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(e) => {
            eprintln!("go: {e}");
            None
        }
    }
}

fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("writes");
    child.wait_with_output().expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_and_python_verify_a_served_checkpoint_and_refuse_a_flipped_byte() {
    let (relay, stop) =
        common::relay_sim(SocketAddr::from(([127, 0, 0, 1], 0)), 1, 1.0, None).await;
    let mut net = Network::new("finality-outside", 8);
    net.allow_list = Some(
        (1..=3)
            .map(|k| common::key(k).verifying_key().to_bytes())
            .collect(),
    );
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let peers = ports
            .iter()
            .filter(|p| **p != ports[i])
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let mut c = common::node_config(dirs[i].path(), net.clone(), &[relay], peers);
        c.listen = SocketAddr::from(([127, 0, 0, 1], ports[i]));
        nodes.push(start(c, common::key(i as u8 + 1)).await.expect("starts"));
    }
    let client = gridledger::wire::builder().build().expect("client");
    let base = format!("http://127.0.0.1:{}", ports[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = common::get_json(&client, format!("{base}/status")).await;
        if s["finality"]["final_height"].as_u64().unwrap_or(0) >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing final: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stop);
    // Let the last blocks settle, then take node 0's view: its checkpoint, members, a proof.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let note = common::get_text(&client, format!("{base}/checkpoint")).await;
    let members = common::get_json(&client, format!("{base}/members")).await;
    let proof = common::get_json(&client, format!("{base}/checkpoint/proof?height=3")).await;
    assert_eq!(proof["checkpoint"].as_str(), Some(note.as_str()), "{proof}");
    let quorum = members["quorum"].as_u64().expect("quorum");
    let vkeys: Vec<String> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["vkey"].as_str().expect("vkey").to_owned())
        .collect();
    // One signature byte flipped: the last signature line's last signature byte.
    let flipped = {
        let mut lines: Vec<String> = note.lines().map(str::to_owned).collect();
        let last = lines.last_mut().expect("a signature line");
        let (head, sig) = last.rsplit_once(' ').expect("name and signature");
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw = b64.decode(sig).expect("base64");
        let n = raw.len();
        raw[n - 1] ^= 0x01;
        *last = format!("{head} {}", b64.encode(raw));
        lines.join("\n") + "\n"
    };

    // Go's verifier.
    match go_verifier() {
        None => missing("go with golang.org/x/mod/sumdb/note (golang-go, golang-golang-x-mod-dev)"),
        Some(go) => {
            let out = run_with_stdin(Command::new(&go).args(&vkeys), note.as_bytes());
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "Go refused a served checkpoint: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let signed: u64 = text
                .lines()
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            assert!(
                signed >= quorum,
                "Go verified {signed} signatures, quorum {quorum}: {text}"
            );
            let body = &note[..=note.find("\n\n").expect("a note")];
            assert!(
                text.ends_with(body),
                "Go's text is the checkpoint's: {text}"
            );
            let out = run_with_stdin(Command::new(&go).args(&vkeys), flipped.as_bytes());
            assert_eq!(
                out.status.code(),
                Some(1),
                "Go took a checkpoint with a flipped signature byte: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            // And ours agrees.
            let m = gridledger::chain::finality::Members::new(
                &gridledger::chain::finality::origin(&net.name),
                net.allow_list.as_deref().unwrap_or(&[]),
                None,
            )
            .expect("members");
            assert!(m.open_checkpoint(note.as_bytes()).is_ok());
            assert!(m.open_checkpoint(flipped.as_bytes()).is_err());
        }
    }

    // The Python verifier: the proof against the checkpoint, then with an export of the
    // chain (node 0 stopped, so its data dir can be read).
    let python = Command::new("python3").arg("--version").output().is_ok();
    if !python {
        missing("python3");
    } else {
        let files = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, v: &serde_json::Value| {
            let p = files.path().join(name);
            std::fs::write(&p, serde_json::to_vec(v).expect("json")).expect("write");
            p
        };
        let proof_file = write("proof.json", &proof);
        let members_file = write("members.json", &members);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_export.py");
        let node0 = nodes.remove(0);
        node0.stop().await;
        let export = files.path().join("chain.json");
        let out = Command::new(BIN)
            .args(["export", "--format", "json", "--data-dir"])
            .arg(dirs[0].path())
            .arg("--out")
            .arg(&export)
            .output()
            .expect("export");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("python3")
            .arg(&script)
            .arg("--proof")
            .arg(&proof_file)
            .arg("--members")
            .arg(&members_file)
            .arg(&export)
            .output()
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.starts_with("ok: block 3 is in the final checkpoint"),
            "{text}"
        );
        // A flipped signature byte, a wrong path, another block: each refused.
        let mut bad = proof.clone();
        bad["checkpoint"] = serde_json::Value::String(flipped.clone());
        let mut path = proof.clone();
        if let Some(p) = path["path"].as_array_mut().and_then(|a| a.first_mut()) {
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut raw = b64.decode(p.as_str().unwrap_or("")).expect("base64");
            raw[0] ^= 1;
            *p = serde_json::Value::String(b64.encode(raw));
        }
        let mut other = proof.clone();
        other["index"] = serde_json::json!(2);
        for (what, v) in [("signature", bad), ("path", path), ("index", other)] {
            let f = write("bad.json", &v);
            let out = Command::new("python3")
                .arg(&script)
                .arg("--proof")
                .arg(&f)
                .arg("--members")
                .arg(&members_file)
                .output()
                .expect("python3 runs");
            assert_eq!(
                out.status.code(),
                Some(1),
                "{what}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    for n in nodes {
        n.stop().await;
    }
}
