//! relay-sim playing every shipped device profile (`--layout`): a Modbus client reads the
//! profile's requests, the profile decodes them, and the values are the signal model's
//! truth within each quantity's quantisation; reads outside the layout get exception 02.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use device_profile::{FaultReading, Faults, Profile, Table};
use relay_core::measure::Quantity;
use relay_core::signal::{Profile as Signal, SignalModel};
use relay_core::RelayId;
use relay_sim::{Config, Simulator};
use tokio_modbus::prelude::*;

/// A relay clock start 1 s after a sample instant: the sample at START - 1 stays published
/// for 9 s, far longer than the test's reads take.
const START: u64 = 1_700_000_001;

fn shipped() -> Vec<(PathBuf, Profile)> {
    device_profile::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles"))
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn play(profile: &Arc<Profile>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let sim = Simulator::bind(Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        unit_id: profile.unit,
        relay_id: 42,
        seed: 5,
        start_time: Some(START),
        layout: Some(Arc::clone(profile)),
        ..Config::default()
    })
    .await
    .expect("binds");
    let addr = sim.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sim.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

async fn read(
    ctx: &mut client::Context,
    table: Table,
    start: u16,
    count: u16,
) -> Result<Vec<u16>, ExceptionCode> {
    let bits = |v: Vec<bool>| v.into_iter().map(u16::from).collect::<Vec<u16>>();
    match table {
        Table::Coils => ctx.read_coils(start, count).await.expect("io").map(bits),
        Table::Discrete => ctx
            .read_discrete_inputs(start, count)
            .await
            .expect("io")
            .map(bits),
        Table::Holding => ctx.read_holding_registers(start, count).await.expect("io"),
        Table::Input => ctx.read_input_registers(start, count).await.expect("io"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sim_plays_every_shipped_profile() {
    let files = shipped();
    assert!(files.len() >= 4, "{files:?}");
    let model = SignalModel::new(5, Signal::Realistic);
    let truth = model.live(RelayId(42), START - 1, 6);
    for (file, profile) in files {
        let profile = Arc::new(profile);
        let (addr, stop) = play(&profile).await;
        let mut ctx = tcp::connect_slave(addr, Slave(profile.unit))
            .await
            .expect("connects");
        let mut answers = Vec::new();
        for r in profile.reads() {
            answers.push(
                read(&mut ctx, r.table, r.start, r.count)
                    .await
                    .unwrap_or_else(|e| panic!("{}: read {r:?}: exception {e:?}", file.display())),
            );
        }
        let reading = profile
            .decode(&answers)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for q in Quantity::ALL {
            let (lo, hi) = profile.point(q).limits();
            let t = (q.raw(&truth.sample) as f64).clamp(lo, hi);
            let r = q.raw(&reading.sample) as f64;
            assert!(
                (t - r).abs() <= profile.quantisation(q, t),
                "{}: {} read {r}, truth {t}",
                file.display(),
                q.name()
            );
        }
        // The fault source: the total since start (from 1000), or no new opening yet.
        match (&profile.faults, reading.faults) {
            (None, None) => {}
            (Some(Faults::Counter { kind, .. }), Some(FaultReading::Counter(n))) => {
                let total = relay_sim::layout::FAULTS_FROM + u128::from(truth.faults_so_far);
                assert_eq!(
                    n,
                    total % kind.wrap().expect("unsigned"),
                    "{}",
                    file.display()
                );
            }
            (Some(Faults::Status { .. }), Some(FaultReading::Status(on))) => {
                assert!(!on, "{}: no opening seen yet", file.display());
            }
            other => panic!("{}: fault source {other:?}", file.display()),
        }
        // Outside the layout: exception 02; a write: 01.
        let top = profile
            .reads()
            .iter()
            .map(|r| r.start + r.count)
            .max()
            .expect("reads");
        let table = profile.reads()[0].table;
        assert_eq!(
            read(&mut ctx, table, top, 1).await,
            Err(ExceptionCode::IllegalDataAddress),
            "{}",
            file.display()
        );
        let w = ctx
            .write_single_register(profile.reads()[0].start, 1)
            .await
            .expect("io");
        assert_eq!(w, Err(ExceptionCode::IllegalFunction));
        let _ = stop.send(());
    }
}
