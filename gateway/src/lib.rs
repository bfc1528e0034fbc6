//! `gateway`: Modbus TCP clients in front, one Modbus RTU serial bus behind, like mbusd.
//!
//! - [`bus`]: the serial side, one transaction at a time, with the RTU silent interval,
//!   timeouts (0x0B), retries, an unreachable bus reported as 0x0A, and identical concurrent
//!   reads coalesced into one transaction.
//! - The TCP side (this module): a tokio-modbus server that routes each request by its unit
//!   id onto the bus, with a bound on client connections.
//! - Clock sync: the firmware relay has no battery-backed clock, so the gateway writes the
//!   host's UTC time into each relay's clock block at start and every hour.
#![forbid(unsafe_code)]

pub mod bus;
pub mod mms;
pub mod recorder;
pub mod signer;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relay_core::registers::{encode_clock, CLOCK};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tracing::{debug, info, warn};

pub use bus::{Bus, BusConfig, BusStats, Endpoint, Line, Parity};

/// Everything a gateway needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// Modbus TCP address to serve on.
    pub listen: SocketAddr,
    /// The serial bus, if there is one (`None`: only devices reached over TCP are
    /// recorded, and other unit ids get exception 0x0A).
    pub bus: Option<BusConfig>,
    /// TCP connections served at once.
    pub max_clients: usize,
    /// Close a connection that sends nothing for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A request must arrive whole within this long of its first byte (`None`: no limit).
    pub request_deadline: Option<Duration>,
    /// Pass clients' writes to the relay clock block (400–403) to the bus. Off by default:
    /// only the gateway's own clock sync writes the clock.
    pub allow_clock_writes: bool,
    /// Units whose clock the gateway sets at start and every `sync_every` (empty: none).
    pub sync_units: Vec<u8>,
    /// Period of the clock sync.
    pub sync_every: Duration,
    /// Devices recorded through a profile, each served under its own unit id.
    pub devices: Vec<recorder::Device>,
    /// Seconds between the recorder's samples (10, 12, 15, 20, 30 or 60).
    pub sample_secs: u16,
    /// The recorder's clock (`None`: the host's UTC clock; tests compress it).
    pub clock: Option<recorder::Clock>,
}

impl Default for Config {
    /// The documented default of each `gateway` flag, with no bus and no device: a
    /// configuration sets at least one of them.
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5010)),
            bus: None,
            max_clients: 64,
            idle_timeout: Some(Duration::from_secs(300)),
            request_deadline: Some(Duration::from_millis(5000)),
            allow_clock_writes: false,
            sync_units: Vec::new(),
            sync_every: Duration::from_secs(3600),
            devices: Vec::new(),
            sample_secs: 10,
            clock: None,
        }
    }
}

/// Why the gateway could not start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum GatewayError {
    /// The listen address could not be bound.
    Bind(SocketAddr, io::Error),
    /// The server failed.
    Serve(io::Error),
    /// The devices or flags do not go together.
    Config(String),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            GatewayError::Serve(e) => write!(f, "Modbus TCP server failed: {e}"),
            GatewayError::Config(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for GatewayError {}

#[derive(Clone, Debug)]
struct Service {
    bus: Option<Bus>,
    allow_clock_writes: bool,
    recordings: Arc<std::collections::HashMap<u8, Arc<recorder::Recording>>>,
}

/// Answers a request for a recorded device from its register image: FC03 and FC04 read
/// the same map, everything else gets 0x01 (as relay-sim answers).
fn answer_recording(
    rec: &recorder::Recording,
    request: &Request<'_>,
) -> Result<Option<Response>, ExceptionCode> {
    use relay_core::registers::Exception as E;
    let map = |e: E| match e {
        E::IllegalFunction => ExceptionCode::IllegalFunction,
        E::IllegalDataAddress => ExceptionCode::IllegalDataAddress,
        E::IllegalDataValue => ExceptionCode::IllegalDataValue,
        E::ServerDeviceFailure => ExceptionCode::ServerDeviceFailure,
        E::GatewayPathUnavailable => ExceptionCode::GatewayPathUnavailable,
        E::GatewayTargetFailedToRespond => ExceptionCode::GatewayTargetDevice,
    };
    match *request {
        Request::ReadHoldingRegisters(a, q) => Ok(Some(Response::ReadHoldingRegisters(
            rec.read(a, q).map_err(map)?,
        ))),
        Request::ReadInputRegisters(a, q) => Ok(Some(Response::ReadInputRegisters(
            rec.read(a, q).map_err(map)?,
        ))),
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

/// True if `request` writes any register of the relay clock block (400–403).
fn writes_clock(request: &Request<'_>) -> bool {
    let hits = |start: u16, len: usize| {
        let end = u32::from(start) + len as u32;
        u32::from(start) < u32::from(CLOCK.start) + u32::from(CLOCK.len)
            && end > u32::from(CLOCK.start)
    };
    match request {
        Request::WriteSingleRegister(a, _) | Request::MaskWriteRegister(a, _, _) => hits(*a, 1),
        Request::WriteMultipleRegisters(a, words) => hits(*a, words.len()),
        Request::ReadWriteMultipleRegisters(_, _, a, words) => hits(*a, words.len()),
        _ => false,
    }
}

impl tokio_modbus::server::Service for Service {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        if let Some(rec) = self.recordings.get(&req.slave) {
            return Box::pin(std::future::ready(answer_recording(rec, &req.request)));
        }
        let bus = self.bus.clone();
        let allow_clock_writes = self.allow_clock_writes;
        Box::pin(async move {
            if req.slave == 0 {
                // A broadcast has no answer to wait for; we do not put broadcasts on the bus.
                return Ok(None);
            }
            let Some(bus) = bus else {
                // No serial bus, and no recorded device behind this unit.
                return Err(ExceptionCode::GatewayPathUnavailable);
            };
            if !allow_clock_writes && writes_clock(&req.request) {
                // The relay's clock decides every record's minute: only the gateway's own
                // sync (bounded by the relay's slew rule) may write it.
                bus.stats()
                    .clock_writes_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    unit = req.slave,
                    "refused a client's write to the relay clock (see --allow-clock-writes)"
                );
                return Err(ExceptionCode::IllegalDataAddress);
            }
            bus.call(req.slave, req.request).await.map(Some)
        })
    }
}

/// A gateway bound to its address.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    bus: Option<Bus>,
    recordings: Arc<std::collections::HashMap<u8, Arc<recorder::Recording>>>,
    config: Config,
}

impl Gateway {
    /// Binds the listen address and starts the bus task (the line opens on first use).
    pub async fn bind(config: Config) -> Result<Self, GatewayError> {
        if !matches!(config.sample_secs, 10 | 12 | 15 | 20 | 30 | 60) {
            return Err(GatewayError::Config(format!(
                "--sample-secs {} is not allowed: use 10, 12, 15, 20, 30 or 60 (1 to 6 samples a minute)",
                config.sample_secs
            )));
        }
        let mut recordings = std::collections::HashMap::new();
        for d in &config.devices {
            if d.unit == 0 || d.unit > relay_core::MAX_UNIT_ID {
                return Err(GatewayError::Config(format!(
                    "--device unit={}: use 1 to 247",
                    d.unit
                )));
            }
            if d.upstream == recorder::Upstream::Bus && config.bus.is_none() {
                return Err(GatewayError::Config(format!(
                    "--device unit={}: on the serial bus, but there is no --serial (give upstream=tcp://HOST:PORT for a Modbus TCP device)",
                    d.unit
                )));
            }
            let rec = Arc::new(recorder::Recording::new(d.clone(), config.sample_secs));
            if recordings.insert(d.unit, rec).is_some() {
                return Err(GatewayError::Config(format!(
                    "--device unit={}: two devices under one unit id",
                    d.unit
                )));
            }
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| GatewayError::Bind(config.listen, e))?;
        let bus = config.bus.clone().map(Bus::start);
        Ok(Gateway {
            listener,
            bus,
            recordings: Arc::new(recordings),
            config,
        })
    }

    /// The recorded devices, by the unit id they are served under.
    #[must_use]
    pub fn recordings(&self) -> Arc<std::collections::HashMap<u8, Arc<recorder::Recording>>> {
        Arc::clone(&self.recordings)
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The bus counters (zero without a bus).
    #[must_use]
    pub fn stats(&self) -> Arc<BusStats> {
        self.bus
            .as_ref()
            .map_or_else(|| Arc::new(BusStats::default()), Bus::stats)
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), GatewayError> {
        let sync_units: Vec<u8> = self
            .config
            .sync_units
            .iter()
            .copied()
            .filter(|u| !self.recordings.contains_key(u))
            .collect();
        let sync = self
            .bus
            .clone()
            .filter(|_| !sync_units.is_empty())
            .map(|bus| tokio::spawn(sync_clocks(bus, sync_units, self.config.sync_every)));
        let clock = self.config.clock.unwrap_or_else(recorder::Clock::system);
        let recorders: Vec<_> = self
            .recordings
            .values()
            .map(|rec| {
                tokio::spawn(recorder::record(
                    Arc::clone(rec),
                    self.bus.clone(),
                    self.config.sample_secs,
                    clock,
                ))
            })
            .collect();
        let slots = modbus_edge::Slots::new(modbus_edge::ClientLimits {
            max_clients: self.config.max_clients.max(1),
            idle_timeout: self.config.idle_timeout,
            request_deadline: self.config.request_deadline,
        });
        let service = Service {
            bus: self.bus,
            allow_clock_writes: self.config.allow_clock_writes,
            recordings: self.recordings,
        };
        let on_connected = move |stream: TcpStream, peer: SocketAddr| {
            let admitted = slots
                .admit(stream, peer)
                .map(|conn| (service.clone(), conn));
            async move { Ok(admitted) }
        };
        let result = Server::new(self.listener)
            .serve_until(
                &on_connected,
                |e| debug!("client connection closed: {e}"),
                shutdown,
            )
            .await;
        if let Some(task) = sync {
            task.abort();
        }
        for task in recorders {
            task.abort();
        }
        result.map(|_| ()).map_err(GatewayError::Serve)
    }
}

/// Writes the host's UTC time into each unit's clock block now and every `every`; a unit
/// that fails is retried every 10 s until it takes the time.
async fn sync_clocks(bus: Bus, units: Vec<u8>, every: Duration) {
    loop {
        let mut all_ok = true;
        for &unit in &units {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let words = encode_clock(now).to_vec();
            match bus
                .call(
                    unit,
                    Request::WriteMultipleRegisters(CLOCK.start, words.into()),
                )
                .await
            {
                Ok(_) => info!(unit, unix_secs = now, "set the relay clock"),
                Err(e) => {
                    all_ok = false;
                    warn!(unit, "cannot set the relay clock: {e}; retrying in 10 s");
                }
            }
        }
        tokio::time::sleep(if all_ok {
            every
        } else {
            Duration::from_secs(10)
        })
        .await;
    }
}
