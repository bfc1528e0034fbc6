//! `gateway`: parses flags and runs the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gateway::{BusConfig, Config, Endpoint, Gateway, Line, Parity};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// A Modbus RTU (serial) to Modbus TCP gateway, like mbusd.
///
/// Modbus TCP clients connect to --listen; each request goes, by its unit id, onto the
/// serial bus at --serial, one at a time with the RTU silent interval between them.
/// Identical concurrent reads are answered by one bus transaction. A slave that does not
/// answer within --timeout-ms (after --retries more tries) gets the client exception 0x0B;
/// a bus that cannot be opened, 0x0A. The line is reopened by itself. With --sync-clock,
/// the host's UTC time is written into each --sync-unit's clock block (registers 400-403)
/// at start and every hour. Every flag can also be set by the environment variable shown.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about,
    long_about,
    after_help = "Read: docs/book/src/gateway.md (mdbook serve docs/book)"
)]
struct Args {
    /// The serial bus: a device path (/dev/ttyUSB0, a pty) or tcp://HOST:PORT (serial
    /// tunnelled over TCP, such as QEMU's -serial tcp:…). Optional when every --device is
    /// reached over Modbus TCP.
    #[arg(long, env = "GATEWAY_SERIAL")]
    serial: Option<String>,
    /// Modbus TCP address to serve on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:5010")]
    listen: SocketAddr,
    /// Serial speed (also sets the silent interval on tcp:// buses).
    #[arg(long, env = "GATEWAY_BAUD", default_value_t = 115_200)]
    baud: u32,
    /// Serial parity.
    #[arg(long, env = "GATEWAY_PARITY", value_enum, default_value_t = ParityArg::None)]
    parity: ParityArg,
    /// Serial stop bits.
    #[arg(long, env = "GATEWAY_STOP_BITS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    stop_bits: u8,
    /// Milliseconds a slave has to answer.
    #[arg(long, env = "GATEWAY_TIMEOUT_MS", default_value_t = 500)]
    timeout_ms: u64,
    /// Microseconds of line silence kept between a slave's answer and the next request
    /// [default: 3.5 characters, at least 1 750 µs, as the Modbus serial specification
    /// fixes above 19 200 baud]. Shorter is faster and what many masters do (mbusd's -R),
    /// but a slave that needs the full gap may then merge two frames.
    #[arg(long, env = "GATEWAY_INTER_FRAME_US")]
    inter_frame_us: Option<u64>,
    /// Extra tries after a timeout.
    #[arg(long, env = "GATEWAY_RETRIES", default_value_t = 1)]
    retries: u32,
    /// Modbus TCP connections served at once; more are closed at once.
    #[arg(long, env = "GATEWAY_MAX_CLIENTS", default_value_t = 64)]
    max_clients: usize,
    /// Close a connection that sends nothing for this many seconds (0: never).
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    idle_timeout_secs: u64,
    /// A request must arrive whole within this many milliseconds of its first byte, or the
    /// connection is closed (0: no limit).
    #[arg(long, env = "GATEWAY_REQUEST_DEADLINE_MS", default_value_t = 5000)]
    request_deadline_ms: u64,
    /// Write the host's UTC time into the relays' clock block at start and every hour
    /// (`--sync-clock`, `--sync-clock=true|false`, or `--no-sync-clock`) [default: on]
    #[arg(
        long,
        env = "GATEWAY_SYNC_CLOCK",
        default_value_t = true,
        hide_default_value = true,
        num_args = 0..=1,
        default_missing_value = "true",
        overrides_with = "no_sync_clock",
        action = clap::ArgAction::Set
    )]
    sync_clock: bool,
    /// Do not write the relays' clocks (the same as --sync-clock=false).
    #[arg(long, overrides_with = "sync_clock")]
    no_sync_clock: bool,
    /// Pass clients' writes to the relays' clock block (registers 400-403) to the bus. Off
    /// by default: every record's minute comes from that clock, so only the gateway's own
    /// sync writes it, and the relay takes only small corrections once set.
    #[arg(long, env = "GATEWAY_ALLOW_CLOCK_WRITES")]
    allow_clock_writes: bool,
    /// Unit ids whose clock to set (repeat for several).
    #[arg(
        long = "sync-unit",
        env = "GATEWAY_SYNC_UNITS",
        value_delimiter = ',',
        default_value = "1"
    )]
    sync_units: Vec<u8>,
    /// Record a device through a device profile and serve it as a relay of the gridledger
    /// register map: PROFILE,unit=U,relay=R[,name=N][,device-unit=D][,upstream=URL][,ied=I]
    /// [,key=FILE]. unit is the unit id the gateway serves it under, relay the relay id its
    /// records carry, device-unit its own unit id (the profile's by default), upstream a
    /// Modbus TCP device (tcp://H:P; the serial bus by default) or, for an IEC 61850
    /// profile, an IED over MMS (mms://H[:P], port 102 by default), ied the IED's name
    /// (asked of the IED by default; docs/book/src/iec61850.md), key the Ed25519 key the recorder
    /// signs the device's records with (64 hex digits; created if absent; the device is
    /// unsigned without it). Repeat for several devices.
    #[arg(long = "device", env = "GATEWAY_DEVICES", value_delimiter = ';')]
    devices: Vec<String>,
    /// The upstream (tcp://HOST:PORT, or mms://HOST[:PORT] for IEC 61850 profiles) of every
    /// --device that names no upstream= of its own [default: the serial bus].
    #[arg(long, env = "GATEWAY_UPSTREAM")]
    upstream: Option<String>,
    /// Seconds between the recorder's samples, aligned to the host's UTC clock: 10, 12,
    /// 15, 20, 30 or 60.
    #[arg(long, env = "GATEWAY_SAMPLE_SECS", default_value_t = 10)]
    sample_secs: u16,
    /// The substation name in recorded devices' identity block.
    #[arg(long, env = "GATEWAY_SUBSTATION", default_value = "")]
    substation: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ParityArg {
    None,
    Even,
    Odd,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let line = Line {
        baud: args.baud,
        parity: match args.parity {
            ParityArg::None => Parity::None,
            ParityArg::Even => Parity::Even,
            ParityArg::Odd => Parity::Odd,
        },
        stop_bits: args.stop_bits,
    };
    let mut devices = Vec::new();
    for spec in &args.devices {
        let spec = match &args.upstream {
            Some(up) if !spec.contains(",upstream=") => format!("{spec},upstream={up}"),
            _ => spec.clone(),
        };
        match gateway::recorder::parse_device(&spec, &args.substation) {
            Ok(d) => devices.push(d),
            Err(e) => {
                error!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.serial.is_none() && devices.is_empty() {
        error!(
            "nothing to do: give --serial (a bus to bridge) and/or --device (a device to record)"
        );
        return ExitCode::from(2);
    }
    let config = Config {
        listen: args.listen,
        bus: args.serial.as_deref().map(|serial| BusConfig {
            endpoint: Endpoint::parse(serial, line),
            timeout: Duration::from_millis(args.timeout_ms.max(1)),
            retries: args.retries,
            silent_interval: args
                .inter_frame_us
                .map_or_else(|| line.silent_interval(), Duration::from_micros),
        }),
        max_clients: args.max_clients,
        idle_timeout: (args.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(args.idle_timeout_secs)),
        request_deadline: (args.request_deadline_ms > 0)
            .then(|| Duration::from_millis(args.request_deadline_ms)),
        allow_clock_writes: args.allow_clock_writes,
        sync_units: if args.sync_clock && !args.no_sync_clock {
            args.sync_units
        } else {
            Vec::new()
        },
        sync_every: Duration::from_secs(3600),
        devices,
        sample_secs: args.sample_secs,
        clock: None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let bus = config
            .bus
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |b| b.endpoint.to_string());
        let recorded: Vec<String> = config
            .devices
            .iter()
            .map(|d| format!("unit {} = {} (relay {})", d.unit, d.profile.name(), d.relay))
            .collect();
        let gateway = match Gateway::bind(config).await {
            Ok(g) => g,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        info!(
            "gateway serving Modbus TCP on {} for the RTU bus {bus}; recording: {}",
            gateway.local_addr(),
            if recorded.is_empty() {
                "nothing".to_owned()
            } else {
                recorded.join(", ")
            }
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            info!("shutting down");
        };
        match gateway.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--sync-clock` as a bare switch, `--no-sync-clock`, and `=true/false`, as clap users
    /// expect; the last one given wins.
    #[test]
    fn sync_clock_takes_every_form() {
        let on = |args: &[&str]| {
            let mut all = vec!["gateway", "--serial", "/dev/null"];
            all.extend_from_slice(args);
            let a = Args::try_parse_from(all).expect("parses");
            a.sync_clock && !a.no_sync_clock
        };
        assert!(on(&[]));
        assert!(on(&["--sync-clock"]));
        assert!(on(&["--sync-clock=true"]));
        assert!(!on(&["--sync-clock=false"]));
        assert!(!on(&["--no-sync-clock"]));
        assert!(on(&["--no-sync-clock", "--sync-clock"]));
        assert!(!on(&["--sync-clock", "--no-sync-clock"]));
    }
}
