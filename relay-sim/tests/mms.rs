//! relay-sim's MMS server against hostile traffic, and the MMS decoders against arbitrary
//! bytes: truncated TPKT headers, lengths that lie, BER lengths of four gigabytes, an
//! association that is not one, random bytes. Each hostile connection is closed by the
//! server (at once, or when its association deadline passes); none stops it answering an
//! honest client, which reads MMXU1 after every case.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use iec61850_client::IedConnection;
use iec61850_mms::mms::client::MmsClientBuilder;
use iec61850_model::FC;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> SocketAddr {
    let sim = relay_sim::Simulator::bind(relay_sim::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        iec61850: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        minute_secs: 6.0,
        ..relay_sim::Config::default()
    })
    .await
    .expect("relay-sim binds");
    let mms = sim.mms_addr().expect("MMS bound");
    tokio::spawn(sim.run(std::future::pending::<()>()));
    mms
}

/// An honest client reads the frequency: the server still serves.
async fn honest_read(addr: SocketAddr) -> f32 {
    let conn = IedConnection::with_mms_client(
        MmsClientBuilder::new()
            .connect_timeout_ms(3000)
            .request_timeout_ms(3000)
            .build(),
    );
    conn.connect("127.0.0.1", addr.port())
        .await
        .expect("an honest association");
    let hz = conn
        .read_float("GLRelayLD0/MMXU1.Hz.mag.f", FC::Mx)
        .await
        .expect("an honest read");
    let _ = conn.disconnect().await;
    hz
}

/// Sends `bytes` and reads until the server closes the connection (or `wait` passes);
/// true if it closed.
async fn send_and_wait_close(addr: SocketAddr, bytes: &[u8], wait: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return true;
    };
    let _ = s.write_all(bytes).await;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// A COTP connection request as MMS clients send it (TPKT + CR, TSAPs 0001).
const COTP_CR: [u8; 22] = [
    0x03, 0x00, 0x00, 0x16, 0x11, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00, 0xc0, 0x01, 0x0d, 0xc2, 0x02,
    0x00, 0x01, 0xc1, 0x02, 0x00, 0x01,
];

fn tpkt_dt(payload: &[u8]) -> Vec<u8> {
    let len = 4 + 3 + payload.len();
    let mut v = vec![0x03, 0x00, (len >> 8) as u8, len as u8, 0x02, 0xf0, 0x80];
    v.extend_from_slice(payload);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_and_the_server_keeps_serving() {
    let addr = start().await;
    let hz = honest_read(addr).await;
    assert!((40.0..70.0).contains(&hz), "a frequency: {hz}");

    let with_cr = |payload: &[u8]| {
        let mut v = COTP_CR.to_vec();
        v.extend(tpkt_dt(payload));
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a truncated TPKT header", vec![0x03, 0x00, 0x00]),
        (
            "a TPKT length below its header",
            vec![0x03, 0x00, 0x00, 0x02, 0xff],
        ),
        (
            "a wrong TPKT version",
            vec![0x04, 0x00, 0x00, 0x10, 0, 0, 0, 0],
        ),
        (
            "a TPKT length of 65535 with ten bytes",
            vec![0x03, 0x00, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        ),
        ("data before any COTP connection", tpkt_dt(&[0x0d, 0x00])),
        (
            "a session connect with a BER length of 4 GB",
            with_cr(&[0x0d, 0x84, 0xff, 0xff, 0xff, 0xff, 0x05, 0x06]),
        ),
        (
            "a session connect whose user data is not a presentation CP",
            with_cr(&[
                0x0d, 0x0c, 0x05, 0x06, 0x13, 0x01, 0x00, 0x16, 0x01, 0x02, 0xc1, 0x02, 0x30, 0x00,
            ]),
        ),
        (
            "an association for an unknown application context",
            with_cr(&[
                0x0d, 0x16, 0x05, 0x06, 0x13, 0x01, 0x00, 0x16, 0x01, 0x02, 0xc1, 0x0c, 0x31, 0x0a,
                0xa0, 0x03, 0x80, 0x01, 0x01, 0xa2, 0x03, 0x81, 0x01, 0x99,
            ]),
        ),
        (
            "a COTP disconnect instead of data",
            [
                COTP_CR.to_vec(),
                vec![0x03, 0x00, 0x00, 0x0b, 0x06, 0x80, 0, 1, 0, 1, 0],
            ]
            .concat(),
        ),
        (
            "a BER length longer than the PDU",
            with_cr(&[0x0d, 0x82, 0x7f, 0xff, 0x05]),
        ),
    ];
    for (what, bytes) in cases {
        // The server closes the connection: at once for a framing fault, at its association
        // deadline (5 s) for a connection that never associates.
        let closed = send_and_wait_close(addr, &bytes, Duration::from_secs(12)).await;
        assert!(closed, "{what}: the connection was left open");
        let hz = honest_read(addr).await;
        assert!((40.0..70.0).contains(&hz), "after {what}: {hz}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_stop_the_server() {
    let addr = start().await;
    // 64 connections of random bytes (a fixed seed: the same bytes on every run), four at
    // a time; each is sent and dropped.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::collection::vec(any::<u8>(), 0..600);
    for round in 0..16 {
        let mut sends = Vec::new();
        for _ in 0..4 {
            let mut bytes = strategy.new_tree(&mut runner).expect("bytes").current();
            if round % 2 == 0 && !bytes.is_empty() {
                // Half of them look like TPKT at first sight.
                let mut framed = COTP_CR.to_vec();
                framed.extend(tpkt_dt(&bytes));
                bytes = framed;
            }
            sends.push(tokio::spawn(async move {
                if let Ok(mut s) = TcpStream::connect(addr).await {
                    let _ = s.write_all(&bytes).await;
                    let mut buf = [0u8; 512];
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                }
            }));
        }
        for s in sends {
            s.await.expect("joined");
        }
    }
    let hz = honest_read(addr).await;
    assert!((40.0..70.0).contains(&hz), "after random bytes: {hz}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Every MMS decoder the server and the recorder run on received bytes returns an
    /// error or a value for any input; none panics.
    #[test]
    fn mms_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        use iec61850_mms::*;
        if let Ok(h) = <[u8; 4]>::try_from(bytes.get(..4).unwrap_or(&[0, 0, 0, 0])) {
            let _ = TpktHeader::decode(&h);
        }
        let _ = parse_cotp_pdu(&bytes);
        let _ = parse_options(&bytes);
        decode_above_cotp(&bytes);
    }

    /// The same decoders on BER-shaped input: a plausible tag, a length that may lie (short
    /// form, long form up to four bytes), then the rest.
    #[test]
    fn mms_decoders_never_panic_on_ber_shaped_lies(
        tag in prop::sample::select(vec![0x0d_u8, 0x30, 0x31, 0x60, 0x61, 0xa0, 0xa1, 0xa2, 0xa4, 0xa8, 0xa9]),
        len in prop::sample::select(vec![vec![0x00_u8], vec![0x7f], vec![0x80], vec![0x81, 0xff], vec![0x82, 0xff, 0xff], vec![0x84, 0xff, 0xff, 0xff, 0xff], vec![0x85, 1, 2, 3, 4, 5]]),
        rest in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        decode_above_cotp(&[vec![tag], len, rest].concat());
    }
}

/// Every decoder above COTP, on `bytes`: presentation connect, accept and user data, an MMS
/// PDU, MMS data, a read request and response. Each returns an error or a value.
fn decode_above_cotp(bytes: &[u8]) {
    use iec61850_mms::*;
    let _ = pres_parse_connect(&mut IsoPresentation::default(), bytes);
    let _ = pres_parse_accept(&mut IsoPresentation::default(), bytes);
    let _ = parse_user_data(&mut IsoPresentation::default(), bytes);
    let _ = MmsPdu::decode(bytes);
    let _ = MmsData::decode(bytes);
    let _ = decode_confirmed_read_request(bytes);
    let _ = decode_confirmed_read_response(bytes);
}

#[test]
fn write_icd_publishes_the_model_the_server_builds() {
    let dir = std::env::temp_dir().join(format!("relay-sim-icd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("relay.icd");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_relay-sim"))
        .args([
            "--relays",
            "2",
            "--iec61850",
            "127.0.0.1:10102",
            "--write-icd",
        ])
        .arg(&file)
        .status()
        .expect("relay-sim runs");
    assert!(status.success());
    let text = std::fs::read_to_string(&file).expect("the ICD was written");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(text.contains(r#"<P type="MMS-Port">10102</P>"#), "the port");
    let model = relay_sim::mms::model_of(&text).expect("the ICD builds a model");
    let lds: Vec<String> = model
        .lds
        .iter()
        .map(|ld| ld.domain_name(&model.ied_name))
        .collect();
    assert_eq!(lds, ["GLRelayLD0", "GLRelayLD1"]);
    // A bad flag is refused, and nothing is written.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay-sim"))
        .args(["--sample-secs", "7", "--write-icd", "-"])
        .output()
        .expect("relay-sim runs");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
