//! What the nodes' logs say happened, and when: the `gridledger::trace` lines (one per
//! record read, one per block stored, each with Unix ms), and the final chain as a node
//! serves it.

use std::path::Path;

use gridledger_chain::block::Block;
use relay_core::MinuteRecord;

/// One traced event of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node read a record new to it from a relay.
    Read {
        /// Unix ms.
        at_ms: u64,
        /// Relay id.
        relay: u32,
        /// Minute.
        minute: u32,
    },
    /// The node stored a block.
    Block {
        /// Unix ms.
        at_ms: u64,
        /// Height.
        height: u32,
        /// Id, hex.
        id: String,
        /// Mined by this node.
        own: bool,
        /// `extended`, `reorg` or `side`.
        change: String,
        /// Blocks that left the main chain (a reorg's depth).
        abandoned: u32,
    },
    /// The node's final block moved up to this height.
    Final {
        /// Unix ms.
        at_ms: u64,
        /// Height.
        height: u32,
    },
}

/// The value of `key=` in a tracing line (quotes removed), if present.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!(" {key}=");
    let start = line.find(&pattern)? + pattern.len();
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"'))
}

/// Parses one log line; `None` for any other line.
#[must_use]
pub fn parse(line: &str) -> Option<Event> {
    let (_, rest) = line.split_once(gridledger::core::TRACE)?;
    let rest = rest.strip_prefix(':')?;
    let at_ms = field(rest, "at_ms")?.parse().ok()?;
    match rest.split_whitespace().next()? {
        "read" => Some(Event::Read {
            at_ms,
            relay: field(rest, "relay")?.parse().ok()?,
            minute: field(rest, "minute")?.parse().ok()?,
        }),
        "block" => Some(Event::Block {
            at_ms,
            height: field(rest, "height")?.parse().ok()?,
            id: field(rest, "block")?.to_owned(),
            own: field(rest, "origin")? == "own",
            change: field(rest, "change")?.to_owned(),
            abandoned: field(rest, "abandoned")?.parse().ok()?,
        }),
        "final" => Some(Event::Final {
            at_ms,
            height: field(rest, "height")?.parse().ok()?,
        }),
        _ => None,
    }
}

/// Every event in a node's log file, in order (a missing file is no events).
#[must_use]
pub fn read_log(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter_map(parse).collect())
        .unwrap_or_default()
}

/// A main-chain block as the testbed needs it.
#[derive(Clone, Debug)]
pub struct ChainBlock {
    /// Id, hex.
    pub id: String,
    /// Height.
    pub height: u32,
    /// When mined, Unix ms.
    pub time_ms: u64,
    /// Its bytes.
    pub bytes: usize,
    /// (relay, minute) of each record.
    pub records: Vec<(u32, u32)>,
}

/// Why the chain could not be read from a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The request failed.
    #[error("GET /blocks: {0}")]
    Http(#[from] reqwest::Error),
    /// The answer did not parse.
    #[error("GET /blocks: {0}")]
    Decode(String),
}

/// The node's whole main chain above genesis, `GET /blocks?from=&limit=` in raw form.
pub async fn main_chain(
    client: &reqwest::Client,
    url: &str,
) -> Result<Vec<ChainBlock>, ChainError> {
    let mut out = Vec::new();
    let mut from = 1u32;
    loop {
        let body = client
            .get(format!("{url}/blocks?from={from}&limit=500"))
            .header("accept", "application/octet-stream")
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let blocks = gridledger::wire::decode_list(&body, 1 << 24, u32::MAX)
            .map_err(|e| ChainError::Decode(e.to_string()))?;
        if blocks.is_empty() {
            return Ok(out);
        }
        for b in blocks {
            out.push(summary(&b));
        }
        from = out.last().map_or(from, |b| b.height + 1);
    }
}

fn summary(b: &Block) -> ChainBlock {
    ChainBlock {
        id: b.id().to_string(),
        height: b.header.height,
        time_ms: b.header.time_ms,
        bytes: b.to_bytes().len(),
        records: b
            .records
            .iter()
            .filter_map(|r| MinuteRecord::decode(r).ok())
            .map(|r| (r.relay.0, r.minute.0))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_lines_the_node_writes() {
        let read = "2026-11-26T05:00:00.000001Z DEBUG gridledger::trace: read at_ms=1764133200123 relay=3 minute=29402220";
        assert_eq!(
            parse(read),
            Some(Event::Read {
                at_ms: 1_764_133_200_123,
                relay: 3,
                minute: 29_402_220
            })
        );
        let block = "2026-11-26T05:00:00.000001Z DEBUG gridledger::trace: block at_ms=1764133200456 height=7 block=00ab origin=\"own\" change=\"reorg\" abandoned=2";
        assert_eq!(
            parse(block),
            Some(Event::Block {
                at_ms: 1_764_133_200_456,
                height: 7,
                id: "00ab".into(),
                own: true,
                change: "reorg".into(),
                abandoned: 2
            })
        );
        assert_eq!(
            parse("2026-11-26T05:00:00Z  WARN gridledger::poll: relay down"),
            None
        );
        assert_eq!(
            parse("gridledger::trace: read at_ms=x relay=3 minute=1"),
            None
        );
    }
}
