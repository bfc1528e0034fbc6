//! Why the sink stops, and which failures it waits out.

use super::rows;

/// Why the sink stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// PostgreSQL refused or failed.
    #[error("PostgreSQL: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The database holds tables this sink did not make, or another version's, or another
    /// network's.
    #[error("{0}")]
    Schema(String),
    /// The node failed or answered something that is not a chain.
    #[error("the node at {url}: {why}")]
    Node {
        /// Its URL.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The node's chain no longer holds a block this sink wrote: history below final was
    /// rewritten (by people; finality forbids it otherwise).
    #[error(
        "the node's block {height} is not the one this database holds: history the sink \
         wrote was rewritten. Nothing was changed; to follow the node, delete the rows from \
         that height (docs/book/src/historian.md, \"A forced rewrite\")"
    )]
    Rewritten {
        /// The height where they differ.
        height: u32,
    },
    /// Another sink moved the cursor meanwhile.
    #[error("another sink writes into this database (its cursor moved under this one)")]
    Concurrent,
    /// A block could not become rows.
    #[error(transparent)]
    Rows(#[from] rows::RowError),
}

/// A PostgreSQL error in one line: the server's own message and SQLSTATE, or the
/// connection's failure with its causes (tokio-postgres's own text is only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{} (SQLSTATE {}, {})",
            db.message(),
            db.code().code(),
            db.severity()
        );
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

impl SinkError {
    /// True if trying again later may succeed (a connection lost, a node restarting); false
    /// for what a retry cannot fix (a wrong password, a read-only user, a foreign schema).
    #[must_use]
    pub fn transient(&self) -> bool {
        match self {
            SinkError::Db(e) => match e.code() {
                // Connection exceptions, the server shutting down, too many connections.
                Some(c) => {
                    let c = c.code();
                    c.starts_with("08") || c.starts_with("57P") || c == "53300"
                }
                // No SQLSTATE: the connection itself (refused, reset, closed).
                None => true,
            },
            SinkError::Node { .. } => true,
            _ => false,
        }
    }
}
