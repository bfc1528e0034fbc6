//! The block file (`blocks.dat` beside `chain.redb`): every stored block's bytes, appended
//! once, in the order they were stored; the store's redb tables hold where each one is.
//!
//! Why not a redb table: a 2.1 KB block takes a 4 KiB page of its own there (two do not
//! fit), and randomly keyed pages split half full: `scale` measured the block table at
//! 1.02 bytes stored + 0.93 fragmented per raw byte (the book's Benchmarks chapter, "A long chain"). Appended, a block
//! costs its bytes plus an 8-byte entry header here and about 50 bytes of index in redb.
//!
//! An entry is `[len: u32 LE][crc32: u32 LE][bytes]`; the file starts with [`MAGIC`].
//! Durability: [`BlockFile::append`] writes and syncs the entries *before* the store
//! commits the transaction that indexes them and records the file's new committed end
//! (meta `blockfile-end`), so an indexed block is always on disk. A crash between the two
//! leaves entries past the committed end that no index names: [`BlockFile::open`] cuts
//! them off. A file shorter than the committed end has lost indexed blocks: that is damage,
//! reported, never silently cut (`gridledger repair` rebuilds from the peers).
//!
//! Reads go by (offset, length) from the index, with `pread` on a shared handle, so they
//! need no lock and never see a partial write (only committed entries are indexed); each
//! read checks the entry's length and CRC, so a flipped byte is an error naming the offset,
//! not a wrong block served.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file name in a data dir.
pub const FILE: &str = "blocks.dat";
/// The first bytes of the file: its kind and format version.
pub const MAGIC: &[u8; 8] = b"GLBLK\x00\x00\x01";
/// Bytes before each block: its length and CRC-32.
pub const ENTRY_HEADER: u64 = 8;
/// Largest block an entry may hold (far above any network's block limit): a damaged
/// length cannot make a read allocate gigabytes.
pub const MAX_ENTRY: u32 = 64 << 20;

/// Most bytes [`BlockFile::read_many`] reads in one call.
pub const MAX_SPAN: u64 = 1 << 20;

/// Where a block is: its entry's offset and the block's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The entry's first byte (its header).
    pub offset: u64,
    /// The block's bytes, after the header.
    pub len: u32,
}

impl Location {
    /// The 12 bytes the index stores: offset then length, little-endian.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0; 12];
        b[..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Reads [`Location::to_bytes`]; `None` for anything else.
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Option<Location> {
        let offset = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let len = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
        (b.len() == 12).then_some(Location { offset, len })
    }

    /// The first byte after the entry (saturating: a damaged index row cannot overflow).
    #[must_use]
    pub fn end(self) -> u64 {
        self.offset
            .saturating_add(ENTRY_HEADER)
            .saturating_add(u64::from(self.len))
    }
}

/// What the store commits with each batch: the block file's end and the offset of its last
/// entry. The pair checks itself at open (the entry at `last` must end at `end`, with a good
/// checksum), so a damaged value is reported, never taken as a place to cut the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The first byte after the last committed entry.
    pub end: u64,
    /// The last committed entry's offset (0 when there is none).
    pub last: u64,
}

impl Committed {
    /// 16 bytes: end, then last, little-endian.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.end.to_le_bytes());
        b[8..].copy_from_slice(&self.last.to_le_bytes());
        b
    }

    /// Reads [`Committed::to_bytes`]; `None` for anything else.
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Option<Committed> {
        let end = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let last = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        (b.len() == 16).then_some(Committed { end, last })
    }
}

/// Why [`BlockFile::copy_prefix`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the block file failed.
    #[error(transparent)]
    Read(BlockFileError),
    /// The receiver of the bytes failed.
    #[error(transparent)]
    Write(std::io::Error),
}

/// What can go wrong with the block file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockFileError {
    /// Reading, writing or syncing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with [`MAGIC`]: not a block file, or a newer format.
    #[error("{0}: not a gridledger block file (or a newer format)")]
    NotABlockFile(PathBuf),
    /// The file is shorter than what the index says was committed: blocks were lost.
    #[error(
        "{path}: {len} bytes, but the index names blocks up to byte {committed}: the file was cut"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The committed end.
        committed: u64,
    },
    /// An entry does not match its index or its checksum.
    #[error("{path}: the block at byte {offset} is damaged ({why})")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The entry's offset.
        offset: u64,
        /// What did not match.
        why: &'static str,
    },
}

/// The open block file. Every method takes `&self`: reads run on any thread, and the one
/// writer at a time is the store's (redb serialises write transactions, and the store
/// appends only inside one).
#[derive(Debug)]
pub struct BlockFile {
    file: File,
    path: PathBuf,
    /// The committed end: where the next entry goes, and past which nothing is read.
    end: AtomicU64,
    /// The last committed entry's offset.
    last: AtomicU64,
    writable: bool,
}

impl BlockFile {
    /// Opens (or, `create`, makes) the block file in `dir`, whose index says entries were
    /// committed up to `committed` (`None`: nothing yet). Entries past it (a crash after
    /// the file's sync, before the index's commit) are cut off if `writable`, ignored if
    /// not.
    pub fn open(
        dir: &Path,
        committed: Option<Committed>,
        writable: bool,
        create: bool,
    ) -> Result<BlockFile, BlockFileError> {
        let path = dir.join(FILE);
        let io = |source| BlockFileError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(writable && create)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut len = file.metadata().map_err(io)?.len();
        // A file shorter than its magic, holding a part of it, and nothing committed: its
        // creation was cut short (a kill). A writer writes the magic again; a reader reads
        // an empty file.
        let mut head = vec![0; len.min(MAGIC.len() as u64) as usize];
        let partial = len < MAGIC.len() as u64
            && committed.is_none()
            && file.read_exact_at(&mut head, 0).is_ok()
            && MAGIC.starts_with(&head);
        if partial && writable {
            file.write_all_at(MAGIC, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            len = MAGIC.len() as u64;
        } else if partial {
            return Ok(BlockFile {
                file,
                path,
                end: AtomicU64::new(MAGIC.len() as u64),
                last: AtomicU64::new(0),
                writable,
            });
        }
        let mut magic = [0; 8];
        if len < 8 || file.read_exact_at(&mut magic, 0).is_err() || &magic != MAGIC {
            return Err(BlockFileError::NotABlockFile(path));
        }
        let start = Committed {
            end: MAGIC.len() as u64,
            last: 0,
        };
        let Committed {
            end: committed,
            last,
        } = committed.unwrap_or(start);
        if len < committed {
            return Err(BlockFileError::Truncated {
                path,
                len,
                committed,
            });
        }
        // The committed pair must name the last entry's bounds exactly before anything is
        // cut (its bytes are checked when read, where a bad one is named by height).
        if committed != start.end {
            let want = committed
                .checked_sub(last.saturating_add(ENTRY_HEADER))
                .and_then(|l| u32::try_from(l).ok());
            let mut head = [0; 4];
            let found = file
                .read_exact_at(&mut head, last)
                .ok()
                .map(|()| u32::from_le_bytes(head));
            if last < start.end || want.is_none() || found != want {
                return Err(BlockFileError::Damaged {
                    path,
                    offset: last,
                    why: "the committed end is not the end of its last entry",
                });
            }
        }
        if len > committed && writable {
            file.set_len(committed).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(BlockFile {
            file,
            path,
            end: AtomicU64::new(committed),
            last: AtomicU64::new(last),
            writable,
        })
    }

    /// Appends `blocks` after the committed end and syncs them; returns where each one is
    /// and the new end, which the caller commits with the index (only then is it the
    /// committed end: see [`BlockFile::committed`]). On an error nothing is committed and
    /// the next append writes over whatever was written.
    pub fn append(&self, blocks: &[&[u8]]) -> Result<(Vec<Location>, Committed), BlockFileError> {
        let io = |source| BlockFileError::Io {
            path: self.path.clone(),
            source,
        };
        if !self.writable {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "opened read-only",
            )));
        }
        let mut buf = Vec::with_capacity(blocks.iter().map(|b| b.len() + 8).sum());
        let start = self.end.load(Ordering::Acquire);
        let mut at = start;
        let mut out = Vec::with_capacity(blocks.len());
        for b in blocks {
            let len = u32::try_from(b.len())
                .ok()
                .filter(|l| *l <= MAX_ENTRY)
                .ok_or_else(|| {
                    io(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "block too large for an entry",
                    ))
                })?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(b).to_le_bytes());
            buf.extend_from_slice(b);
            let loc = Location { offset: at, len };
            at = loc.end();
            out.push(loc);
        }
        self.file.write_all_at(&buf, start).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        let last = out
            .last()
            .map_or(self.last.load(Ordering::Acquire), |l| l.offset);
        Ok((out, Committed { end: at, last }))
    }

    /// The index committed up to `end` (returned by [`BlockFile::append`]).
    pub fn committed(&self, c: Committed) {
        self.last.store(c.last, Ordering::Release);
        self.end.store(c.end, Ordering::Release);
    }

    /// The block at `loc`, checked against its entry's header and CRC.
    pub fn read(&self, loc: Location) -> Result<Vec<u8>, BlockFileError> {
        self.check_bounds(loc)?;
        let mut buf = vec![0; ENTRY_HEADER as usize + loc.len as usize];
        self.read_at(&mut buf, loc.offset)?;
        self.check_entry(loc, &buf).map(<[u8]>::to_vec)
    }

    /// The blocks at `locs`, in order, each checked as [`BlockFile::read`] checks it. Entries
    /// that follow each other in the file (a chain's blocks, appended in order) are read
    /// with one call per [`MAX_SPAN`] bytes rather than one per block: a day's readings
    /// read 1 440 blocks.
    pub fn read_many(&self, locs: &[Location]) -> Result<Vec<Vec<u8>>, BlockFileError> {
        let mut out = Vec::with_capacity(locs.len());
        let mut i = 0;
        while let Some(&first) = locs.get(i) {
            self.check_bounds(first)?;
            let mut end = first.end();
            let mut j = i + 1;
            while let Some(&next) = locs.get(j) {
                if next.offset != end || next.end().saturating_sub(first.offset) > MAX_SPAN {
                    break;
                }
                self.check_bounds(next)?;
                end = next.end();
                j += 1;
            }
            if j == i + 1 {
                out.push(self.read(first)?);
            } else {
                let mut buf = vec![0; (end - first.offset) as usize];
                self.read_at(&mut buf, first.offset)?;
                for &loc in &locs[i..j] {
                    let at = (loc.offset - first.offset) as usize;
                    let entry = buf
                        .get(at..at + ENTRY_HEADER as usize + loc.len as usize)
                        .ok_or(BlockFileError::Damaged {
                            path: self.path.clone(),
                            offset: loc.offset,
                            why: "the index points past the committed end",
                        })?;
                    out.push(self.check_entry(loc, entry)?.to_vec());
                }
            }
            i = j;
        }
        Ok(out)
    }

    /// Refuses a location outside the committed file (or longer than any entry may be).
    fn check_bounds(&self, loc: Location) -> Result<(), BlockFileError> {
        if loc.len > MAX_ENTRY || loc.end() > self.end.load(Ordering::Acquire) {
            return Err(BlockFileError::Damaged {
                path: self.path.clone(),
                offset: loc.offset,
                why: "the index points past the committed end",
            });
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockFileError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| BlockFileError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// The block in `entry` (the bytes at `loc`, header included), if its header and CRC
    /// match the index.
    fn check_entry<'a>(&self, loc: Location, entry: &'a [u8]) -> Result<&'a [u8], BlockFileError> {
        let damaged = |why| BlockFileError::Damaged {
            path: self.path.clone(),
            offset: loc.offset,
            why,
        };
        let (Some(head), Some(body)) = (
            entry.get(..ENTRY_HEADER as usize),
            entry.get(ENTRY_HEADER as usize..),
        ) else {
            return Err(damaged("its entry is cut short"));
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len != loc.len {
            return Err(damaged("its length differs from the index"));
        }
        if crc32fast::hash(body) != crc {
            return Err(damaged("its checksum does not match"));
        }
        Ok(body)
    }

    /// Hands the file's first `end` bytes (its magic and every entry below `end`) to `out`
    /// in pieces of at most [`MAX_SPAN`]: what a backup copies. Bytes below a committed end
    /// never change (the file is only appended to), so a copy taken while the node appends
    /// is whole up to `end`.
    pub fn copy_prefix(
        &self,
        end: u64,
        out: &mut dyn FnMut(&[u8]) -> Result<(), std::io::Error>,
    ) -> Result<(), CopyError> {
        let mut buf = vec![0; MAX_SPAN as usize];
        let mut at = 0;
        while at < end {
            let n = usize::try_from((end - at).min(MAX_SPAN)).unwrap_or(buf.len());
            let piece = &mut buf[..n];
            self.read_at(piece, at).map_err(CopyError::Read)?;
            out(piece).map_err(CopyError::Write)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Bytes of the file up to the committed end.
    #[must_use]
    pub fn committed_end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks read together come back as one by one, in the order asked, neighbours or
    /// not; a flipped byte inside a run is named at its own entry; a location past the
    /// committed end is refused.
    #[test]
    fn blocks_read_together_are_checked_one_by_one() {
        let dir = tempfile::tempdir().expect("dir");
        let f = BlockFile::open(dir.path(), None, true, true).expect("open");
        let blocks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let (locs, end) = f.append(&refs).expect("append");
        f.committed(end);
        let order: Vec<Location> = locs[..30]
            .iter()
            .chain([&locs[35], &locs[31], &locs[32]])
            .copied()
            .collect();
        let want: Vec<Vec<u8>> = order.iter().map(|&l| f.read(l).expect("read")).collect();
        assert_eq!(f.read_many(&order).expect("read together"), want);
        assert_eq!(want[5], blocks[5]);
        drop(f);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("file");
        let inside = usize::try_from(locs[7].offset).expect("offset") + 8 + 3;
        bytes[inside] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let f = BlockFile::open(dir.path(), Some(end), false, false).expect("open");
        match f.read_many(&locs[..20]) {
            Err(BlockFileError::Damaged { offset, .. }) => assert_eq!(offset, locs[7].offset),
            other => panic!("expected the damaged entry, got {other:?}"),
        }
        let past = Location {
            offset: end.end,
            len: 10,
        };
        assert!(f.read_many(&[locs[0], past]).is_err());
    }

    #[test]
    fn blocks_come_back_as_written_and_a_flipped_byte_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let f = BlockFile::open(dir.path(), None, true, true).expect("open");
        let (locs, end) = f.append(&[b"one", b"block two"]).expect("append");
        f.committed(end);
        let end = Some(end);
        assert_eq!(f.read(locs[0]).expect("read"), b"one");
        assert_eq!(f.read(locs[1]).expect("read"), b"block two");
        drop(f);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("file");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let f = BlockFile::open(dir.path(), end, false, false).expect("open");
        assert_eq!(f.read(locs[0]).expect("read"), b"one");
        assert!(matches!(
            f.read(locs[1]),
            Err(BlockFileError::Damaged { offset, .. }) if offset == locs[1].offset
        ));
    }

    #[test]
    fn entries_past_the_committed_end_are_cut_and_a_short_file_is_damage() {
        let dir = tempfile::tempdir().expect("dir");
        let f = BlockFile::open(dir.path(), None, true, true).expect("open");
        let (_, end1) = f.append(&[b"kept"]).expect("append");
        f.committed(end1);
        // A crash after the sync, before the index's commit.
        let (_, end2) = f.append(&[b"never indexed"]).expect("append");
        assert!(end2.end > end1.end);
        drop(f);
        // A damaged committed pair (the end a few bytes short) is refused, nothing cut.
        let short = Committed {
            end: end1.end - 3,
            ..end1
        };
        assert!(matches!(
            BlockFile::open(dir.path(), Some(short), true, false),
            Err(BlockFileError::Damaged { .. })
        ));
        let whole = std::fs::metadata(dir.path().join(FILE))
            .expect("meta")
            .len();
        assert_eq!(whole, end2.end, "nothing cut on a damaged pair");
        let f = BlockFile::open(dir.path(), Some(end1), true, false).expect("reopen");
        assert_eq!(f.committed_end(), end1.end);
        let on_disk = std::fs::metadata(dir.path().join(FILE))
            .expect("meta")
            .len();
        assert_eq!(on_disk, end1.end, "the uncommitted tail is cut");
        drop(f);
        assert!(matches!(
            BlockFile::open(dir.path(), Some(end2), true, false),
            Err(BlockFileError::Truncated { .. })
        ));
    }
}
