//! The store: an embedded ACID database (redb) under the data dir.
//!
//! Every valid block known (side branches too, so fork choice survives a restart) is in the
//! block file (`blocks.dat`, [`crate::blockfile`]), appended once. Tables:
//! - `main`: height → block id and where the block is in the block file (offset, length),
//!   the main chain. Reading the chain in order (a sync's pull, a day's readings, `verify`)
//!   is one range of this table;
//! - `ids`: the last 8 bytes of a main-chain block's id → its height, to find a main-chain
//!   block by id (its `main` row confirms the whole id). Its rows are 12 bytes against 44
//!   for a location keyed by the whole id: a sync inserts one per block at random places,
//!   and a table that stays small stays in the page cache;
//! - `locs`: block id → where it is in the block file, for blocks off the main chain (and
//!   a main-chain block whose `ids` key another main-chain block already holds);
//! - `blocks`: block id → block bytes, only in a data dir from before the block file, until
//!   the first writable open moves them out;
//! - `records`: (relay id << 32 | minute) → height, for the main chain's records;
//! - `side`: block id → height, for every stored block off the main chain, so that a start
//!   finds the branches near the tip without reading every block;
//! - `meta`: `network` → the network name and difficulty the data dir was created for;
//! - `disputes`: packed record key → an open dispute (the chain's record differs from this
//!   node's own read), so that a restart does not forget it. Not part of the chain;
//! - the witness, finality, final checkpoints, tlog subtrees and evidence: see [`kept`].
//!
//! A block's bytes are appended and synced first; then its location, main-chain rows and
//! index rows, and the block file's new committed end (meta `blockfile-end`), are written in
//! one transaction, durable when `commit` returns (redb's `Durability::Immediate`): a block
//! counts as stored only then, and a crash at any moment leaves either all of it or none of
//! it (bytes appended but never indexed are cut off at the next open).

pub mod dump;
pub mod kept;

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use crate::blockfile::Location;
use crate::chain::{Block, BlockId, BlockTree, Change, Height};

const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
const LOCS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("locs");
const MAIN: TableDefinition<u32, &[u8]> = TableDefinition::new("main");
const RECORDS: TableDefinition<u64, u32> = TableDefinition::new("records");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The `META` key of the relay registry's text ([`Store::relay_registry`]).
const RELAY_REGISTRY: &str = "relay_registry";
const DISPUTES: TableDefinition<u64, &[u8]> = TableDefinition::new("disputes");
const SIDE: TableDefinition<&[u8], u32> = TableDefinition::new("side");
const IDS: TableDefinition<u64, u32> = TableDefinition::new("ids");
/// The `META` key set once every `main` row carries its block's location (a new data dir,
/// or an older one after [`Store::migrate_main`]); until then, rows of 32 bytes (the id
/// alone) are read with `locs`.
const MAIN_LOCS: &str = "main-locs";
/// The `META` key of the verified mark ([`Store::verified_mark`]).
const VERIFIED: &str = "verified";
/// The `META` key of the record keys below the tree's window ([`Store::deep_keys`]).
const DEEP: &str = "deep";
/// The `META` key of the block file's committed end (u64, little-endian).
const BLOCKFILE_END: &str = "blockfile-end";
/// The `META` key of the data dir's format version (u32, little-endian): what this binary
/// writes is [`FORMAT`]. A data dir without it was written before formats were numbered
/// (0.1.0 and earlier) and is the same format as 1; a writable open stamps it.
const FORMAT_KEY: &str = "format";
/// The data dir format this binary reads and writes. A data dir of a higher format was
/// written by a newer gridledger and is refused, never guessed at
/// ([`StoreError::NewerFormat`]); a lower one is migrated when opened for writing.
pub const FORMAT: u32 = 1;

/// Blocks moved from an old data dir's `blocks` table to the block file per transaction.
const MIGRATE_BATCH: usize = 10_000;

/// redb's page cache. Its default is 1 GiB, which a node fills while it re-verifies the
/// chain at start and then keeps: with a million records that alone broke the 200 MB
/// budget. Interior B-tree pages are what lookups re-touch; 16 MiB holds them many times
/// over for years of records, and a sequential pass gains nothing from a bigger cache.
const CACHE_BYTES: usize = 16 << 20;
/// The database file inside the data dir.
pub const DB_FILE: &str = "chain.redb";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data dir could not be created or read.
    #[error("data dir {path}: {source}")]
    Dir {
        /// The data dir.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database reported an error (I/O, corruption of its own structures, full disk).
    #[error("database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: Box<redb::Error>,
    },
    /// The data dir belongs to another network.
    #[error("data dir is for network {found}, not {expected}")]
    NetworkMismatch {
        /// What the data dir holds.
        found: String,
        /// What was asked for.
        expected: String,
    },
    /// The data dir was written by a newer gridledger, in a format this one does not know.
    #[error(
        "data dir {path} is format {found}, written by a newer gridledger; this one reads \
         format {supported} and older: run the newer version, or restore a backup made for \
         this one (docs/book/src/operating.md)"
    )]
    NewerFormat {
        /// The data dir.
        path: PathBuf,
        /// Its format.
        found: u32,
        /// The newest this binary reads.
        supported: u32,
    },
    /// Another process (or another ledger in this one) has the data dir open.
    #[error("data dir {0} is in use by another gridledger process")]
    InUse(PathBuf),
    /// The data dir holds no chain (no database file).
    #[error("no chain in {0} (no {DB_FILE})")]
    NoChain(PathBuf),
    /// A stored block is missing, unreadable or invalid; the chain is good below it.
    #[error("chain is corrupt at height {height}: {reason}")]
    Corrupt {
        /// The first bad height.
        height: Height,
        /// What is wrong there.
        reason: String,
    },
    /// An earlier commit failed; memory and disk may differ, so the store refuses further
    /// writes. Reopen it.
    #[error("an earlier write failed; reopen the store")]
    Poisoned,
    /// The store was opened read-only (`verify`, `export`).
    #[error("the store is open read-only")]
    ReadOnly,
    /// A stamp the data dir carries (its format) is unreadable: damage, never guessed at.
    #[error("the data dir's stamp is damaged: {0}")]
    BadStamp(String),
    /// The storage engine panicked on the file: its own structures are damaged in a way it
    /// does not check for.
    #[error("the database file is damaged: the storage engine failed ({0})")]
    EnginePanic(String),
    /// The block file failed or is damaged.
    #[error(transparent)]
    BlockFile(#[from] crate::blockfile::BlockFileError),
}

impl StoreError {
    /// True if the error means the data dir's contents are damaged (a block, an index row
    /// or the database's own structures), as opposed to a missing file, a permission, a
    /// full disk or a data dir in use. `verify` exits 2 for these, 1 for the others.
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } | StoreError::EnginePanic(_) | StoreError::BadStamp(_) => {
                true
            }
            StoreError::BlockFile(e) => !matches!(e, crate::blockfile::BlockFileError::Io { .. }),
            StoreError::Db { source, .. } => match source.as_ref() {
                redb::Error::Io(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                ),
                redb::Error::DatabaseAlreadyOpen
                | redb::Error::LockProtocolMismatch
                | redb::Error::PreviousIo
                | redb::Error::LockPoisoned(_)
                | redb::Error::WouldBlock
                | redb::Error::DatabaseClosed
                | redb::Error::Backend(_) => false,
                // Corrupted, a table of the wrong type or missing, a value too large, an
                // unknown file version…: the file does not hold what we wrote.
                _ => true,
            },
            StoreError::Dir { .. }
            | StoreError::NetworkMismatch { .. }
            | StoreError::NewerFormat { .. }
            | StoreError::InUse(_)
            | StoreError::NoChain(_)
            | StoreError::Poisoned
            | StoreError::ReadOnly => false,
        }
    }
}

/// The database, open for writing (a node) or read-only (`verify`, `export`).
enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Write(db) => db.begin_read(),
            Db::Read(db) => db.begin_read(),
        }
    }
}

/// The tables a commit writes, open for one write transaction.
struct Tables<'t> {
    locs: redb::Table<'t, &'static [u8], &'static [u8]>,
    main: redb::Table<'t, u32, &'static [u8]>,
    ids: redb::Table<'t, u64, u32>,
    records: redb::Table<'t, u64, u32>,
    side: redb::Table<'t, &'static [u8], u32>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Tables {
            locs: txn.open_table(LOCS)?,
            main: txn.open_table(MAIN)?,
            ids: txn.open_table(IDS)?,
            records: txn.open_table(RECORDS)?,
            side: txn.open_table(SIDE)?,
        })
    }
}

/// One table's bytes ([`Store::table_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableBytes {
    /// Its name.
    pub table: &'static str,
    /// Keys and values.
    pub stored: u64,
    /// Branch pages and other metadata.
    pub metadata: u64,
    /// Lost to fragmentation (pages not full).
    pub fragmented: u64,
}

/// The database of one data dir.
pub struct Store {
    db: Db,
    path: PathBuf,
    /// The block file; `None` only for a read-only open of a data dir from before it.
    file: Option<crate::blockfile::BlockFile>,
    /// A scratch copy of the file that this store reads instead of the original (a read-only
    /// open of a file that was not closed cleanly); removed on drop.
    scratch: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("read_only", &matches!(self.db, Db::Read(_)))
            .field("scratch", &self.scratch)
            .finish()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn db_error(path: &Path, dir: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(dir.to_owned()),
        e => StoreError::Db {
            path: path.to_owned(),
            source: Box::new(e.into()),
        },
    }
}

/// The network identity recorded in a data dir: name and difficulty bits.
fn network_tag(name: &str, bits: u8) -> Vec<u8> {
    let mut tag = vec![bits];
    tag.extend_from_slice(name.as_bytes());
    tag
}

/// Writes the network stamp and creates every table (so that readers find them), in one
/// transaction.
fn stamp(db: &redb::Database, tag: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert("network", tag)?;
        txn.open_table(LOCS)?;
        // A database without rows writes every row with its location from the start.
        if txn.open_table(MAIN)?.is_empty()? {
            meta.insert(MAIN_LOCS, [1u8].as_slice())?;
        }
        txn.open_table(IDS)?;
        txn.open_table(RECORDS)?;
        txn.open_table(SIDE)?;
    }
    txn.commit()?;
    Ok(())
}

/// The `ids` key of a block id: its last 8 bytes (its first ones hold the proof of work's
/// zeros, alike in every block).
fn id_key(id: &BlockId) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&id.0[24..]);
    u64::from_le_bytes(b)
}

/// A `main` row of `id` at `loc`.
fn main_value(id: &BlockId, loc: Location) -> [u8; 44] {
    let mut v = [0; 44];
    v[..32].copy_from_slice(&id.0);
    v[32..].copy_from_slice(&loc.to_bytes());
    v
}

/// Reads a `main` row: the id, and where the block is when the row says (rows written
/// before [`MAIN_LOCS`] hold the id alone).
fn main_row(height: Height, v: &[u8]) -> Result<(BlockId, Option<Location>), StoreError> {
    let corrupt = || StoreError::Corrupt {
        height,
        reason: "its main-chain row holds neither an id nor an id and a location".into(),
    };
    let id = v
        .get(..32)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(corrupt)?;
    let loc = match v.len() {
        32 => None,
        44 => Some(Location::from_bytes(&v[32..]).ok_or_else(corrupt)?),
        _ => return Err(corrupt()),
    };
    Ok((BlockId(id), loc))
}

impl Store {
    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    /// Opens the store in `dir`, creating dir and database if `create` is set. A new store
    /// is stamped with the network `(name, bits)`; an existing one must carry the same stamp.
    pub fn open(dir: &Path, name: &str, bits: u8, create: bool) -> Result<Self, StoreError> {
        Self::open_db(dir, name, bits, create)?.with_file(dir)
    }

    fn open_db(dir: &Path, name: &str, bits: u8, create: bool) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() && !create {
            return Err(StoreError::NoChain(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let tag = network_tag(name, bits);
        if !path.exists() {
            Self::create_stamped(dir, &path, &tag)?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| db_error(&path, dir, e))?;
        let store = Store {
            db: Db::Write(db),
            path,
            scratch: None,
            file: None,
        };
        let found = store.network()?;
        match found {
            Some((found_name, found_bits)) if network_tag(&found_name, found_bits) != tag => {
                Err(StoreError::NetworkMismatch {
                    found: format!("'{found_name}' ({found_bits} bits)"),
                    expected: format!("'{name}' ({bits} bits)"),
                })
            }
            Some(_) => Ok(store),
            None => {
                let Db::Write(db) = &store.db else {
                    return Err(StoreError::ReadOnly);
                };
                // A database without a stamp (one whose creation an older version left
                // unfinished): stamped now.
                stamp(db, &tag).map_err(|e| store.err(e))?;
                Ok(store)
            }
        }
    }

    /// Creates the database at `path` stamped and with its tables, under another name
    /// first and renamed when complete: a node killed while creating its data dir leaves
    /// either no database or a whole one, never a file that is not a database yet or one
    /// without its network stamp (which every later open would refuse as damage).
    fn create_stamped(dir: &Path, path: &Path, tag: &[u8]) -> Result<(), StoreError> {
        let fresh = path.with_extension("redb.new");
        let io = |source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        };
        match std::fs::remove_file(&fresh) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        {
            let db = redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&fresh)
                .map_err(|e| db_error(&fresh, dir, e))?;
            stamp(&db, tag).map_err(|e| StoreError::Db {
                path: fresh.clone(),
                source: Box::new(e),
            })?;
        }
        std::fs::rename(&fresh, path).map_err(io)?;
        // The rename itself made durable.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// Opens the existing store in `dir` for writing, whatever network it was stamped with
    /// (see [`Store::network`]).
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        Self::open_existing_db(dir)?.with_file(dir)
    }

    fn open_existing_db(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NoChain(dir.to_owned()));
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open(&path)
            .map_err(|e| db_error(&path, dir, e))?;
        Ok(Store {
            db: Db::Write(db),
            path,
            scratch: None,
            file: None,
        })
    }

    /// Opens the existing store in `dir` without writing to it: its bytes and times stay as
    /// they were. A file that was not closed cleanly (a node killed while running) needs
    /// redb's repair before it can be read; that repair runs on a scratch copy in the
    /// system's temporary directory, removed when the store is dropped.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        Self::open_read_only_db(dir)?.with_file(dir)
    }

    fn open_read_only_db(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NoChain(dir.to_owned()));
        }
        match redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(&path)
        {
            Ok(db) => Ok(Store {
                db: Db::Read(db),
                path,
                scratch: None,
                file: None,
            }),
            Err(redb::DatabaseError::RepairAborted) => Self::open_scratch_copy(dir, &path),
            Err(e) => Err(db_error(&path, dir, e)),
        }
    }

    /// Opens the block file beside the database (creating it in a writable store) and, in a
    /// writable store from before it, moves the blocks there ([`Store::migrate`]). A
    /// read-only open of a data dir from before the block file reads the old table.
    fn with_file(mut self, dir: &Path) -> Result<Self, StoreError> {
        use crate::blockfile::{BlockFile, BlockFileError};
        self.check_format(dir)?;
        let committed = self
            .meta(BLOCKFILE_END)?
            .and_then(|v| crate::blockfile::Committed::from_bytes(&v));
        let exists = dir.join(crate::blockfile::FILE).exists();
        if !self.writable() {
            if exists {
                self.file = Some(BlockFile::open(dir, committed, false, false)?);
            } else if committed.is_some() {
                return Err(BlockFileError::Truncated {
                    path: dir.join(crate::blockfile::FILE),
                    len: 0,
                    committed: committed.map_or(0, |c| c.end),
                }
                .into());
            }
            return Ok(self);
        }
        self.file = Some(BlockFile::open(dir, committed, true, true)?);
        let moved = self.migrate()?;
        if self.migrate_main()? || moved {
            // The old table's pages are free now; give them back to the file system.
            if let Db::Write(db) = &mut self.db {
                db.compact().map_err(|e| StoreError::Db {
                    path: self.path.clone(),
                    source: Box::new(e.into()),
                })?;
            }
        }
        Ok(self)
    }

    /// Moves every block of an old data dir's `blocks` table into the block file,
    /// [`MIGRATE_BATCH`] per transaction (appended and synced, then indexed and removed from
    /// the table in one transaction: a crash in between leaves them in the table, and the
    /// appended copies are cut off at the next open). True if it moved any.
    fn migrate(&self) -> Result<bool, StoreError> {
        let (Db::Write(db), Some(file)) = (&self.db, &self.file) else {
            return Ok(false);
        };
        let mut moved = false;
        loop {
            let batch: Vec<(Vec<u8>, Vec<u8>)> = {
                let txn = db.begin_read().map_err(|e| self.err(e))?;
                let blocks = match txn.open_table(BLOCKS) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(moved),
                    Err(e) => return Err(self.err(e)),
                };
                let mut batch = Vec::new();
                for row in blocks.iter().map_err(|e| self.err(e))?.take(MIGRATE_BATCH) {
                    let (id, bytes) = row.map_err(|e| self.err(e))?;
                    batch.push((id.value().to_vec(), bytes.value().to_vec()));
                }
                batch
            };
            if batch.is_empty() {
                return Ok(moved);
            }
            if !moved {
                tracing::info!("moving the blocks into {}", crate::blockfile::FILE);
            }
            let refs: Vec<&[u8]> = batch.iter().map(|(_, b)| b.as_slice()).collect();
            let txn = self.begin_write()?;
            let (locs, end) = file.append(&refs)?;
            {
                let mut l = txn.open_table(LOCS).map_err(|e| self.err(e))?;
                let mut b = txn.open_table(BLOCKS).map_err(|e| self.err(e))?;
                let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                for ((id, _), loc) in batch.iter().zip(&locs) {
                    l.insert(id.as_slice(), loc.to_bytes().as_slice())
                        .map_err(|e| self.err(e))?;
                    b.remove(id.as_slice()).map_err(|e| self.err(e))?;
                }
                meta.insert(BLOCKFILE_END, end.to_bytes().as_slice())
                    .map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))?;
            file.committed(end);
            moved = true;
        }
    }

    /// Writes each main-chain block's location into its `main` row and its `ids` row, in a
    /// data dir from before [`MAIN_LOCS`], and takes it out of `locs`: [`MIGRATE_BATCH`]
    /// rows per transaction, from the lowest height up (a crash leaves some rows done, and
    /// the next open goes on with the rest: a row of an id alone still reads through
    /// `locs`). True if it changed any row.
    fn migrate_main(&self) -> Result<bool, StoreError> {
        if self.meta(MAIN_LOCS)?.is_some() {
            return Ok(false);
        }
        let mut changed = false;
        let mut from: Height = 0;
        let mut told = std::time::Instant::now();
        loop {
            if changed && told.elapsed() >= std::time::Duration::from_secs(5) {
                tracing::info!("block locations written up to height {from}");
                told = std::time::Instant::now();
            }
            let txn = self.begin_write()?;
            let mut done = false;
            {
                let mut tables = Tables::open(&txn).map_err(|e| self.err(e))?;
                let mut rows = Vec::with_capacity(MIGRATE_BATCH);
                for row in tables
                    .main
                    .range(from..)
                    .map_err(|e| self.err(e))?
                    .take(MIGRATE_BATCH)
                {
                    let (h, v) = row.map_err(|e| self.err(e))?;
                    rows.push((h.value(), main_row(h.value(), v.value())?));
                }
                if rows.len() < MIGRATE_BATCH {
                    done = true;
                }
                for (h, (id, loc)) in rows {
                    from = h.saturating_add(1);
                    if loc.is_some() {
                        continue;
                    }
                    let at = tables
                        .locs
                        .get(id.0.as_slice())
                        .map_err(|e| self.err(e))?
                        .and_then(|v| Location::from_bytes(v.value()));
                    // A block the index cannot place stays as it is (`verify` names it).
                    let Some(at) = at else { continue };
                    if !changed {
                        tracing::info!(
                            "writing block locations into the main chain's rows (once, for a \
                             data dir from before them)"
                        );
                    }
                    changed = true;
                    tables
                        .locs
                        .remove(id.0.as_slice())
                        .map_err(|e| self.err(e))?;
                    let Tables {
                        main, ids, locs, ..
                    } = &mut tables;
                    main.insert(h, main_value(&id, at).as_slice())
                        .map_err(|e| self.err(e))?;
                    self.put_id(main, ids, locs, &id, h, at)?;
                }
                if done {
                    let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                    meta.insert(MAIN_LOCS, [1u8].as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            txn.commit().map_err(|e| self.err(e))?;
            if done {
                if changed {
                    tracing::info!("block locations written, up to height {from}");
                }
                return Ok(changed);
            }
        }
    }

    fn open_scratch_copy(dir: &Path, path: &Path) -> Result<Self, StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let scratch =
            std::env::temp_dir().join(format!("gridledger-read-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(|source| StoreError::Dir {
            path: scratch.clone(),
            source,
        })?;
        let copy = scratch.join(DB_FILE);
        let opened = std::fs::copy(path, &copy)
            .map_err(|source| StoreError::Dir {
                path: path.to_owned(),
                source,
            })
            .and_then(|_| {
                redb::Builder::new()
                    .set_cache_size(CACHE_BYTES)
                    .create(&copy)
                    .map_err(|e| db_error(path, dir, e))
            });
        match opened {
            // Reported under the original's path; `commit` refuses to write to the copy.
            Ok(db) => Ok(Store {
                db: Db::Write(db),
                path: path.to_owned(),
                scratch: Some(scratch),
                file: None,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                Err(e)
            }
        }
    }

    /// The network `(name, bits)` this store was created for, if stamped.
    pub fn network(&self) -> Result<Option<(String, u8)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let Some(tag) = meta.get("network").map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let tag = tag.value();
        match tag.split_first() {
            Some((&bits, name)) => Ok(Some((String::from_utf8_lossy(name).into_owned(), bits))),
            None => Ok(None),
        }
    }

    /// The relay registry (its text, `gridledger_chain::Registry::to_text`) the node that
    /// wrote this store ran with last, if any: what `verify` and `export` check relay
    /// signatures against.
    pub fn relay_registry(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let text = meta.get(RELAY_REGISTRY).map_err(|e| self.err(e))?;
        Ok(text.map(|t| String::from_utf8_lossy(t.value()).into_owned()))
    }

    /// Keeps the relay registry's text (see [`Store::relay_registry`]), if it changed.
    pub fn set_relay_registry(&self, text: &str) -> Result<(), StoreError> {
        if self.relay_registry()?.as_deref() == Some(text) {
            return Ok(());
        }
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(RELAY_REGISTRY, text.as_bytes())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Where the file's bytes go, per table (block file, locs, main, ids, records, side): bytes of keys and
    /// values, of branch pages and other metadata, and lost to fragmentation (redb's
    /// `TableStats`). For `scale`'s disk figure: what a byte at rest beyond the raw blocks is.
    pub fn table_stats(&self) -> Result<Vec<TableBytes>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let of = |name: &'static str, s: redb::TableStats| TableBytes {
            table: name,
            stored: s.stored_bytes(),
            metadata: s.metadata_bytes(),
            fragmented: s.fragmented_bytes(),
        };
        let locs = txn.open_table(LOCS).map_err(|e| self.err(e))?;
        let main = txn.open_table(MAIN).map_err(|e| self.err(e))?;
        let ids = self.optional(txn.open_table(IDS))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let side = txn.open_table(SIDE).map_err(|e| self.err(e))?;
        let file = self
            .file
            .as_ref()
            .map_or(0, crate::blockfile::BlockFile::committed_end);
        Ok(vec![
            TableBytes {
                table: crate::blockfile::FILE,
                stored: file,
                ..TableBytes::default()
            },
            of("locs", locs.stats().map_err(|e| self.err(e))?),
            of("main", main.stats().map_err(|e| self.err(e))?),
            match ids {
                Some(ids) => of("ids", ids.stats().map_err(|e| self.err(e))?),
                None => TableBytes {
                    table: "ids",
                    ..TableBytes::default()
                },
            },
            of("records", records.stats().map_err(|e| self.err(e))?),
            of("side", side.stats().map_err(|e| self.err(e))?),
        ])
    }

    /// Rows in the main-chain table and in the record index: what a tree loading this store
    /// will hold, so that it can reserve room once instead of growing.
    pub fn lens(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let main = txn.open_table(MAIN).map_err(|e| self.err(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        // Only a hint for reserving memory; a damaged file must not make the caller reserve
        // more than the file could hold (a block with its rows takes well over 64 bytes).
        let bound = std::fs::metadata(&self.path).map_or(0, |m| m.len() / 64);
        Ok((
            main.len().map_err(|e| self.err(e))?.min(bound),
            records.len().map_err(|e| self.err(e))?.min(bound),
        ))
    }

    /// At most `limit` main-chain block ids by height, from height `from` up (genesis, at 0,
    /// is not stored): a chain of a million blocks is read in pieces, not 36 MB at once.
    pub fn main_ids_from(
        &self,
        from: Height,
        limit: usize,
    ) -> Result<Vec<(Height, BlockId)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let main = txn.open_table(MAIN).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in main.range(from..).map_err(|e| self.err(e))?.take(limit) {
            let (h, v) = row.map_err(|e| self.err(e))?;
            out.push((h.value(), main_row(h.value(), v.value())?.0));
        }
        Ok(out)
    }

    /// Checks the id index against the main chain (`gridledger verify`): each main-chain
    /// block is found by its id at its own height, either through its `ids` row or, when
    /// another main-chain block's id ends alike (see `put_id`), through `locs`; and `ids`
    /// holds no other row. A data dir from before the index (no [`MAIN_LOCS`]) has
    /// nothing to check. One read transaction, one pass over `main`.
    pub fn check_ids(&self) -> Result<(), StoreError> {
        if self.meta(MAIN_LOCS)?.is_none() {
            return Ok(());
        }
        let corrupt = |height: Height, reason: &str| StoreError::Corrupt {
            height,
            reason: reason.to_owned(),
        };
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let main = txn.open_table(MAIN).map_err(|e| self.err(e))?;
        let Some(ids) = self.optional(txn.open_table(IDS))? else {
            return Err(corrupt(0, "the id index is missing"));
        };
        let locs = self.optional(txn.open_table(LOCS))?;
        let mut direct = 0u64;
        for row in main.iter().map_err(|e| self.err(e))? {
            let (h, v) = row.map_err(|e| self.err(e))?;
            let (h, (id, _)) = (h.value(), main_row(h.value(), v.value())?);
            let key = id_key(&id);
            match ids.get(key).map_err(|e| self.err(e))?.map(|g| g.value()) {
                Some(at) if at == h => direct += 1,
                Some(at) => {
                    // Another block's row: its id must end alike, and this one be in `locs`.
                    let other = main
                        .get(at)
                        .map_err(|e| self.err(e))?
                        .map(|g| main_row(at, g.value()).map(|r| r.0))
                        .transpose()?;
                    let in_locs = match &locs {
                        Some(l) => l.get(id.0.as_slice()).map_err(|e| self.err(e))?.is_some(),
                        None => false,
                    };
                    if other.is_none_or(|o| id_key(&o) != key) || !in_locs {
                        return Err(corrupt(
                            h,
                            "the id index finds this block at another height",
                        ));
                    }
                }
                None => return Err(corrupt(h, "the block is missing from the id index")),
            }
        }
        if ids.len().map_err(|e| self.err(e))? != direct {
            return Err(corrupt(
                0,
                "the id index holds a row no main-chain block has",
            ));
        }
        Ok(())
    }

    /// The main chain's block at `height` (genesis, at 0, is not stored).
    pub fn main_at(&self, height: Height) -> Result<Option<BlockId>, StoreError> {
        Ok(self
            .main_ids_from(height, 1)?
            .into_iter()
            .find(|(h, _)| *h == height)
            .map(|(_, id)| id))
    }

    /// Height of the main-chain block holding the record `key` (packed), per the index.
    pub fn record_height(&self, key: u64) -> Result<Option<Height>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let got = records.get(key).map_err(|e| self.err(e))?;
        Ok(got.map(|v| v.value()))
    }

    /// Rows in the record index (one per main-chain record).
    pub fn records_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        records.len().map_err(|e| self.err(e))
    }

    /// The heights the record index gives `keys` (packed), in one snapshot.
    pub fn records_at(&self, keys: &[u64]) -> Result<Vec<Option<Height>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        keys.iter()
            .map(|&k| {
                records
                    .get(k)
                    .map(|v| v.map(|v| v.value()))
                    .map_err(|e| self.err(e))
            })
            .collect()
    }

    /// The record keys of the main chain up to a height, as a node last kept them so that
    /// its next start need not read the whole record index: `(height, the main chain's
    /// block there, the bytes)`. The bytes are as given to [`Store::put_deep_keys`]; `None`
    /// if none were kept or they fail their checksum.
    pub fn deep_keys(&self) -> Result<Option<(Height, BlockId, Vec<u8>)>, StoreError> {
        use sha2::Digest;
        let Some(v) = self.meta(DEEP)? else {
            return Ok(None);
        };
        // height (4) | block id (32) | SHA-256 of the bytes (32) | bytes
        let (Some(h), Some(id), Some(sum), Some(bytes)) =
            (v.get(..4), v.get(4..36), v.get(36..68), v.get(68..))
        else {
            return Ok(None);
        };
        if sha2::Sha256::digest(bytes).as_slice() != sum {
            return Ok(None);
        }
        let (Ok(h), Ok(id)) = (<[u8; 4]>::try_from(h), <[u8; 32]>::try_from(id)) else {
            return Ok(None);
        };
        Ok(Some((u32::from_be_bytes(h), BlockId(id), bytes.to_vec())))
    }

    /// Keeps the record keys of the main chain up to `height` (whose block is `id`), for
    /// [`Store::deep_keys`].
    pub fn put_deep_keys(
        &self,
        height: Height,
        id: &BlockId,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        use sha2::Digest;
        let mut v = Vec::with_capacity(68 + bytes.len());
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(&id.0);
        v.extend_from_slice(&sha2::Sha256::digest(bytes));
        v.extend_from_slice(bytes);
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(DEEP, v.as_slice()).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// The main chain's records whose packed keys lie in `lo..=hi` (one relay's minutes),
    /// with the height and id of the block holding each, in key order: one snapshot, one
    /// range of the index.
    pub fn main_records_in(
        &self,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(u64, Height, BlockId)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let main = txn.open_table(MAIN).map_err(|e| self.err(e))?;
        let mut rows = Vec::new();
        for row in records.range(lo..=hi).map_err(|e| self.err(e))? {
            let (k, h) = row.map_err(|e| self.err(e))?;
            rows.push((k.value(), h.value()));
        }
        // One relay's minutes sit in consecutive blocks: read their ids as one range of
        // the main chain when it is dense enough, one by one otherwise.
        let (lo_h, hi_h) = rows
            .iter()
            .fold((Height::MAX, 0), |(a, b), &(_, h)| (a.min(h), b.max(h)));
        let mut ids = std::collections::HashMap::new();
        if !rows.is_empty() && u64::from(hi_h - lo_h) < 4 * rows.len() as u64 + 64 {
            for row in main.range(lo_h..=hi_h).map_err(|e| self.err(e))? {
                let (h, v) = row.map_err(|e| self.err(e))?;
                ids.insert(h.value(), main_row(h.value(), v.value())?.0);
            }
        } else {
            for &(_, h) in &rows {
                if let Some(v) = main.get(h).map_err(|e| self.err(e))? {
                    ids.insert(h, main_row(h, v.value())?.0);
                }
            }
        }
        rows.into_iter()
            .map(|(k, h)| {
                let id = ids.get(&h).ok_or_else(|| StoreError::Corrupt {
                    height: h,
                    reason: "the record index names a height the main chain lacks".into(),
                })?;
                Ok((k, h, *id))
            })
            .collect()
    }

    /// Every stored block off the main chain, with its height; `None` in a data dir written
    /// before the table existed (see [`Store::fill_side`]).
    pub fn side_ids(&self) -> Result<Option<Vec<(BlockId, Height)>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let side = match txn.open_table(SIDE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for row in side.iter().map_err(|e| self.err(e))? {
            let (id, h) = row.map_err(|e| self.err(e))?;
            if let Ok(id) = <[u8; 32]>::try_from(id.value()) {
                out.push((BlockId(id), h.value()));
            }
        }
        Ok(Some(out))
    }

    /// Writes the table of side-branch blocks of a data dir that lacks it (found by reading
    /// every block once).
    pub fn fill_side(&self, side: &[(BlockId, Height)]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(SIDE).map_err(|e| self.err(e))?;
            for (id, h) in side {
                t.insert(id.0.as_slice(), *h).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// True if the store can be written (not read-only, not a scratch copy).
    #[must_use]
    pub fn writable(&self) -> bool {
        matches!(self.db, Db::Write(_)) && self.scratch.is_none()
    }

    /// Every stored block id.
    pub fn all_ids(&self) -> Result<Vec<BlockId>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        // Main-chain rows that carry their location are in no other table (but for a
        // block that was on a side branch before, also in `locs`: deduplicated below).
        let main = txn.open_table(MAIN).map_err(|e| self.err(e))?;
        for row in main.iter().map_err(|e| self.err(e))? {
            let (h, v) = row.map_err(|e| self.err(e))?;
            if let Ok((id, Some(_))) = main_row(h.value(), v.value()) {
                out.push(id);
            }
        }
        // The block file's index, and an old data dir's table (read-only opens keep it).
        for def in [LOCS, BLOCKS] {
            let table = match txn.open_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(self.err(e)),
            };
            for row in table.iter().map_err(|e| self.err(e))? {
                let (id, _) = row.map_err(|e| self.err(e))?;
                if let Ok(id) = <[u8; 32]>::try_from(id.value()) {
                    out.push(BlockId(id));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The bytes of a stored block.
    pub fn block_bytes(&self, id: &BlockId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blocks_bytes(std::slice::from_ref(id))?.pop().flatten())
    }

    /// The bytes of stored blocks, in the order of `ids` (`None` for an unknown one), in
    /// one read transaction: a day's readings or a sync's batch reads a thousand blocks or
    /// more, and a transaction and a table opened per block cost more than the lookups.
    pub fn blocks_bytes(&self, ids: &[BlockId]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read_blocks(ids.iter().map(|id| (None, id)))
    }

    /// [`Store::blocks_bytes`] of main-chain blocks whose heights the caller knows: each
    /// found by its `main` row (which confirms the id), neighbours in one range of the
    /// table, rather than each by its id. A block that is not at its height any more (the
    /// chain moved since the caller read it) is looked up by its id.
    pub fn main_blocks_bytes(
        &self,
        at: &[(Height, BlockId)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read_blocks(at.iter().map(|(h, id)| (Some(*h), id)))
    }

    fn read_blocks<'a>(
        &self,
        wanted: impl ExactSizeIterator<Item = (Option<Height>, &'a BlockId)>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        use crate::blockfile::BlockFileError;
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let main = txn.open_table(MAIN).map_err(|e| self.err(e))?;
        let ids = self.optional(txn.open_table(IDS))?;
        let locs = self.optional(txn.open_table(LOCS))?;
        // A data dir from before the block file, open read-only: its blocks table.
        let mut legacy = None;
        // Where each block is (or its bytes, from that table); then the located ones read
        // together, neighbours in the file with one call.
        let mut found: Vec<Result<Location, Option<Vec<u8>>>> = Vec::with_capacity(wanted.len());
        for (height, id) in wanted {
            let mut loc = None;
            if let Some(h) = height {
                if let Some(v) = main.get(h).map_err(|e| self.err(e))? {
                    match main_row(h, v.value())? {
                        (found, at) if found == *id => loc = at,
                        _ => {}
                    }
                }
            }
            if loc.is_none() {
                loc = self.locate(&main, ids.as_ref(), locs.as_ref(), id)?;
            }
            if let Some(loc) = loc {
                found.push(Ok(loc));
                continue;
            }
            if legacy.is_none() {
                legacy = Some(self.optional(txn.open_table(BLOCKS))?);
            }
            let got = match legacy.as_ref().and_then(Option::as_ref) {
                Some(blocks) => blocks
                    .get(id.0.as_slice())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec()),
                None => None,
            };
            found.push(Err(got));
        }
        let at: Vec<Location> = found
            .iter()
            .filter_map(|f| f.as_ref().ok().copied())
            .collect();
        let mut read = if at.is_empty() {
            Vec::new()
        } else {
            let file = self.file.as_ref().ok_or_else(|| BlockFileError::Damaged {
                path: self.path.with_file_name(crate::blockfile::FILE),
                offset: 0,
                why: "the block file is missing",
            })?;
            file.read_many(&at)?
        }
        .into_iter();
        Ok(found
            .into_iter()
            .map(|f| match f {
                Ok(_) => read.next(),
                Err(bytes) => bytes,
            })
            .collect())
    }

    /// An opened table; `None` if a data dir from before it lacks it.
    fn optional<T>(&self, got: Result<T, redb::TableError>) -> Result<Option<T>, StoreError> {
        match got {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Where stored block `id` is in the block file: by `ids` and the `main` row it names
    /// (which must hold this very id), else by `locs`. `None` if neither knows it.
    fn locate(
        &self,
        main: &impl ReadableTable<u32, &'static [u8]>,
        ids: Option<&impl ReadableTable<u64, u32>>,
        locs: Option<&impl ReadableTable<&'static [u8], &'static [u8]>>,
        id: &BlockId,
    ) -> Result<Option<Location>, StoreError> {
        if let Some(ids) = ids {
            if let Some(h) = ids.get(id_key(id)).map_err(|e| self.err(e))? {
                let h = h.value();
                if let Some(v) = main.get(h).map_err(|e| self.err(e))? {
                    if let (found, Some(loc)) = main_row(h, v.value())? {
                        if found == *id {
                            return Ok(Some(loc));
                        }
                    }
                }
            }
        }
        let Some(locs) = locs else {
            return Ok(None);
        };
        let Some(at) = locs.get(id.0.as_slice()).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        Location::from_bytes(at.value()).map(Some).ok_or_else(|| {
            crate::blockfile::BlockFileError::Damaged {
                path: self.path.with_file_name(crate::blockfile::FILE),
                offset: 0,
                why: "its index row is not a location",
            }
            .into()
        })
    }

    /// Calls `f` on every row of the record index, `(packed key, height)`, in key order;
    /// stops at its first error. Returns the number of rows.
    pub fn for_each_record(
        &self,
        mut f: impl FnMut(u64, Height) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut n = 0;
        for row in records.iter().map_err(|e| self.err(e))? {
            let (k, h) = row.map_err(|e| self.err(e))?;
            f(k.value(), h.value())?;
            n += 1;
        }
        Ok(n)
    }

    /// Every row of the record index, as `(packed key, height)`.
    pub fn record_index(&self) -> Result<Vec<(u64, Height)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in records.iter().map_err(|e| self.err(e))? {
            let (k, h) = row.map_err(|e| self.err(e))?;
            out.push((k.value(), h.value()));
        }
        Ok(out)
    }

    /// Stores `block` and applies `change` (as computed by the tree, which already holds
    /// the block) to the main chain and the record index, in one durable transaction.
    pub fn commit(
        &self,
        block: &Block,
        id: &BlockId,
        change: &Change,
        tree: &BlockTree,
    ) -> Result<(), StoreError> {
        self.commit_batch(&[(block, id, change)], tree)
    }

    /// Stores several blocks and applies their changes, in order, in one durable
    /// transaction: all of them or none. `tree` already holds every one of them; the rows
    /// each change writes depend only on its own blocks' heights and record keys, so one
    /// transaction gives what one per block would.
    pub fn commit_batch(
        &self,
        items: &[(&Block, &BlockId, &Change)],
        tree: &BlockTree,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        // The bytes first, synced, then the transaction that indexes them (module doc).
        let file = self.file.as_ref().ok_or(StoreError::ReadOnly)?;
        let bytes: Vec<Vec<u8>> = items.iter().map(|(b, _, _)| b.to_bytes()).collect();
        let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        let (locs, end) = file.append(&refs)?;
        {
            // Opened once per transaction, not once per block: a sync commits 2 000 blocks
            // at a time.
            let mut tables = Tables::open(&txn).map_err(|e| self.err(e))?;
            // The `ids` rows of blocks that extend the chain wait, and go in by key: an id
            // is a hash, so in chain order each row lands on another page of the index (a
            // page copied, then written, per block); by key, a batch walks the index once.
            // In a sync of one-record blocks this was a fifth of the node's time.
            let mut due = Vec::new();
            for ((block, id, change), loc) in items.iter().zip(&locs) {
                if matches!(change, Change::Extended) {
                    let h = tree.height_of(id).unwrap_or(block.header.height);
                    self.extend_main(&mut tables, id, h, *loc, tree)?;
                    due.push((id_key(id), h, **id, *loc));
                } else {
                    self.put_ids(&mut tables, &mut due)?;
                    self.apply(&mut tables, block, id, *loc, change, tree)?;
                }
            }
            self.put_ids(&mut tables, &mut due)?;
        }
        // The verified mark, in the same transaction: every block stored passed every
        // rule before it was stored, so the main chain up to the tip is verified.
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            self.put_mark(&mut meta, tree)?;
            meta.insert(BLOCKFILE_END, end.to_bytes().as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        file.committed(end);
        Ok(())
    }

    /// The data dir's format ([`FORMAT`]); 0 for one written before formats were numbered.
    pub fn format(&self) -> Result<u32, StoreError> {
        match self.meta(FORMAT_KEY)? {
            None => Ok(0),
            Some(v) => match <[u8; 4]>::try_from(v.as_slice()) {
                Ok(b) => Ok(u32::from_le_bytes(b)),
                // Never taken as "unstamped" and stamped over: that would let a damaged
                // file, or one of a format still to come, be written as this one.
                Err(_) => Err(StoreError::BadStamp(format!(
                    "its format stamp is {} bytes, not 4",
                    v.len()
                ))),
            },
        }
    }

    /// Refuses a data dir of a newer format; stamps an older one (writable opens only).
    fn check_format(&self, dir: &Path) -> Result<(), StoreError> {
        let found = self.format()?;
        if found > FORMAT {
            return Err(StoreError::NewerFormat {
                path: dir.to_owned(),
                found,
                supported: FORMAT,
            });
        }
        if found < FORMAT && self.writable() {
            // Format 0 and 1 have the same layout: the migrations within it (the block
            // file, rows with locations) run by themselves, resumably, as they always did.
            self.set_format(FORMAT)?;
        }
        Ok(())
    }

    /// Writes the data dir's format stamp. (`run` keeps it at [`FORMAT`]; a test or a
    /// migration tool may set another.)
    pub fn set_format(&self, format: u32) -> Result<(), StoreError> {
        let Db::Write(db) = &self.db else {
            return Err(StoreError::ReadOnly);
        };
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(FORMAT_KEY, format.to_le_bytes().as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// The `META` value under `key`; `None` if absent (or the table is: an old data dir).
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let got = meta.get(key).map_err(|e| self.err(e))?;
        Ok(got.map(|v| v.value().to_vec()))
    }

    /// The verified mark: the main chain's height and tip as of the last commit, all of
    /// whose blocks passed every rule before they were stored. `None` in a data dir written
    /// before the mark existed.
    pub fn verified_mark(&self) -> Result<Option<(Height, BlockId)>, StoreError> {
        let Some(mark) = self.meta(VERIFIED)? else {
            return Ok(None);
        };
        let (Some(h), Some(id)) = (mark.get(..4), mark.get(4..36)) else {
            return Ok(None);
        };
        let (Ok(h), Ok(id)) = (<[u8; 4]>::try_from(h), <[u8; 32]>::try_from(id)) else {
            return Ok(None);
        };
        Ok(Some((u32::from_be_bytes(h), BlockId(id))))
    }

    /// Writes the rows of `block` (`id`, stored at `loc`) and of `change`: a side block's
    /// location in `locs`; a main-chain block's in its `main` row, found by id through
    /// `ids`. A block leaving the main chain keeps its location in `locs`.
    fn apply(
        &self,
        tables: &mut Tables<'_>,
        block: &Block,
        id: &BlockId,
        loc: Location,
        change: &Change,
        tree: &BlockTree,
    ) -> Result<(), StoreError> {
        let Tables {
            locs,
            main,
            ids,
            records,
            side,
        } = tables;
        match change {
            Change::SideBranch => {
                locs.insert(id.0.as_slice(), loc.to_bytes().as_slice())
                    .map_err(|e| self.err(e))?;
                side.insert(id.0.as_slice(), block.header.height)
                    .map_err(|e| self.err(e))?;
            }
            Change::Extended => {
                let h = tree.height_of(id).unwrap_or(block.header.height);
                self.join_main(main, ids, locs, records, id, h, loc, tree)?;
            }
            Change::Reorg { abandoned, adopted } => {
                self.apply_reorg(tables, abandoned, adopted, Some((id, loc)), tree)?;
            }
        }
        Ok(())
    }

    /// Writes the rows of a switch of the main chain: `abandoned` blocks leave it (their
    /// locations to `locs`), `adopted` ones join it, all of them stored already but
    /// `appended`, the block that made the switch, just appended at its location.
    fn apply_reorg(
        &self,
        tables: &mut Tables<'_>,
        abandoned: &[BlockId],
        adopted: &[BlockId],
        appended: Option<(&BlockId, Location)>,
        tree: &BlockTree,
    ) -> Result<(), StoreError> {
        let Tables {
            locs,
            main,
            ids,
            records,
            side,
        } = tables;
        for gone in abandoned {
            for key in tree.keys_of(gone).iter() {
                records.remove(key.to_u64()).map_err(|e| self.err(e))?;
            }
            let Some(h) = tree.height_of(gone) else {
                continue;
            };
            side.insert(gone.0.as_slice(), h).map_err(|e| self.err(e))?;
            // Its location moves from its main row (about to be replaced or removed) to
            // `locs`; a row of an id alone had it there already.
            let row = main
                .get(h)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            if let Some(row) = row {
                if let (found, Some(at)) = main_row(h, &row)? {
                    if found == *gone {
                        locs.insert(gone.0.as_slice(), at.to_bytes().as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                }
            }
            let key = id_key(gone);
            if ids.get(key).map_err(|e| self.err(e))?.map(|v| v.value()) == Some(h) {
                ids.remove(key).map_err(|e| self.err(e))?;
            }
        }
        for new in adopted {
            let h = tree.height_of(new).unwrap_or(0);
            // The block that made the reorg was just appended; the others were side
            // blocks, with their location in `locs`.
            let at = match appended {
                Some((id, loc)) if id == new => loc,
                _ => {
                    let v = locs
                        .get(new.0.as_slice())
                        .map_err(|e| self.err(e))?
                        .map(|v| v.value().to_vec());
                    v.as_deref().and_then(Location::from_bytes).ok_or_else(|| {
                        StoreError::Corrupt {
                            height: h,
                            reason: format!(
                                "block {new} joins the main chain but its location is not stored"
                            ),
                        }
                    })?
                }
            };
            self.join_main(main, ids, locs, records, new, h, at, tree)?;
            side.remove(new.0.as_slice()).map_err(|e| self.err(e))?;
        }
        // Heights the new chain does not reach any more.
        let top = adopted
            .last()
            .and_then(|b| tree.height_of(b))
            .unwrap_or_else(|| tree.height());
        for gone in abandoned {
            if let Some(h) = tree.height_of(gone) {
                if h > top {
                    main.remove(h).map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(())
    }

    /// Applies a switch of the main chain that no new block made (finality's floor, a block
    /// excluded), in one durable transaction with the verified mark.
    pub fn commit_reorg(&self, change: &Change, tree: &BlockTree) -> Result<(), StoreError> {
        let Change::Reorg { abandoned, adopted } = change else {
            return Ok(());
        };
        let txn = self.begin_write()?;
        {
            let mut tables = Tables::open(&txn).map_err(|e| self.err(e))?;
            self.apply_reorg(&mut tables, abandoned, adopted, None, tree)?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            self.put_mark(&mut meta, tree)?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Writes the verified mark ([`Self::verified_mark`]): the tree's main chain up to its
    /// tip passed every rule before it was stored.
    fn put_mark(
        &self,
        meta: &mut redb::Table<&'static str, &'static [u8]>,
        tree: &BlockTree,
    ) -> Result<(), StoreError> {
        let mut mark = tree.height().to_be_bytes().to_vec();
        mark.extend_from_slice(&tree.tip().0);
        meta.insert(VERIFIED, mark.as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A block joins the main chain at `height` as its new tip: its `main` row and its
    /// records' rows; its `ids` row is the caller's to write ([`Self::put_ids`]).
    fn extend_main(
        &self,
        tables: &mut Tables<'_>,
        id: &BlockId,
        height: Height,
        loc: Location,
        tree: &BlockTree,
    ) -> Result<(), StoreError> {
        tables
            .main
            .insert(height, main_value(id, loc).as_slice())
            .map_err(|e| self.err(e))?;
        for key in tree.keys_of(id).iter() {
            tables
                .records
                .insert(key.to_u64(), height)
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Writes the `ids` rows of `due` (key, height, id, location; their `main` rows
    /// written), in key order (blocks of one key in their order), and empties it.
    fn put_ids(
        &self,
        tables: &mut Tables<'_>,
        due: &mut Vec<(u64, Height, BlockId, Location)>,
    ) -> Result<(), StoreError> {
        due.sort_by_key(|d| d.0);
        for (_, height, id, loc) in due.drain(..) {
            self.put_id(
                &mut tables.main,
                &mut tables.ids,
                &mut tables.locs,
                &id,
                height,
                loc,
            )?;
        }
        Ok(())
    }

    /// A block joins the main chain at `height`: its `main` and `ids` rows
    /// ([`Self::put_id`]) and its records' rows in the record index.
    #[allow(clippy::too_many_arguments)]
    fn join_main(
        &self,
        main: &mut redb::Table<u32, &'static [u8]>,
        ids: &mut redb::Table<u64, u32>,
        locs: &mut redb::Table<&'static [u8], &'static [u8]>,
        records: &mut redb::Table<u64, u32>,
        id: &BlockId,
        height: Height,
        loc: Location,
        tree: &BlockTree,
    ) -> Result<(), StoreError> {
        main.insert(height, main_value(id, loc).as_slice())
            .map_err(|e| self.err(e))?;
        self.put_id(main, ids, locs, id, height, loc)?;
        for key in tree.keys_of(id).iter() {
            records
                .insert(key.to_u64(), height)
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Writes the `ids` row of `id`, the main chain's block at `height` (its `main` row
    /// written), unless another main-chain block holds that key (two ids alike in their
    /// last 8 bytes, which a miner could grind for): then its location goes in `locs`.
    fn put_id(
        &self,
        main: &mut redb::Table<u32, &'static [u8]>,
        ids: &mut redb::Table<u64, u32>,
        locs: &mut redb::Table<&'static [u8], &'static [u8]>,
        id: &BlockId,
        height: Height,
        loc: Location,
    ) -> Result<(), StoreError> {
        let key = id_key(id);
        // Written first, and put back if it held another main-chain block's key: one walk
        // down the index in the usual case, not a read and then a write.
        let held = ids
            .insert(key, height)
            .map_err(|e| self.err(e))?
            .map(|v| v.value());
        if let Some(other) = held.filter(|&h| h != height) {
            let row = main
                .get(other)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            if let Some(row) = row {
                let (found, _) = main_row(other, &row)?;
                if id_key(&found) == key {
                    ids.insert(key, other).map_err(|e| self.err(e))?;
                    locs.insert(id.0.as_slice(), loc.to_bytes().as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(())
    }

    /// A write transaction, unless the store is read-only (or reads a scratch copy).
    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let Db::Write(db) = &self.db else {
            return Err(StoreError::ReadOnly);
        };
        if self.scratch.is_some() {
            return Err(StoreError::ReadOnly);
        }
        db.begin_write().map_err(|e| self.err(e))
    }

    /// Keeps an open dispute under `key` (replacing any).
    pub fn put_dispute(&self, key: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_disputes(|t| t.insert(key, bytes).map(|_| ()))
    }

    /// Forgets the dispute under `key`, if any.
    pub fn delete_dispute(&self, key: u64) -> Result<(), StoreError> {
        self.write_disputes(|t| t.remove(key).map(|_| ()))
    }

    fn write_disputes(
        &self,
        f: impl FnOnce(&mut redb::Table<u64, &[u8]>) -> Result<(), redb::StorageError>,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(DISPUTES).map_err(|e| self.err(e))?;
            f(&mut t).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// The kept disputes whose packed keys lie in `lo..=hi` (one relay's minutes), in key
    /// order.
    pub fn disputes_in(&self, lo: u64, hi: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.optional(txn.open_table(DISPUTES))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in t.range(lo..=hi).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every kept dispute, as `(packed key, bytes)`.
    pub fn disputes(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match txn.open_table(DISPUTES) {
            Ok(t) => t,
            // A data dir from before disputes were kept.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Where the database file is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's `ids` rows go in by key, not in chain order: each block is found by its
    /// id, two whose ids end alike included, the first of them keeping the key.
    #[test]
    fn a_batch_of_ids_in_key_order_finds_every_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), "t", 0, true).expect("opens");
        let a = BlockId([0xa0; 32]);
        let mut b = BlockId([0xb0; 32]);
        b.0[24..].copy_from_slice(&a.0[24..]);
        let c = BlockId([0x01; 32]);
        let d = BlockId([0xff; 32]);
        let blocks = [a, b, c, d];
        let loc = |h: u32| Location {
            offset: u64::from(h) * 100,
            len: 50,
        };
        let txn = store.begin_write().expect("txn");
        {
            let mut tables = Tables::open(&txn).expect("tables");
            let mut due = Vec::new();
            for (i, id) in blocks.iter().enumerate() {
                let h = i as u32 + 1;
                tables
                    .main
                    .insert(h, main_value(id, loc(h)).as_slice())
                    .expect("main row");
                due.push((id_key(id), h, *id, loc(h)));
            }
            store.put_ids(&mut tables, &mut due).expect("ids");
            assert!(due.is_empty(), "written and emptied");
            let held = tables
                .ids
                .get(id_key(&a))
                .expect("reads")
                .map(|v| v.value());
            assert_eq!(held, Some(1), "the first block of a key keeps it");
            assert_eq!(tables.ids.len().expect("len"), 3);
        }
        txn.commit().expect("commit");
        let txn = store.db.begin_read().expect("txn");
        let main = txn.open_table(MAIN).expect("main");
        let ids = txn.open_table(IDS).expect("ids");
        let locs = txn.open_table(LOCS).expect("locs");
        for (i, id) in blocks.iter().enumerate() {
            let found = store
                .locate(&main, Some(&ids), Some(&locs), id)
                .expect("reads");
            assert_eq!(found, Some(loc(i as u32 + 1)), "block {i}");
        }
        drop((main, ids, locs, txn));
        store.check_ids().expect("every block found by id");
    }

    /// Two main-chain blocks whose ids end alike (a miner can grind for that at a low
    /// difficulty) are both found by id, each at its own location: the second one's
    /// location goes to `locs`, and a lookup checks the whole id.
    #[test]
    fn main_blocks_whose_ids_end_alike_are_both_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), "t", 0, true).expect("opens");
        let a = BlockId([1; 32]);
        let mut b = BlockId([2; 32]);
        b.0[24..].copy_from_slice(&a.0[24..]);
        assert_eq!(id_key(&a), id_key(&b));
        let (la, lb) = (
            Location { offset: 8, len: 10 },
            Location {
                offset: 100,
                len: 20,
            },
        );
        let txn = store.begin_write().expect("txn");
        {
            let mut main = txn.open_table(MAIN).expect("main");
            let mut ids = txn.open_table(IDS).expect("ids");
            let mut locs = txn.open_table(LOCS).expect("locs");
            for (id, h, at) in [(&a, 1, la), (&b, 2, lb)] {
                main.insert(h, main_value(id, at).as_slice())
                    .expect("main row");
                store
                    .put_id(&mut main, &mut ids, &mut locs, id, h, at)
                    .expect("ids row");
            }
            assert_eq!(locs.len().expect("len"), 1, "b's location, in locs");
            let held = ids.get(id_key(&a)).expect("reads").map(|v| v.value());
            assert_eq!(held, Some(1), "the key stays a's");
        }
        txn.commit().expect("commit");
        let txn = store.db.begin_read().expect("txn");
        let main = txn.open_table(MAIN).expect("main");
        let ids = txn.open_table(IDS).expect("ids");
        let locs = txn.open_table(LOCS).expect("locs");
        let find = |id| {
            store
                .locate(&main, Some(&ids), Some(&locs), id)
                .expect("reads")
        };
        assert_eq!(find(&a), Some(la));
        assert_eq!(find(&b), Some(lb));
        // An id that ends alike but was never stored is not found.
        let mut c = BlockId([3; 32]);
        c.0[24..].copy_from_slice(&a.0[24..]);
        assert_eq!(find(&c), None);
        drop((main, ids, locs, txn));
        // `verify`'s check of the id index takes the second one through `locs`; without
        // its `locs` row, b is found nowhere.
        store.check_ids().expect("both found");
        let txn = store.begin_write().expect("txn");
        txn.open_table(LOCS)
            .expect("locs")
            .remove(b.0.as_slice())
            .expect("removed");
        txn.commit().expect("commit");
        assert!(
            matches!(
                store.check_ids(),
                Err(StoreError::Corrupt { height: 2, .. })
            ),
            "{:?}",
            store.check_ids()
        );
    }
}
