//! The poller: reads each relay's last closed minute record over Modbus TCP.
//!
//! One request of 117 registers per read (never torn on the relay's side; a torn read from
//! a relay that splits it anyway is read again). A relay that is down is logged and retried
//! with backoff, never fatal; missed minutes show up as gaps in its [`RelayStatus`].

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gridledger_core::poller::{Poller, Read};
use relay_core::registers::{
    attach_signature, decode_identity, decode_record, RecordRead, RegisterError, IDENTITY, RECORD,
    SIGNATURE,
};
use relay_core::MinuteRecord;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};
use tracing::debug;

/// Where a relay is: `host:port`, and the unit id behind it (default 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayAddr {
    /// `host:port` of the Modbus TCP server (relay-sim, the gateway, a real relay).
    pub host: String,
    /// Modbus unit id.
    pub unit: u8,
}

/// Why a relay address does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayAddrError {
    /// The part after `/` is not a unit id.
    #[error("'{unit}' in '{input}' is not a unit id (1-{max})", max = relay_core::MAX_UNIT_ID)]
    BadUnit {
        /// The whole address.
        input: String,
        /// The unit part.
        unit: String,
    },
    /// No `:port`.
    #[error("'{0}' is not host:port[/unit]")]
    NoPort(String),
    /// The port is not 1 to 65535.
    #[error("'{port}' in '{input}' is not a port (1-65535)")]
    BadPort {
        /// The whole address.
        input: String,
        /// The port part.
        port: String,
    },
    /// Nothing before `:port`.
    #[error("'{0}' has no host before its port")]
    NoHost(String),
}

impl FromStr for RelayAddr {
    type Err = RelayAddrError;

    /// `host:port` or `host:port/unit`.
    fn from_str(s: &str) -> Result<Self, RelayAddrError> {
        let (host, unit) = match s.rsplit_once('/') {
            Some((h, u)) => (
                h,
                u.parse::<u8>()
                    .ok()
                    .filter(|u| (1..=relay_core::MAX_UNIT_ID).contains(u))
                    .ok_or_else(|| RelayAddrError::BadUnit {
                        input: s.to_owned(),
                        unit: u.to_owned(),
                    })?,
            ),
            None => (s, 1),
        };
        let Some((name, port)) = host.rsplit_once(':') else {
            return Err(RelayAddrError::NoPort(s.to_owned()));
        };
        if name.is_empty() || name == "[]" {
            return Err(RelayAddrError::NoHost(s.to_owned()));
        }
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(RelayAddrError::BadPort {
                input: s.to_owned(),
                port: port.to_owned(),
            });
        }
        Ok(RelayAddr {
            host: host.to_owned(),
            unit,
        })
    }
}

impl fmt::Display for RelayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.unit)
    }
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// The relay could not be reached.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The connection failed or the answer was garbled.
    #[error("read from {0} failed: {1}")]
    Read(String, tokio_modbus::Error),
    /// The relay answered with an exception.
    #[error("{0} answered exception {1:?}")]
    Exception(String, ExceptionCode),
    /// No answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The registers do not hold a valid record (after re-reading a torn one).
    #[error("{0}: {1}")]
    Record(String, RegisterError),
}

/// A connection to one relay, reopened as needed.
pub struct RelayReader {
    relay: RelayAddr,
    ctx: Option<Context>,
    io_timeout: Duration,
    /// The public key the relay serves in its identity block, read once per connection
    /// (`None` inside: the relay does not sign).
    key: Option<Option<[u8; 32]>>,
}

impl fmt::Debug for RelayReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayReader")
            .field("relay", &self.relay)
            .field("connected", &self.ctx.is_some())
            .finish()
    }
}

/// Reads of a torn record before giving up.
const TORN_RETRIES: usize = 3;

impl RelayReader {
    /// A reader that connects on first use.
    #[must_use]
    pub fn new(relay: RelayAddr, io_timeout: Duration) -> Self {
        RelayReader {
            relay,
            ctx: None,
            io_timeout,
            key: None,
        }
    }

    /// The public key the relay served at the last connection, if it signs.
    #[must_use]
    pub fn served_key(&self) -> Option<[u8; 32]> {
        self.key.flatten()
    }

    /// Drops the connection, so that the next read reconnects and reads the relay's
    /// identity (its key) again: after a signature failed, the relay may have a new key.
    pub fn reconnect(&mut self) {
        self.ctx = None;
        self.key = None;
    }

    /// One read of `len` registers at `start`, with the reader's timeout; a failed
    /// connection is dropped.
    async fn registers(&mut self, start: u16, len: u16) -> Result<Vec<u16>, PollError> {
        let name = self.relay.to_string();
        let Some(ctx) = &mut self.ctx else {
            return Err(PollError::Connect(
                name,
                std::io::ErrorKind::NotConnected.into(),
            ));
        };
        match timeout(self.io_timeout, ctx.read_input_registers(start, len)).await {
            Err(_) => {
                self.ctx = None;
                Err(PollError::Timeout(name, self.io_timeout))
            }
            Ok(Err(e)) => {
                self.ctx = None;
                Err(PollError::Read(name, e))
            }
            Ok(Ok(Err(code))) => Err(PollError::Exception(name, code)),
            Ok(Ok(Ok(regs))) => Ok(regs),
        }
    }

    /// The relay's served key, read from its identity block after each connect. A device
    /// whose map has no key registers (an exception) does not sign.
    async fn identity_key(&mut self) -> Result<Option<[u8; 32]>, PollError> {
        if let Some(k) = self.key {
            return Ok(k);
        }
        let key = match self.registers(IDENTITY.start, IDENTITY.len).await {
            Ok(regs) => match decode_identity(&regs) {
                Ok(id) => id.key,
                // A version-1 map answers the longer read with its zeros: no key.
                Err(RegisterError::Version(_)) | Err(RegisterError::Short(_)) => None,
                Err(e) => return Err(PollError::Record(self.relay.to_string(), e)),
            },
            Err(PollError::Exception(..)) => None,
            Err(e) => return Err(e),
        };
        self.key = Some(key);
        Ok(key)
    }

    /// Reads the relay's last closed minute record. `Ok(None)`: the relay has not closed one
    /// since it started.
    pub async fn read(&mut self) -> Result<Option<RecordRead>, PollError> {
        let name = self.relay.to_string();
        for _ in 0..TORN_RETRIES {
            if self.ctx.is_none() {
                let addr = tokio::net::lookup_host(&self.relay.host)
                    .await
                    .map_err(|e| PollError::Connect(name.clone(), e))?
                    .next()
                    .ok_or_else(|| {
                        PollError::Connect(name.clone(), std::io::ErrorKind::NotFound.into())
                    })?;
                let ctx = timeout(
                    self.io_timeout,
                    tcp::connect_slave(addr, Slave(self.relay.unit)),
                )
                .await
                .map_err(|_| PollError::Timeout(name.clone(), self.io_timeout))?
                .map_err(|e| PollError::Connect(name.clone(), e))?;
                self.key = None;
                self.ctx = Some(ctx);
            }
            let key = self.identity_key().await?;
            let regs = self.registers(RECORD.start, RECORD.len).await?;
            let mut read = match decode_record(&regs) {
                Ok(read) => read,
                Err(RegisterError::NoRecordYet) => return Ok(None),
                Err(RegisterError::Torn { .. }) => {
                    debug!(relay = %name, "torn read; reading again");
                    continue;
                }
                Err(e) => return Err(PollError::Record(name, e)),
            };
            if key.is_none() {
                return Ok(Some(read));
            }
            // A signing relay: its signature of the record, in a second request.
            let regs = self.registers(SIGNATURE.start, SIGNATURE.len).await?;
            match attach_signature(&mut read, &regs) {
                Ok(()) => return Ok(Some(read)),
                Err(RegisterError::SignatureTorn { .. }) => {
                    debug!(relay = %name, "record and signature of two records; reading again");
                }
                Err(e) => return Err(PollError::Record(name, e)),
            }
        }
        Err(PollError::Record(
            name,
            RegisterError::Torn { head: 0, tail: 0 },
        ))
    }
}

pub use gridledger_core::poller::{RelayStatus, CLOCK_AHEAD_TOLERANCE_MS};

/// How often and how patiently to poll.
#[derive(Clone, Copy, Debug)]
pub struct PollConfig {
    /// Time between polls, aligned to multiples of it (60 s: every minute).
    pub period: Duration,
    /// Delay after each aligned instant, so that the relay has closed its minute.
    pub offset: Duration,
    /// Longest wait for a connection or an answer.
    pub io_timeout: Duration,
}

/// Polls `relay` forever: reads at every period (aligned, plus the offset), sends each
/// record not seen before to `records`, and keeps `status` up to date. After a failure it
/// retries sooner (1 s, 2 s, 4 s … up to the period). Ends when `records` is closed.
pub async fn poll_relay(
    relay: RelayAddr,
    config: PollConfig,
    records: mpsc::Sender<MinuteRecord>,
    status: Arc<Mutex<RelayStatus>>,
) {
    poll_relay_observed(
        relay,
        config,
        records,
        status,
        crate::metrics::Metrics::default(),
        Arc::new(crate::chain::Registry::default()),
    )
    .await;
}

/// [`poll_relay`], recording each poll's latency in `metrics`, and checking each record's
/// relay signature against `registry` (or the key the relay serves, if it is not
/// registered): a record whose signature fails is reported and not sent.
pub async fn poll_relay_observed(
    relay: RelayAddr,
    config: PollConfig,
    records: mpsc::Sender<MinuteRecord>,
    status: Arc<Mutex<RelayStatus>>,
    metrics: crate::metrics::Metrics,
    registry: Arc<crate::chain::Registry>,
) {
    let label = relay.to_string();
    let mut reader = RelayReader::new(relay.clone(), config.io_timeout);
    // What each read means, and when to read again, is the core's (`gridledger_core::poller`).
    let mut poller = Poller::new(
        u64::try_from(config.period.as_millis()).unwrap_or(u64::MAX),
        u64::try_from(config.offset.as_millis()).unwrap_or(u64::MAX),
    );
    loop {
        let started = std::time::Instant::now();
        let read = match reader.read().await {
            Ok(Some(read)) => Read::Record {
                seq: read.seq,
                record: Box::new(read.record),
                served_key: reader.served_key(),
            },
            Ok(None) => Read::Nothing,
            Err(e) => Read::Failed(e.to_string()),
        };
        metrics.observe_poll(&label, started.elapsed());
        let next = {
            let mut st = status.lock().unwrap_or_else(PoisonError::into_inner);
            st.relay = label.clone();
            poller.on_read(read, &mut st, &registry, crate::clock::now_ms())
        };
        if next.reconnect {
            reader.reconnect();
        }
        if let Some(rec) = next.fresh {
            if records.send(rec).await.is_err() {
                return;
            }
        }
        if records.is_closed() {
            return;
        }
        sleep(Duration::from_millis(
            next.at_ms.saturating_sub(crate::clock::now_ms()),
        ))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses_that_cannot_exist_are_refused() {
        let ok: RelayAddr = "127.0.0.1:5010/3".parse().expect("valid");
        assert_eq!((ok.host.as_str(), ok.unit), ("127.0.0.1:5010", 3));
        let v6: RelayAddr = "[::1]:502".parse().expect("valid");
        assert_eq!((v6.host.as_str(), v6.unit), ("[::1]:502", 1));
        for bad in [
            "127.0.0.1:99999",
            "127.0.0.1:0",
            "127.0.0.1:",
            "127.0.0.1:x",
            ":502",
            "127.0.0.1",
            "127.0.0.1:502/0",
            "127.0.0.1:502/248",
            "127.0.0.1:502/x",
            "[]:502",
        ] {
            assert!(bad.parse::<RelayAddr>().is_err(), "{bad} was taken");
        }
    }
}
