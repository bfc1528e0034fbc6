//! `gridledger export`: the main chain as JSON (whole blocks, raw bytes included, records
//! decoded) or CSV (one row per sample). Streams block by block, so a long chain never has
//! to fit in memory.

use std::io::{self, Write};

use crate::ledger::Ledger;
use crate::render::{csv_header, json_block, write_csv_rows};
use crate::store::StoreError;

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Whole blocks with raw hex and decoded records.
    Json,
    /// One row per sample.
    Csv,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the chain failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("cannot write the export: {0}")]
    Io(#[from] io::Error),
}

/// Writes the ledger's main chain, genesis included, to `out`, showing progress on stderr
/// for a long chain ([`crate::progress`]).
pub fn export(ledger: &Ledger, format: Format, out: &mut dyn Write) -> Result<(), ExportError> {
    let tree = ledger.tree();
    let mut progress = crate::progress::Progress::new("export", u64::from(tree.height()));
    match format {
        Format::Json => {
            let net = ledger.network();
            write!(
                out,
                "{{\"network\":{},\"difficulty_bits\":{},\"height\":{},\"blocks\":[",
                serde_json::to_string(&net.name).map_err(io::Error::other)?,
                net.bits,
                tree.height()
            )?;
            for h in 0..=tree.height() {
                let block = ledger.block_at(h)?.ok_or_else(|| StoreError::Corrupt {
                    height: h,
                    reason: "main-chain block missing".into(),
                })?;
                if h > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer(&mut *out, &json_block(h, &block))
                    .map_err(io::Error::other)?;
                if h % 1024 == 0 {
                    progress.set(u64::from(h));
                }
            }
            out.write_all(b"]}\n")?;
        }
        Format::Csv => {
            out.write_all(csv_header().as_bytes())?;
            for h in 1..=tree.height() {
                let block = ledger.block_at(h)?.ok_or_else(|| StoreError::Corrupt {
                    height: h,
                    reason: "main-chain block missing".into(),
                })?;
                let id = block.id().to_hex();
                for bytes in &block.records {
                    if let Ok(r) = relay_core::MinuteRecord::decode(bytes) {
                        let signer = crate::relay_sig::Signer::of(&r, &ledger.network().registry);
                        write_csv_rows(out, h, &id, &r, signer)?;
                    }
                }
                if h % 1024 == 0 {
                    progress.set(u64::from(h));
                }
            }
        }
    }
    out.flush()?;
    progress.finish(u64::from(tree.height()));
    Ok(())
}
