//! The historian's schema: four tables, made once in an empty database, and refused (never
//! altered) when what is there is not exactly them. `docs/book/src/historian.md` documents
//! every column and the queries people run on them.

use tokio_postgres::Client;

use super::error::SinkError;

/// The schema this sink writes. A database made by another version is refused.
pub const VERSION: i32 = 1;

/// The tables, made in one transaction. `gridledger_sink` is one row: the schema version,
/// the network, and the cursor (the last block written), updated in the same transaction as
/// the rows of each batch, so that a crash anywhere leaves every block written once or not
/// at all.
pub const DDL: &str = r"
CREATE TABLE gridledger_sink (
    one            boolean PRIMARY KEY DEFAULT true CHECK (one),
    schema_version integer NOT NULL,
    network        text    NOT NULL,
    genesis        bytea   NOT NULL,
    height         bigint  NOT NULL,
    block_id       bytea   NOT NULL
);
CREATE TABLE blocks (
    height  bigint      PRIMARY KEY,
    id      bytea       NOT NULL UNIQUE,
    prev    bytea       NOT NULL,
    time    timestamptz NOT NULL,
    miner   bytea       NOT NULL,
    records integer     NOT NULL
);
CREATE TABLE records (
    relay           bigint      NOT NULL,
    minute          timestamptz NOT NULL,
    height          bigint      NOT NULL REFERENCES blocks (height),
    position        integer     NOT NULL,
    faults          integer     NOT NULL,
    clock_set       boolean     NOT NULL,
    slots           integer     NOT NULL,
    missing_slots   integer     NOT NULL,
    relay_signature bytea,
    leaf_hash       bytea       NOT NULL,
    PRIMARY KEY (relay, minute)
);
CREATE INDEX records_minute ON records (minute);
CREATE INDEX records_height ON records (height);
CREATE TABLE samples (
    relay   bigint        NOT NULL,
    t       timestamptz   NOT NULL,
    minute  timestamptz   NOT NULL,
    height  bigint        NOT NULL,
    second  integer       NOT NULL,
    vab_kv  numeric(14,3) NOT NULL,
    vbc_kv  numeric(14,3) NOT NULL,
    vca_kv  numeric(14,3) NOT NULL,
    ia_a    numeric(14,3) NOT NULL,
    ib_a    numeric(14,3) NOT NULL,
    ic_a    numeric(14,3) NOT NULL,
    f_hz    numeric(14,3) NOT NULL,
    pf      numeric(14,3) NOT NULL,
    p_kw    numeric(14,3) NOT NULL,
    q_kvar  numeric(14,3) NOT NULL,
    PRIMARY KEY (relay, t)
);
CREATE INDEX samples_t ON samples USING brin (t);
CREATE INDEX samples_height ON samples USING brin (height);
";

/// Each table's columns and types as `information_schema.columns` names them, in order.
const COLUMNS: &[(&str, &[(&str, &str)])] = &[
    (
        "gridledger_sink",
        &[
            ("one", "boolean"),
            ("schema_version", "integer"),
            ("network", "text"),
            ("genesis", "bytea"),
            ("height", "bigint"),
            ("block_id", "bytea"),
        ],
    ),
    (
        "blocks",
        &[
            ("height", "bigint"),
            ("id", "bytea"),
            ("prev", "bytea"),
            ("time", "timestamp with time zone"),
            ("miner", "bytea"),
            ("records", "integer"),
        ],
    ),
    (
        "records",
        &[
            ("relay", "bigint"),
            ("minute", "timestamp with time zone"),
            ("height", "bigint"),
            ("position", "integer"),
            ("faults", "integer"),
            ("clock_set", "boolean"),
            ("slots", "integer"),
            ("missing_slots", "integer"),
            ("relay_signature", "bytea"),
            ("leaf_hash", "bytea"),
        ],
    ),
    (
        "samples",
        &[
            ("relay", "bigint"),
            ("t", "timestamp with time zone"),
            ("minute", "timestamp with time zone"),
            ("height", "bigint"),
            ("second", "integer"),
            ("vab_kv", "numeric"),
            ("vbc_kv", "numeric"),
            ("vca_kv", "numeric"),
            ("ia_a", "numeric"),
            ("ib_a", "numeric"),
            ("ic_a", "numeric"),
            ("f_hz", "numeric"),
            ("pf", "numeric"),
            ("p_kw", "numeric"),
            ("q_kvar", "numeric"),
        ],
    ),
];

/// The sample columns in COPY order, after relay, t, minute, height, second.
pub const SAMPLE_COPY: &str = "COPY samples (relay, t, minute, height, second, vab_kv, vbc_kv, vca_kv, ia_a, ib_a, ic_a, f_hz, pf, p_kw, q_kvar) FROM STDIN";
/// The record columns in COPY order.
pub const RECORD_COPY: &str = "COPY records (relay, minute, height, position, faults, clock_set, slots, missing_slots, relay_signature, leaf_hash) FROM STDIN";
/// The block columns in COPY order.
pub const BLOCK_COPY: &str = "COPY blocks (height, id, prev, time, miner, records) FROM STDIN";

/// Where the sink stands: the last block it wrote (height 0 and the genesis id at first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Height of the last block written.
    pub height: u32,
    /// Its id.
    pub block_id: [u8; 32],
}

/// Makes the tables in an empty database, or checks that those there are exactly this
/// sink's, for `network` (whose genesis id is `genesis`); returns the cursor.
pub async fn prepare(
    client: &mut Client,
    network: &str,
    genesis: [u8; 32],
) -> Result<Cursor, SinkError> {
    let present: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = ANY($1)",
            &[&COLUMNS.iter().map(|(t, _)| *t).collect::<Vec<&str>>()],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    if present.is_empty() {
        let tx = client.transaction().await?;
        tx.batch_execute(DDL).await?;
        tx.execute(
            "INSERT INTO gridledger_sink (schema_version, network, genesis, height, block_id) \
             VALUES ($1, $2, $3, 0, $3)",
            &[&VERSION, &network, &genesis.as_slice()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!("made the historian's tables (schema version {VERSION})");
        return Ok(Cursor {
            height: 0,
            block_id: genesis,
        });
    }
    if present.len() < COLUMNS.len() {
        return Err(SinkError::Schema(format!(
            "the database holds some of the historian's tables ({}) but not all: made by \
             something else, or half dropped; refusing to touch it",
            present.join(", ")
        )));
    }
    let row = client
        .query_opt(
            "SELECT schema_version, network, genesis, height, block_id FROM gridledger_sink",
            &[],
        )
        .await
        .map_err(|e| SinkError::Schema(format!("gridledger_sink cannot be read: {e}")))?
        .ok_or_else(|| SinkError::Schema("gridledger_sink has no row".into()))?;
    let version: i32 = row.try_get(0)?;
    if version != VERSION {
        return Err(SinkError::Schema(format!(
            "the tables are schema version {version}; this gridledger writes version {VERSION} \
             and does not convert them (docs/book/src/historian.md)"
        )));
    }
    for (table, want) in COLUMNS {
        let have: Vec<(String, String)> = client
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
                &[table],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let same = have.len() == want.len()
            && have
                .iter()
                .zip(want.iter())
                .all(|((hc, ht), (wc, wt))| hc == wc && ht == wt);
        if !same {
            return Err(SinkError::Schema(format!(
                "table {table} is not the historian's: its columns are {have:?}; refusing to \
                 write into a table someone altered"
            )));
        }
    }
    let net: String = row.try_get(1)?;
    let gen: Vec<u8> = row.try_get(2)?;
    if net != network || gen != genesis {
        return Err(SinkError::Schema(format!(
            "the database holds network {net:?}; the node is on {network:?} (a database per \
             network)"
        )));
    }
    let height: i64 = row.try_get(3)?;
    let id: Vec<u8> = row.try_get(4)?;
    Ok(Cursor {
        height: u32::try_from(height)
            .map_err(|_| SinkError::Schema(format!("cursor height {height} is out of range")))?,
        block_id: id
            .try_into()
            .map_err(|_| SinkError::Schema("cursor block id is not 32 bytes".into()))?,
    })
}
