//! Network namespaces for the testbed: each node in a network stack of its own, with its
//! own address, where the machine allows it (root and `ip netns`); loopback ports
//! otherwise.
//!
//! The layout keeps every non-loopback address inside namespaces the testbed creates:
//!
//! ```text
//!  test process ──re-executes itself──► hub namespace (the harness: link emulator proxies,
//!                                        relay-sims, the HTTP client)
//!                                          │ veth v<i>: 10.77.a.b+1/30
//!                                          ▼
//!                                        node namespace i (one `gridledger run`):
//!                                          eth0: 10.77.a.b+2/30, default route via the hub
//! ```
//!
//! The harness never enters a namespace itself (that would need `setns`, which is `unsafe`
//! and per thread): [`enter_hub`] runs the whole test process again inside a fresh hub
//! namespace with `ip netns exec`, and the first process deletes every namespace it made
//! once the second has ended, however it ended. Nodes start with `ip netns exec` too
//! ([`Netns::name`], `node::NodeSpec::namespace`); `ip` replaces itself with the node, so the child's pid is the
//! node's. Namespaces left behind by a testbed killed outright are deleted by the next one
//! (their names carry the pid that made them).

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::{Command, ExitStatus};

/// Set inside the hub namespace: its name.
pub const HUB_ENV: &str = "GRIDLEDGER_TESTBED_HUB";
/// `0` keeps the testbed on loopback even where namespaces are possible.
pub const NETNS_ENV: &str = "GRIDLEDGER_TESTBED_NETNS";

/// Names start with this and the pid of the process that made them.
const PREFIX: &str = "gltb";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn list() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes the testbed's namespaces made by `pid` (all whose maker is gone, if `None`).
fn delete_made_by(pid: Option<u32>) {
    for name in list() {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let maker: Option<u32> = rest
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|p| p.parse().ok());
        let delete = match (pid, maker) {
            (Some(p), Some(m)) => p == m,
            (None, Some(m)) => !std::path::Path::new(&format!("/proc/{m}")).exists(),
            _ => false,
        };
        if delete {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

/// True if this process may make network namespaces (and was not told not to).
#[must_use]
pub fn available() -> bool {
    if std::env::var(NETNS_ENV).is_ok_and(|v| v == "0") {
        return false;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return false;
    }
    // Try what a run does, inside a namespace of its own: make it, a veth pair in it, and
    // run a command in it (a container may allow the first and not the others).
    let probe = format!("{PREFIX}{}probe", std::process::id());
    let ok = ip(&["netns", "add", &probe]).is_ok()
        && ip(&[
            "-n", &probe, "link", "add", "name", "glp0", "type", "veth", "peer", "name", "glp1",
        ])
        .is_ok()
        && ip(&["netns", "exec", &probe, "ip", "link", "set", "lo", "up"]).is_ok();
    let _ = ip(&["netns", "delete", &probe]);
    ok
}

/// Where this process runs: in the hub namespace (after [`enter_hub`]), or not.
#[must_use]
pub fn hub() -> Option<String> {
    std::env::var(HUB_ENV).ok().filter(|h| !h.is_empty())
}

/// Runs this process again inside a new hub namespace, with `args` instead of its own
/// arguments, and returns how it ended; `None` if this process already is the one inside
/// (go on), or if namespaces are not available (go on, on loopback; said on stderr).
/// Every namespace the run made is deleted before this returns.
pub fn enter_hub<I, S>(args: I) -> Option<Result<ExitStatus, String>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    if hub().is_some() {
        return None;
    }
    if !available() {
        eprintln!(
            "testbed: no network namespaces here (needs root and `ip netns`; {NETNS_ENV}=0 also turns them off): every node on its own loopback port"
        );
        return None;
    }
    delete_made_by(None);
    let pid = std::process::id();
    let hub = format!("{PREFIX}{pid}hub");
    let run = || -> Result<ExitStatus, String> {
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        Command::new("ip")
            .args(["netns", "exec", &hub])
            .arg(exe)
            .args(args)
            .env(HUB_ENV, &hub)
            .status()
            .map_err(|e| format!("ip netns exec {hub}: {e}"))
    };
    let result = run();
    delete_made_by(Some(pid));
    Some(result)
}

/// The nodes' namespaces, made from inside the hub; deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    names: Vec<String>,
}

/// Node `i`'s address in its namespace.
#[must_use]
pub fn node_ip(i: usize) -> Ipv4Addr {
    let (a, b) = block(i);
    Ipv4Addr::new(10, 77, a, b + 2)
}

/// The hub's address on node `i`'s link: where node `i` reaches the hub (its proxies and
/// the relays).
#[must_use]
pub fn hub_ip(i: usize) -> Ipv4Addr {
    let (a, b) = block(i);
    Ipv4Addr::new(10, 77, a, b + 1)
}

/// The /30 of node `i`: 64 to a /24.
fn block(i: usize) -> (u8, u8) {
    (
        u8::try_from(i / 64).unwrap_or(u8::MAX),
        u8::try_from((i % 64) * 4).unwrap_or(0),
    )
}

impl Netns {
    /// Makes `n` node namespaces, each linked to the hub (this process's namespace) by a
    /// veth pair. Call only inside the hub ([`hub`] is `Some`).
    pub fn create(n: usize) -> Result<Netns, String> {
        let hub = hub().ok_or("not inside the testbed's hub namespace")?;
        let maker = hub.trim_end_matches("hub").to_owned();
        let mut made = Netns { names: Vec::new() };
        for i in 0..n {
            let name = format!("{maker}n{i}");
            ip(&["netns", "add", &name])?;
            made.names.push(name.clone());
            let veth = format!("v{i}");
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ])?;
            ip(&["addr", "add", &format!("{}/30", hub_ip(i)), "dev", &veth])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{}/30", node_ip(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                &name,
                "route",
                "add",
                "default",
                "via",
                &hub_ip(i).to_string(),
            ])?;
        }
        Ok(made)
    }

    /// Node `i`'s namespace.
    #[must_use]
    pub fn name(&self, i: usize) -> Option<String> {
        self.names.get(i).cloned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for (i, name) in self.names.iter().enumerate() {
            // The hub's end of the pair first: deleting it removes both ends at once,
            // while a deleted namespace takes its end away only when the kernel gets to
            // it, so a next scenario in the same hub could find `v<i>` still there.
            let _ = ip(&["link", "delete", &format!("v{i}")]);
            let _ = ip(&["netns", "delete", name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_slash_30s() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..256 {
            assert!(seen.insert(node_ip(i)));
            assert!(seen.insert(hub_ip(i)));
            let (n, h) = (node_ip(i).octets(), hub_ip(i).octets());
            assert_eq!((n[0], n[1], n[2]), (h[0], h[1], h[2]));
            assert_eq!(n[3] / 4, h[3] / 4, "same /30");
        }
    }
}
