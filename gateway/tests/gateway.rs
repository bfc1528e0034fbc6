//! The gateway against a software RTU slave on a loopback socket. The slave runs the
//! firmware's own logic (`firmware::Relay`), framed by line silence like the board.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firmware::{Relay, BOARD};
use gateway::{BusConfig, BusStats, Config, Endpoint, Gateway, Line, Parity};
use relay_core::registers::{decode_identity, CLOCK, IDENTITY};
use relay_core::RecordFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::prelude::*;

/// A software RTU slave serving a firmware relay on a TCP socket (serial over TCP).
struct SoftSlave {
    addr: SocketAddr,
    frames: Arc<AtomicU64>,
    silent: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    relay: Arc<Mutex<Relay>>,
    task: JoinHandle<()>,
}

impl SoftSlave {
    async fn start(addr: SocketAddr, relay: Arc<Mutex<Relay>>) -> Self {
        let listener = TcpListener::bind(addr).await.expect("slave binds");
        let addr = listener.local_addr().expect("addr");
        let frames = Arc::new(AtomicU64::new(0));
        let silent = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (f, s, d, r) = (
            frames.clone(),
            silent.clone(),
            delay_ms.clone(),
            relay.clone(),
        );
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let ms = move || t0.elapsed().as_millis() as u64;
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                loop {
                    // A frame ends after 3 ms of silence, as on a real line.
                    match tokio::time::timeout(Duration::from_millis(3), conn.read(&mut buf)).await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => {
                            let mut relay = r.lock().expect("lock");
                            let now = ms();
                            relay.tick(now);
                            for &b in &buf[..n] {
                                relay.receive(b, now);
                            }
                        }
                        Err(_) => {
                            let answer = {
                                let mut relay = r.lock().expect("lock");
                                let now = ms() + 10;
                                relay.tick(now);
                                let had = relay.answer(now).map(<[u8]>::to_vec);
                                had
                            };
                            let Some(frame) = answer else { continue };
                            f.fetch_add(1, Ordering::SeqCst);
                            if s.load(Ordering::SeqCst) {
                                continue;
                            }
                            let delay = d.load(Ordering::SeqCst);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            if conn.write_all(&frame).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        SoftSlave {
            addr,
            frames,
            silent,
            delay_ms,
            relay,
            task,
        }
    }

    /// The slave vanishes: its socket closes and nothing listens any more.
    fn stop(self) -> (SocketAddr, Arc<Mutex<Relay>>) {
        self.task.abort();
        (self.addr, self.relay)
    }
}

async fn gateway(
    slave: SocketAddr,
    sync_units: Vec<u8>,
) -> (SocketAddr, Arc<BusStats>, tokio::sync::oneshot::Sender<()>) {
    gateway_with(slave, sync_units, 64).await
}

async fn gateway_with(
    slave: SocketAddr,
    sync_units: Vec<u8>,
    max_clients: usize,
) -> (SocketAddr, Arc<BusStats>, tokio::sync::oneshot::Sender<()>) {
    let line = Line {
        baud: 115_200,
        parity: Parity::None,
        stop_bits: 1,
    };
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        bus: Some(BusConfig {
            endpoint: Endpoint::parse(&format!("tcp://{slave}"), line),
            timeout: Duration::from_millis(200),
            retries: 1,
            silent_interval: line.silent_interval(),
        }),
        max_clients,
        idle_timeout: Some(Duration::from_secs(300)),
        request_deadline: Some(Duration::from_secs(5)),
        allow_clock_writes: false,
        sync_units,
        sync_every: Duration::from_secs(3600),
        devices: Vec::new(),
        sample_secs: 10,
        clock: None,
    };
    let gw = Gateway::bind(config).await.expect("binds");
    let addr = gw.local_addr();
    let stats = gw.stats();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gw.run(async move {
        let _ = rx.await;
    }));
    (addr, stats, tx)
}

fn relay() -> Arc<Mutex<Relay>> {
    Arc::new(Mutex::new(Relay::new(BOARD)))
}

async fn client(addr: SocketAddr) -> client::Context {
    tcp::connect_slave(addr, Slave(1)).await.expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_exceptions_pass_through() {
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, _, _stop) = gateway(slave.addr, vec![]).await;
    let mut ctx = client(gw).await;
    let id = ctx
        .read_input_registers(IDENTITY.start, IDENTITY.len)
        .await
        .expect("io")
        .expect("ok");
    let id = decode_identity(&id).expect("identity");
    assert_eq!(id.identity.name.as_str(), "Relay 1");
    let same = ctx
        .read_holding_registers(IDENTITY.start, IDENTITY.len)
        .await
        .expect("io")
        .expect("ok");
    assert_eq!(decode_identity(&same).expect("identity"), id);
    assert_eq!(
        ctx.read_input_registers(0, 0).await.expect("io"),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(
        ctx.read_input_registers(404, 1).await.expect("io"),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        ctx.read_coils(0, 1).await.expect("io"),
        Err(ExceptionCode::IllegalFunction)
    );
    assert_eq!(
        ctx.write_single_register(0, 1).await.expect("io"),
        Err(ExceptionCode::IllegalDataAddress)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_slave_gets_0x0b_and_others_still_work() {
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, stats, _stop) = gateway(slave.addr, vec![]).await;
    let mut ctx = client(gw).await;
    slave.silent.store(true, Ordering::SeqCst);
    let start = Instant::now();
    assert_eq!(
        ctx.read_input_registers(0, 1).await.expect("io"),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    let took = start.elapsed();
    // Two tries of 200 ms.
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(stats.timeouts.load(Ordering::SeqCst) >= 2);
    // Another unit on the bus (nobody there) times out the same way.
    slave.silent.store(false, Ordering::SeqCst);
    ctx.set_slave(Slave(9));
    assert_eq!(
        ctx.read_input_registers(0, 1).await.expect("io"),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    ctx.set_slave(Slave(1));
    assert!(
        ctx.read_input_registers(0, 1).await.expect("io").is_ok(),
        "the bus recovers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_reads_cost_one_bus_transaction() {
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, stats, _stop) = gateway(slave.addr, vec![]).await;
    // Warm up the line, then make each answer take 150 ms so that requests pile up.
    client(gw)
        .await
        .read_input_registers(0, 1)
        .await
        .expect("io")
        .expect("ok");
    slave.delay_ms.store(150, Ordering::SeqCst);
    let frames_before = slave.frames.load(Ordering::SeqCst);
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(client(gw).await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move { c.read_input_registers(IDENTITY.start, IDENTITY.len).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task").expect("io").expect("ok"));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every client got the same registers"
    );
    let frames = slave.frames.load(Ordering::SeqCst) - frames_before;
    assert!(
        frames <= 2,
        "16 identical reads cost {frames} bus transactions"
    );
    assert!(stats.coalesced.load(Ordering::SeqCst) >= 14, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_that_vanishes_gives_0x0a_and_is_found_again() {
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, _, _stop) = gateway(slave.addr, vec![]).await;
    let mut ctx = client(gw).await;
    assert!(ctx.read_input_registers(0, 1).await.expect("io").is_ok());
    let (addr, relay) = slave.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let down = ctx.read_input_registers(0, 1).await.expect("io");
    assert!(
        matches!(
            down,
            Err(ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice)
        ),
        "{down:?}"
    );
    assert_eq!(
        ctx.read_input_registers(0, 1).await.expect("io"),
        Err(ExceptionCode::GatewayPathUnavailable),
        "nothing listens: the bus is unavailable"
    );
    let _back = SoftSlave::start(addr, relay).await;
    assert!(
        ctx.read_input_registers(0, 1).await.expect("io").is_ok(),
        "the line reopens by itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sets_the_relay_clock_at_start() {
    let relay = relay();
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay.clone()).await;
    assert!(!relay.lock().expect("lock").clock_set());
    let (gw, _, _stop) = gateway(slave.addr, vec![1]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !relay.lock().expect("lock").clock_set() {
        assert!(
            Instant::now() < deadline,
            "the clock was not set within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let relay_ms = relay.lock().expect("lock").now_ms();
    assert!(
        relay_ms.abs_diff(now) < 5_000,
        "relay clock {relay_ms}, host {now}"
    );
    let mut ctx = client(gw).await;
    let id = decode_identity(
        &ctx.read_input_registers(0, IDENTITY.len)
            .await
            .expect("io")
            .expect("ok"),
    )
    .expect("identity");
    assert!(id.status.contains(RecordFlags::CLOCK_SET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_are_bounded() {
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, _, _stop) = gateway_with(slave.addr, vec![], 2).await;
    let mut a = client(gw).await;
    let mut b = client(gw).await;
    assert!(a.read_input_registers(0, 1).await.expect("io").is_ok());
    assert!(b.read_input_registers(0, 1).await.expect("io").is_ok());
    // A third connection is accepted by TCP and closed at once.
    let mut c = tokio::net::TcpStream::connect(gw)
        .await
        .expect("TCP accepts");
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "third client not refused: {read:?}"
    );
    // When one leaves, its slot is free again.
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut d = client(gw).await;
    assert!(d.read_input_registers(0, 1).await.expect("io").is_ok());
}

/// Sends a frame and reads a 9-byte answer (an exception).
async fn ask(s: &mut tokio::net::TcpStream, frame: &[u8]) -> [u8; 9] {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 9];
    s.write_all(frame).await.expect("sent");
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
        .await
        .expect("answered in time")
        .expect("answered");
    buf
}

/// Issue 15, findings 1–3 at the gateway: the FC15 frame that panics tokio-modbus's decoder
/// gets 0x03, reserved function codes get 0x01 (never the bus), a header that is not Modbus
/// closes the connection at once, and the same connection goes on after the exceptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_answered_at_the_edge() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, stats, _stop) = gateway(slave.addr, vec![]).await;
    let before = stats.requests.load(Ordering::SeqCst);
    let mut s = tokio::net::TcpStream::connect(gw).await.expect("connects");
    let fc15 = vec![
        0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x01, 0x0F, 0x00, 0x00, 0x00, 0x10, 0x01, 0xFF,
    ];
    assert_eq!(ask(&mut s, &fc15).await, [0, 1, 0, 0, 0, 3, 1, 0x8F, 0x03]);
    for fc in [0x00u8, 0x80, 0xFF] {
        let frame = vec![0, 2, 0, 0, 0, 2, 1, fc];
        assert_eq!(
            ask(&mut s, &frame).await,
            [0, 2, 0, 0, 0, 3, 1, fc | 0x80, 0x01]
        );
    }
    // None of that reached the bus; a good read still does.
    assert_eq!(stats.requests.load(Ordering::SeqCst), before);
    s.write_all(&[0, 3, 0, 0, 0, 6, 1, 0x04, 0, 0, 0, 1])
        .await
        .expect("sent");
    let mut answer = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut answer))
        .await
        .expect("in time")
        .expect("answered");
    assert_eq!(answer[7], 0x04);

    let mut bad = tokio::net::TcpStream::connect(gw).await.expect("connects");
    bad.write_all(&[0, 1, 0, 9, 0, 6, 1]).await.expect("sent");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(1), bad.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
}

/// Issue 15, finding 7: a client's FC16 to the clock block never reaches the relay; the
/// gateway's own sync still sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_write_the_relay_clock() {
    let r = relay();
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::clone(&r)).await;
    let (gw, stats, _stop) = gateway(slave.addr, vec![]).await;
    let mut ctx = client(gw).await;
    let words = relay_core::registers::encode_clock(1_795_542_630);
    assert_eq!(
        ctx.write_multiple_registers(CLOCK.start, &words)
            .await
            .expect("io"),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        ctx.write_single_register(CLOCK.start + 3, 7)
            .await
            .expect("io"),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert!(
        !r.lock().expect("lock").clock_set(),
        "the relay's clock was not touched"
    );
    assert_eq!(stats.clock_writes_refused.load(Ordering::SeqCst), 2);
}

/// Issue 15, finding 5: clients that each send one read for a unit nobody answers, and
/// leave, no longer hold the bus for a timeout each. After two silent transactions the unit
/// is down and answered 0x0B at once, so a good read gets through in about the time of two
/// timeouts (before: twenty clients × two tries × 200 ms = 8 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_does_not_hold_the_bus() {
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, stats, _stop) = gateway(slave.addr, vec![]).await;
    for tid in 0..20u16 {
        let mut s = tokio::net::TcpStream::connect(gw).await.expect("connects");
        let [hi, lo] = tid.to_be_bytes();
        // Each at its own address, so that no two are coalesced into one transaction.
        s.write_all(&[hi, lo, 0, 0, 0, 6, 5, 0x04, hi, lo, 0, 1])
            .await
            .expect("sent");
        drop(s); // gone without waiting
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let mut ctx = client(gw).await;
    let regs = ctx
        .read_input_registers(IDENTITY.start, 1)
        .await
        .expect("io")
        .expect("unit 1 answers");
    assert_eq!(regs.len(), 1);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the good read waited {took:?}"
    );
    assert!(
        stats.down_answers.load(Ordering::SeqCst) > 0,
        "the dead unit was answered at once"
    );
    // The dead unit itself is answered 0x0B at once while it is down.
    let t = Instant::now();
    let mut dead = tcp::connect_slave(gw, Slave(5)).await.expect("connects");
    assert_eq!(
        dead.read_input_registers(0, 1).await.expect("io"),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
}

/// Issue 15, finding 6: the slave's exceptions to functions the gateway does not know
/// come back unchanged (the firmware answers 0x01 to all of these).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_to_unknown_functions_pass_through() {
    let slave = SoftSlave::start(SocketAddr::from(([127, 0, 0, 1], 0)), relay()).await;
    let (gw, _stats, _stop) = gateway(slave.addr, vec![]).await;
    let mut s = tokio::net::TcpStream::connect(gw).await.expect("connects");
    for (tid, pdu) in [
        vec![0x07u8],
        vec![0x08, 0, 0, 0x12, 0x34],
        vec![0x14, 7, 6, 0, 1, 0, 0, 0, 1],
        vec![0x18, 0, 0],
        vec![0x7F, 1, 2, 3],
    ]
    .into_iter()
    .enumerate()
    {
        let fc = pdu[0];
        let mut frame = vec![0, tid as u8 + 1, 0, 0, 0, pdu.len() as u8 + 1, 1];
        frame.extend_from_slice(&pdu);
        assert_eq!(
            ask(&mut s, &frame).await,
            [0, tid as u8 + 1, 0, 0, 0, 3, 1, fc | 0x80, 0x01],
            "fc {fc:#04x}"
        );
    }
}
