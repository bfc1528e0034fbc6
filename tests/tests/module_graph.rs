//! The house rule: no module imports one that imports it back, in any crate of the workspace.
//!
//! Each source file is a module (`foo/mod.rs` is `foo`). A module depends on another when
//! its non-test code names it through `crate::…`, `super::…` or, for a module it declares,
//! its relative path (`child::…`). The crate root (`lib.rs`, `main.rs`) declares them all and
//! is left out. A cycle in that graph (a strongly connected component of more than one
//! module) fails the test, naming the modules and their edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "relay-core",
    "modbus-edge",
    "device-profile",
    "relay-sim",
    "firmware",
    "gateway",
    "chain",
    "core",
    "node",
    "sim",
    "bench",
    "tests",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module name of a file under `src`: `a/b.rs` is `a::b`, `a/mod.rs` is `a`,
/// `lib.rs`, `main.rs` and `bin/*.rs` are roots.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] || parts.first().is_some_and(|p| p == "bin") {
        return "crate".into();
    }
    parts.join("::")
}

/// The code before the first `#[cfg(test)]`, without `//` comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that follows `prefix` in `code` (identifiers joined by `::`); a group
/// (`prefix{a, b::c}`) gives one path per member.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at + prefix.len()..];
        rest = tail;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = tail.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for member in inner.split(',') {
                let path: String = member.trim().chars().take_while(|c| ident(*c)).collect();
                if !path.is_empty() {
                    out.push(path.trim_end_matches(':').to_owned());
                }
            }
            continue;
        }
        let path: String = tail.chars().take_while(|c| ident(*c)).collect();
        out.push(path.trim_end_matches(':').to_owned());
    }
    out
}

fn cycles(src: &Path) -> Vec<String> {
    let mut list = Vec::new();
    files(src, &mut list);
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for f in &list {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        modules
            .entry(module_of(src, f))
            .or_default()
            .push_str(&code(&text));
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|c| names.contains(c))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &modules {
        let mut deps = BTreeSet::new();
        for p in paths_after(text, "crate::") {
            deps.extend(resolve(&p));
        }
        let parent: Vec<&str> = if m == "crate" {
            Vec::new()
        } else {
            let v: Vec<&str> = m.split("::").collect();
            v[..v.len() - 1].to_vec()
        };
        for p in paths_after(text, "super::") {
            let full = parent
                .iter()
                .copied()
                .chain(std::iter::once(p.as_str()))
                .collect::<Vec<_>>()
                .join("::");
            deps.insert(resolve(&full).unwrap_or_else(|| {
                if parent.is_empty() {
                    "crate".into()
                } else {
                    parent.join("::")
                }
            }));
        }
        for child in names.iter().filter(|n| {
            let prefix = if m == "crate" {
                String::new()
            } else {
                format!("{m}::")
            };
            n.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains("::"))
                && (m != "crate" || !n.contains("::"))
        }) {
            let last = child.rsplit("::").next().unwrap_or(child);
            if !paths_after(text, &format!("{last}::")).is_empty() {
                deps.insert(child.clone());
            }
        }
        deps.remove(m);
        // The crate root declares every module and re-exports some: naming one of its
        // re-exports is not a cycle through a module.
        deps.remove("crate");
        edges.insert(m.clone(), deps);
    }
    // Tarjan's strongly connected components.
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit(t: &mut T<'_>, v: &str) {
        t.index.insert(v.to_owned(), t.next);
        t.low.insert(v.to_owned(), t.next);
        t.next += 1;
        t.stack.push(v.to_owned());
        t.on.insert(v.to_owned());
        let deps: Vec<String> = t.edges.get(v).into_iter().flatten().cloned().collect();
        for w in deps {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                t.found.push(comp);
            }
        }
    }
    let mut t = T {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.found
        .iter()
        .map(|comp| {
            comp.iter()
                .map(|m| {
                    let inside: Vec<&String> =
                        edges[m].iter().filter(|d| comp.contains(d)).collect();
                    format!("{m} -> {inside:?}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    for c in CRATES {
        for cycle in cycles(&root.join(c).join("src")) {
            problems.push(format!("{c}: {cycle}"));
        }
    }
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

/// The check finds a cycle when there is one (a test that can fail).
#[test]
fn a_planted_cycle_is_found() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("temp dir");
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").expect("write");
    std::fs::write(src.join("b.rs"), "pub struct B(crate::a::A);\n").expect("write");
    let found = cycles(&src);
    assert_eq!(found.len(), 1, "{found:?}");
    // A parent and a child that name each other are a cycle too.
    std::fs::write(src.join("b.rs"), "pub struct B;\n").expect("write");
    std::fs::create_dir_all(src.join("p")).expect("dir");
    std::fs::write(
        src.join("p/mod.rs"),
        "mod c;\npub use c::C;\npub struct P;\n",
    )
    .expect("write");
    std::fs::write(src.join("p/c.rs"), "pub struct C(super::P);\n").expect("write");
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod p;\n").expect("write");
    let found = cycles(&src);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("p::c"), "{found:?}");
}

/// The list above is the workspace's: a crate added to `Cargo.toml` is checked too.
#[test]
fn every_workspace_crate_is_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("a members list");
    let members: BTreeSet<&str> = members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    let checked: BTreeSet<&str> = CRATES.iter().copied().collect();
    assert_eq!(members, checked, "CRATES must list every workspace member");
}

/// The core crate (`gridledger-core`) has no I/O: no async runtime, HTTP, database or
/// clock among its dependencies, and none reached for in its code (issue 31).
#[test]
fn the_core_crate_has_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("core");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("core/Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("core has a [dependencies] table");
    for banned in [
        "tokio",
        "axum",
        "reqwest",
        "hyper",
        "redb",
        "mio",
        "rustls",
        "getrandom",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "gridledger-core depends on {banned}"
        );
    }
    let mut list = Vec::new();
    files(&root.join("src"), &mut list);
    assert!(list.len() >= 7, "core/src lost its modules: {list:?}");
    for f in list {
        let text = std::fs::read_to_string(&f).expect("read");
        for banned in [
            "SystemTime",
            "Instant::now",
            "std::fs",
            "std::net",
            "std::thread::spawn",
            "std::process",
        ] {
            assert!(
                !code(&text).contains(banned),
                "{} uses {banned}: the core takes time and data as arguments",
                f.display()
            );
        }
    }
}
