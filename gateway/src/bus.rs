//! The serial side: one RTU bus, one transaction at a time.
//!
//! A single task owns the line. Requests queue on a channel; before each transaction the
//! task takes everything queued and answers identical reads (same unit, function, address,
//! quantity) with one bus transaction, so that many nodes polling in the same second cost
//! the bus one read. Between transactions it keeps the RTU silent interval. A slave that does
//! not answer within the timeout is retried, then reported with 0x0B; a line that cannot be
//! opened (or breaks) is reported with 0x0A and reopened on the next request.
//!
//! The line is opened at start, and reopened only on an I/O error: a slave that misses a
//! reply is not a broken line (and reopening a pty or a serial adapter can itself lose the
//! next requests: QEMU, for one, notices a reopened pty only up to a second later). Instead,
//! whatever input is waiting when a request is about to be sent (a late answer to a request
//! given up on, line noise) is read and thrown away first ([`Drained`]), so it is never taken
//! for the new request's answer. Timeouts of the first two transactions on a newly opened
//! line do not count towards taking a unit for down.
//!
//! Queue discipline: a request whose client has stopped waiting (its deadline passed, or
//! its call was dropped) is dropped unsent. A unit that has not answered two transactions
//! in a row is *down*: its requests get 0x0B at once, without the bus, for 2 s, doubling up
//! to 30 s while it stays silent; then one request probes it. So a dead unit costs the
//! others a few timeouts, not one per queued request. Each client connection has at most
//! one request in flight (the server answers a connection's requests in order), so a client
//! can queue no more than that, and the queue is served in arrival order.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_modbus::client::{rtu, Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};
use tracing::{debug, info, warn};

/// Where the RTU bus is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A serial device, e.g. `/dev/ttyUSB0` (or a pty).
    Device {
        /// Device path.
        path: String,
        /// Line settings.
        line: Line,
    },
    /// Serial bytes tunnelled over TCP (`tcp://host:port`): QEMU's `-serial tcp:…`, or a
    /// serial-to-Ethernet converter in raw mode.
    Tcp(String),
}

impl Endpoint {
    /// Parses `tcp://host:port` or a device path.
    #[must_use]
    pub fn parse(s: &str, line: Line) -> Self {
        match s.strip_prefix("tcp://") {
            Some(addr) => Endpoint::Tcp(addr.to_owned()),
            None => Endpoint::Device {
                path: s.to_owned(),
                line,
            },
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Device { path, .. } => f.write_str(path),
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// Parity of the serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Serial line settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// Bits per second.
    pub baud: u32,
    /// Parity.
    pub parity: Parity,
    /// Stop bits: 1 or 2.
    pub stop_bits: u8,
}

impl Line {
    /// The RTU silent interval: 3.5 characters of 11 bits, and at least 1.75 ms (the fixed
    /// value the specification gives above 19 200 baud).
    #[must_use]
    pub fn silent_interval(&self) -> Duration {
        let char_us = 11_000_000 / u64::from(self.baud.max(1));
        Duration::from_micros((char_us * 7 / 2).max(1750))
    }
}

/// How the bus task behaves.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// The bus.
    pub endpoint: Endpoint,
    /// How long a slave has to answer.
    pub timeout: Duration,
    /// Extra tries after a timeout or a broken line.
    pub retries: u32,
    /// Quiet time between two transactions.
    pub silent_interval: Duration,
}

/// Counters of the bus, for `/metrics`-style reporting and tests.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Requests received from clients.
    pub requests: AtomicU64,
    /// Transactions sent on the bus (retries included).
    pub transactions: AtomicU64,
    /// Requests answered by another request's transaction.
    pub coalesced: AtomicU64,
    /// Transactions that got no answer in time.
    pub timeouts: AtomicU64,
    /// Times the line had to be (re)opened.
    pub opens: AtomicU64,
    /// Clients' writes to the relay clock refused (see `Config::allow_clock_writes`).
    pub clock_writes_refused: AtomicU64,
    /// Requests dropped unsent because their client had stopped waiting.
    pub stale_dropped: AtomicU64,
    /// Requests answered 0x0B at once because their unit is down.
    pub down_answers: AtomicU64,
    /// Stale input bytes thrown away before a request was sent (late answers, noise).
    pub stale_bytes: AtomicU64,
}

type Reply = Result<Response, ExceptionCode>;

struct Job {
    unit: u8,
    request: Request<'static>,
    reply: oneshot::Sender<Reply>,
    /// After this the client has stopped waiting: the job never reaches the bus.
    deadline: Instant,
}

/// Transactions that found no answer in a row before a unit is taken for down.
const DOWN_AFTER: u32 = 2;
/// The first transactions on a newly opened line: their timeouts do not count towards
/// taking a unit for down, since the far end may not be listening yet (a pty QEMU has not
/// noticed, a converter still starting). Few, so that a unit that really is dead is still
/// found within a few timeouts.
const WARM_UP_TRANSACTIONS: u32 = 2;
/// First and longest time a down unit is answered 0x0B without touching the bus.
const DOWN_FIRST: Duration = Duration::from_secs(2);
const DOWN_MAX: Duration = Duration::from_secs(30);

/// What the bus knows of one unit's answers.
#[derive(Clone, Copy, Debug, Default)]
struct UnitHealth {
    timeouts_in_a_row: u32,
    down_until: Option<Instant>,
    backoff: Duration,
}

/// A handle to send requests to the bus task.
#[derive(Clone, Debug)]
pub struct Bus {
    jobs: mpsc::Sender<Job>,
    stats: Arc<BusStats>,
    /// Longest a request can take: every try's timeout plus the queue ahead of it.
    deadline: Duration,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Job(unit {}, {:?})", self.unit, self.request)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

/// The line, with one addition: before the first byte of each request frame is written,
/// every input byte already waiting is read and thrown away (counted in
/// [`BusStats::stale_bytes`]). tokio-modbus clears its own buffer before a request; this
/// clears what sits below it, so that a late answer to an earlier request cannot pass for
/// the answer to this one, and the line need not be reopened after a timeout.
#[derive(Debug)]
struct Drained {
    inner: Pin<Box<dyn Io>>,
    /// A frame is being written: do not drain in the middle of it.
    mid_frame: bool,
    stats: Arc<BusStats>,
}

impl AsyncRead for Drained {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for Drained {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if !self.mid_frame {
            let mut scratch = [0u8; 256];
            // Bounded: a line that streams without end must not hold the bus forever.
            for _ in 0..64 {
                let mut rb = tokio::io::ReadBuf::new(&mut scratch);
                match self.inner.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                        let n = rb.filled().len() as u64;
                        self.stats.stale_bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    // End of stream or an error: the write below reports it.
                    Poll::Ready(_) | Poll::Pending => break,
                }
            }
            self.mid_frame = true;
        }
        self.inner.as_mut().poll_write(cx, data)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let done = self.inner.as_mut().poll_flush(cx);
        if done.is_ready() {
            self.mid_frame = false;
        }
        done
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
}

impl Bus {
    /// Starts the bus task; it ends when every handle is dropped.
    #[must_use]
    pub fn start(config: BusConfig) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let stats = Arc::new(BusStats::default());
        let deadline = config.timeout * (config.retries + 1) * 8 + Duration::from_secs(2);
        tokio::spawn(run(config, rx, Arc::clone(&stats)));
        Bus {
            jobs: tx,
            stats,
            deadline,
        }
    }

    /// The bus counters.
    #[must_use]
    pub fn stats(&self) -> Arc<BusStats> {
        Arc::clone(&self.stats)
    }

    /// Sends `request` to `unit` and waits for the answer. A slave's exception comes back as
    /// is; 0x0B if it does not answer, 0x0A if the bus cannot be reached.
    pub async fn call(&self, unit: u8, request: Request<'static>) -> Reply {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            unit,
            request,
            reply,
            deadline: Instant::now() + self.deadline,
        };
        if self.jobs.send(job).await.is_err() {
            return Err(ExceptionCode::GatewayPathUnavailable);
        }
        match timeout(self.deadline, answer).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(ExceptionCode::GatewayPathUnavailable),
            Err(_) => Err(ExceptionCode::GatewayTargetDevice),
        }
    }
}

/// Identical reads share one transaction.
fn read_key(unit: u8, r: &Request<'_>) -> Option<(u8, u8, u16, u16)> {
    match *r {
        Request::ReadInputRegisters(a, q) => Some((unit, 4, a, q)),
        Request::ReadHoldingRegisters(a, q) => Some((unit, 3, a, q)),
        Request::ReadCoils(a, q) => Some((unit, 1, a, q)),
        Request::ReadDiscreteInputs(a, q) => Some((unit, 2, a, q)),
        _ => None,
    }
}

async fn open(endpoint: &Endpoint) -> std::io::Result<Pin<Box<dyn Io>>> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::pin(s))
        }
        Endpoint::Device { path, line } => {
            use tokio_serial::SerialPortBuilderExt;
            let port = tokio_serial::new(path, line.baud)
                .parity(match line.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .stop_bits(if line.stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                })
                .data_bits(tokio_serial::DataBits::Eight)
                .open_native_async()
                .map_err(std::io::Error::other)?;
            Ok(Box::pin(port))
        }
    }
}

struct LineState {
    ctx: Option<Context>,
    quiet_until: Instant,
    /// Transactions left before timeouts count ([`WARM_UP_TRANSACTIONS`]).
    warm_up_left: u32,
}

/// Opens the line (with [`Drained`] below the RTU client), or says why not.
async fn open_line(
    config: &BusConfig,
    line: &mut LineState,
    stats: &Arc<BusStats>,
) -> Result<(), ExceptionCode> {
    stats.opens.fetch_add(1, Ordering::Relaxed);
    match timeout(
        config.timeout.max(Duration::from_secs(1)),
        open(&config.endpoint),
    )
    .await
    {
        Ok(Ok(io)) => {
            info!(bus = %config.endpoint, "serial line open");
            let drained = Drained {
                inner: io,
                mid_frame: false,
                stats: Arc::clone(stats),
            };
            line.ctx = Some(rtu::attach(drained));
            line.warm_up_left = WARM_UP_TRANSACTIONS;
            Ok(())
        }
        Ok(Err(e)) => {
            warn!(bus = %config.endpoint, "cannot open the serial line: {e}");
            Err(ExceptionCode::GatewayPathUnavailable)
        }
        Err(_) => {
            warn!(bus = %config.endpoint, "opening the serial line timed out");
            Err(ExceptionCode::GatewayPathUnavailable)
        }
    }
}

async fn run(config: BusConfig, mut jobs: mpsc::Receiver<Job>, stats: Arc<BusStats>) {
    let mut line = LineState {
        ctx: None,
        quiet_until: Instant::now(),
        warm_up_left: 0,
    };
    // Open at start, not at the first request: the far end gets time to notice us before
    // anything is asked. A failure here is tried again at the first request.
    let _ = open_line(&config, &mut line, &stats).await;
    let mut units: std::collections::HashMap<u8, UnitHealth> = std::collections::HashMap::new();
    while let Some(first) = jobs.recv().await {
        // Everything queued now is concurrent with `first`: group identical reads.
        let mut batch = vec![first];
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        let now = Instant::now();
        let mut groups: Vec<(u8, Request<'static>, Vec<oneshot::Sender<Reply>>)> = Vec::new();
        for job in batch {
            // A client that stopped waiting (its call timed out, or it went away and its
            // call was dropped) costs the bus nothing.
            if job.reply.is_closed() || job.deadline <= now {
                stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // A unit that stopped answering is answered 0x0B at once until its window ends.
            if units
                .get(&job.unit)
                .and_then(|u| u.down_until)
                .is_some_and(|t| now < t)
            {
                stats.down_answers.fetch_add(1, Ordering::Relaxed);
                let _ = job.reply.send(Err(ExceptionCode::GatewayTargetDevice));
                continue;
            }
            let key = read_key(job.unit, &job.request);
            let same = key.and_then(|k| {
                groups
                    .iter_mut()
                    .find(|(u, r, _)| read_key(*u, r) == Some(k))
            });
            match same {
                Some((_, _, replies)) => {
                    stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    replies.push(job.reply);
                }
                None => groups.push((job.unit, job.request, vec![job.reply])),
            }
        }
        for (unit, request, replies) in groups {
            let health = units.entry(unit).or_default();
            if health.down_until.is_some_and(|t| Instant::now() < t) {
                stats
                    .down_answers
                    .fetch_add(replies.len() as u64, Ordering::Relaxed);
                for r in replies {
                    let _ = r.send(Err(ExceptionCode::GatewayTargetDevice));
                }
                continue;
            }
            let timeouts_before = stats.timeouts.load(Ordering::Relaxed);
            let warming_up = line.warm_up_left > 0;
            line.warm_up_left = line.warm_up_left.saturating_sub(1);
            let reply = transact(&config, &mut line, &stats, unit, request).await;
            let timed_out = reply == Err(ExceptionCode::GatewayTargetDevice)
                && stats.timeouts.load(Ordering::Relaxed) > timeouts_before;
            if timed_out && warming_up {
                debug!(bus = %config.endpoint, unit, "no answer while the line warms up: not counted");
            } else if timed_out {
                health.timeouts_in_a_row += 1;
                if health.timeouts_in_a_row >= DOWN_AFTER {
                    health.backoff = if health.backoff.is_zero() {
                        DOWN_FIRST
                    } else {
                        (health.backoff * 2).min(DOWN_MAX)
                    };
                    health.down_until = Some(Instant::now() + health.backoff);
                    warn!(bus = %config.endpoint, unit, backoff = ?health.backoff, "unit does not answer: answering 0x0B at once for a while");
                }
            } else {
                if health.down_until.is_some() {
                    info!(bus = %config.endpoint, unit, "unit answers again");
                }
                *health = UnitHealth::default();
            }
            for r in replies {
                let _ = r.send(reply.clone());
            }
        }
    }
}

/// Waits until `until`. tokio's timer ticks in whole milliseconds, so a 1.75 ms RTU gap
/// would cost 2–3 ms; a short wait sleeps on a blocking thread instead, to within tens of
/// microseconds, without spinning.
async fn quiet(until: Instant) {
    let now = Instant::now();
    if until <= now {
        return;
    }
    let left = until - now;
    if left < Duration::from_millis(5) {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    } else {
        sleep_until(until).await;
    }
}

async fn transact(
    config: &BusConfig,
    line: &mut LineState,
    stats: &Arc<BusStats>,
    unit: u8,
    request: Request<'static>,
) -> Reply {
    let mut last = ExceptionCode::GatewayPathUnavailable;
    for attempt in 0..=config.retries {
        if line.ctx.is_none() {
            open_line(config, line, stats).await?;
        }
        let Some(ctx) = &mut line.ctx else {
            return Err(ExceptionCode::GatewayPathUnavailable);
        };
        quiet(line.quiet_until).await;
        ctx.set_slave(Slave(unit));
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        let result = timeout(config.timeout, ctx.call(request.clone())).await;
        line.quiet_until = Instant::now() + config.silent_interval;
        match result {
            Ok(Ok(Ok(response))) => return Ok(response),
            Ok(Ok(Err(exception))) => return Err(exception),
            // tokio-modbus sends a function it does not know as Request::Custom and then
            // takes the slave's exception to it for a mismatch (it names the exception's
            // function with its own variant, FC07 as ReadExceptionStatus, say): the same
            // code is the slave's answer, and it passes through unchanged.
            Ok(Err(tokio_modbus::Error::Protocol(
                tokio_modbus::ProtocolError::FunctionCodeMismatch {
                    request: asked,
                    result: Err(exception),
                },
            ))) if exception.function.value() == asked.value() => {
                return Err(exception.exception);
            }
            Ok(Err(e)) => {
                debug!(bus = %config.endpoint, unit, attempt, "bus error: {e}");
                last = if matches!(e, tokio_modbus::Error::Transport(_)) {
                    // A broken line: reopen it.
                    line.ctx = None;
                    ExceptionCode::GatewayPathUnavailable
                } else {
                    // A garbled answer: the line is fine; what is left of the answer is
                    // drained before the next request.
                    ExceptionCode::GatewayTargetDevice
                };
            }
            Err(_) => {
                stats.timeouts.fetch_add(1, Ordering::Relaxed);
                debug!(bus = %config.endpoint, unit, attempt, "no answer in {:?}", config.timeout);
                // The line stays open: a late answer is drained before the next request.
                last = ExceptionCode::GatewayTargetDevice;
            }
        }
    }
    Err(last)
}
