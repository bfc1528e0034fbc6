//! The Modbus TCP side: a tokio-modbus service over the [`Bank`], a connection guard
//! (client bound and idle timeout), and the ticker that moves the relays through time.

use std::future::{self, Future};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use relay_core::registers::Exception;
use relay_core::Minute;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::sleep_until;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tracing::{debug, info};

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

/// The whole request policy, in one place (documented in `docs/book/src/registers.md`):
/// unit 0 (broadcast) is never answered; an unknown unit gets 0x0B; FC03 and FC04 read the
/// same image; every other function, writes included, gets 0x01.
fn answer(bank: &Bank, unit: u8, request: &Request<'_>) -> Result<Option<Response>, ExceptionCode> {
    if unit == 0 {
        return Ok(None);
    }
    let relay = bank.relay(unit).ok_or(ExceptionCode::GatewayTargetDevice)?;
    if let Some(foreign) = relay.foreign() {
        use device_profile::Table;
        let read = |t: Table, a: u16, q: u16| foreign.read(t, a, q).map_err(to_modbus);
        let bits = |v: Vec<u16>| v.into_iter().map(|b| b != 0).collect::<Vec<bool>>();
        let response = match *request {
            Request::ReadCoils(a, q) => Response::ReadCoils(bits(read(Table::Coils, a, q)?)),
            Request::ReadDiscreteInputs(a, q) => {
                Response::ReadDiscreteInputs(bits(read(Table::Discrete, a, q)?))
            }
            Request::ReadHoldingRegisters(a, q) => {
                Response::ReadHoldingRegisters(read(Table::Holding, a, q)?)
            }
            Request::ReadInputRegisters(a, q) => {
                Response::ReadInputRegisters(read(Table::Input, a, q)?)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        return Ok(Some(response));
    }
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

pub use modbus_edge::ClientLimits;

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
    let slots = modbus_edge::Slots::new(limits);
    let service = RelayService { bank };
    let on_connected = move |stream: TcpStream, peer: SocketAddr| {
        let admitted = slots
            .admit(stream, peer)
            .map(|conn| (service.clone(), conn));
        async move { Ok(admitted) }
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
