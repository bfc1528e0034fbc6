//! Reads a relay once, the way the gridledger node does, and prints what it says.
//!
//! ```sh
//! cargo run --release -p relay-sim &            # a relay on 127.0.0.1:5010
//! cargo run -p relay-sim --example read-relay   # or: -- HOST:PORT [UNIT]
//! ```

use std::net::SocketAddr;

use relay_core::registers::{decode_identity, decode_live, decode_record, IDENTITY, LIVE, RECORD};
use relay_core::Quantity;
use tokio_modbus::prelude::*;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:5010").parse()?;
    let unit: u8 = args.next().as_deref().unwrap_or("1").parse()?;
    let mut relay = tcp::connect_slave(addr, Slave(unit)).await?;

    let id = decode_identity(
        &relay
            .read_input_registers(IDENTITY.start, IDENTITY.len)
            .await??,
    )?;
    println!(
        "relay {} '{}' at '{}', {} samples every {} s, clock set: {}",
        id.identity.relay,
        id.identity.name,
        id.identity.substation,
        id.samples_per_record,
        id.sample_secs,
        id.status.contains(relay_core::RecordFlags::CLOCK_SET)
    );

    let live = decode_live(&relay.read_input_registers(LIVE.start, LIVE.len).await??)?;
    print!("live at {} +{} s:", live.minute, live.second);
    for (q, v) in Quantity::ALL.iter().zip(live.values) {
        print!(" {}={v:.3}{}", q.name(), q.unit());
    }
    println!();

    // One request for the whole record: never torn.
    match decode_record(
        &relay
            .read_input_registers(RECORD.start, RECORD.len)
            .await??,
    ) {
        Ok(read) => {
            let r = read.record;
            println!(
                "last closed minute {} (seq {}), {} fault openings:",
                r.minute, read.seq, r.faults
            );
            for s in &r.samples {
                println!(
                    "  Vab {:.3} kV  Ia {:.3} A  f {:.3} Hz  PF {:.3}  P {:.3} kW  Q {:.3} kvar",
                    s.vab.to_f32(),
                    s.ia.to_f32(),
                    s.freq.to_f32(),
                    s.pf.to_f32(),
                    s.p.to_f32(),
                    s.q.to_f32()
                );
            }
        }
        Err(e) => println!("no record: {e}"),
    }
    Ok(())
}
