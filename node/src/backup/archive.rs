//! The backup file: a header, then frames, then an end frame that seals them.
//!
//! ```text
//! "GLBACKUP" version:u32le
//! frame*    tag:u8 len:u32le payload[len]
//!   1 manifest   JSON (Manifest), first and once
//!   2 row        table_len:u8 table key_len:u32le key value
//!   3 blocks     the next bytes of blocks.dat
//!   4 file       name_len:u8 name bytes       (peers.json, the key if asked)
//!   0 end        sha256(every byte before this frame) rows:u64le blocks:u64le
//! ```
//!
//! Streamed both ways: a node writes it to a socket as it reads its snapshot, and a restore
//! reads it as it writes the new data dir, never holding more than a frame. The end frame
//! makes a cut-off or altered file an error before anything is put in place; restore checks
//! each row against its table's types as well, since a file can be sealed by anyone.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"GLBACKUP";
/// The version of the frame layout this binary writes and reads.
pub const VERSION: u32 = 1;
/// Largest payload a frame may carry: a damaged length cannot make a reader allocate more.
pub const MAX_FRAME: u32 = 16 << 20;

const END: u8 = 0;
const MANIFEST: u8 = 1;
const ROW: u8 = 2;
const BLOCKS: u8 = 3;
const FILE: u8 = 4;

/// The facts at the head of a backup.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The gridledger version that made it.
    pub gridledger: String,
    /// Seconds since the Unix epoch when it was made.
    pub made_unix: u64,
    /// Made from a running node (through its control socket) or a data dir at rest.
    pub running: bool,
    /// The network's name.
    pub network: String,
    /// The network's difficulty bits.
    pub bits: u8,
    /// The data dir format of the copy.
    pub format: u32,
    /// The main chain's height.
    pub height: u32,
    /// The main chain's tip, hex (empty at genesis).
    pub tip: String,
    /// Bytes of the block file in the copy.
    pub blockfile_end: u64,
}

/// One frame, read.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The manifest.
    Manifest(Manifest),
    /// A table row.
    Row {
        /// The table.
        table: String,
        /// The key's bytes.
        key: Vec<u8>,
        /// The value's bytes.
        value: Vec<u8>,
    },
    /// The next piece of the block file.
    Blocks(Vec<u8>),
    /// A file of the data dir.
    File {
        /// Its name.
        name: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Why a backup cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file does not start as a backup does.
    #[error("not a gridledger backup (it does not start with {MAGIC:?})")]
    NotABackup,
    /// A backup of a frame layout this binary does not know.
    #[error("backup layout {0}, newer than this gridledger reads ({VERSION}): restore it with a newer version")]
    Version(u32),
    /// The file ends before its end frame: a copy cut short.
    #[error("the backup is cut short: it ends before its end frame (an interrupted copy?)")]
    Truncated,
    /// The seal does not match what came before it: the file was altered or damaged.
    #[error("the backup's seal does not match its contents: it was altered or damaged")]
    Seal,
    /// A frame that breaks the layout.
    #[error("malformed backup: {0}")]
    Malformed(String),
}

/// Writes a backup, sealing it on [`Writer::finish`].
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    hash: Sha256,
    bytes: u64,
    rows: u64,
    blocks: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a backup on `out` (its header).
    pub fn new(out: W) -> std::io::Result<Self> {
        let mut w = Writer {
            out,
            hash: Sha256::new(),
            bytes: 0,
            rows: 0,
            blocks: 0,
        };
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_le_bytes());
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b)
    }

    fn frame(&mut self, tag: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| std::io::Error::other(format!("a frame of {len} bytes is too large")))?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.put(&head)?;
        for p in parts {
            self.put(p)?;
        }
        Ok(())
    }

    /// The manifest (first, once).
    pub fn manifest(&mut self, m: &Manifest) -> std::io::Result<()> {
        let json = serde_json::to_vec(m).map_err(std::io::Error::other)?;
        self.frame(MANIFEST, &[&json])
    }

    /// A table row.
    pub fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let name = u8::try_from(table.len()).map_err(std::io::Error::other)?;
        let klen = u32::try_from(key.len()).map_err(std::io::Error::other)?;
        self.rows += 1;
        self.frame(
            ROW,
            &[&[name], table.as_bytes(), &klen.to_le_bytes(), key, value],
        )
    }

    /// The next piece of the block file.
    pub fn blocks(&mut self, piece: &[u8]) -> std::io::Result<()> {
        self.blocks += piece.len() as u64;
        self.frame(BLOCKS, &[piece])
    }

    /// A file of the data dir.
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let n = u8::try_from(name.len()).map_err(std::io::Error::other)?;
        self.frame(FILE, &[&[n], name.as_bytes(), bytes])
    }

    /// Seals the backup; returns the sink and the bytes written.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        let seal: [u8; 32] = self.hash.clone().finalize().into();
        let (rows, blocks) = (self.rows.to_le_bytes(), self.blocks.to_le_bytes());
        self.frame(END, &[&seal, &rows, &blocks])?;
        self.out.flush()?;
        Ok((self.out, self.bytes))
    }
}

/// Reads a backup frame by frame, checking its layout and, at the end, its seal.
#[derive(Debug)]
pub struct Reader<R: Read> {
    inp: R,
    hash: Sha256,
    rows: u64,
    blocks: u64,
    frames: u64,
    done: bool,
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], ArchiveError> {
    if b.len() < n {
        return Err(ArchiveError::Malformed(format!(
            "{what} runs past its frame"
        )));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn text(b: &[u8], what: &str) -> Result<String, ArchiveError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| ArchiveError::Malformed(format!("{what} is not UTF-8")))
}

impl<R: Read> Reader<R> {
    /// Reads the header of the backup on `inp`.
    pub fn new(mut inp: R) -> Result<Self, ArchiveError> {
        let mut head = [0u8; 12];
        read_full(&mut inp, &mut head)?;
        if &head[..8] != MAGIC {
            return Err(ArchiveError::NotABackup);
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if version != VERSION {
            return Err(ArchiveError::Version(version));
        }
        let mut hash = Sha256::new();
        hash.update(head);
        Ok(Reader {
            inp,
            hash,
            rows: 0,
            blocks: 0,
            frames: 0,
            done: false,
        })
    }

    /// The next frame; `None` after the end frame, once its seal and counts have matched
    /// and nothing follows it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ArchiveError> {
        if self.done {
            return Ok(None);
        }
        let mut head = [0u8; 5];
        read_full(&mut self.inp, &mut head)?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_FRAME {
            return Err(ArchiveError::Malformed(format!(
                "a frame of {len} bytes (at most {MAX_FRAME})"
            )));
        }
        let mut body = vec![0u8; len as usize];
        read_full(&mut self.inp, &mut body)?;
        let tag = head[0];
        if tag == END {
            return self.end(&body).map(|()| None);
        }
        self.hash.update(head);
        self.hash.update(&body);
        self.frames += 1;
        if (tag == MANIFEST) != (self.frames == 1) {
            return Err(ArchiveError::Malformed(
                "the manifest must be the first frame, and only it".into(),
            ));
        }
        let mut b = body.as_slice();
        Ok(Some(match tag {
            MANIFEST => Frame::Manifest(
                serde_json::from_slice(b)
                    .map_err(|e| ArchiveError::Malformed(format!("manifest: {e}")))?,
            ),
            ROW => {
                let n = take(&mut b, 1, "a row's table name")?[0];
                let table = text(
                    take(&mut b, n.into(), "a row's table name")?,
                    "a table name",
                )?;
                let k = take(&mut b, 4, "a row's key length")?;
                let klen = u32::from_le_bytes([k[0], k[1], k[2], k[3]]);
                let key = take(&mut b, klen as usize, "a row's key")?.to_vec();
                self.rows += 1;
                Frame::Row {
                    table,
                    key,
                    value: b.to_vec(),
                }
            }
            BLOCKS => {
                self.blocks += body.len() as u64;
                Frame::Blocks(body)
            }
            FILE => {
                let n = take(&mut b, 1, "a file's name")?[0];
                let name = text(take(&mut b, n.into(), "a file's name")?, "a file name")?;
                Frame::File {
                    name,
                    bytes: b.to_vec(),
                }
            }
            other => {
                return Err(ArchiveError::Malformed(format!(
                    "unknown frame kind {other}"
                )))
            }
        }))
    }

    fn end(&mut self, body: &[u8]) -> Result<(), ArchiveError> {
        if body.len() != 48 {
            return Err(ArchiveError::Malformed(
                "an end frame of the wrong size".into(),
            ));
        }
        let seal: [u8; 32] = self.hash.clone().finalize().into();
        if body[..32] != seal {
            return Err(ArchiveError::Seal);
        }
        let count = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0xff; 8]));
        if count(&body[32..40]) != self.rows || count(&body[40..48]) != self.blocks {
            return Err(ArchiveError::Seal);
        }
        let mut more = [0u8; 1];
        loop {
            match self.inp.read(&mut more) {
                Ok(0) => break,
                Ok(_) => return Err(ArchiveError::Malformed("bytes after the end frame".into())),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.done = true;
        Ok(())
    }
}

/// Fills `buf`, telling a clean end of input (cut short) from an I/O error.
fn read_full(inp: &mut impl Read, buf: &mut [u8]) -> Result<(), ArchiveError> {
    match inp.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ArchiveError::Truncated),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            gridledger: "test".into(),
            made_unix: 1,
            running: false,
            network: "n".into(),
            bits: 8,
            format: 1,
            height: 0,
            tip: String::new(),
            blockfile_end: 3,
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).expect("header");
        w.manifest(&manifest()).expect("manifest");
        w.row("meta", b"network", b"\x08n").expect("row");
        w.blocks(b"abc").expect("blocks");
        w.file("peers.json", b"[]").expect("file");
        w.finish().expect("finish").0
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, ArchiveError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(f) = r.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn what_is_written_reads_back() {
        let frames = read_all(&sample()).expect("reads");
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0], Frame::Manifest(manifest()));
        assert_eq!(
            frames[1],
            Frame::Row {
                table: "meta".into(),
                key: b"network".to_vec(),
                value: b"\x08n".to_vec()
            }
        );
        assert_eq!(frames[2], Frame::Blocks(b"abc".to_vec()));
    }

    #[test]
    fn every_cut_is_an_error() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(
                read_all(&bytes[..cut]).is_err(),
                "a file cut at {cut} was read as whole"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let bytes = sample();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(read_all(&b).is_err(), "a flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn bytes_after_the_seal_and_other_files_are_refused() {
        let mut bytes = sample();
        bytes.push(0);
        assert!(matches!(read_all(&bytes), Err(ArchiveError::Malformed(_))));
        assert!(matches!(
            read_all(b"PK\x03\x04 not a backup"),
            Err(ArchiveError::NotABackup)
        ));
        let mut newer = sample();
        newer[8] = 9;
        assert!(matches!(read_all(&newer), Err(ArchiveError::Version(9))));
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(MANIFEST);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_all(&b), Err(ArchiveError::Malformed(_))));
    }
}
