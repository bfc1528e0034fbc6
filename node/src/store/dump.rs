//! A data dir's whole state as rows and bytes: what `gridledger backup` copies and
//! `gridledger restore` writes back.
//!
//! [`Store::dump`] reads every table in one read transaction: redb's snapshot, so a running
//! node goes on committing beside it and the copy is the state as of one commit. The same
//! transaction gives the block file's committed end; the file's bytes below it are copied
//! after the transaction is let go (so that a long copy does not keep the node's freed pages
//! from reuse). They cannot change: the file is only appended to, and nothing past that end
//! is named by the snapshot.
//!
//! Rows are copied as the bytes redb stores, table by table, whatever the table holds: a
//! table added later is copied by adding its name to [`TABLES`], and a data dir holding a
//! table this version does not know is refused rather than copied without it.
//! [`Restorer`] writes the rows into a new database, checking each against its table's
//! types first (a hostile or damaged backup gets an error, never a panic in the engine).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Key, ReadableTable, TableDefinition, TableHandle, Value};

use super::kept::{CHECKPOINTS, EVIDENCE, FINALITY, TLOG, WITNESS, WITNESS_RANGE};
use super::{
    main_row, Store, StoreError, BLOCKFILE_END, BLOCKS, CACHE_BYTES, DISPUTES, FORMAT_KEY, IDS,
    LOCS, MAIN, META, RECORDS, SIDE,
};
use crate::chain::BlockId;

/// Every table a data dir may hold, in the order a dump writes them.
pub const TABLES: &[&str] = &[
    "meta",
    "main",
    "ids",
    "locs",
    "side",
    "records",
    "blocks",
    "disputes",
    "witness",
    "witness_range",
    "finality",
    "checkpoints",
    "tlog",
    "evidence",
];

/// Runs `$body` with `$def` bound to the definition of the table named `$name`, and `$text`
/// to whether its key is text; `$other` for a name not in [`TABLES`]. The one place a name
/// meets its table, for the dump and the restore alike.
macro_rules! by_name {
    ($name:expr, |$def:ident, $text:ident| $body:expr, $other:expr) => {
        match $name {
            "meta" => {
                let ($def, $text) = (META, true);
                $body
            }
            "main" => {
                let ($def, $text) = (MAIN, false);
                $body
            }
            "ids" => {
                let ($def, $text) = (IDS, false);
                $body
            }
            "locs" => {
                let ($def, $text) = (LOCS, false);
                $body
            }
            "side" => {
                let ($def, $text) = (SIDE, false);
                $body
            }
            "records" => {
                let ($def, $text) = (RECORDS, false);
                $body
            }
            "blocks" => {
                let ($def, $text) = (BLOCKS, false);
                $body
            }
            "disputes" => {
                let ($def, $text) = (DISPUTES, false);
                $body
            }
            "witness" => {
                let ($def, $text) = (WITNESS, false);
                $body
            }
            "witness_range" => {
                let ($def, $text) = (WITNESS_RANGE, false);
                $body
            }
            "finality" => {
                let ($def, $text) = (FINALITY, true);
                $body
            }
            "checkpoints" => {
                let ($def, $text) = (CHECKPOINTS, false);
                $body
            }
            "tlog" => {
                let ($def, $text) = (TLOG, false);
                $body
            }
            "evidence" => {
                let ($def, $text) = (EVIDENCE, false);
                $body
            }
            _ => $other,
        }
    };
}

/// Rows a [`Restorer`] writes per transaction.
const BATCH: usize = 200_000;

/// What a snapshot holds, known before its first row: a backup's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The network name the data dir was created for.
    pub network: String,
    /// Its difficulty bits.
    pub bits: u8,
    /// The data dir's format ([`super::FORMAT`]).
    pub format: u32,
    /// The main chain's height.
    pub height: u32,
    /// The main chain's tip (`None` at genesis).
    pub tip: Option<BlockId>,
    /// The block file's committed end: its bytes in the copy.
    pub blockfile_end: u64,
}

/// Where a dump goes.
pub trait Sink {
    /// The snapshot's facts, before any row.
    fn begin(&mut self, snapshot: &Snapshot) -> std::io::Result<()>;
    /// One row of `table`, as redb stores it.
    fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> std::io::Result<()>;
    /// The next piece of the block file, in order from its first byte.
    fn blocks(&mut self, piece: &[u8]) -> std::io::Result<()>;
}

/// Why a dump or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// Reading the data dir failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The receiver failed (the disk is full, the connection closed).
    #[error("writing the copy: {0}")]
    Out(std::io::Error),
    /// The data dir holds a table this version does not know: a copy without it would not
    /// be whole.
    #[error("the data dir holds a table this gridledger does not know ('{0}'): back it up with the version that wrote it")]
    UnknownTable(String),
    /// The data dir has no network stamp: it is not a chain's data dir, or is damaged.
    #[error("the data dir has no network stamp")]
    NoNetwork,
    /// Stopped on request (the node is stopping).
    #[error("stopped: the node is stopping")]
    Cancelled,
    /// A row of a backup does not fit its table.
    #[error("backup row of table '{table}': {reason}")]
    BadRow {
        /// The table.
        table: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing the new database failed.
    #[error("database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: Box<redb::Error>,
    },
}

fn copy_rows<K: Key + 'static, V: Value + 'static>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
    out: &mut dyn Sink,
    cancel: &AtomicBool,
    err: &dyn Fn(redb::Error) -> StoreError,
) -> Result<u64, DumpError> {
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(err(e.into()).into()),
    };
    let mut n = 0u64;
    for row in table.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let (k, v) = (k.value(), v.value());
        out.row(
            def.name(),
            K::as_bytes(&k).as_ref(),
            V::as_bytes(&v).as_ref(),
        )
        .map_err(DumpError::Out)?;
        n += 1;
        if n % 4096 == 0 && cancel.load(Ordering::Relaxed) {
            return Err(DumpError::Cancelled);
        }
    }
    Ok(n)
}

impl Store {
    /// Hands the whole data dir to `out` as of one commit: its facts, every table's rows
    /// and the block file below its committed end. Returns the facts and the rows copied.
    /// `cancel` stops it between rows.
    pub fn dump(
        &self,
        out: &mut dyn Sink,
        cancel: &AtomicBool,
    ) -> Result<(Snapshot, u64), DumpError> {
        let err = |e: redb::Error| self.err(e);
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let names: Vec<String> = txn
            .list_tables()
            .map_err(|e| err(e.into()))?
            .map(|t| t.name().to_owned())
            .collect();
        if let Some(unknown) = names.iter().find(|n| !TABLES.contains(&n.as_str())) {
            return Err(DumpError::UnknownTable(unknown.clone()));
        }
        let meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, DumpError> {
            Ok(meta
                .get(k)
                .map_err(|e| err(e.into()))?
                .map(|v| v.value().to_vec()))
        };
        let tag = get("network")?.ok_or(DumpError::NoNetwork)?;
        let (&bits, name) = tag.split_first().ok_or(DumpError::NoNetwork)?;
        let format = get(FORMAT_KEY)?
            .and_then(|v| v.try_into().ok())
            .map_or(1, u32::from_le_bytes);
        let blockfile_end = get(BLOCKFILE_END)?
            .and_then(|v| crate::blockfile::Committed::from_bytes(&v))
            .map_or(0, |c| c.end);
        drop(meta);
        let main = txn.open_table(MAIN).map_err(|e| err(e.into()))?;
        let (height, tip) = match main.last().map_err(|e| err(e.into()))? {
            Some((h, v)) => (h.value(), Some(main_row(h.value(), v.value())?.0)),
            None => (0, None),
        };
        drop(main);
        let snapshot = Snapshot {
            network: String::from_utf8_lossy(name).into_owned(),
            bits,
            format,
            height,
            tip,
            blockfile_end,
        };
        out.begin(&snapshot).map_err(DumpError::Out)?;
        let mut rows = 0;
        for name in TABLES {
            rows += by_name!(
                *name,
                |def, _text| copy_rows(&txn, def, out, cancel, &err)?,
                return Err(DumpError::UnknownTable((*name).to_owned()))
            );
        }
        drop(txn);
        if blockfile_end > 0 {
            let file = self.file.as_ref().ok_or_else(|| {
                StoreError::from(crate::blockfile::BlockFileError::Truncated {
                    path: self.path.with_file_name(crate::blockfile::FILE),
                    len: 0,
                    committed: blockfile_end,
                })
            })?;
            let mut put = |piece: &[u8]| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(std::io::Error::other("cancelled"));
                }
                out.blocks(piece)
            };
            file.copy_prefix(blockfile_end, &mut put)
                .map_err(|e| match e {
                    crate::blockfile::CopyError::Read(e) => DumpError::Store(e.into()),
                    crate::blockfile::CopyError::Write(_) if cancel.load(Ordering::Relaxed) => {
                        DumpError::Cancelled
                    }
                    crate::blockfile::CopyError::Write(e) => DumpError::Out(e),
                })?;
        }
        Ok((snapshot, rows))
    }
}

/// A row's bytes checked against a type: its width where the type has one, and UTF-8 for
/// text (redb's own decoding panics on either).
fn fits<T: Value>(bytes: &[u8], text: bool) -> Result<(), String> {
    if let Some(w) = T::fixed_width() {
        if bytes.len() != w {
            return Err(format!("{} bytes where {w} belong", bytes.len()));
        }
    }
    if text && std::str::from_utf8(bytes).is_err() {
        return Err("text that is not UTF-8".into());
    }
    Ok(())
}

fn put_rows<K: Key + 'static, V: Value + 'static>(
    txn: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
    rows: &[(Vec<u8>, Vec<u8>)],
    text_key: bool,
) -> Result<(), DumpError> {
    let bad = |reason: String| DumpError::BadRow {
        table: def.name().to_owned(),
        reason,
    };
    let mut table = txn.open_table(def).map_err(|e| bad(e.to_string()))?;
    for (k, v) in rows {
        fits::<K>(k, text_key).map_err(|r| bad(format!("key: {r}")))?;
        fits::<V>(v, false).map_err(|r| bad(format!("value: {r}")))?;
        table
            .insert(K::from_bytes(k), V::from_bytes(v))
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

/// Writes a dump's rows into a new database file, [`BATCH`] rows per transaction, durable
/// when [`Restorer::finish`] returns.
pub struct Restorer {
    db: redb::Database,
    path: PathBuf,
    table: Option<String>,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    seen: Vec<String>,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer")
            .field("path", &self.path)
            .finish()
    }
}

impl Restorer {
    /// A new, empty database at `path` (which must not exist).
    pub fn create(path: &Path) -> Result<Self, DumpError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| DumpError::Db {
                path: path.to_owned(),
                source: Box::new(e.into()),
            })?;
        Ok(Restorer {
            db,
            path: path.to_owned(),
            table: None,
            rows: Vec::new(),
            seen: Vec::new(),
        })
    }

    fn db_err(&self, e: impl Into<redb::Error>) -> DumpError {
        DumpError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    /// One row of `table`. Rows come table by table: a table met again after another one
    /// is refused (a dump never does that; a spliced file might).
    pub fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), DumpError> {
        if self.table.as_deref() != Some(table) {
            self.flush(false)?;
            if !TABLES.contains(&table) {
                return Err(DumpError::BadRow {
                    table: table.to_owned(),
                    reason: "a table this gridledger does not know (a backup of this data dir format has none such)".into(),
                });
            }
            if self.seen.iter().any(|t| t == table) {
                return Err(DumpError::BadRow {
                    table: table.to_owned(),
                    reason: "its rows come in two places".into(),
                });
            }
            self.seen.push(table.to_owned());
            self.table = Some(table.to_owned());
        }
        self.rows.push((key.to_vec(), value.to_vec()));
        if self.rows.len() >= BATCH {
            self.flush(false)?;
        }
        Ok(())
    }

    fn flush(&mut self, last: bool) -> Result<(), DumpError> {
        let mut txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        if !last {
            // Made durable by the last commit, which is Immediate.
            txn.set_durability(redb::Durability::None)
                .map_err(|e| DumpError::Db {
                    path: self.path.clone(),
                    source: Box::new(redb::Error::Io(std::io::Error::other(e.to_string()))),
                })?;
        }
        let rows = std::mem::take(&mut self.rows);
        if let Some(table) = self.table.as_deref() {
            by_name!(
                table,
                |def, text| put_rows(&txn, def, &rows, text)?,
                return Err(DumpError::UnknownTable(table.to_owned()))
            );
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Writes what is buffered and makes it all durable; the database is closed on return.
    pub fn finish(mut self) -> Result<(), DumpError> {
        // A table without rows has none in the dump, yet readers expect it: a node that
        // never mined has an empty `main`. Every table a store makes is made (not the old
        // `blocks`, whose presence would mean blocks to move).
        self.flush(false)?;
        for table in TABLES.iter().filter(|t| **t != "blocks") {
            if !self.seen.iter().any(|s| s == table) {
                self.table = Some((*table).to_owned());
                self.flush(false)?;
            }
        }
        self.table = None;
        self.flush(true)?;
        if !self.seen.iter().any(|t| t == "meta") {
            return Err(DumpError::BadRow {
                table: "meta".into(),
                reason: "none: the backup has no network stamp".into(),
            });
        }
        Ok(())
    }
}
