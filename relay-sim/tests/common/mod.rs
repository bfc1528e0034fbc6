//! Helpers shared by the relay-sim integration tests: an in-process simulator on a free
//! loopback port, and a raw Modbus TCP client for what tokio-modbus will not send.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use relay_sim::{Config, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running simulator; dropping it does not stop it, `stop` does.
pub struct Running {
    pub addr: SocketAddr,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), relay_sim::SimError>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("simulator stops within 5 s of the shutdown signal")
            .expect("simulator task does not panic");
        assert!(result.is_ok(), "simulator ended with {result:?}");
    }
}

/// Starts a simulator on 127.0.0.1 port 0 with `config` (its listen address is replaced).
pub async fn start(mut config: Config) -> Running {
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let sim = Simulator::bind(config.clone())
        .await
        .expect("simulator binds");
    let addr = sim.local_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(sim.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        config,
        stop: Some(tx),
        task,
    }
}

/// A config whose minute lasts `minute_secs` wall seconds.
pub fn fast(minute_secs: f64) -> Config {
    Config {
        minute_secs,
        ..Config::default()
    }
}

/// Sends one raw Modbus TCP request and returns the response PDU (function code first),
/// or `None` if nothing comes back within `wait`.
pub async fn raw_request(
    stream: &mut TcpStream,
    tid: u16,
    unit: u8,
    pdu: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let mut frame = Vec::with_capacity(7 + pdu.len());
    frame.extend_from_slice(&tid.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
    frame.push(unit);
    frame.extend_from_slice(pdu);
    stream.write_all(&frame).await.expect("request is sent");
    read_response(stream, tid, unit, wait).await
}

/// Reads one response ADU and checks its header; returns its PDU.
pub async fn read_response(
    stream: &mut TcpStream,
    tid: u16,
    unit: u8,
    wait: Duration,
) -> Option<Vec<u8>> {
    let mut header = [0u8; 7];
    match tokio::time::timeout(wait, stream.read_exact(&mut header)).await {
        Err(_) => return None,
        Ok(r) => {
            r.expect("a response header, not a closed connection");
        }
    }
    assert_eq!(
        u16::from_be_bytes([header[0], header[1]]),
        tid,
        "transaction id echoed"
    );
    assert_eq!(
        u16::from_be_bytes([header[2], header[3]]),
        0,
        "protocol id 0"
    );
    assert_eq!(header[6], unit, "unit id echoed");
    let len = usize::from(u16::from_be_bytes([header[4], header[5]])) - 1;
    let mut pdu = vec![0u8; len];
    stream.read_exact(&mut pdu).await.expect("the whole PDU");
    Some(pdu)
}

/// True if the peer closes the connection within `wait` (EOF or reset).
pub async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Waits until the simulator has closed its first minute record.
pub async fn wait_first_record(
    ctx: &mut tokio_modbus::client::Context,
) -> relay_core::registers::RecordRead {
    use relay_core::registers::{decode_record, RegisterError, RECORD};
    use tokio_modbus::prelude::*;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let regs = ctx
            .read_input_registers(RECORD.start, RECORD.len)
            .await
            .expect("transport ok")
            .expect("no exception");
        match decode_record(&regs) {
            Ok(read) => return read,
            Err(RegisterError::NoRecordYet) => {}
            Err(e) => panic!("record block does not decode: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no record within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
