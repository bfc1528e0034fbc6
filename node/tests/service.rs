//! gridledger as a systemd service: the unit `gridledger print unit` gives passes
//! `systemd-analyze verify`, scores an exposure of 2.0 or less in `systemd-analyze
//! security` (printed), and the node starts exactly as its `ExecStart` says, as an
//! unprivileged user, with the sample configuration, and answers `/status`.
//!
//! Needs `systemd-analyze` (systemd 252 or later, for `--offline`); without it it says so
//! loudly and skips, and GRIDLEDGER_REQUIRE_TOOLS=1 (CI) makes that a failure.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

mod common;

use common::Proc;

fn skip_or_fail(why: &str) {
    if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
        panic!("the service tests cannot run: {why} (GRIDLEDGER_REQUIRE_TOOLS is set)");
    }
    eprintln!("SKIPPED: service test: {why}");
}

fn print(what: &str) -> String {
    let out = Command::new(BIN)
        .args(["print", what])
        .output()
        .expect("gridledger print");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The unit's `ExecStart` words.
fn exec_start(unit: &str) -> Vec<String> {
    unit.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_printed_files_are_the_packaged_ones() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("packaging/systemd/gridledger.service"))
        .expect("the unit");
    let config = std::fs::read_to_string(root.join("packaging/gridledger.toml")).expect("config");
    assert_eq!(print("unit"), unit);
    assert_eq!(print("config"), config);
    let out = Command::new(BIN)
        .args(["print", "manual"])
        .output()
        .expect("gridledger print");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown file is a usage error"
    );
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip_or_fail("systemd-analyze is not installed");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // As installed, but with this build's binary where the package puts it.
    let unit = print("unit").replace("/usr/bin/gridledger", BIN);
    let path = tmp.path().join("gridledger.service");
    std::fs::write(&path, &unit).expect("write");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for gridledger.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    eprintln!("systemd-analyze security: exposure {exposure} (goal <= 2.0)");
    assert!(
        exposure <= 2.0,
        "the unit's exposure is {exposure}:\n{text}"
    );
    // And a unit that drops a protection scores worse: the score is read, not assumed.
    let weaker = unit
        .replace("ProtectSystem=strict\n", "")
        .replace("PrivateUsers=yes\n", "");
    std::fs::write(&path, weaker).expect("write");
    let worse = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let worse: f64 = String::from_utf8_lossy(&worse.stdout)
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for gridledger.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("an exposure level");
    assert!(worse > exposure, "{worse} is not above {exposure}");
}

/// The uid and gid of `nobody` when this runs as root (else: run as whoever this is).
fn unprivileged() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid: u32 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let f: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))?
        .split(':')
        .collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

#[test]
fn the_node_starts_as_the_unit_says_with_the_sample_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etc = tmp.path().join("etc");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::create_dir_all(&state).expect("mkdir");
    let user = unprivileged();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&state, Some(uid), Some(gid)).expect("chown");
        let mut perm = std::fs::metadata(tmp.path()).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(tmp.path(), perm).expect("chmod");
    }
    std::fs::write(etc.join("gridledger.toml"), print("config")).expect("write");
    // ExecStart word for word, with the package's paths moved into the temporary dir
    // (systemd's StateDirectory and ConfigurationDirectory), and a free port: the sample
    // config's listen is the default, which another test may hold.
    let words: Vec<String> = exec_start(&print("unit"))
        .into_iter()
        .map(|w| {
            w.replace("/usr/bin/gridledger", BIN)
                .replace("/etc/gridledger", &etc.display().to_string())
                .replace("/var/lib/gridledger", &state.display().to_string())
        })
        .collect();
    assert_eq!(words[0], BIN);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..])
        .env("GRIDLEDGER_LISTEN", format!("127.0.0.1:{port}"))
        .current_dir(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = user {
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, gid);
    }
    let mut node = Proc(cmd.spawn().expect("gridledger run"));
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("curl")
            .args(["-s", "--fail", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{port}/status"))
            .output()
            .expect("curl");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"height\"") {
            break;
        }
        if let Ok(Some(status)) = node.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = node.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the node exited ({status}): {err}");
        }
        assert!(
            Instant::now() < until,
            "the node did not answer /status in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // It made its key and chain where the unit says, owned by the service's user.
    assert!(state.join("miner.key").exists());
    assert!(state.join("chain.redb").exists());
}

/// The manual page renders with `man`, and the shell completions are valid and know every
/// subcommand: both are made from the command line the binary parses.
#[test]
fn the_manual_page_and_completions_come_from_the_command_line() {
    let subcommands = [
        "run", "demo", "keygen", "verify", "repair", "export", "sink", "print", "tls",
    ];
    let man = print("man");
    assert!(man.contains(".TH gridledger 1"), "{man}");
    for s in subcommands {
        assert!(
            man.contains(&format!("gridledger\\-{s}")) || man.contains(s),
            "man lacks {s}"
        );
    }
    let bash = print("completions-bash");
    for s in subcommands {
        assert!(bash.contains(s), "bash completions lack {s}");
    }
    assert!(
        bash.contains("--sink-to"),
        "bash completions lack run's flags"
    );
    let syntax = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(bash.as_bytes())?;
            c.wait_with_output()
        })
        .expect("bash -n");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    assert!(print("completions-zsh").contains("#compdef gridledger"));
    assert!(print("completions-fish").contains("complete -c gridledger"));
    if Command::new("man").arg("--version").output().is_err() {
        return skip_or_fail("man is not installed (the page's rendering is not checked)");
    }
    let rendered = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(man.as_bytes())?;
            c.wait_with_output()
        })
        .expect("man -l");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(
        text.contains("SUBCOMMANDS") && text.contains("docs/book/src/introduction.md"),
        "{text}"
    );
}

/// The gateway's and relay-sim's settings files (their units' EnvironmentFile) name every
/// environment variable their `--help` gives, and nothing else: a renamed one fails here.
#[test]
fn the_env_samples_name_every_variable() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = std::path::Path::new(BIN).parent().expect("a target dir");
    for (bin, file) in [("relay-sim", "relay-sim.env"), ("gateway", "gateway.env")] {
        let path = bin_dir.join(bin);
        assert!(
            path.exists(),
            "{} is not built: run the tests with `cargo test --workspace`",
            path.display()
        );
        let help = Command::new(&path).arg("--help").output().expect("--help");
        let help = String::from_utf8_lossy(&help.stdout);
        let vars: std::collections::BTreeSet<&str> = help
            .split("[env: ")
            .skip(1)
            .filter_map(|s| s.split('=').next())
            .collect();
        assert!(vars.len() >= 10, "{bin}: {vars:?}");
        let sample = std::fs::read_to_string(root.join("packaging").join(file)).expect("sample");
        let named: std::collections::BTreeSet<&str> = sample
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .collect();
        assert_eq!(
            named, vars,
            "{file} and `{bin} --help` name different variables"
        );
    }
}
