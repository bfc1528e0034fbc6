//! Issue 30: the firmware relay signs, and a node verifies and mines its records through the
//! gateway. QEMU runs the firmware image with a test key provisioned into its key region
//! (QEMU's loader, never the image); the gateway bridges its RTU line to Modbus TCP; a node
//! whose relay registry names the test key polls the gateway and mines relay 1's records,
//! each with a signature that the chain's rule checked.
//!
//! Without QEMU or the thumbv7m target the test says so loudly and skips;
//! GRIDLEDGER_REQUIRE_TOOLS=1 (CI) makes that a failure.

mod common;
#[path = "../../firmware/tests/support/qemu.rs"]
mod qemu;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridledger::chain::registry::{Entry, Registry};
use gridledger::chain::Network;
use relay_core::registers::{encode_clock, CLOCK};
use relay_core::{Minute, RelayId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_mines_the_firmwares_signed_records_through_the_gateway() {
    let Some(image) = qemu::ready() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = [0x77; 32];
    let blob = qemu::key_blob(dir.path(), &seed);
    let Some((_qemu, serial)) = qemu::start_with(&image, Some(&blob), &[]) else {
        return qemu::skip_or_fail("QEMU did not start");
    };
    // The gateway, in process, without its clock sync: the test sets the relay's clock.
    let gateway = gateway::Gateway::bind(gateway::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        bus: Some(gateway::BusConfig {
            endpoint: gateway::Endpoint::Tcp(serial.to_string()),
            timeout: Duration::from_millis(1000),
            retries: 2,
            silent_interval: Duration::from_millis(2),
        }),
        allow_clock_writes: true,
        ..gateway::Config::default()
    })
    .await
    .expect("the gateway binds");
    let relay_addr = gateway.local_addr();
    tokio::spawn(gateway.run(std::future::pending()));

    // The relay's clock two seconds before the end of the minute before this one: its first
    // record closes at once, and is of a minute that has closed by the node's clock too.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let set = (now / 60) * 60 - 2;
    {
        use tokio_modbus::prelude::*;
        let mut ctx = tcp::connect_slave(relay_addr, Slave(1))
            .await
            .expect("connects");
        let written = ctx
            .write_multiple_registers(CLOCK.start, &encode_clock(set))
            .await
            .expect("io");
        assert_eq!(written, Ok(()), "the unset clock takes the time");
    }

    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let mut net = Network::new("firmware-signed", 8);
    net.registry = Registry::new([Entry {
        relay: RelayId(1),
        from: Minute(0),
        key: public,
    }])
    .expect("a valid key");
    let port = common::free_port();
    let mut config = common::node_config(
        dir.path().join("node").as_path(),
        net,
        &[relay_addr],
        vec![],
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], port));
    config.poll.io_timeout = Duration::from_secs(3);
    let node = gridledger::run::start(config, common::key(1))
        .await
        .expect("the node starts");
    let client = gridledger::wire::builder().build().expect("client");
    let s = common::until(&client, port, 60, "a signed firmware record mined", |s| {
        s["height"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(s["relays"][0]["signed"], "relay", "{s}");
    assert_eq!(s["relays"][0]["key"], hex::encode(public), "{s}");
    assert_eq!(s["relays"][0]["bad_signatures"], 0, "{s}");
    let records = common::records_of(&common::chain_of(&client, port).await);
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.relay, RelayId(1));
        assert!(r.signature.is_some(), "an unsigned record was mined: {r:?}");
    }
    let m = records[0].minute.0;
    let readings = common::get_json(
        &client,
        format!("http://127.0.0.1:{port}/readings?relay=1&from={m}&to={m}"),
    )
    .await;
    assert_eq!(readings["readings"][0]["signed"], "relay", "{readings}");
    node.stop().await;
}
