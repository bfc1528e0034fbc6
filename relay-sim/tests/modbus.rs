//! relay-sim on a real loopback socket, read with the tokio-modbus client and raw frames.

mod common;

use std::time::{Duration, Instant};

use common::{closed_within, fast, raw_request, start, wait_first_record};
use relay_core::registers::{
    decode_clock, decode_identity, decode_live, decode_record, RegisterError, CLOCK, IDENTITY,
    LIVE, MAP_LEN, MAP_VERSION, RECORD,
};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Quantity, RecordFlags, RelayId};
use relay_sim::{ClientLimits, Config};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_modbus::prelude::*;

const WAIT: Duration = Duration::from_secs(2);

async fn client(addr: std::net::SocketAddr, unit: u8) -> client::Context {
    tcp::connect_slave(addr, Slave(unit))
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_block_reads_and_decodes() {
    let sim = start(Config {
        seed: 99,
        ..fast(1.0)
    })
    .await;
    let mut ctx = client(sim.addr, 1).await;

    let id = ctx
        .read_input_registers(IDENTITY.start, IDENTITY.len)
        .await
        .expect("io")
        .expect("ok");
    let id = decode_identity(&id).expect("identity decodes");
    assert_eq!(id.identity.relay, RelayId(1));
    assert_eq!(id.identity.name.as_str(), "Relay 1");
    assert_eq!(
        id.identity.substation.as_str(),
        "Bogotá Electrical Substation - U.D."
    );
    assert_eq!((id.samples_per_record, id.sample_secs), (6, 10));
    assert!(id.status.contains(RecordFlags::CLOCK_SET));

    let live = ctx
        .read_input_registers(LIVE.start, LIVE.len)
        .await
        .expect("io")
        .expect("ok");
    let live = decode_live(&live).expect("live decodes");
    let [vab, vbc, vca, ia, ib, ic, f, pf, p, q] = live.values;
    for v in [vab, vbc, vca] {
        assert!((109.0..=118.0).contains(&v), "V {v}");
    }
    for i in [ia, ib, ic] {
        assert!((0.0..=50.0).contains(&i), "I {i}");
    }
    assert!((59.98..=60.02).contains(&f), "f {f}");
    assert!((0.9..=0.98).contains(&pf), "PF {pf}");
    let s = 3f32.sqrt() * (vab + vbc + vca) / 3.0 * (ia + ib + ic) / 3.0;
    assert!(
        (p - s * pf).abs() <= 0.002 * p + 0.01,
        "P {p} vs √3·V·I·PF {}",
        s * pf
    );
    assert!(
        (q - s * (1.0 - pf * pf).sqrt()).abs() <= 0.002 * q + 0.01,
        "Q {q}"
    );
    assert!(
        live.second < 60 && live.second % 10 == 0,
        "second {}",
        live.second
    );

    // The clock block holds the relay time of the live sample (or of a later one).
    let clock = ctx
        .read_input_registers(CLOCK.start, CLOCK.len)
        .await
        .expect("io")
        .expect("ok");
    let secs = decode_clock(&clock).expect("decodes");
    let sample_secs = live.minute.start_unix_secs() + u64::from(live.second);
    assert!(
        secs >= sample_secs && secs <= sample_secs + 60,
        "clock {secs}, sample {sample_secs}"
    );

    // The record is the model's record for that minute, bit for bit.
    let read = wait_first_record(&mut ctx).await;
    let model = SignalModel::new(99, Profile::Realistic);
    let expected = model.record(RelayId(1), read.record.minute, 6, RecordFlags::CLOCK_SET);
    assert_eq!(read.record, expected);

    // FC03 serves the same image as FC04 (the identity block does not change).
    let a = ctx
        .read_input_registers(IDENTITY.start, IDENTITY.len)
        .await
        .expect("io")
        .expect("ok");
    let b = ctx
        .read_holding_registers(IDENTITY.start, IDENTITY.len)
        .await
        .expect("io")
        .expect("ok");
    assert_eq!(a, b);
    // The largest reads at both ends of the map are served.
    for start in [0, MAP_LEN as u16 - 125] {
        let regs = ctx
            .read_holding_registers(start, 125)
            .await
            .expect("io")
            .expect("ok");
        assert_eq!(regs.len(), 125);
    }
    assert_eq!(
        ctx.read_holding_registers(0, 1)
            .await
            .expect("io")
            .expect("ok"),
        vec![MAP_VERSION]
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_are_the_documented_ones() {
    let sim = start(fast(60.0)).await;
    let mut s = TcpStream::connect(sim.addr).await.expect("connects");
    let cases: &[(&str, u8, &[u8], &[u8])] = &[
        ("quantity 0", 1, &[0x04, 0, 0, 0, 0], &[0x84, 0x03]),
        ("quantity 126", 1, &[0x04, 0, 0, 0, 126], &[0x84, 0x03]),
        ("FC03 quantity 126", 1, &[0x03, 0, 0, 0, 126], &[0x83, 0x03]),
        ("past the end", 1, &[0x04, 0x01, 0x94, 0, 1], &[0x84, 0x02]), // 404
        (
            "straddles the end",
            1,
            &[0x03, 0x01, 0x93, 0, 2],
            &[0x83, 0x02],
        ),
        ("last address", 1, &[0x04, 0xFF, 0xFF, 0, 1], &[0x84, 0x02]),
        (
            "write single register",
            1,
            &[0x06, 0, 0, 0, 5],
            &[0x86, 0x01],
        ),
        (
            "write multiple registers",
            1,
            &[0x10, 0, 0, 0, 1, 2, 0, 5],
            &[0x90, 0x01],
        ),
        (
            "write single coil",
            1,
            &[0x05, 0, 0, 0xFF, 0],
            &[0x85, 0x01],
        ),
        ("read coils", 1, &[0x01, 0, 0, 0, 1], &[0x81, 0x01]),
        ("custom function", 1, &[0x41, 1, 2, 3], &[0xC1, 0x01]),
        ("unknown unit", 9, &[0x04, 0, 0, 0, 1], &[0x84, 0x0B]),
    ];
    for (i, (what, unit, pdu, expected)) in cases.iter().enumerate() {
        let got = raw_request(&mut s, i as u16, *unit, pdu, WAIT).await;
        assert_eq!(got.as_deref(), Some(*expected), "{what}");
    }
    // Reserved registers between blocks read as zero.
    let got = raw_request(&mut s, 100, 1, &[0x04, 0, 60, 0, 2], WAIT).await;
    assert_eq!(got.as_deref(), Some(&[0x04, 4, 0, 0, 0, 0][..]));
    // Broadcast (unit 0) is never answered, and the connection keeps working.
    assert_eq!(
        raw_request(
            &mut s,
            200,
            0,
            &[0x04, 0, 0, 0, 1],
            Duration::from_millis(300)
        )
        .await,
        None
    );
    let got = raw_request(&mut s, 201, 1, &[0x04, 0, 0, 0, 1], WAIT).await;
    assert_eq!(got.as_deref(), Some(&[0x04, 2, 0, MAP_VERSION as u8][..]));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_relays_behind_unit_ids() {
    let sim = start(Config {
        relays: 3,
        unit_id: 5,
        relay_id: 1000,
        ..fast(1.0)
    })
    .await;
    for (k, unit) in (5u8..=7).enumerate() {
        let mut ctx = client(sim.addr, unit).await;
        let id = ctx
            .read_input_registers(0, IDENTITY.len)
            .await
            .expect("io")
            .expect("ok");
        let id = decode_identity(&id).expect("decodes");
        assert_eq!(id.identity.relay, RelayId(1000 + k as u32));
        assert_eq!(id.identity.name.as_str(), format!("Relay {unit}"));
        let rec = wait_first_record(&mut ctx).await;
        assert_eq!(rec.record.relay, RelayId(1000 + k as u32));
    }
    let mut ctx = client(sim.addr, 8).await;
    assert_eq!(
        ctx.read_input_registers(0, 1).await.expect("io"),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_clients() {
    let sim = start(fast(1.0)).await;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let addr = sim.addr;
            tokio::spawn(async move {
                let mut ctx = client(addr, 1).await;
                let mut seqs = Vec::new();
                for _ in 0..200 {
                    let regs = ctx
                        .read_input_registers(RECORD.start, RECORD.len)
                        .await
                        .expect("io")
                        .expect("no exception");
                    match decode_record(&regs) {
                        Ok(r) => seqs.push(r.seq),
                        Err(RegisterError::NoRecordYet) => {}
                        Err(e) => panic!("bad record read: {e}"),
                    }
                }
                seqs.len()
            })
        })
        .collect();
    let mut reads = 0;
    for t in tasks {
        reads += tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("clients finish")
            .expect("no panic");
    }
    // Every read succeeded; some may have come before the first record closed.
    assert!(reads <= 32 * 200);
    sim.stop().await;
}

/// The record block changes at every minute boundary; with a 0.2 s minute, 3 s of
/// back-to-back reads cross about 15 boundaries, and not one read may be torn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_reads_across_minute_boundaries_are_never_torn() {
    let sim = start(fast(0.2)).await;
    let mut ctx = client(sim.addr, 1).await;
    let first = wait_first_record(&mut ctx).await;
    let model = SignalModel::new(1, Profile::Realistic);
    let mut last = first.clone();
    let mut changes = 0;
    let until = Instant::now() + Duration::from_secs(3);
    let mut reads = 0u32;
    while Instant::now() < until && reads < 200_000 {
        reads += 1;
        let regs = ctx
            .read_input_registers(RECORD.start, RECORD.len)
            .await
            .expect("io")
            .expect("ok");
        let read = decode_record(&regs).expect("never torn, always valid");
        if read.seq != last.seq {
            changes += 1;
            assert_eq!(
                read.seq,
                last.seq.wrapping_add(1),
                "sequence advances by one"
            );
            assert!(
                read.record.minute > last.record.minute,
                "minute advances with the sequence"
            );
            // Every record is exactly the model's record for its minute.
            assert_eq!(
                read.record,
                model.record(RelayId(1), read.record.minute, 6, RecordFlags::CLOCK_SET)
            );
            last = read;
        }
    }
    assert!(
        changes >= 5,
        "only {changes} minute boundaries seen in {reads} reads"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_vanishing_clients_do_not_disturb_others() {
    let sim = start(fast(1.0)).await;
    let mut good = client(sim.addr, 1).await;

    // Pure garbage: the server drops the connection.
    let mut garbage = TcpStream::connect(sim.addr).await.expect("connects");
    garbage
        .write_all(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x01, 0x02])
        .await
        .expect("sent");
    assert!(
        closed_within(&mut garbage, WAIT).await,
        "garbage client is disconnected"
    );

    // A wrong protocol id: dropped too.
    let mut wrong = TcpStream::connect(sim.addr).await.expect("connects");
    wrong
        .write_all(&[0, 1, 0, 7, 0, 6, 1, 4, 0, 0, 0, 1])
        .await
        .expect("sent");
    assert!(
        closed_within(&mut wrong, WAIT).await,
        "bad protocol id is disconnected"
    );

    // A malformed write (byte count disagrees with quantity): exception 0x03 from the
    // edge, and the connection goes on (it used to be dropped).
    let mut bad = TcpStream::connect(sim.addr).await.expect("connects");
    let answer = raw_request(&mut bad, 1, 1, &[0x10, 0, 0, 0, 2, 9, 0, 0], WAIT).await;
    assert_eq!(
        answer,
        Some(vec![0x90, 0x03]),
        "malformed request gets 0x03"
    );
    let again = raw_request(&mut bad, 2, 1, &[0x04, 0, 0, 0, 1], WAIT).await;
    assert!(
        again.is_some_and(|pdu| pdu[0] == 0x04),
        "and the connection goes on"
    );

    // Half a frame, then gone.
    let mut half = TcpStream::connect(sim.addr).await.expect("connects");
    half.write_all(&[0, 1, 0, 0, 0, 6, 1, 4])
        .await
        .expect("sent");
    drop(half);

    // Half a frame, then stalled (held open for the rest of the test).
    let mut stalled = TcpStream::connect(sim.addr).await.expect("connects");
    stalled
        .write_all(&[0, 1, 0, 0, 0, 6, 1])
        .await
        .expect("sent");

    for _ in 0..100 {
        let regs = tokio::time::timeout(WAIT, good.read_input_registers(0, IDENTITY.len))
            .await
            .expect("the good client is answered promptly")
            .expect("io")
            .expect("ok");
        assert_eq!(regs[0], MAP_VERSION);
    }
    // New clients are still accepted.
    let mut late = client(sim.addr, 1).await;
    assert!(late.read_input_registers(0, 1).await.expect("io").is_ok());
    drop(stalled);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limit_and_idle_timeout() {
    let sim = start(Config {
        limits: ClientLimits {
            max_clients: 2,
            idle_timeout: Some(Duration::from_millis(500)),
            request_deadline: None,
        },
        ..fast(60.0)
    })
    .await;
    let mut a = TcpStream::connect(sim.addr).await.expect("connects");
    let mut b = TcpStream::connect(sim.addr).await.expect("connects");
    assert!(raw_request(&mut a, 1, 1, &[0x04, 0, 0, 0, 1], WAIT)
        .await
        .is_some());
    assert!(raw_request(&mut b, 1, 1, &[0x04, 0, 0, 0, 1], WAIT)
        .await
        .is_some());
    // A third connection is over the limit and closed at once.
    let mut c = TcpStream::connect(sim.addr).await.expect("TCP accepts");
    assert!(closed_within(&mut c, WAIT).await, "third client refused");
    // `a` stalls mid-frame; after the idle timeout it is closed and its slot is free.
    a.write_all(&[0, 2, 0, 0]).await.expect("sent");
    assert!(
        closed_within(&mut a, Duration::from_secs(3)).await,
        "idle client closed"
    );
    // `b` keeps talking within the timeout and stays.
    let mut d = TcpStream::connect(sim.addr).await.expect("connects");
    assert!(
        raw_request(&mut d, 2, 1, &[0x04, 0, 0, 0, 1], WAIT)
            .await
            .is_some(),
        "freed slot used"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_profile_serves_study_ranges() {
    let sim = start(Config {
        profile: Profile::Paper,
        seed: 5,
        ..fast(0.5)
    })
    .await;
    let mut ctx = client(sim.addr, 1).await;
    let read = wait_first_record(&mut ctx).await;
    assert_eq!(
        read.record,
        SignalModel::new(5, Profile::Paper).record(
            RelayId(1),
            read.record.minute,
            6,
            RecordFlags::CLOCK_SET
        )
    );
    let live = decode_live(
        &ctx.read_input_registers(LIVE.start, LIVE.len)
            .await
            .expect("io")
            .expect("ok"),
    )
    .expect("decodes");
    let ranges = [
        (109.0, 118.0),
        (109.0, 118.0),
        (109.0, 118.0),
        (0.0, 50.0),
        (0.0, 50.0),
        (0.0, 50.0),
        (59.0, 61.0),
        (0.0, 1.0),
        (0.0, 700.0),
        (0.0, 700.0),
    ];
    for ((q, v), (lo, hi)) in Quantity::ALL.iter().zip(live.values).zip(ranges) {
        assert!(
            (lo..=hi).contains(&v),
            "{} = {v} outside {lo}..{hi}",
            q.name()
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn bad_config_is_refused_with_the_flag_named() {
    for (config, flag) in [
        (
            Config {
                sample_secs: 7,
                ..Config::default()
            },
            "--sample-secs 7",
        ),
        (
            Config {
                minute_secs: 0.0,
                ..Config::default()
            },
            "--minute-secs",
        ),
        (
            Config {
                minute_secs: f64::NAN,
                ..Config::default()
            },
            "--minute-secs",
        ),
        (
            Config {
                unit_id: 240,
                relays: 10,
                ..Config::default()
            },
            "--unit-id 240",
        ),
        (
            // Issue 15, finding 8: names too long for their fields are refused, not cut.
            Config {
                relay_name: "x".repeat(33),
                ..Config::default()
            },
            "--relay-name is 33 bytes",
        ),
        (
            // 31 bytes + "{unit}" for unit 100 = 34 bytes.
            Config {
                relay_name: format!("{}{{unit}}", "r".repeat(31)),
                unit_id: 100,
                ..Config::default()
            },
            "--relay-name is 34 bytes",
        ),
        (
            Config {
                substation: "é".repeat(33),
                ..Config::default()
            },
            "--substation is 66 bytes",
        ),
        (
            Config {
                relays: 0,
                ..Config::default()
            },
            "--relays 0",
        ),
    ] {
        let err = relay_sim::Simulator::bind(config)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(flag), "{err} should name {flag}");
    }
}
