//! `modbus-fuzz`: a million malformed, truncated, random and slow Modbus TCP frames against
//! relay-sim and against the gateway (in front of a software RTU slave running the
//! firmware's logic), both in this process.
//!
//! Counts panics of any task (a panic hook), checks that resident memory stays flat and that
//! a valid read still answers correctly afterwards, and prints a table.
//!
//! `cargo run --release -p gridledger-bench --bin modbus-fuzz -- [--frames 1000000]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use firmware::{Relay, BOARD};
use gateway::{BusConfig, Config as GwConfig, Endpoint, Gateway, Line, Parity};
use relay_core::registers::{decode_identity, IDENTITY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::prelude::*;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Fuzz relay-sim and the gateway over TCP.
#[derive(Debug, Parser)]
#[command(name = "modbus-fuzz", about)]
struct Args {
    /// Frames per server.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Frames per connection (a header that is not Modbus ends a connection, so few).
    #[arg(long, default_value_t = 4)]
    per_connection: u64,
    /// Seed of the frame generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One frame of one of five kinds: random bytes, a valid request, a valid request with a
/// flipped bit, a valid header with a random PDU, a truncated valid request.
fn frame(rng: &mut Rng) -> Vec<u8> {
    let tid = rng.next() as u16;
    let unit = [0u8, 1, 1, 1, 2, 247][rng.below(6) as usize];
    let valid = |rng: &mut Rng| -> Vec<u8> {
        let pdus: [Vec<u8>; 6] = [
            vec![0x04, 0, 0, 0, 117],
            vec![0x03, 0, 0, 0, 17],
            vec![0x0F, 0, 0, 0, 0x10, 0x01, 0xFF], // the upstream decoder's panic
            vec![0x10, 0x01, 0x90, 0, 4, 8, 0, 0, 0, 0, 0x6A, 0, 0, 0],
            vec![0x05, 0, 1, 0xFF, 0],
            vec![0x17, 0, 0, 0, 2, 0, 0, 0, 1, 2, 0, 1],
        ];
        let pdu = &pdus[rng.below(pdus.len() as u64) as usize];
        let mut f = tid.to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
        f.push(unit);
        f.extend_from_slice(pdu);
        f
    };
    match rng.below(5) {
        0 => (0..1 + rng.below(300)).map(|_| rng.next() as u8).collect(),
        1 => valid(rng),
        2 => {
            let mut f = valid(rng);
            let at = rng.below(f.len() as u64) as usize;
            f[at] ^= 1 << rng.below(8);
            f
        }
        3 => {
            let len = 1 + rng.below(253) as usize;
            let mut f = tid.to_be_bytes().to_vec();
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&(len as u16 + 1).to_be_bytes());
            f.push(unit);
            f.extend((0..len).map(|_| rng.next() as u8));
            f
        }
        _ => {
            let mut f = valid(rng);
            f.truncate(rng.below(f.len() as u64) as usize);
            f
        }
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sends `frames` frames over connections of `per` frames each, 16 connections at once;
/// a few connections trickle their bytes slowly. Returns (frames, connections).
async fn hammer(addr: SocketAddr, frames: u64, per: u64, seed: u64) -> (u64, u64) {
    let sent = Arc::new(AtomicU64::new(0));
    let conns = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let (sent, conns) = (Arc::clone(&sent), Arc::clone(&conns));
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w + 1));
            while sent.load(Ordering::Relaxed) < frames && Instant::now() < deadline {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                conns.fetch_add(1, Ordering::Relaxed);
                let mut bytes = Vec::new();
                for _ in 0..per {
                    bytes.extend(frame(&mut rng));
                }
                let slow = rng.below(200) == 0;
                if slow {
                    // A slow client: a few bytes at a time.
                    for chunk in bytes.chunks(7).take(20) {
                        if s.write_all(chunk).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                } else {
                    let _ = s.write_all(&bytes).await;
                }
                sent.fetch_add(per, Ordering::Relaxed);
                let _ = s.shutdown().await;
                let mut sink = [0u8; 4096];
                let until = Instant::now() + Duration::from_millis(50);
                while Instant::now() < until {
                    match tokio::time::timeout(Duration::from_millis(20), s.read(&mut sink)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    (sent.load(Ordering::Relaxed), conns.load(Ordering::Relaxed))
}

/// A software RTU slave (the firmware's logic) on a TCP socket: serial over TCP.
async fn soft_slave() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let relay = Arc::new(Mutex::new(Relay::new(BOARD)));
    tokio::spawn(async move {
        let t0 = Instant::now();
        while let Ok((mut conn, _)) = listener.accept().await {
            let relay = Arc::clone(&relay);
            tokio::spawn(async move {
                let ms = || t0.elapsed().as_millis() as u64;
                let mut buf = [0u8; 512];
                loop {
                    match tokio::time::timeout(Duration::from_millis(3), conn.read(&mut buf)).await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => {
                            let now = ms();
                            let mut r = relay.lock().unwrap_or_else(|e| e.into_inner());
                            r.tick(now);
                            for &b in &buf[..n] {
                                r.receive(b, now);
                            }
                        }
                        Err(_) => {
                            let answer = {
                                let now = ms() + 10;
                                let mut r = relay.lock().unwrap_or_else(|e| e.into_inner());
                                r.tick(now);
                                r.answer(now).map(<[u8]>::to_vec)
                            };
                            if let Some(f) = answer {
                                if conn.write_all(&f).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn valid_read(addr: SocketAddr) -> bool {
    let Ok(Ok(mut ctx)) =
        tokio::time::timeout(Duration::from_secs(5), tcp::connect_slave(addr, Slave(1))).await
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            ctx.read_input_registers(IDENTITY.start, IDENTITY.len)
        )
        .await,
        Ok(Ok(Ok(regs))) if decode_identity(&regs).is_ok_and(|id| id.identity.relay.0 == 1)
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));

    // relay-sim.
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..relay_sim::Config::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let sim_addr = sim.local_addr();
    tokio::spawn(sim.run(std::future::pending()));

    // The gateway, in front of a software RTU slave.
    let slave = soft_slave().await;
    let line = Line {
        baud: 115_200,
        parity: Parity::None,
        stop_bits: 1,
    };
    let gw = Gateway::bind(GwConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        bus: Some(BusConfig {
            endpoint: Endpoint::parse(&format!("tcp://{slave}"), line),
            timeout: Duration::from_millis(100),
            retries: 0,
            silent_interval: line.silent_interval(),
        }),
        ..GwConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let gw_addr = gw.local_addr();
    tokio::spawn(gw.run(std::future::pending()));

    println!(
        "modbus-fuzz: {} frames per server, {} per connection, seed {}",
        args.frames, args.per_connection, args.seed
    );
    println!(
        "| server | frames | connections | frames/s | panics | RSS before → after | valid read after |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut failed = false;
    for (name, addr, frames) in [
        ("relay-sim", sim_addr, args.frames),
        // The gateway serialises a bus: fewer frames reach the slave per second, the same
        // number reach the gateway's edge.
        ("gateway", gw_addr, args.frames),
    ] {
        let ok_before = valid_read(addr).await;
        let rss0 = rss_kb();
        let panics0 = PANICS.load(Ordering::SeqCst);
        let t = Instant::now();
        let (sent, conns) = hammer(addr, frames, args.per_connection, args.seed).await;
        let secs = t.elapsed().as_secs_f64();
        // Let connections drain before the final check.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ok_after = valid_read(addr).await;
        let panics = PANICS.load(Ordering::SeqCst) - panics0;
        let rss1 = rss_kb();
        println!(
            "| {name} | {sent} | {conns} | {:.0} | {panics} | {} → {} MB | {} |",
            sent as f64 / secs,
            rss0 / 1024,
            rss1 / 1024,
            if ok_before && ok_after {
                "correct"
            } else {
                "FAILED"
            }
        );
        failed |= panics > 0 || !ok_after || sent < frames;
    }
    if failed {
        return Err("a server panicked, stopped answering, or the run was cut short".into());
    }
    Ok(())
}
