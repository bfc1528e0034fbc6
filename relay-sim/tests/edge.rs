//! Issue 15's findings 1–4 against a running relay-sim, each a regression test: no frame
//! kills a connection's task, reserved function codes get 0x01, a header that is not Modbus
//! closes the connection at once, and a client trickling bytes loses its slot at the request
//! deadline instead of holding it for ever.

mod common;

use std::time::{Duration, Instant};

use common::{closed_within, fast, raw_request, start};
use relay_sim::{ClientLimits, Config};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(2);
const READ_ID: [u8; 5] = [0x04, 0, 0, 0, 1];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fc15_reproducer_gets_an_exception_and_the_connection_lives() {
    let sim = start(fast(60.0)).await;
    let mut s = TcpStream::connect(sim.addr).await.expect("connects");
    // Finding 1, byte for byte: 00 01 00 00 00 08 01 0F 00 00 00 10 01 FF.
    let answer = raw_request(
        &mut s,
        1,
        1,
        &[0x0F, 0x00, 0x00, 0x00, 0x10, 0x01, 0xFF],
        WAIT,
    )
    .await;
    assert_eq!(answer, Some(vec![0x8F, 0x03]));
    let again = raw_request(&mut s, 2, 1, &READ_ID, WAIT).await;
    assert!(
        again.is_some_and(|p| p[0] == 0x04),
        "the connection still answers"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_function_codes_get_illegal_function() {
    let sim = start(fast(60.0)).await;
    let mut s = TcpStream::connect(sim.addr).await.expect("connects");
    for (tid, fc) in [0x00u8, 0x80, 0x81, 0xC3, 0xFF].into_iter().enumerate() {
        let answer = raw_request(&mut s, tid as u16 + 1, 1, &[fc, 0, 0], WAIT).await;
        assert_eq!(answer, Some(vec![fc | 0x80, 0x01]), "fc {fc:#04x}");
    }
    let again = raw_request(&mut s, 99, 1, &READ_ID, WAIT).await;
    assert!(again.is_some_and(|p| p[0] == 0x04));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_are_not_modbus_close_at_once() {
    let sim = start(fast(60.0)).await;
    for header in [
        [0u8, 1, 0, 1, 0, 6, 1],     // protocol id 1
        [0, 1, 0, 0, 0xFF, 0xFF, 1], // length 65 535
        [0, 1, 0, 0, 0, 1, 1],       // length 1
    ] {
        let mut s = TcpStream::connect(sim.addr).await.expect("connects");
        let t = Instant::now();
        s.write_all(&header).await.expect("sent");
        assert!(
            closed_within(&mut s, WAIT).await,
            "{header:?} is not closed"
        );
        // At once: well before the 300 s idle timeout or the 5 s request deadline.
        assert!(t.elapsed() < Duration::from_secs(2), "{header:?}");
    }
    sim.stop().await;
}

/// True if a new connection gets an answer to a read (a refused one is closed at once).
async fn answered(addr: std::net::SocketAddr) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let frame = [0u8, 7, 0, 0, 0, 6, 1, 0x04, 0, 0, 0, 1];
    if s.write_all(&frame).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 11];
    matches!(
        tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if buf[7] == 0x04
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_lose_their_slots_at_the_deadline() {
    let sim = start(Config {
        limits: ClientLimits {
            max_clients: 2,
            idle_timeout: Some(Duration::from_secs(300)),
            request_deadline: Some(Duration::from_millis(800)),
        },
        ..fast(60.0)
    })
    .await;
    // Two clients take both slots and trickle a byte every 200 ms (the idle timer never
    // fires; the old server kept them for ever).
    let mut trickles = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(sim.addr).await.expect("connects");
        trickles.push(tokio::spawn(async move {
            for b in [0u8, 1, 0, 0, 0, 6, 1, 4, 0, 0, 0, 1].repeat(10) {
                if s.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A newcomer gets in once the trickles have hit the deadline (well within 3 s).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if answered(sim.addr).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the trickling clients still hold the slots"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in trickles {
        t.abort();
    }
    sim.stop().await;
}
