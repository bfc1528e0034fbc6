//! A PostgreSQL server of a test's or a bench's own: initdb in a temporary directory, a
//! Unix socket and a loopback port, stopped on drop. Shared source: `node/tests/historian.rs`
//! and the `historian` bench include it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// PostgreSQL's server binaries: Debian keeps them off PATH, per version.
pub fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("postgres").exists() && d.join("initdb").exists())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The uid and gid of the `postgres` user, when this runs as root (the server refuses to).
fn postgres_user() -> Option<(u32, u32)> {
    // The effective uid, from /proc (no libc call needed).
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid_line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let euid: u32 = uid_line.split_whitespace().nth(2)?.parse().ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// A PostgreSQL server of its own, stopped on drop.
pub struct Pg {
    _dir: tempfile::TempDir,
    data: PathBuf,
    sock: PathBuf,
    bin: PathBuf,
    pub port: u16,
    user: Option<(u32, u32)>,
    server: Option<Child>,
}

impl Pg {
    /// A new server, or why there cannot be one here.
    pub fn start() -> Result<Pg, String> {
        let Some(bin) = pg_bin() else {
            return Err(
                "PostgreSQL's server binaries are not installed (apt-get install postgresql)"
                    .into(),
            );
        };
        if Command::new("psql").arg("--version").output().is_err() {
            return Err("psql is not installed".into());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let user = postgres_user();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir_all(&sock).expect("mkdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret-of-the-test\n").expect("write");
        if let Some((uid, gid)) = user {
            for p in [dir.path(), &sock, &pw] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
            }
        }
        let mut pg = Pg {
            _dir: dir,
            data,
            sock,
            bin,
            port: free_port(),
            user,
            server: None,
        };
        let out = pg
            .cmd("initdb")
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pw.display()))
            .arg("--no-sync")
            .arg("-D")
            .arg(&pg.data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.boot();
        Ok(pg)
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        if let Some((uid, gid)) = self.user {
            std::os::unix::process::CommandExt::uid(&mut c, uid);
            std::os::unix::process::CommandExt::gid(&mut c, gid);
        }
        c
    }

    /// Starts the server and waits until it answers.
    pub fn boot(&mut self) {
        let child = self
            .cmd("postgres")
            .arg("-D")
            .arg(&self.data)
            .arg("-k")
            .arg(&self.sock)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        self.server = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if self
                .try_psql("SELECT 1")
                .is_some_and(|o| o.status.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not start within 30 s");
    }

    /// SIGKILL to the server (the postmaster), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Its backends die with it once they notice; give them a moment.
        std::thread::sleep(Duration::from_millis(500));
    }

    /// The superuser over the Unix socket (trust).
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.sock.display(),
            self.port
        )
    }

    pub fn try_psql(&self, sql: &str) -> Option<Output> {
        Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-F", ","])
            .arg(self.url())
            .args(["-c", sql])
            .output()
            .ok()
    }

    /// Runs `sql`, returns its rows (comma-separated fields, no header).
    pub fn psql(&self, sql: &str) -> String {
        let out = self.try_psql(sql).expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
