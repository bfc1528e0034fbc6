//! `gridledger backup` and `gridledger restore`: a consistent copy of a data dir, taken
//! while its node runs, and the data dir brought back from it.
//!
//! A running node holds its database alone, so a backup asks it through its control socket
//! ([`control`]) for a copy as of one commit; with no node running, the data dir is read
//! directly (read-only, as `verify` reads it, a file a kill -9 left unclean included). Either
//! way the copy is one file ([`archive`]): the chain, the witness, the disputes, finality
//! and evidence (every table), the block file, and the peers added at run time; the miner
//! key only when asked. Restore checks the whole file before it puts anything in place,
//! writes the data dir under temporary names, renames them in with the database last, and
//! then verifies the result as `gridledger verify` does.

pub mod archive;
pub mod control;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use archive::{ArchiveError, Frame, Manifest, Reader, Writer};
use control::{ToArchive, REQUEST, SOCKET};

use crate::store::dump::{DumpError, Restorer};
use crate::store::{Store, StoreError, DB_FILE, FORMAT};

/// The name of the key file inside a backup.
const KEY_ENTRY: &str = "miner.key";

/// `gridledger backup`'s arguments.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The node's data dir (the node may be running).
    #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where to write the backup (`-`: standard output). Written under a temporary name
    /// and renamed when whole.
    #[arg(long)]
    pub out: PathBuf,
    /// Put the miner's secret key in the backup too. Without it the backup holds nothing
    /// secret; keep a backup with the key as you keep the key.
    #[arg(long)]
    pub with_key: bool,
    /// The key file (default: DATA_DIR/miner.key), for --with-key.
    #[arg(long, env = "GRIDLEDGER_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Most megabytes a second a running node sends (0: as fast as it can). The default
    /// leaves the node's commits their pace: a copy at full speed takes the cores and the
    /// disk from them.
    #[arg(long, default_value_t = 100, value_name = "MB_PER_S")]
    pub max_rate: u64,
}

/// `gridledger restore`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file (`-`: standard input).
    #[arg(long)]
    pub from: PathBuf,
    /// The data dir to restore into; created if missing. It must hold no chain, unless
    /// --force, which moves the chain there aside (as FILE.replaced-UNIXTIME) first.
    #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where to put a key the backup holds (default: DATA_DIR/miner.key).
    #[arg(long, env = "GRIDLEDGER_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Replace what the data dir holds (moved aside, never deleted).
    #[arg(long)]
    pub force: bool,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading the data dir failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Copying it failed.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// The backup file cannot be read as one.
    #[error("{path}: {source}")]
    Archive {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ArchiveError,
    },
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The running node refused or failed the request.
    #[error("the node on {path} refused the backup: {reason}")]
    Refused {
        /// Its control socket.
        path: PathBuf,
        /// What it said.
        reason: String,
    },
    /// The node runs, but its control socket does not answer.
    #[error("a node is running on {0} and its control socket does not answer (a node older than backups, or one that could not make the socket: see its log); stop the node to back it up")]
    NoControl(PathBuf),
    /// The output exists.
    #[error("{0} exists; give --force to replace it")]
    Exists(PathBuf),
    /// The data dir to restore into already holds a chain (or a key that differs).
    #[error(
        "{0} already holds {1}; restore into an empty data dir, or give --force to move it aside"
    )]
    Occupied(PathBuf, String),
    /// The backup is of a data dir format newer than this binary.
    #[error("the backup is of data dir format {found}, written by gridledger {by}; this one reads format {FORMAT} and older: restore it with that version or newer")]
    NewerFormat {
        /// Its format.
        found: u32,
        /// The version that made it.
        by: String,
    },
    /// The backup breaks its own layout (rows and files where they do not belong).
    #[error("{path}: malformed backup: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The restored data dir does not verify.
    #[error("the restored data dir does not verify: {0}")]
    Verify(StoreError),
}

impl BackupError {
    /// True if the error means damage (a backup that is not whole, a restored chain that
    /// does not verify): the exit status is then 2, as `verify`'s is.
    #[must_use]
    pub fn is_damage(&self) -> bool {
        match self {
            BackupError::Archive { source, .. } => !matches!(source, ArchiveError::Io(_)),
            BackupError::Malformed { .. } => true,
            BackupError::Dump(DumpError::BadRow { .. }) => true,
            BackupError::Verify(e) | BackupError::Store(e) => e.is_corruption(),
            _ => false,
        }
    }
}

/// What a backup or a restore did, as one line.
#[derive(Debug)]
pub struct Done {
    /// The manifest of the copy.
    pub manifest: Manifest,
    /// Rows of the database copied.
    pub rows: u64,
    /// Bytes of the backup file.
    pub bytes: u64,
    /// Seconds it took.
    pub secs: f64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn archive_err(path: &Path) -> impl Fn(ArchiveError) -> BackupError + '_ {
    move |source| BackupError::Archive {
        path: path.to_owned(),
        source,
    }
}

/// Bytes a backup file is written in: a multiple of any block size direct I/O asks for.
const CHUNK: usize = 1 << 20;
/// The alignment direct I/O asks of the memory it writes from.
const ALIGN: usize = 4096;

/// A backup file written straight to the disk (`O_DIRECT`), a MiB at a time, where the
/// file system allows it. Through the page cache, a backup's bytes ride on the node's own
/// commits: on ext4 each commit is a journal commit, which first writes every file's data
/// written since the last one, and `backup-bench` measured the commits' p99 at 2.5 to 3 ×
/// (a sync every few MiB: 2.6 ×; none: one commit waited 983 ms behind the final sync;
/// `POSIX_FADV_DONTNEED` after each 16 MiB: 2.76 ×). Written directly, the bytes are on the
/// disk when `write` returns and no commit carries them. Where direct I/O is refused
/// (tmpfs, some network file systems), the file is written through the page cache with
/// `POSIX_FADV_DONTNEED` after each chunk, which starts its writeback without a sync.
struct Direct {
    file: std::fs::File,
    buf: Vec<u8>,
    /// Where the aligned chunk starts in `buf`.
    at: usize,
    /// Bytes waiting in the chunk.
    len: usize,
    direct: bool,
    written: u64,
}

impl Direct {
    fn new(file: std::fs::File) -> Self {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        let direct = fcntl_getfl(&file)
            .and_then(|f| fcntl_setfl(&file, f | OFlags::DIRECT))
            .is_ok();
        let buf = vec![0u8; CHUNK + ALIGN];
        let at = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        Direct {
            file,
            buf,
            at,
            len: 0,
            direct,
            written: 0,
        }
    }

    fn write_chunk(&mut self) -> std::io::Result<()> {
        let chunk = &self.buf[self.at..self.at + self.len];
        match self.file.write_all(chunk) {
            // A file system that took the flag but refuses the write: go on without it.
            Err(e)
                if self.direct
                    && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
            {
                self.plain()?;
                self.file
                    .write_all(&self.buf[self.at..self.at + self.len])?;
            }
            r => r?,
        }
        if !self.direct {
            let len = std::num::NonZeroU64::new(self.len as u64);
            // Advice only: where the kernel does not take it, the copy is still whole.
            let _ =
                rustix::fs::fadvise(&self.file, self.written, len, rustix::fs::Advice::DontNeed);
        }
        self.written += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// Turns direct I/O off (for the last, unaligned piece).
    fn plain(&mut self) -> std::io::Result<()> {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        if self.direct {
            let flags = fcntl_getfl(&self.file)?;
            fcntl_setfl(&self.file, flags - OFlags::DIRECT)?;
            self.direct = false;
        }
        Ok(())
    }

    /// Writes what is left and syncs the file.
    fn finish(mut self) -> std::io::Result<std::fs::File> {
        if self.len > 0 {
            if self.len % ALIGN != 0 {
                self.plain()?;
            }
            self.write_chunk()?;
        }
        self.file.sync_all()?;
        Ok(self.file)
    }
}

impl Write for Direct {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(CHUNK - self.len);
        let start = self.at + self.len;
        self.buf[start..start + n].copy_from_slice(&b[..n]);
        self.len += n;
        if self.len == CHUNK {
            self.write_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a backup is written: a file under a temporary name, or stdout.
enum Out {
    File {
        file: Direct,
        tmp: PathBuf,
        path: PathBuf,
    },
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::File { file, .. } => file.write(b),
            Out::Stdout(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::File { file, .. } => file.flush(),
            Out::Stdout(s) => s.flush(),
        }
    }
}

impl Out {
    fn open(path: &Path, force: bool) -> Result<Out, BackupError> {
        use std::os::unix::fs::OpenOptionsExt;
        if path == Path::new("-") {
            return Ok(Out::Stdout(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout(),
            )));
        }
        if path.exists() && !force {
            return Err(BackupError::Exists(path.to_owned()));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        // A node's private state (its own reads, its peers; with --with-key its secret):
        // its owner's alone, as the data dir is.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        Ok(Out::File {
            file: Direct::new(file),
            tmp,
            path: path.to_owned(),
        })
    }

    /// Makes the backup durable under its name.
    fn commit(self) -> Result<(), BackupError> {
        match self {
            Out::Stdout(mut s) => s.flush().map_err(io(Path::new("-"))),
            Out::File { file, tmp, path } => {
                file.finish().map_err(io(&tmp))?;
                std::fs::rename(&tmp, &path).map_err(io(&path))?;
                sync_dir(&path)
            }
        }
    }

    fn abandon(self) {
        if let Out::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<(), BackupError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Copies a running node's store through its control socket into `w`, frame by frame
/// (each checked, and the node's seal with them). `Ok(None)` if no node answers there.
fn from_node(
    dir: &Path,
    w: &mut Writer<&mut Out>,
    max_rate: u64,
) -> Result<Option<(Manifest, u64)>, BackupError> {
    let path = dir.join(SOCKET);
    let Ok(mut conn) = std::os::unix::net::UnixStream::connect(&path) else {
        return Ok(None);
    };
    let rate = max_rate.saturating_mul(1_000_000);
    writeln!(conn, "{REQUEST} max-rate={rate}").map_err(io(&path))?;
    let mut inp = std::io::BufReader::with_capacity(1 << 20, conn);
    let mut first = [0u8; 4];
    inp.read_exact(&mut first).map_err(io(&path))?;
    if &first == b"ERR " {
        let mut reason = String::new();
        let _ = inp.take(512).read_to_string(&mut reason);
        return Err(BackupError::Refused {
            path,
            reason: reason.trim().to_owned(),
        });
    }
    let cut = |e: ArchiveError| match e {
        ArchiveError::Truncated => BackupError::Refused {
            path: path.clone(),
            reason: "it stopped sending before the end of the copy (see the node's log)".into(),
        },
        e => archive_err(&path)(e),
    };
    let mut r = Reader::new(std::io::Cursor::new(first).chain(inp)).map_err(cut)?;
    let mut manifest = None;
    let mut rows = 0;
    while let Some(frame) = r.next_frame().map_err(cut)? {
        let put = match frame {
            Frame::Manifest(m) => {
                let p = w.manifest(&m);
                manifest = Some(m);
                p
            }
            Frame::Row { table, key, value } => {
                rows += 1;
                w.row(&table, &key, &value)
            }
            Frame::Blocks(b) => w.blocks(&b),
            Frame::File { name, .. } => {
                return Err(BackupError::Malformed {
                    path,
                    reason: format!("the node sent a file ({name})"),
                })
            }
        };
        put.map_err(io(Path::new("the backup")))?;
    }
    let manifest = manifest.ok_or_else(|| BackupError::Malformed {
        path: path.clone(),
        reason: "no manifest".into(),
    })?;
    Ok(Some((manifest, rows)))
}

/// `gridledger backup`.
pub fn backup(args: &BackupArgs) -> Result<Done, BackupError> {
    let began = Instant::now();
    let dir = &args.data_dir;
    if !dir.join(DB_FILE).exists() {
        return Err(StoreError::NoChain(dir.clone()).into());
    }
    // Read before anything is written: a missing key fails the backup at once.
    let key_file = args
        .key_file
        .clone()
        .unwrap_or_else(|| dir.join("miner.key"));
    let key = if args.with_key {
        Some(std::fs::read(&key_file).map_err(io(&key_file))?)
    } else {
        None
    };
    let mut out = Out::open(&args.out, args.force)?;
    let made = (|| {
        let mut w = Writer::new(&mut out).map_err(io(&args.out))?;
        let (manifest, rows) = match from_node(dir, &mut w, args.max_rate)? {
            Some(got) => got,
            None => {
                let store = match Store::open_read_only(dir) {
                    Err(StoreError::InUse(_)) => return Err(BackupError::NoControl(dir.clone())),
                    other => other?,
                };
                // At rest nothing competes for the disk: no pace.
                let mut sink = ToArchive {
                    writer: w,
                    running: false,
                    manifest: None,
                    pace: None,
                };
                let (_, rows) = store.dump(&mut sink, &AtomicBool::new(false))?;
                w = sink.writer;
                let manifest = sink.manifest.ok_or(DumpError::NoNetwork)?;
                (manifest, rows)
            }
        };
        let peers = dir.join(crate::peers::PEERS_FILE);
        match std::fs::read(&peers) {
            Ok(b) => w
                .file(crate::peers::PEERS_FILE, &b)
                .map_err(io(&args.out))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&peers)(e)),
        }
        if let Some(k) = &key {
            w.file(KEY_ENTRY, k).map_err(io(&args.out))?;
        }
        let (_, bytes) = w.finish().map_err(io(&args.out))?;
        Ok((manifest, rows, bytes))
    })();
    match made {
        Ok((manifest, rows, bytes)) => {
            out.commit()?;
            Ok(Done {
                manifest,
                rows,
                bytes,
                secs: began.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            out.abandon();
            Err(e)
        }
    }
}

/// Where a restore writes before anything is put in place: `DATA_DIR/.restoring/`, a data
/// dir of its own that is verified whole, then moved in file by file.
const STAGING: &str = ".restoring";

/// Moves `path` aside as `path.replaced-STAMP` if it exists.
fn move_aside(path: &Path, stamp: u64) -> Result<(), BackupError> {
    if path.exists() {
        let mut to = path.as_os_str().to_owned();
        to.push(format!(".replaced-{stamp}"));
        std::fs::rename(path, PathBuf::from(&to)).map_err(io(path))?;
        tracing::warn!(from = %path.display(), to = %PathBuf::from(to).display(), "moved aside");
    }
    Ok(())
}

/// Gives `path` to the owner of the data dir when they differ (a restore run as root
/// into a node user's data dir): the node must be able to open what is restored.
fn own_like_dir(dir: &Path, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::metadata(path)) else {
        return;
    };
    if (d.uid(), d.gid()) != (f.uid(), f.gid()) {
        if let Err(e) = std::os::unix::fs::chown(path, Some(d.uid()), Some(d.gid())) {
            tracing::warn!(path = %path.display(), "cannot give it to the data dir's owner ({e}); the node may not be able to open it");
        }
    }
}

/// `gridledger restore`: returns what was restored and `verify`'s line on the result.
/// Nothing in the data dir changes unless the whole backup reads, seals and verifies.
pub fn restore(args: &RestoreArgs) -> Result<(Done, String), BackupError> {
    let began = Instant::now();
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let names = [DB_FILE, crate::blockfile::FILE, crate::peers::PEERS_FILE];
    let key_file = args
        .key_file
        .clone()
        .unwrap_or_else(|| dir.join("miner.key"));
    for name in &names[..2] {
        let p = dir.join(name);
        if p.exists() && !args.force {
            return Err(BackupError::Occupied(
                dir.clone(),
                format!("a chain ({})", p.display()),
            ));
        }
    }
    let (inp, len): (Box<dyn Read>, u64) = if args.from == Path::new("-") {
        (Box::new(std::io::stdin().lock()), 0)
    } else {
        let f = std::fs::File::open(&args.from).map_err(io(&args.from))?;
        let len = f.metadata().map_or(0, |m| m.len());
        (Box::new(f), len)
    };
    let staging = dir.join(STAGING);
    let clean = |p: &Path| match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(p)(e)),
        _ => Ok(()),
    };
    clean(&staging)?;
    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let staged = restore_staged(args, inp, &staging)
        .and_then(|r| match crate::offline::verify(&staging) {
            Ok(line) => Ok((r, line)),
            Err(e) => Err(BackupError::Verify(e)),
        })
        .and_then(|(r, line)| {
            if let Some(k) = &r.2 {
                match std::fs::read(&key_file) {
                    Ok(old) if &old == k => {}
                    Ok(_) if !args.force => {
                        return Err(BackupError::Occupied(
                            dir.clone(),
                            format!("a different miner key ({})", key_file.display()),
                        ))
                    }
                    _ => {}
                }
            }
            Ok((r, line))
        });
    let ((manifest, rows, key), line) = match staged {
        Ok(s) => s,
        Err(e) => {
            let _ = clean(&staging);
            return Err(e);
        }
    };
    // Whole, sealed and verified: put it in place, the database last (its presence is what
    // makes the data dir hold a chain).
    let stamp = crate::clock::now_ms() / 1000;
    for name in names {
        move_aside(&dir.join(name), stamp)?;
    }
    for name in names.iter().rev() {
        let from = staging.join(name);
        if from.exists() {
            let to = dir.join(name);
            std::fs::rename(&from, &to).map_err(io(&to))?;
            own_like_dir(dir, &to);
        }
    }
    if let Some(k) = &key {
        let mut tmp = key_file.as_os_str().to_owned();
        tmp.push(".restoring");
        let tmp = PathBuf::from(tmp);
        write_secret(&tmp, k)?;
        if std::fs::read(&key_file).ok().as_ref() != Some(k) {
            move_aside(&key_file, stamp)?;
        }
        std::fs::rename(&tmp, &key_file).map_err(io(&key_file))?;
        own_like_dir(dir, &key_file);
    }
    sync_dir(&dir.join(DB_FILE))?;
    clean(&staging)?;
    Ok((
        Done {
            manifest,
            rows,
            bytes: len,
            secs: began.elapsed().as_secs_f64(),
        },
        line,
    ))
}

type Restored = (Manifest, u64, Option<Vec<u8>>);

/// Reads the whole backup into the data dir `staging`; the key, if the backup holds one,
/// is returned, not written.
fn restore_staged(
    args: &RestoreArgs,
    inp: Box<dyn Read>,
    staging: &Path,
) -> Result<Restored, BackupError> {
    let from = &args.from;
    let malformed = |reason: String| BackupError::Malformed {
        path: from.clone(),
        reason,
    };
    let mut r =
        Reader::new(std::io::BufReader::with_capacity(1 << 20, inp)).map_err(archive_err(from))?;
    let Some(Frame::Manifest(manifest)) = r.next_frame().map_err(archive_err(from))? else {
        return Err(malformed("no manifest".into()));
    };
    if manifest.format > FORMAT {
        return Err(BackupError::NewerFormat {
            found: manifest.format,
            by: manifest.gridledger.clone(),
        });
    }
    let blocks_path = staging.join(crate::blockfile::FILE);
    let mut restorer = Restorer::create(&staging.join(DB_FILE))?;
    let mut blocks: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut block_bytes = 0u64;
    let mut rows = 0u64;
    let mut key = None;
    let mut files_seen: Vec<String> = Vec::new();
    while let Some(frame) = r.next_frame().map_err(archive_err(from))? {
        match frame {
            Frame::Manifest(_) => return Err(malformed("a second manifest".into())),
            Frame::Row { table, key, value } => {
                rows += 1;
                restorer.row(&table, &key, &value)?;
            }
            Frame::Blocks(piece) => {
                block_bytes += piece.len() as u64;
                if block_bytes > manifest.blockfile_end {
                    return Err(malformed(format!(
                        "more block-file bytes than its manifest says ({})",
                        manifest.blockfile_end
                    )));
                }
                let w = match &mut blocks {
                    Some(w) => w,
                    None => blocks.insert(std::io::BufWriter::with_capacity(
                        1 << 20,
                        std::fs::File::create(&blocks_path).map_err(io(&blocks_path))?,
                    )),
                };
                w.write_all(&piece).map_err(io(&blocks_path))?;
            }
            Frame::File { name, bytes } => {
                if files_seen.contains(&name) {
                    return Err(malformed(format!("the file {name} twice")));
                }
                files_seen.push(name.clone());
                if name == KEY_ENTRY {
                    key = Some(bytes);
                } else if name == crate::peers::PEERS_FILE {
                    let path = staging.join(crate::peers::PEERS_FILE);
                    std::fs::write(&path, &bytes).map_err(io(&path))?;
                } else {
                    return Err(malformed(format!(
                        "a file this version does not restore ({name})"
                    )));
                }
            }
        }
    }
    if block_bytes != manifest.blockfile_end {
        return Err(malformed(format!(
            "{block_bytes} block-file bytes where its manifest says {}",
            manifest.blockfile_end
        )));
    }
    restorer.finish()?;
    if let Some(w) = blocks {
        let f = w
            .into_inner()
            .map_err(|e| io(&blocks_path)(e.into_error()))?;
        f.sync_all().map_err(io(&blocks_path))?;
    }
    Ok((manifest, rows, key))
}

/// Writes a secret key readable by its owner only.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        write!(
            f,
            "network '{}' ({} bits), height {}, tip {}, {} rows, {} block-file bytes; {} bytes in {:.1} s ({})",
            m.network,
            m.bits,
            m.height,
            if m.tip.is_empty() { "genesis" } else { &m.tip },
            self.rows,
            m.blockfile_end,
            self.bytes,
            self.secs,
            if m.running { "copied from the running node" } else { "copied from the data dir at rest" },
        )
    }
}
