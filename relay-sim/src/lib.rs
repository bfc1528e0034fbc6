//! `relay-sim`: a simulated substation protection relay on Modbus TCP.
//!
//! It serves the register map of `relay-core` (see `docs/book/src/registers.md`): identity, the
//! live sample as float32, and the last closed minute record, for one or many relays
//! behind consecutive unit ids. Values come from `relay-core`'s deterministic signal model,
//! so the same seed gives the same records on every run and on the firmware.
//!
//! ```no_run
//! # async fn run() -> Result<(), relay_sim::SimError> {
//! let config = relay_sim::Config { minute_secs: 2.0, ..relay_sim::Config::default() };
//! let sim = relay_sim::Simulator::bind(config).await?;
//! println!("serving on {}", sim.local_addr());
//! sim.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod bank;
pub mod clock;
pub mod icd;
pub mod keys;
pub mod layout;
pub mod mms;
mod server;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relay_core::signal::{Profile, SignalModel};
use tokio::net::TcpListener;

pub use bank::{Bank, BankSpec};
pub use clock::RelayClock;
pub use server::ClientLimits;

/// Everything a simulator needs to know. [`Config::default`] is the documented default of
/// each `relay-sim` flag.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to serve Modbus TCP on.
    pub listen: SocketAddr,
    /// Unit id of the first relay.
    pub unit_id: u8,
    /// Number of relays, behind unit ids `unit_id ..= unit_id + relays - 1`.
    pub relays: u8,
    /// Relay id of the first relay; the others follow.
    pub relay_id: u32,
    /// Relay name; `{unit}` is replaced by the unit id.
    pub relay_name: String,
    /// Substation name.
    pub substation: String,
    /// Signal profile.
    pub profile: Profile,
    /// Seed of the signal model.
    pub seed: u64,
    /// Relay seconds between samples: 10, 12, 15, 20, 30 or 60 (6 to 1 samples a minute).
    pub sample_secs: u16,
    /// Wall seconds per relay minute: 60 is real time, smaller compresses time.
    pub minute_secs: f64,
    /// Relay clock at start, Unix seconds; `None` starts at the system clock, less
    /// [`clock::headroom_ms`] when time is compressed.
    pub start_time: Option<u64>,
    /// Let a compressed clock run ahead of UTC (a relay whose clock is wrong, for tests).
    /// Off by default: the clock runs at wall speed once it has caught up with UTC, since
    /// the ledger refuses records of minutes that have not closed yet.
    pub clock_may_run_ahead: bool,
    /// Client connection limits.
    pub limits: ClientLimits,
    /// A device profile every relay plays instead of relay-core's map (`--layout`): the
    /// same signal model, served in a maker's register layout.
    pub layout: Option<Arc<device_profile::Profile>>,
    /// Address to serve IEC 61850 MMS on as well (`--iec61850`), the model of
    /// [`icd`]; `None` serves Modbus only.
    pub iec61850: Option<SocketAddr>,
    /// The relays' signing keys (`--key-file`); a relay without one does not sign.
    pub keys: keys::RelayKeys,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5010)),
            unit_id: 1,
            relays: 1,
            relay_id: 1,
            relay_name: "Relay {unit}".into(),
            substation: "Bogotá Electrical Substation - U.D.".into(),
            profile: Profile::Realistic,
            seed: 1,
            sample_secs: 10,
            minute_secs: 60.0,
            start_time: None,
            clock_may_run_ahead: false,
            limits: ClientLimits {
                max_clients: 256,
                idle_timeout: Some(Duration::from_secs(300)),
                request_deadline: Some(modbus_edge::DEFAULT_REQUEST_DEADLINE),
            },
            layout: None,
            iec61850: None,
            keys: keys::RelayKeys::default(),
        }
    }
}

/// Why a simulator could not start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum SimError {
    /// `--sample-secs` does not divide a minute into 1 to 6 samples.
    SampleSecs(u16),
    /// `--minute-secs` is below the 0.2 s floor, or not a number.
    MinuteSecs(f64),
    /// `--relays` is 0, or the unit ids would pass 247 (the last valid Modbus unit id).
    Units {
        /// First unit id.
        first: u8,
        /// Number of relays.
        relays: u8,
    },
    /// `--max-clients` is 0.
    MaxClients,
    /// A name does not fit its field of the register map (it would be cut).
    NameTooLong {
        /// The flag.
        flag: &'static str,
        /// Its length in bytes (with `{unit}` replaced by the widest unit id).
        len: usize,
        /// The field's size.
        max: usize,
    },
    /// The listen address could not be bound.
    Bind(SocketAddr, io::Error),
    /// The server failed while running.
    Serve(io::Error),
    /// The IEC 61850 (MMS) server did not start.
    Mms(mms::MmsError),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::SampleSecs(s) => write!(
                f,
                "--sample-secs {s} is not allowed: use 10, 12, 15, 20, 30 or 60 (a record holds 1 to 6 samples)"
            ),
            SimError::MinuteSecs(s) => {
                write!(f, "--minute-secs {s} is not allowed: use a number of seconds >= 0.2")
            }
            SimError::Units { first, relays } => write!(
                f,
                "--unit-id {first} with --relays {relays} is not allowed: unit ids must stay within 1..=247"
            ),
            SimError::MaxClients => f.write_str("--max-clients must be at least 1"),
            SimError::NameTooLong { flag, len, max } => write!(
                f,
                "{flag} is {len} bytes of UTF-8; the register map holds at most {max}"
            ),
            SimError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            SimError::Serve(e) => write!(f, "Modbus server failed: {e}"),
            SimError::Mms(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Bind(_, e) | SimError::Serve(e) => Some(e),
            SimError::Mms(e) => Some(e),
            _ => None,
        }
    }
}

impl Config {
    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<(), SimError> {
        if !matches!(self.sample_secs, 10 | 12 | 15 | 20 | 30 | 60) {
            return Err(SimError::SampleSecs(self.sample_secs));
        }
        if !(self.minute_secs >= 0.2 && self.minute_secs.is_finite()) {
            return Err(SimError::MinuteSecs(self.minute_secs));
        }
        let last = u16::from(self.unit_id) + u16::from(self.relays);
        if self.relays == 0 || self.unit_id == 0 || last - 1 > u16::from(relay_core::MAX_UNIT_ID) {
            return Err(SimError::Units {
                first: self.unit_id,
                relays: self.relays,
            });
        }
        if self.limits.max_clients == 0 {
            return Err(SimError::MaxClients);
        }
        let widest = (self.unit_id..=self.unit_id.saturating_add(self.relays - 1))
            .map(|u| self.relay_name.replace("{unit}", &u.to_string()).len())
            .max()
            .unwrap_or(0);
        if widest > relay_core::Identity::NAME_MAX {
            return Err(SimError::NameTooLong {
                flag: "--relay-name",
                len: widest,
                max: relay_core::Identity::NAME_MAX,
            });
        }
        if self.substation.len() > relay_core::Identity::SUBSTATION_MAX {
            return Err(SimError::NameTooLong {
                flag: "--substation",
                len: self.substation.len(),
                max: relay_core::Identity::SUBSTATION_MAX,
            });
        }
        Ok(())
    }

    /// The relays this configuration describes, before any sample (also what
    /// `--write-icd` describes).
    #[must_use]
    pub fn bank(&self) -> Bank {
        let spec = BankSpec {
            first_unit: self.unit_id,
            relays: self.relays,
            first_relay_id: self.relay_id,
            name: self.relay_name.clone(),
            substation: self.substation.clone(),
            samples_per_record: self.samples_per_record(),
            layout: self.layout.clone(),
        };
        Bank::new(&spec, SignalModel::new(self.seed, self.profile)).with_keys(self.keys.clone())
    }

    /// Samples in each minute record.
    #[must_use]
    pub fn samples_per_record(&self) -> u16 {
        60 / self.sample_secs.max(1)
    }
}

/// A simulator bound to its address, ready to run.
#[derive(Debug)]
pub struct Simulator {
    listener: TcpListener,
    bank: Arc<Bank>,
    clock: RelayClock,
    config: Config,
    mms: Option<mms::MmsServer>,
}

impl Simulator {
    /// Validates `config` and binds its listen address (port 0 picks a free port).
    pub async fn bind(config: Config) -> Result<Self, SimError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| SimError::Bind(config.listen, e))?;
        let bank = Arc::new(config.bank());
        let start_ms = config.start_time.map_or_else(
            || RelayClock::system_now_ms().saturating_sub(clock::headroom_ms(config.minute_secs)),
            |s| s.saturating_mul(1000),
        );
        let clock = if config.clock_may_run_ahead {
            RelayClock::new(start_ms, config.minute_secs)
        } else {
            RelayClock::capped(start_ms, config.minute_secs)
        };
        let mms = match config.iec61850 {
            Some(addr) => Some(
                mms::MmsServer::start(addr, &bank, &config.substation)
                    .await
                    .map_err(SimError::Mms)?,
            ),
            None => None,
        };
        Ok(Simulator {
            listener,
            bank,
            clock,
            config,
            mms,
        })
    }

    /// A handle on the IEC 61850 model being served (to mark values invalid), if any.
    #[must_use]
    pub fn mms_control(&self) -> Option<mms::MmsControl> {
        self.mms.as_ref().map(mms::MmsServer::control)
    }

    /// The address the IEC 61850 (MMS) server bound, if it serves one.
    #[must_use]
    pub fn mms_addr(&self) -> Option<SocketAddr> {
        self.mms.as_ref().map(|m| m.addr)
    }

    /// The ICD (SCL) text of the IEC 61850 model, with the MMS port bound (102 when MMS is
    /// not served).
    #[must_use]
    pub fn icd(&self) -> String {
        let port = self.mms_addr().map_or(102, |a| a.port());
        mms::icd_of(&self.bank, &self.config.substation, port)
    }

    /// The address actually bound.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The relays, for callers that run the simulator in-process.
    #[must_use]
    pub fn bank(&self) -> Arc<Bank> {
        Arc::clone(&self.bank)
    }

    /// The relay clock.
    #[must_use]
    pub fn clock(&self) -> RelayClock {
        self.clock
    }

    /// Serves until `shutdown` completes, then closes every connection.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), SimError> {
        // The current sample is in the map before the first request can be answered.
        let step_ms = u64::from(self.config.sample_secs.max(1)) * 1000;
        self.bank
            .publish_sample(self.clock.now_ms() / step_ms * step_ms / 1000);
        let ticker = tokio::spawn(server::tick(
            Arc::clone(&self.bank),
            self.clock,
            self.config.sample_secs,
        ));
        let result = server::serve(self.listener, self.bank, self.config.limits, shutdown).await;
        ticker.abort();
        if let Some(m) = self.mms {
            m.stop().await;
        }
        result.map_err(SimError::Serve)
    }
}
