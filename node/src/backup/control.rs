//! The node's control socket, `DATA_DIR/control.sock`: how `gridledger backup` copies a
//! running node, whose database only the node may open.
//!
//! A Unix socket in the data dir, not an HTTP route: only who may read the data dir may
//! reach it (the socket is the node user's alone, mode 0600), so it needs no token and
//! nothing of it faces the network. One request: the line `backup 1`; the answer is a
//! whole backup ([`super::archive`]) of the store as of one commit, streamed while the node
//! goes on committing, or one line `ERR reason`. One backup at a time.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::archive::{Manifest, Writer};
use crate::store::dump::{Sink, Snapshot};
use crate::store::Store;

/// The socket's file name in the data dir.
pub const SOCKET: &str = "control.sock";
/// The one request this version answers, optionally followed by ` max-rate=BYTES_PER_S`.
pub const REQUEST: &str = "backup 1";

/// Keeps a copy under a rate in bytes a second, sleeping when it is ahead: a copy at full
/// speed takes both cores and the disk from the node it copies.
#[derive(Debug)]
pub struct Pace {
    rate: u64,
    began: std::time::Instant,
    sent: u64,
    checked: u64,
}

impl Pace {
    /// A pace of `rate` bytes a second; `None` for 0 (no limit).
    #[must_use]
    pub fn new(rate: u64) -> Option<Self> {
        (rate > 0).then(|| Pace {
            rate,
            began: std::time::Instant::now(),
            sent: 0,
            checked: 0,
        })
    }

    /// Counts `n` bytes sent, and sleeps (checked once a MiB) while ahead of the rate.
    pub fn sent(&mut self, n: usize) {
        self.sent += n as u64;
        if self.sent - self.checked < 1 << 20 {
            return;
        }
        self.checked = self.sent;
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.began.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}
/// How long a client may take to send its request line.
const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// How long the node waits on a client that stops reading (suspended, or hostile) before it
/// ends the copy: meanwhile the copy holds a read transaction, whose pages the database
/// cannot reuse, and the one backup slot. The limit holds for each write, and a write may
/// send part of its bytes before it blocks: up to twice this in all.
/// `GRIDLEDGER_BACKUP_STALL_SECS` changes it.
const STALL: Duration = Duration::from_secs(30);

fn stall() -> Duration {
    std::env::var("GRIDLEDGER_BACKUP_STALL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(STALL, Duration::from_secs)
}

/// A dump written as a backup: the sink both the node and an offline backup use.
#[derive(Debug)]
pub struct ToArchive<W: Write> {
    /// The backup being written.
    pub writer: Writer<W>,
    /// Whether the copy is of a running node.
    pub running: bool,
    /// The manifest, once begun.
    pub manifest: Option<Manifest>,
    /// The pace the copy keeps, if any.
    pub pace: Option<Pace>,
}

/// The manifest of `s`.
#[must_use]
pub fn manifest(s: &Snapshot, running: bool) -> Manifest {
    Manifest {
        gridledger: env!("CARGO_PKG_VERSION").into(),
        made_unix: crate::clock::now_ms() / 1000,
        running,
        network: s.network.clone(),
        bits: s.bits,
        format: s.format,
        height: s.height,
        tip: s.tip.map(|t| t.to_string()).unwrap_or_default(),
        blockfile_end: s.blockfile_end,
    }
}

impl<W: Write> Sink for ToArchive<W> {
    fn begin(&mut self, s: &Snapshot) -> std::io::Result<()> {
        let m = manifest(s, self.running);
        self.writer.manifest(&m)?;
        self.manifest = Some(m);
        Ok(())
    }
    fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        if let Some(p) = &mut self.pace {
            p.sent(table.len() + key.len() + value.len() + 10);
        }
        self.writer.row(table, key, value)
    }
    fn blocks(&mut self, piece: &[u8]) -> std::io::Result<()> {
        if let Some(p) = &mut self.pace {
            p.sent(piece.len());
        }
        self.writer.blocks(piece)
    }
}

/// The control socket of a running node; removed when dropped.
#[derive(Debug)]
pub struct Control {
    path: PathBuf,
    cancel: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the control socket in `dir` for `store`. A socket file left by a node that was
/// killed is replaced (this node holds the database, so no other node serves it). `None`,
/// with a warning, if the socket cannot be made (a path too long for a Unix socket, a
/// file system without them): the node runs, and a backup must then stop it.
#[must_use]
pub fn serve(dir: &Path, store: Arc<Store>) -> Option<Control> {
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), "no control socket ({e}): `gridledger backup` cannot copy this node while it runs");
            return None;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), "control socket: cannot restrict it to this user ({e}); closing it");
            let _ = std::fs::remove_file(&path);
            return None;
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&cancel);
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let (store, stop, busy) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&busy));
            tokio::spawn(async move {
                let Ok(conn) = conn.into_std() else { return };
                let _ =
                    tokio::task::spawn_blocking(move || answer(conn, &store, &stop, &busy)).await;
            });
        }
    });
    Some(Control { path, cancel, task })
}

/// The rate a request asks for (0: none), or `None` if it is not a request.
fn parse_request(line: &str) -> Option<u64> {
    let rest = line.trim_end().strip_prefix(REQUEST)?;
    match rest.strip_prefix(" max-rate=") {
        Some(n) => n.parse().ok(),
        None => rest.is_empty().then_some(0),
    }
}

/// Answers one connection (on a blocking thread).
fn answer(
    conn: std::os::unix::net::UnixStream,
    store: &Store,
    cancel: &AtomicBool,
    busy: &AtomicBool,
) {
    // The answer, then what the client sent past the request read and dropped (a bounded
    // amount, within the read timeout): closing on unread bytes would reset the connection
    // and the client would lose the answer.
    let refuse = |mut c: &std::os::unix::net::UnixStream, why: &str| {
        let _ = writeln!(c, "ERR {why}");
        let _ = c.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut std::io::Read::take(c, 1 << 16), &mut std::io::sink());
    };
    if conn.set_nonblocking(false).is_err()
        || conn.set_read_timeout(Some(REQUEST_WAIT)).is_err()
        || conn.set_write_timeout(Some(stall())).is_err()
    {
        return;
    }
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(std::io::Read::take(&conn, 128));
    let rate = match reader.read_line(&mut line).map(|_| parse_request(&line)) {
        Ok(Some(rate)) => rate,
        _ => {
            refuse(
                &conn,
                &format!("unknown request (this node answers '{REQUEST} [max-rate=BYTES_PER_S]')"),
            );
            return;
        }
    };
    if busy.swap(true, Ordering::AcqRel) {
        refuse(
            &conn,
            "a backup is already being made; try again when it ends",
        );
        return;
    }
    let began = std::time::Instant::now();
    let out = std::io::BufWriter::with_capacity(1 << 20, &conn);
    let done = Writer::new(out).and_then(|writer| {
        let mut sink = ToArchive {
            writer,
            running: true,
            manifest: None,
            pace: Pace::new(rate),
        };
        let (snap, rows) = store
            .dump(&mut sink, cancel)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (_, bytes) = sink.writer.finish()?;
        Ok((snap, rows, bytes))
    });
    busy.store(false, Ordering::Release);
    match done {
        Ok((snap, rows, bytes)) => tracing::info!(
            height = snap.height,
            rows,
            bytes,
            secs = began.elapsed().as_secs_f64(),
            "backup copied through the control socket"
        ),
        // The client sees a stream without its seal and says so.
        Err(e) => tracing::warn!("backup through the control socket stopped: {e}"),
    }
}
