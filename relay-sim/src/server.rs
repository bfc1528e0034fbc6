//! The Modbus TCP side: a tokio-modbus service over the [`Bank`], a connection guard
//! (client bound and idle timeout), and the ticker that moves the relays through time.

use std::future::{self, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use relay_core::registers::Exception;
use relay_core::Minute;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, Sleep};
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tracing::{debug, info, warn};

use crate::bank::{next_seq, Bank};
use crate::clock::RelayClock;

/// Answers Modbus requests from the bank's register images.
#[derive(Debug, Clone)]
struct RelayService {
    bank: Arc<Bank>,
}

impl tokio_modbus::server::Service for RelayService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        future::ready(answer(&self.bank, req.slave, &req.request))
    }
}

/// The whole request policy, in one place (documented in `docs/registers.md`):
/// unit 0 (broadcast) is never answered; an unknown unit gets 0x0B; FC03 and FC04 read the
/// same image; every other function, writes included, gets 0x01.
fn answer(bank: &Bank, unit: u8, request: &Request<'_>) -> Result<Option<Response>, ExceptionCode> {
    if unit == 0 {
        return Ok(None);
    }
    let relay = bank.relay(unit).ok_or(ExceptionCode::GatewayTargetDevice)?;
    let response = match *request {
        Request::ReadInputRegisters(address, quantity) => {
            Response::ReadInputRegisters(relay.read(address, quantity).map_err(to_modbus)?)
        }
        Request::ReadHoldingRegisters(address, quantity) => {
            Response::ReadHoldingRegisters(relay.read(address, quantity).map_err(to_modbus)?)
        }
        _ => return Err(ExceptionCode::IllegalFunction),
    };
    Ok(Some(response))
}

fn to_modbus(e: Exception) -> ExceptionCode {
    match e {
        Exception::IllegalFunction => ExceptionCode::IllegalFunction,
        Exception::IllegalDataAddress => ExceptionCode::IllegalDataAddress,
        Exception::IllegalDataValue => ExceptionCode::IllegalDataValue,
        Exception::ServerDeviceFailure => ExceptionCode::ServerDeviceFailure,
        Exception::GatewayPathUnavailable => ExceptionCode::GatewayPathUnavailable,
        Exception::GatewayTargetFailedToRespond => ExceptionCode::GatewayTargetDevice,
    }
}

/// A client connection: holds its slot among the allowed clients for as long as it lives,
/// and fails its read when the client has sent nothing for the idle timeout, which closes
/// the connection and frees the slot.
struct Conn {
    stream: TcpStream,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if let Some((timeout, sleep)) = &mut this.idle {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *timeout);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = match &mut this.idle {
                    Some((_, sleep)) => sleep.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client idle for too long",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Limits on client connections.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Connections served at once; more are accepted and closed at once.
    pub max_clients: usize,
    /// A connection that sends nothing for this long is closed; `None` never closes.
    pub idle_timeout: Option<Duration>,
}

/// Serves Modbus TCP on `listener` until `shutdown` completes.
///
/// Each connection runs on its own task: a client that sends garbage is disconnected, one
/// that stalls mid-frame only holds its own slot until the idle timeout, one that vanishes
/// is dropped; none of them delays the others.
pub(crate) async fn serve(
    listener: TcpListener,
    bank: Arc<Bank>,
    limits: ClientLimits,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_clients));
    let service = RelayService { bank };
    let on_connected = move |stream: TcpStream, peer: SocketAddr| {
        let slot = Arc::clone(&slots).try_acquire_owned();
        let service = service.clone();
        async move {
            let Ok(slot) = slot else {
                warn!(%peer, max = limits.max_clients, "refusing client: too many connections");
                return Ok(None);
            };
            if let Err(e) = stream.set_nodelay(true) {
                debug!(%peer, "cannot set TCP_NODELAY: {e}");
            }
            debug!(%peer, "client connected");
            let idle = limits
                .idle_timeout
                .map(|t| (t, Box::pin(tokio::time::sleep(t))));
            Ok(Some((
                service,
                Conn {
                    stream,
                    idle,
                    _slot: slot,
                },
            )))
        }
    };
    let on_error = |e: io::Error| debug!("client connection closed: {e}");
    Server::new(listener)
        .serve_until(&on_connected, on_error, shutdown)
        .await
        .map(|_| ())
}

/// Moves the relays through time: publishes a sample at every sample instant of the relay
/// clock and closes a minute record at every minute boundary. Runs until cancelled.
pub(crate) async fn tick(bank: Arc<Bank>, clock: RelayClock, sample_secs: u16) {
    let step_ms = u64::from(sample_secs) * 1000;
    let mut seq = 0u16;
    let mut last_closed: Option<Minute> = None;
    // The current sample is visible at once; the first record closes at the next minute.
    bank.publish_sample(clock.now_ms() / step_ms * step_ms / 1000);
    loop {
        let slot_ms = (clock.now_ms() / step_ms + 1) * step_ms;
        sleep_until(clock.instant_at(slot_ms).into()).await;
        let t = slot_ms / 1000;
        bank.publish_sample(t);
        let closed = Minute::containing(t.saturating_sub(60));
        let first_ever = last_closed.is_none() && t % 60 != 0;
        if first_ever || last_closed == Some(closed) {
            continue;
        }
        seq = next_seq(seq);
        for record in bank.close_minute(closed, seq) {
            let p_kw = record
                .samples
                .iter()
                .map(|s| f64::from(s.p.to_f32()))
                .sum::<f64>()
                / record.samples.len().max(1) as f64;
            info!(
                relay = %record.relay,
                minute = %record.minute,
                seq,
                faults = record.faults,
                p_mean_kw = format_args!("{p_kw:.1}"),
                "closed minute record"
            );
        }
        last_closed = Some(closed);
    }
}
