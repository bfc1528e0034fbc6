//! The book (`docs/book/src`) is tested like code:
//!
//! - every link between its chapters and from README resolves, anchors included;
//! - every shell block is either run or says why it cannot be (`<!-- doc: no-run REASON -->`
//!   on the line before it);
//! - every `--flag` a chapter names for `gridledger`, `relay-sim` or `gateway` is one that
//!   binary's `--help` lists: a renamed flag that a chapter still names fails here;
//! - the blocks run, verbatim, against `gridledger demo --fast` in a network namespace of
//!   their own (so the book's ports, 5004-5007 and 5010, are free whatever else runs):
//!   plain blocks while the demo runs, `<!-- doc: after-demo -->` blocks once it stopped,
//!   and `<!-- doc: servers -->` blocks one command at a time, each server left running
//!   and each command that ends required to end well.
//!
//! The runner needs `unshare` (user and network namespaces), `ip`, `curl`, `mbpoll`,
//! `python3` with the PyPI peers, and Go for the note verifier; without them it says so
//! loudly and skips, and GRIDLEDGER_REQUIRE_TOOLS=1 (CI) makes the skip a failure.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

mod common;

use common::repo;

fn book_src() -> PathBuf {
    repo().join("docs/book/src")
}

/// Every chapter: its file name and text.
fn chapters() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(book_src())
        .expect("docs/book/src is readable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&p).expect("a chapter is UTF-8");
            (name, text)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 10, "the book lost its chapters: {out:?}");
    out
}

/// How a block is run.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// While the demo runs (the default).
    WithDemo,
    /// Once the demo has stopped (its data dirs are free).
    AfterDemo,
    /// One command at a time; servers stay up, the others must end well.
    Servers,
    /// Not run, and why.
    NoRun(String),
}

/// A fenced shell block.
#[derive(Clone, Debug)]
struct Block {
    file: String,
    line: usize,
    kind: Kind,
    /// The block's lines, without the fence's indentation.
    body: Vec<String>,
}

/// The fenced blocks of a chapter (`sh`, `bash`, `console`), with the annotation on the
/// line before each.
fn shell_blocks(file: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let indent = lines[i].len() - trimmed.len();
        if let Some(info) = trimmed.strip_prefix("```") {
            let lang = info.split(',').next().unwrap_or("").trim();
            let mut j = i + 1;
            while j < lines.len() && !lines[j].trim_start().starts_with("```") {
                j += 1;
            }
            if matches!(lang, "sh" | "bash" | "console" | "shell") {
                let before = i.checked_sub(1).map_or("", |k| lines[k].trim());
                let kind = match before
                    .strip_prefix("<!-- doc:")
                    .and_then(|s| s.strip_suffix("-->"))
                    .map(str::trim)
                {
                    None => Kind::WithDemo,
                    Some("after-demo") => Kind::AfterDemo,
                    Some("servers") => Kind::Servers,
                    Some(other) => match other.strip_prefix("no-run") {
                        Some(why) => Kind::NoRun(why.trim().to_owned()),
                        None => panic!("{file}:{i}: unknown doc annotation {other:?}"),
                    },
                };
                let body = lines[i + 1..j]
                    .iter()
                    .map(|l| l.get(indent..).unwrap_or(l.trim_start()).to_owned())
                    .collect();
                out.push(Block {
                    file: file.to_owned(),
                    line: i + 1,
                    kind,
                    body,
                });
            }
            i = j + 1;
            continue;
        }
        i += 1;
    }
    out
}

/// A chapter's text without its fenced blocks (where links are not links).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if !fenced {
            out.push_str(l);
        }
        out.push('\n');
    }
    out
}

/// mdBook's id for a heading: lower case, letters, digits, `-` and `_` kept, spaces to `-`.
fn slug(heading: &str) -> String {
    let text = heading.trim_start_matches('#').trim();
    let mut s = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            s.extend(c.to_lowercase());
        } else if c.is_whitespace() {
            s.push('-');
        }
    }
    s
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(slug)
        .collect()
}

/// `[text](target)` links in prose.
fn links(text: &str) -> Vec<String> {
    let p = prose(text);
    let mut out = Vec::new();
    let mut rest = p.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_link_in_the_book_and_readme_resolves() {
    let mut texts: Vec<(PathBuf, String)> = chapters()
        .into_iter()
        .map(|(name, text)| (book_src().join(name), text))
        .collect();
    let readme = repo().join("README.md");
    texts.push((
        readme.clone(),
        std::fs::read_to_string(&readme).expect("README.md"),
    ));
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in &texts {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for link in links(text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            let Ok(target_text) = std::fs::read(&target) else {
                broken.push(format!("{}: {link}: no such file", path.display()));
                continue;
            };
            if !anchor.is_empty() {
                let t = String::from_utf8_lossy(&target_text);
                if !anchors(&t).contains(anchor) {
                    broken.push(format!("{}: {link}: no such heading", path.display()));
                }
            }
        }
    }
    assert!(
        checked >= 30,
        "too few links checked ({checked}): the parser broke"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // And SUMMARY.md lists every chapter: a chapter outside it is not in the book.
    let summary = std::fs::read_to_string(book_src().join("SUMMARY.md")).expect("SUMMARY.md");
    for (name, _) in chapters() {
        if name != "SUMMARY.md" {
            assert!(
                summary.contains(&format!("({name})")),
                "{name} is not in SUMMARY.md"
            );
        }
    }
}

#[test]
fn every_shell_block_is_run_or_says_why_not() {
    let mut run = 0;
    for (name, text) in chapters() {
        for b in shell_blocks(&name, &text) {
            match &b.kind {
                Kind::NoRun(why) => assert!(
                    why.len() >= 10,
                    "{}:{}: a block not run must say why (`<!-- doc: no-run REASON -->`)",
                    b.file,
                    b.line
                ),
                _ => run += 1,
            }
        }
    }
    assert!(run >= 12, "only {run} blocks are run: the parser broke");
}

/// Where the workspace's binaries are (beside the node's, in the same target dir).
fn bin_dir() -> PathBuf {
    Path::new(BIN)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn help_of(bin: &Path, sub: &[&str]) -> String {
    let out = Command::new(bin)
        .args(sub)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{} {sub:?} --help: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} {sub:?} --help failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags a help text lists.
fn flags_in(help: &str) -> BTreeSet<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_owned()
        })
        .collect()
}

/// Logical commands of a block: continuation lines joined, comments dropped.
fn commands(body: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in body {
        let l = l.trim_end();
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(l);
        let c = cur.trim().to_owned();
        cur.clear();
        if !c.is_empty() && !c.starts_with('#') {
            out.push(c);
        }
    }
    out
}

/// Which of our binaries a command runs, and the words after it: `gridledger ARGS`,
/// `cargo run [--release] -p node -- ARGS`, likewise relay-sim and gateway.
fn our_command(cmd: &str) -> Option<(&'static str, Vec<String>)> {
    let words: Vec<String> = cmd
        .split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let first = words.first()?.as_str();
    let (bin, rest): (&'static str, &[String]) = match first {
        "gridledger" => ("gridledger", &words[1..]),
        "relay-sim" => ("relay-sim", &words[1..]),
        "gateway" => ("gateway", &words[1..]),
        "cargo" if words.get(1).map(String::as_str) == Some("run") => {
            let p = words.iter().position(|w| w == "-p")?;
            let bin = match words.get(p + 1)?.as_str() {
                "node" => "gridledger",
                "relay-sim" => "relay-sim",
                "gateway" => "gateway",
                "sim" => "sim",
                _ => return None,
            };
            if words.iter().any(|w| w == "--example") {
                return None;
            }
            let dd = words.iter().position(|w| w == "--")?;
            (bin, &words[dd + 1..])
        }
        _ => return None,
    };
    Some((bin, rest.to_vec()))
}

#[test]
fn every_flag_the_book_names_exists() {
    let dir = bin_dir();
    let gridledger = PathBuf::from(BIN);
    let subs = [
        "run", "demo", "keygen", "verify", "export", "repair", "backup", "restore", "sink",
        "print", "tls",
    ];
    let mut helps: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut all: BTreeSet<String> = BTreeSet::new();
    for sub in subs {
        let f = flags_in(&help_of(&gridledger, &[sub]));
        all.extend(f.iter().cloned());
        helps.insert(format!("gridledger {sub}"), f);
    }
    for sub in ["init", "issue"] {
        let f = flags_in(&help_of(&gridledger, &["tls", sub]));
        all.extend(f.iter().cloned());
        helps.insert(format!("gridledger tls {sub}"), f);
    }
    for other in ["relay-sim", "gateway", "sim"] {
        let path = dir.join(other);
        if !path.exists() {
            panic!(
                "{} is not built: run the tests with `cargo test --workspace`, or build it first",
                path.display()
            );
        }
        let f = flags_in(&help_of(&path, &[]));
        all.extend(f.iter().cloned());
        helps.insert(other.to_owned(), f);
    }
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (name, text) in chapters() {
        // Commands: each flag against its own binary's help.
        for b in shell_blocks(&name, &text) {
            for cmd in commands(&b.body) {
                let Some((bin, args)) = our_command(&cmd) else {
                    continue;
                };
                let key = if bin == "gridledger" {
                    let sub: Vec<&str> = args
                        .iter()
                        .take_while(|a| !a.starts_with('-'))
                        .take(2)
                        .map(String::as_str)
                        .collect();
                    match sub.as_slice() {
                        ["tls", s, ..] => format!("gridledger tls {s}"),
                        [s, ..] => format!("gridledger {s}"),
                        [] => continue,
                    }
                } else {
                    bin.to_owned()
                };
                let Some(known) = helps.get(&key) else {
                    wrong.push(format!("{name}:{}: `{key}` is not a command", b.line));
                    continue;
                };
                for a in args.iter().filter(|a| a.starts_with("--")) {
                    let flag = a.split('=').next().unwrap_or(a);
                    checked += 1;
                    if !known.contains(flag) {
                        wrong.push(format!("{name}:{}: `{key}` has no {flag}", b.line));
                    }
                }
            }
        }
        // Prose: a flag in backticks that is none of our binaries' flags. (The benchmarks
        // chapter names the benches' flags; the register map, mbpoll's; the firmware and
        // formats chapters, other tools'.)
        if matches!(
            name.as_str(),
            "benchmarks.md" | "registers.md" | "firmware.md" | "FORMAT.md" | "testing.md"
        ) {
            continue;
        }
        for span in prose(&text).split('`').skip(1).step_by(2) {
            let Some(first) = span.split_whitespace().next() else {
                continue;
            };
            if first.starts_with("--") && first.len() > 2 && !first.contains('/') {
                let flag = first
                    .split('=')
                    .next()
                    .unwrap_or(first)
                    .trim_end_matches(|c: char| !c.is_alphanumeric());
                checked += 1;
                if !all.contains(flag) && !OTHER_TOOLS_FLAGS.contains(&flag) {
                    wrong.push(format!("{name}: `{span}` names a flag no binary has"));
                }
            }
        }
    }
    assert!(
        checked >= 60,
        "too few flags checked ({checked}): the parser broke"
    );
    assert!(
        wrong.is_empty(),
        "the book names flags that do not exist:\n{}",
        wrong.join("\n")
    );
}

/// Flags of other programs that chapters name in prose (curl, cargo, pip, QEMU).
const OTHER_TOOLS_FLAGS: &[&str] = &[
    "--cacert",
    "--cert",
    "--key",
    "--release",
    "--target",
    "--features",
    "--profile",
    "--workspace",
    "--test",
    "--bin",
    "--break-system-packages",
    // The dashboard bench's, named in the dashboard chapter beside its figures.
    "--url",
];

fn require_tools() -> bool {
    if std::env::var_os("GRIDLEDGER_REQUIRE_TOOLS").is_some() {
        return true;
    }
    false
}

fn skip_or_fail(why: &str) {
    if require_tools() {
        panic!("the book's commands cannot run: {why} (GRIDLEDGER_REQUIRE_TOOLS is set)");
    }
    eprintln!("SKIPPED: the book's commands were not run: {why}");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The namespace command: a user namespace where this is not root, with its own network
/// (a loopback of its own) and its own process ids (everything started in it dies with it).
fn unshare() -> Option<Vec<&'static str>> {
    let base = ["unshare", "--net", "--pid", "--fork", "--mount-proc"];
    for extra in [&[][..], &["--map-root-user"][..]] {
        let mut c: Vec<&str> = base.to_vec();
        c.extend_from_slice(extra);
        let ok = Command::new(c[0])
            .args(&c[1..])
            .arg("true")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    None
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write a script");
    let mut perm = std::fs::metadata(path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).expect("chmod");
}

/// Shell-quotes a string.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn the_books_commands_run_against_a_demo() {
    for tool in ["ip", "curl", "mbpoll", "python3", "go", "promtool"] {
        if !have(tool) {
            return skip_or_fail(&format!("{tool} is not installed"));
        }
    }
    let Some(ns) = unshare() else {
        return skip_or_fail("unshare cannot make a network namespace here");
    };
    let dir = bin_dir();
    for b in ["relay-sim", "gateway", "examples/read-relay"] {
        assert!(
            dir.join(b).exists(),
            "{} is not built: run the tests with `cargo test --workspace`",
            dir.join(b).display()
        );
    }
    let pydeps = std::env::var("GRIDLEDGER_PYTHONPATH").ok().or_else(|| {
        let p = repo().join("target/pydeps");
        p.exists().then(|| p.to_string_lossy().into_owned())
    });
    let Some(pydeps) = pydeps else {
        return skip_or_fail("the PyPI peers are not installed (target/pydeps)");
    };

    let tmp = tempfile::tempdir().expect("tempdir");
    let sandbox = tmp.path().join("sandbox");
    let shims = tmp.path().join("bin");
    let blocks_dir = tmp.path().join("blocks");
    for d in [&sandbox, &shims, &blocks_dir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    for link in ["tools", "profiles", "packaging", "docs"] {
        std::os::unix::fs::symlink(repo().join(link), sandbox.join(link)).expect("symlink");
    }
    let real_curl = String::from_utf8_lossy(
        &Command::new("sh")
            .args(["-c", "command -v curl"])
            .output()
            .expect("sh")
            .stdout,
    )
    .trim()
    .to_owned();
    let d = dir.display();
    for b in ["gridledger", "relay-sim", "gateway"] {
        write_exe(
            &shims.join(b),
            &format!("#!/bin/sh\nexec {} \"$@\"\n", q(&format!("{d}/{b}"))),
        );
    }
    // `cargo run … -p PKG [--example E] -- ARGS` runs what the test run built; any other
    // cargo command is refused, so a block that needs one must say why it is not run.
    write_exe(
        &shims.join("cargo"),
        &format!(
            r#"#!/bin/bash
[ "$1" = run ] || {{ echo "doc runner: does not run 'cargo $*'" >&2; exit 97; }}
shift; pkg=; ex=
while [ $# -gt 0 ]; do
  case $1 in
    --release) shift;;
    -p) pkg=$2; shift 2;;
    --example) ex=$2; shift 2;;
    --) shift; break;;
    *) echo "doc runner: unknown cargo flag $1" >&2; exit 97;;
  esac
done
[ -n "$ex" ] && exec {dir}/examples/"$ex" "$@"
case $pkg in
  node) exec {dir}/gridledger "$@";;
  relay-sim|gateway) exec {dir}/"$pkg" "$@";;
  *) echo "doc runner: no binary for -p $pkg" >&2; exit 97;;
esac
"#,
            dir = q(&d.to_string())
        ),
    );
    // An HTTP error is a failure, and nothing waits for ever.
    write_exe(
        &shims.join("curl"),
        &format!(
            "#!/bin/sh\nexec {} --fail-with-body --max-time 30 \"$@\"\n",
            q(&real_curl)
        ),
    );

    // The blocks, in three phases.
    let mut demo_blocks = Vec::new();
    let mut after_blocks = Vec::new();
    let mut server_blocks = Vec::new();
    let mut all = Vec::new();
    for (name, text) in chapters() {
        for b in shell_blocks(&name, &text) {
            let id = format!("{}-{}", name.trim_end_matches(".md"), b.line);
            match b.kind {
                Kind::NoRun(_) => continue,
                Kind::WithDemo => demo_blocks.push(id.clone()),
                Kind::AfterDemo => after_blocks.push(id.clone()),
                Kind::Servers => server_blocks.push(id.clone()),
            }
            if b.kind == Kind::Servers {
                // One file per command.
                for (k, c) in commands(&b.body).iter().enumerate() {
                    let c = c.trim_end_matches('&').trim();
                    std::fs::write(blocks_dir.join(format!("{id}.{k}")), format!("{c}\n"))
                        .expect("write");
                }
            } else {
                std::fs::write(blocks_dir.join(&id), b.body.join("\n") + "\n").expect("write");
            }
            all.push((id, b));
        }
    }

    let mut s = String::new();
    let _ = write!(
        s,
        r#"#!/bin/bash
set -u
ip link set lo up
export PATH={shims}:$PATH PYTHONPATH={pydeps} HOME={home} GOCACHE={home}/go-cache
export GRIDLEDGER_PROGRESS_SECS=60 RUST_LOG=warn
cd {sandbox}
results={results}
: > $results
run_block() {{  # id: the block as one script, its exit status, leftovers killed
  setsid bash -e -o pipefail {blocks}/$1 > {blocks}/$1.out 2>&1 &
  local pid=$!
  ( sleep 120; kill -KILL -- -$pid 2>/dev/null ) & local guard=$!
  wait $pid; local rc=$?
  kill -- -$pid 2>/dev/null; kill $guard 2>/dev/null
  echo "$1 $rc" >> $results
}}
run_servers() {{  # id: each command started in turn; those that end must end well
  local pids=() files=() f
  for f in $(ls {blocks} | grep "^$1\.[0-9]*$" | sort -t. -k2 -n); do
    f={blocks}/$f
    setsid bash -e -o pipefail $f > $f.out 2>&1 &
    pids+=($!); files+=($f)
    sleep 3
  done
  sleep 2
  local i rc
  for i in "${{!pids[@]}}"; do
    if kill -0 ${{pids[$i]}} 2>/dev/null; then
      kill -- -${{pids[$i]}} 2>/dev/null; rc=0
    else
      wait ${{pids[$i]}}; rc=$?
    fi
    echo "$(basename ${{files[$i]}}) $rc" >> $results
  done
  for i in "${{!pids[@]}}"; do kill -KILL -- -${{pids[$i]}} 2>/dev/null; done
  sleep 1
}}
gridledger demo --fast > demo.log 2>&1 &
demo=$!
ready=no
for i in $(seq 1 240); do
  if {curl} -sf 'http://127.0.0.1:5004/checkpoint/proof?height=3' > /dev/null 2>&1; then
    ready=yes; break
  fi
  sleep 1
done
echo "demo-ready $([ $ready = yes ] && echo 0 || echo 1)" >> $results
"#,
        shims = q(&shims.to_string_lossy()),
        pydeps = q(&pydeps),
        home = q(&tmp.path().to_string_lossy()),
        sandbox = q(&sandbox.to_string_lossy()),
        results = q(&tmp.path().join("results").to_string_lossy()),
        blocks = q(&blocks_dir.to_string_lossy()),
        curl = q(&real_curl),
    );
    for id in &demo_blocks {
        let _ = writeln!(s, "run_block {id}");
    }
    let _ = writeln!(
        s,
        "kill -INT $demo; wait $demo; echo \"demo-stopped $?\" >> $results"
    );
    for id in &after_blocks {
        let _ = writeln!(s, "run_block {id}");
    }
    for id in &server_blocks {
        let _ = writeln!(s, "run_servers {id}");
    }
    let driver = tmp.path().join("driver.sh");
    write_exe(&driver, &s);

    let started = std::time::Instant::now();
    let out = Command::new(ns[0])
        .args(&ns[1..])
        .arg("bash")
        .arg(&driver)
        .output()
        .expect("run the driver");
    eprintln!(
        "the book's blocks ran in {:.0} s ({} with the demo, {} after it, {} of servers)",
        started.elapsed().as_secs_f64(),
        demo_blocks.len(),
        after_blocks.len(),
        server_blocks.len()
    );
    let results = std::fs::read_to_string(tmp.path().join("results")).unwrap_or_default();
    let mut failed = Vec::new();
    let mut seen = BTreeSet::new();
    for line in results.lines() {
        let Some((id, rc)) = line.rsplit_once(' ') else {
            continue;
        };
        seen.insert(id.to_owned());
        if rc != "0" {
            let output = std::fs::read_to_string(blocks_dir.join(format!("{id}.out")))
                .or_else(|_| std::fs::read_to_string(sandbox.join("demo.log")))
                .unwrap_or_default();
            let script = std::fs::read_to_string(blocks_dir.join(id)).unwrap_or_default();
            let tail = output
                .char_indices()
                .nth_back(3000)
                .map_or(output.as_str(), |(i, _)| &output[i..]);
            failed.push(format!(
                "--- {id} exited {rc}\n{script}--- its output (its end):\n{tail}"
            ));
        }
    }
    assert!(
        seen.contains("demo-ready") && seen.contains("demo-stopped"),
        "the driver did not finish: {results}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (id, b) in &all {
        let ran = if b.kind == Kind::Servers {
            seen.iter().any(|s| s.starts_with(&format!("{id}.")))
        } else {
            seen.contains(id)
        };
        assert!(ran, "{}:{} was not run", b.file, b.line);
    }
    assert!(
        failed.is_empty(),
        "{} of the book's blocks failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// `gridledger --help`, each subcommand's and relay-sim's and gateway's end with the chapter
/// to read, and that chapter (and heading) exists.
#[test]
fn every_help_ends_with_a_chapter_that_exists() {
    let gridledger = PathBuf::from(BIN);
    let dir = bin_dir();
    let mut cases: Vec<(PathBuf, Vec<&str>)> = vec![(gridledger.clone(), vec![])];
    for sub in [
        "run", "demo", "keygen", "verify", "export", "repair", "sink", "print", "tls",
    ] {
        cases.push((gridledger.clone(), vec![sub]));
    }
    cases.push((gridledger.clone(), vec!["tls", "init"]));
    cases.push((gridledger, vec!["tls", "issue"]));
    cases.push((dir.join("relay-sim"), vec![]));
    cases.push((dir.join("gateway"), vec![]));
    for (bin, sub) in cases {
        let help = help_of(&bin, &sub);
        let last = help.trim_end().lines().last().unwrap_or("");
        let at = last.find("docs/book/src/").unwrap_or_else(|| {
            panic!(
                "{} {sub:?} --help does not end with a chapter: {last:?}",
                bin.display()
            )
        });
        let link = last[at + "docs/book/src/".len()..]
            .split_whitespace()
            .next()
            .unwrap_or("");
        let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
        let text = std::fs::read_to_string(book_src().join(file))
            .unwrap_or_else(|e| panic!("{} {sub:?} --help names {link}: {e}", bin.display()));
        assert!(
            anchor.is_empty() || anchors(&text).contains(anchor),
            "{} {sub:?} --help names {link}, which has no such heading",
            bin.display()
        );
    }
}
