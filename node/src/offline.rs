//! The offline tools over a data dir: `verify`, `export` and the crash tests' `debug-append`.
//! `verify` and `export` open the store read-only and never panic (see [`crate::ledger::guard`]);
//! the binary maps their errors to exit codes ([`crate::store::StoreError::is_corruption`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use relay_core::signal::{Profile, SignalModel};
use relay_core::{Minute, RecordFlags, RelayId};

use crate::chain::{assemble, Network};
use crate::export::{export, ExportError, Format};
use crate::ledger::{guard, AddError, Ledger};
use crate::store::StoreError;

/// `gridledger export`'s flags.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The node's data dir.
    #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `gridledger debug-append`'s flags (test support, hidden).
#[derive(Debug, clap::Args)]
pub struct AppendArgs {
    /// The data dir.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The network.
    #[arg(long, default_value = "crash-test")]
    pub network: String,
    /// Its difficulty.
    #[arg(long, default_value_t = 4)]
    pub difficulty_bits: u8,
    /// Blocks to append.
    #[arg(long, default_value_t = 1000)]
    pub blocks: u32,
}

/// Opens the data dir read-only, verifying it, with a progress bar (or lines) on stderr.
fn open_showing_progress(dir: &Path, what: &'static str) -> Result<Ledger, StoreError> {
    let mut shown: Option<crate::progress::Progress> = None;
    let mut last = 0;
    let ledger = Ledger::open_read_only_with(dir, &mut |done, total| {
        shown
            .get_or_insert_with(|| crate::progress::Progress::new(what, total))
            .set(done);
        last = done;
    });
    if let Some(p) = shown {
        p.finish(last);
    }
    ledger
}

/// Re-verifies the data dir read-only; the `ok: …` line on success.
pub fn verify(dir: &Path) -> Result<String, StoreError> {
    let ledger = open_showing_progress(dir, "verify")?;
    let kept = guard(|| crate::finality::verify_kept(&ledger))?;
    let s = ledger.summary();
    let net = ledger.network();
    let mut line = format!(
        "ok: network '{}' ({} bits), height {}, {} records, tip {}",
        net.name, net.bits, s.height, s.records, s.tip
    );
    if let Some(k) = kept {
        line.push_str("; ");
        line.push_str(&k);
    }
    Ok(line)
}

/// Exports the data dir's main chain read-only to `out` (a file it creates) or stdout.
pub fn export_dir(dir: &Path, format: Format, out: Option<&Path>) -> Result<(), ExportError> {
    let ledger = open_showing_progress(dir, "export: verify")?;
    guard(|| {
        Ok(match out {
            Some(path) => match std::fs::File::create(path) {
                Ok(f) => export(&ledger, format, &mut std::io::BufWriter::new(f)),
                Err(e) => Err(ExportError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", path.display()),
                ))),
            },
            None => export(
                &ledger,
                format,
                &mut std::io::BufWriter::new(std::io::stdout().lock()),
            ),
        })
    })
    .unwrap_or_else(|e| Err(e.into()))
}

/// Why `debug-append` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block was refused.
    #[error(transparent)]
    Add(#[from] AddError),
    /// The key could not be made.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// Writing a line failed (the reader went away).
    #[error("cannot write: {0}")]
    Io(#[from] std::io::Error),
}

/// Test support: mines `blocks` blocks of simulated records (relay 1, one minute per
/// height) on the data dir's chain, writing `stored HEIGHT ID` after each durable commit.
pub fn debug_append(
    dir: &Path,
    network: &str,
    bits: u8,
    blocks: u32,
    out: &mut dyn Write,
) -> Result<(), AppendError> {
    debug_append_with(dir, Network::new(network, bits), None, blocks, 1, out)
}

/// `gridledger debug-append` as its flags say, printing to stdout.
pub fn debug_append_cmd(a: &AppendArgs) -> Result<(), AppendError> {
    let mut out = std::io::stdout().lock();
    debug_append(
        &a.data_dir,
        &a.network,
        a.difficulty_bits,
        a.blocks,
        &mut out,
    )
}

/// [`debug_append`] on `net`, with the records of relays 1 to `per_block` (at least 1) in
/// each block, each signed by `relay_key` when given (the network's registry should name it
/// for those relays, or the blocks are refused).
pub fn debug_append_with(
    dir: &Path,
    net: Network,
    relay_key: Option<&ed25519_dalek::SigningKey>,
    blocks: u32,
    per_block: u32,
    out: &mut dyn Write,
) -> Result<(), AppendError> {
    let bits = net.bits;
    let mut ledger = Ledger::open(dir, net)?;
    let key = crate::keys::generate()?;
    let model = SignalModel::new(1, Profile::Realistic);
    let cancel = AtomicBool::new(false);
    for _ in 0..blocks {
        let parent = ledger.tip_header()?;
        let minute = Minute(29_000_000 + parent.height);
        let mut records = Vec::new();
        for relay in 1..=per_block.max(1) {
            let mut record = model.record(RelayId(relay), minute, 6, RecordFlags::CLOCK_SET);
            if let Some(k) = relay_key {
                use ed25519_dalek::Signer;
                let mut buf = [0u8; relay_core::MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
                if let Ok(msg) = record.signing_message(&mut buf) {
                    record.signature = Some(relay_core::RecordSignature(k.sign(msg).to_bytes()));
                }
            }
            records.push(record);
        }
        let now = crate::core::now_ms();
        let time = now.max(ledger.tree().median_time_past(&parent.id()));
        let Some(block) = assemble(&parent, &records, &key, time, bits, &cancel) else {
            continue; // never: nothing cancels it
        };
        let added = ledger.add(block, now)?;
        writeln!(out, "stored {} {}", added.height, added.id)?;
        out.flush()?;
    }
    Ok(())
}
