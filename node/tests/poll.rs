//! The poller against relay-sim on a loopback port: every minute once, a relay that goes
//! away and comes back, and the gap reported.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridledger::poll::{poll_relay, PollConfig, RelayAddr, RelayStatus};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{MinuteRecord, RecordFlags, RelayId};
use relay_sim::{Config, Simulator};
use tokio::sync::{mpsc, oneshot};

async fn sim(listen: SocketAddr, start_time: Option<u64>) -> (SocketAddr, oneshot::Sender<()>) {
    let s = Simulator::bind(Config {
        listen,
        minute_secs: 1.0,
        start_time,
        ..Config::default()
    })
    .await
    .expect("binds");
    let addr = s.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(s.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

fn config() -> PollConfig {
    PollConfig {
        period: Duration::from_millis(250),
        offset: Duration::from_millis(20),
        io_timeout: Duration::from_millis(500),
    }
}

async fn collect(
    rx: &mut mpsc::Receiver<MinuteRecord>,
    n: usize,
    within: Duration,
) -> Vec<MinuteRecord> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(r)) => out.push(r),
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_once_and_a_relay_that_comes_back() {
    // Compressed, and far enough behind UTC that it never passes it (relay-sim's default).
    let start = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        - relay_sim::clock::headroom_ms(1.0))
        / 1000;
    let (addr, stop) = sim(SocketAddr::from(([127, 0, 0, 1], 0)), Some(start)).await;
    let relay: RelayAddr = format!("{addr}/1").parse().expect("relay address");
    let status = Arc::new(Mutex::new(RelayStatus::default()));
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(poll_relay(relay, config(), tx, status.clone()));

    // A relay minute lasts 1 s and the poller looks every 250 ms: it sees every minute once.
    let got = collect(&mut rx, 3, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 3, "3 records within 6 s");
    let model = SignalModel::new(1, Profile::Realistic);
    for pair in got.windows(2) {
        assert_eq!(
            pair[1].minute.0,
            pair[0].minute.0 + 1,
            "consecutive minutes, none twice"
        );
    }
    for r in &got {
        assert_eq!(
            *r,
            model.record(RelayId(1), r.minute, 6, RecordFlags::CLOCK_SET)
        );
    }
    assert_eq!(status.lock().expect("lock").missed_minutes, 0);

    // The relay goes away: the poller keeps trying and says why.
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let st = status.lock().expect("lock");
        assert!(st.failures_in_a_row > 0, "{st:?}");
        assert!(st.last_error.is_some(), "{st:?}");
    }
    let before = status.lock().expect("lock").records;

    // It comes back (a day later, by its clock): polling resumes and the gap is reported.
    let tomorrow = start + 86_400;
    let (_addr, _stop) = sim(addr, Some(tomorrow)).await;
    let more = collect(&mut rx, 1, Duration::from_secs(10)).await;
    assert_eq!(more.len(), 1, "polling resumed");
    let st = status.lock().expect("lock").clone();
    assert_eq!(st.failures_in_a_row, 0, "{st:?}");
    assert!(st.last_error.is_none());
    assert!(st.records > before);
    assert!(st.missed_minutes >= 1400, "a day's gap is reported: {st:?}");
}

#[test]
fn relay_addresses_parse_with_clear_errors() {
    assert_eq!(
        "127.0.0.1:5010".parse::<RelayAddr>(),
        Ok(RelayAddr {
            host: "127.0.0.1:5010".into(),
            unit: 1
        })
    );
    assert_eq!(
        "relay.example:502/7".parse::<RelayAddr>(),
        Ok(RelayAddr {
            host: "relay.example:502".into(),
            unit: 7
        })
    );
    assert!("127.0.0.1:5010/0"
        .parse::<RelayAddr>()
        .expect_err("refused")
        .to_string()
        .contains("unit id"));
    assert!("127.0.0.1:5010/x".parse::<RelayAddr>().is_err());
    assert!("localhost"
        .parse::<RelayAddr>()
        .expect_err("refused")
        .to_string()
        .contains("host:port"));
}
