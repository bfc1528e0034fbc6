//! `relay-core`: what a protection relay measures and how it says it over Modbus.
//!
//! This crate is the single source of truth shared by the simulator (`relay-sim`), the
//! firmware, the gateway's tests and the ledger node's poller. It is `#![no_std]` without
//! `alloc`: everything fits in fixed-size buffers, so the same code runs on a Cortex-M3.
//!
//! - [`measure`]: the measurement model — a [`Sample`] of ten quantities in scaled integer
//!   units, the [`MinuteRecord`] a relay closes each minute, the relay [`Identity`].
//! - [`registers`]: the Modbus register map, both directions, and the exception rules.
//! - [`signal`]: the seeded, deterministic signal model with the `paper` and `realistic`
//!   profiles.
//! - [`rtu`]: Modbus RTU framing, CRC-16 and a slave that answers frames from a register
//!   map (for the firmware and the gateway's tests).
//!
//! ```
//! use relay_core::registers::{decode_record, RegisterImage, RECORD};
//! use relay_core::signal::{Profile, SignalModel};
//! use relay_core::{Identity, Minute, RecordFlags, RelayId};
//!
//! let model = SignalModel::new(42, Profile::Realistic);
//! let record = model.record(RelayId(1), Minute(29_000_000), 6, RecordFlags::CLOCK_SET);
//! let mut image = RegisterImage::new(&Identity::new(RelayId(1), "Relay 1", "Substation"), 6);
//! image.set_record(1, &record);
//! let regs = image.read(RECORD.start, RECORD.len).expect("the record block is in the map");
//! let read = decode_record(regs).expect("a record was set");
//! assert_eq!((read.seq, read.record), (1, record));
//! ```
#![no_std]
#![forbid(unsafe_code)]

/// The highest Modbus unit (slave) id a device may have: 248–255 are reserved by the
/// Modbus serial line specification, and 0 is broadcast.
pub const MAX_UNIT_ID: u8 = 247;

pub mod measure;
pub mod registers;
pub mod rtu;
pub mod signal;

pub use measure::{
    Identity, MilliAmps, MilliHertz, Minute, MinuteRecord, PerMille, Quantity, RecordError,
    RecordFlags, RecordSignature, RelayId, Sample, Vars, Volts, Watts, MAX_SAMPLES, SIGNATURE_LEN,
    SIGNING_CONTEXT,
};
