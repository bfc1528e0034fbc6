//! The Modbus register map, both directions, and the rules for reading it.
//!
//! `docs/registers.md` is the human version of this module; the two must agree. The map is
//! one flat image of [`MAP_LEN`] 16-bit registers per relay, served identically as input
//! registers (FC04) and read-only holding registers (FC03). It has three blocks:
//!
//! | block      | start | len | what                                                   |
//! |------------|-------|-----|--------------------------------------------------------|
//! | [`IDENTITY`] | 0   | 56  | map version, relay id, sampling, status, name, substation |
//! | [`LIVE`]     | 100 | 25  | the latest sample as float32 (ABCD), its time, faults so far |
//! | [`RECORD`]   | 200 | 117 | the last closed minute record, scaled integers, with a sequence number at both ends |
//! | [`CLOCK`]    | 400 | 4   | the relay clock, Unix seconds (`u64`); writable on the firmware to set it |
//!
//! Registers between blocks are reserved and read as 0. 32-bit values are big-endian in
//! both bytes and words (ABCD): the high word comes first.

use crate::measure::{
    truncated, Identity, MilliAmps, MilliHertz, Minute, MinuteRecord, PerMille, Quantity,
    RecordError, RecordFlags, RelayId, Sample, Vars, Volts, Watts, MAX_SAMPLES,
};

/// Version of this register map, served at address 0. Bumped on any incompatible change.
pub const MAP_VERSION: u16 = 1;

/// The most registers one read request may ask for (Modbus application protocol, 6.3/6.4).
pub const MAX_READ: u16 = 125;

/// A contiguous range of registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// First register (0-based PDU address; modpoll's reference is `start + 1`).
    pub start: u16,
    /// Number of registers.
    pub len: u16,
}

impl Block {
    /// One past the last register.
    #[must_use]
    pub const fn end(self) -> u16 {
        self.start + self.len
    }

    fn range(self) -> core::ops::Range<usize> {
        self.start as usize..self.end() as usize
    }
}

/// Identity block: who the relay is and how it samples.
pub const IDENTITY: Block = Block { start: 0, len: 56 };
/// Live block: the latest sample, refreshed every sample period.
pub const LIVE: Block = Block {
    start: 100,
    len: 25,
};
/// Record block: the last closed minute record, readable atomically in one request.
pub const RECORD: Block = Block {
    start: 200,
    len: RECORD_LEN as u16,
};
/// Clock block: the relay's clock, Unix seconds as a `u64` (four registers, high word
/// first), as of the last sample. On a relay with a settable clock (the firmware), an FC16
/// write of all four registers sets it; relay-sim refuses writes.
pub const CLOCK: Block = Block { start: 400, len: 4 };
/// Registers in the whole map (addresses `0..MAP_LEN`).
pub const MAP_LEN: usize = CLOCK.end() as usize;

/// Offsets inside the identity block.
pub mod identity {
    /// Map version, `u16`.
    pub const VERSION: usize = 0;
    /// Relay id, `u32`.
    pub const RELAY_ID: usize = 1;
    /// Samples per minute record, `u16`.
    pub const SAMPLES_PER_RECORD: usize = 3;
    /// Seconds between samples, `u16`.
    pub const SAMPLE_SECS: usize = 4;
    /// Status bits ([`crate::RecordFlags`]), `u16`.
    pub const STATUS: usize = 5;
    /// Relay name: 16 registers, 32 bytes of UTF-8, two per register (first byte high), NUL padded.
    pub const NAME: usize = 8;
    /// Registers of the relay name.
    pub const NAME_LEN: usize = 16;
    /// Substation: 32 registers, 64 bytes of UTF-8, NUL padded.
    pub const SUBSTATION: usize = 24;
    /// Registers of the substation name.
    pub const SUBSTATION_LEN: usize = 32;
}

/// Offsets inside the live block.
pub mod live {
    /// Ten float32 values (two registers each), in [`crate::Quantity::ALL`] order.
    pub const FLOATS: usize = 0;
    /// Minute of the sample, `u32` minutes since the Unix epoch.
    pub const MINUTE: usize = 20;
    /// Second within that minute, `u16`.
    pub const SECOND: usize = 22;
    /// Fault openings so far in that minute, `u16`.
    pub const FAULTS: usize = 23;
    /// Status bits, `u16`.
    pub const STATUS: usize = 24;
}

/// Offsets inside the record block.
pub mod record {
    /// Sequence number of the record, `u16`: 0 before the first record closes, then
    /// 1, 2, … 65535, 1, … (0 is skipped).
    pub const SEQ: usize = 0;
    /// Relay id, `u32`.
    pub const RELAY_ID: usize = 1;
    /// Minute, `u32` minutes since the Unix epoch.
    pub const MINUTE: usize = 3;
    /// Fault openings in the minute, `u16`.
    pub const FAULTS: usize = 5;
    /// Status bits, `u16`.
    pub const FLAGS: usize = 6;
    /// Number of samples that follow, 1..=6, `u16`.
    pub const COUNT: usize = 7;
    /// First sample; sample `i` starts at `SAMPLES + i * SAMPLE_LEN`.
    pub const SAMPLES: usize = 8;
    /// Registers per sample.
    pub const SAMPLE_LEN: usize = 18;
    /// The sequence number again, written with the rest: equal to [`SEQ`] in any
    /// consistent read.
    pub const SEQ_TAIL: usize = SAMPLES + super::MAX_SAMPLES * SAMPLE_LEN;
}

const RECORD_LEN: usize = record::SEQ_TAIL + 1;

/// A Modbus exception code, as a server answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exception {
    /// 0x01: function code not supported (also: any write to this read-only map).
    IllegalFunction = 0x01,
    /// 0x02: the range touches an address outside the map.
    IllegalDataAddress = 0x02,
    /// 0x03: quantity 0 or more than [`MAX_READ`].
    IllegalDataValue = 0x03,
    /// 0x04: the device failed while serving the request.
    ServerDeviceFailure = 0x04,
    /// 0x0A: a gateway has no path to the target bus.
    GatewayPathUnavailable = 0x0A,
    /// 0x0B: no device answered at that unit id.
    GatewayTargetFailedToRespond = 0x0B,
}

impl Exception {
    /// The code on the wire.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The whole register map of one relay, as the relay serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterImage {
    regs: [u16; MAP_LEN],
}

impl RegisterImage {
    /// A map with the identity filled in, no live sample and no record yet.
    #[must_use]
    pub fn new(identity: &Identity, samples_per_record: u16) -> Self {
        let mut image = RegisterImage { regs: [0; MAP_LEN] };
        let id = &mut image.regs[IDENTITY.range()];
        id[identity::VERSION] = MAP_VERSION;
        put_u32(&mut id[identity::RELAY_ID..], identity.relay.0);
        id[identity::SAMPLES_PER_RECORD] = samples_per_record;
        id[identity::SAMPLE_SECS] = 60 / samples_per_record.max(1);
        put_str(
            &mut id[identity::NAME..identity::NAME + identity::NAME_LEN],
            &identity.name,
        );
        put_str(
            &mut id[identity::SUBSTATION..identity::SUBSTATION + identity::SUBSTATION_LEN],
            &identity.substation,
        );
        image
    }

    /// Sets the status bits served in the identity and live blocks.
    pub fn set_status(&mut self, status: RecordFlags) {
        self.regs[IDENTITY.start as usize + identity::STATUS] = status.0;
        self.regs[LIVE.start as usize + live::STATUS] = status.0;
    }

    /// Publishes the relay clock (Unix seconds).
    pub fn set_clock(&mut self, unix_secs: u64) {
        let block = &mut self.regs[CLOCK.range()];
        put_u32(&mut block[0..], (unix_secs >> 32) as u32);
        put_u32(&mut block[2..], unix_secs as u32);
    }

    /// Publishes the latest sample.
    pub fn set_live(&mut self, values: &LiveValues) {
        let block = &mut self.regs[LIVE.range()];
        for (i, q) in Quantity::ALL.iter().enumerate() {
            put_u32(
                &mut block[live::FLOATS + 2 * i..],
                q.value(&values.sample).to_bits(),
            );
        }
        put_u32(&mut block[live::MINUTE..], values.minute.0);
        block[live::SECOND] = values.second;
        block[live::FAULTS] = values.faults_so_far;
    }

    /// Publishes a closed minute record under sequence number `seq` (see [`record::SEQ`]).
    pub fn set_record(&mut self, seq: u16, rec: &MinuteRecord) {
        let block = &mut self.regs[RECORD.range()];
        block.fill(0);
        block[record::SEQ] = seq;
        put_u32(&mut block[record::RELAY_ID..], rec.relay.0);
        put_u32(&mut block[record::MINUTE..], rec.minute.0);
        block[record::FAULTS] = rec.faults;
        block[record::FLAGS] = rec.flags.0;
        block[record::COUNT] = rec.samples.len() as u16;
        for (i, s) in rec.samples.iter().enumerate() {
            put_sample(&mut block[record::SAMPLES + i * record::SAMPLE_LEN..], s);
        }
        block[record::SEQ_TAIL] = seq;
    }

    /// Answers a read of `quantity` registers from `address`, as FC03 and FC04 do.
    ///
    /// The quantity is checked first (0x03), then the range (0x02), as the Modbus
    /// application protocol orders it.
    pub fn read(&self, address: u16, quantity: u16) -> Result<&[u16], Exception> {
        if quantity == 0 || quantity > MAX_READ {
            return Err(Exception::IllegalDataValue);
        }
        let start = usize::from(address);
        let end = start + usize::from(quantity);
        self.regs
            .get(start..end)
            .ok_or(Exception::IllegalDataAddress)
    }

    /// The whole image.
    #[must_use]
    pub fn as_slice(&self) -> &[u16] {
        &self.regs
    }
}

/// The latest sample, as the live block shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LiveValues {
    /// The sample.
    pub sample: Sample,
    /// Minute of the sample.
    pub minute: Minute,
    /// Second within that minute.
    pub second: u16,
    /// Fault openings so far in that minute.
    pub faults_so_far: u16,
}

/// Why registers read from a relay could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The slice is shorter than the block; the block's length is given.
    Short(u16),
    /// The record block's two sequence numbers differ: the registers come from two
    /// different records (a read split across requests). Read again.
    Torn {
        /// Sequence number at the start of the block.
        head: u16,
        /// Sequence number at the end of the block.
        tail: u16,
    },
    /// Sequence number 0: the relay has not closed a minute record since it started.
    NoRecordYet,
    /// The sample count register is outside 1..=6.
    SampleCount(u16),
    /// The map version is not one this code understands.
    Version(u16),
    /// The registers hold an invalid record.
    Record(RecordError),
}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegisterError::Short(len) => write!(f, "block needs {len} registers"),
            RegisterError::Torn { head, tail } => {
                write!(
                    f,
                    "torn record read (sequence {head} at the start, {tail} at the end)"
                )
            }
            RegisterError::NoRecordYet => {
                f.write_str("the relay has not closed a minute record yet")
            }
            RegisterError::SampleCount(n) => write!(f, "sample count {n} outside 1..=6"),
            RegisterError::Version(v) => {
                write!(
                    f,
                    "register map version {v}, this code reads version {MAP_VERSION}"
                )
            }
            RegisterError::Record(e) => write!(f, "invalid record: {e}"),
        }
    }
}

impl core::error::Error for RegisterError {}

/// A record read from the record block, with its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRead {
    /// The relay's sequence number for this record.
    pub seq: u16,
    /// The record.
    pub record: MinuteRecord,
}

/// Decodes the record block (all [`RECORD`]`.len` registers, from its start).
pub fn decode_record(regs: &[u16]) -> Result<RecordRead, RegisterError> {
    if regs.len() < RECORD.len as usize {
        return Err(RegisterError::Short(RECORD.len));
    }
    let (head, tail) = (regs[record::SEQ], regs[record::SEQ_TAIL]);
    if head != tail {
        return Err(RegisterError::Torn { head, tail });
    }
    if head == 0 {
        return Err(RegisterError::NoRecordYet);
    }
    let count = regs[record::COUNT];
    if count == 0 || usize::from(count) > MAX_SAMPLES {
        return Err(RegisterError::SampleCount(count));
    }
    let mut samples = heapless::Vec::new();
    for i in 0..usize::from(count) {
        // Cannot fail: count <= MAX_SAMPLES.
        let _ = samples.push(get_sample(
            &regs[record::SAMPLES + i * record::SAMPLE_LEN..],
        ));
    }
    let rec = MinuteRecord {
        relay: RelayId(get_u32(&regs[record::RELAY_ID..])),
        minute: Minute(get_u32(&regs[record::MINUTE..])),
        faults: regs[record::FAULTS],
        flags: RecordFlags(regs[record::FLAGS]),
        samples,
    };
    rec.validate().map_err(RegisterError::Record)?;
    Ok(RecordRead {
        seq: head,
        record: rec,
    })
}

/// The identity block, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRead {
    /// Who the relay is.
    pub identity: Identity,
    /// Samples per minute record.
    pub samples_per_record: u16,
    /// Seconds between samples.
    pub sample_secs: u16,
    /// Status bits.
    pub status: RecordFlags,
}

/// Decodes the identity block (all [`IDENTITY`]`.len` registers, from its start).
pub fn decode_identity(regs: &[u16]) -> Result<IdentityRead, RegisterError> {
    if regs.len() < IDENTITY.len as usize {
        return Err(RegisterError::Short(IDENTITY.len));
    }
    if regs[identity::VERSION] != MAP_VERSION {
        return Err(RegisterError::Version(regs[identity::VERSION]));
    }
    let mut name = [0u8; 2 * identity::NAME_LEN];
    let mut substation = [0u8; 2 * identity::SUBSTATION_LEN];
    Ok(IdentityRead {
        identity: Identity {
            relay: RelayId(get_u32(&regs[identity::RELAY_ID..])),
            name: truncated(get_str(&regs[identity::NAME..], &mut name)),
            substation: truncated(get_str(&regs[identity::SUBSTATION..], &mut substation)),
        },
        samples_per_record: regs[identity::SAMPLES_PER_RECORD],
        sample_secs: regs[identity::SAMPLE_SECS],
        status: RecordFlags(regs[identity::STATUS]),
    })
}

/// The live block, decoded: the ten floats in [`Quantity::ALL`] order and the rest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveRead {
    /// Values in the units people read, in [`Quantity::ALL`] order.
    pub values: [f32; 10],
    /// Minute of the sample.
    pub minute: Minute,
    /// Second within that minute.
    pub second: u16,
    /// Fault openings so far in that minute.
    pub faults_so_far: u16,
    /// Status bits.
    pub status: RecordFlags,
}

/// Decodes the clock block (all [`CLOCK`]`.len` registers): Unix seconds.
pub fn decode_clock(regs: &[u16]) -> Result<u64, RegisterError> {
    if regs.len() < CLOCK.len as usize {
        return Err(RegisterError::Short(CLOCK.len));
    }
    Ok((u64::from(get_u32(&regs[0..])) << 32) | u64::from(get_u32(&regs[2..])))
}

/// Encodes Unix seconds as the four registers of the clock block (for an FC16 write).
#[must_use]
pub fn encode_clock(unix_secs: u64) -> [u16; 4] {
    [
        (unix_secs >> 48) as u16,
        (unix_secs >> 32) as u16,
        (unix_secs >> 16) as u16,
        unix_secs as u16,
    ]
}

/// Decodes the live block (all [`LIVE`]`.len` registers, from its start).
pub fn decode_live(regs: &[u16]) -> Result<LiveRead, RegisterError> {
    if regs.len() < LIVE.len as usize {
        return Err(RegisterError::Short(LIVE.len));
    }
    let mut values = [0f32; 10];
    for (i, v) in values.iter_mut().enumerate() {
        *v = f32::from_bits(get_u32(&regs[live::FLOATS + 2 * i..]));
    }
    Ok(LiveRead {
        values,
        minute: Minute(get_u32(&regs[live::MINUTE..])),
        second: regs[live::SECOND],
        faults_so_far: regs[live::FAULTS],
        status: RecordFlags(regs[live::STATUS]),
    })
}

fn put_u32(regs: &mut [u16], v: u32) {
    regs[0] = (v >> 16) as u16;
    regs[1] = v as u16;
}

fn get_u32(regs: &[u16]) -> u32 {
    (u32::from(regs[0]) << 16) | u32::from(regs[1])
}

fn put_sample(regs: &mut [u16], s: &Sample) {
    put_u32(&mut regs[0..], s.vab.0);
    put_u32(&mut regs[2..], s.vbc.0);
    put_u32(&mut regs[4..], s.vca.0);
    put_u32(&mut regs[6..], s.ia.0);
    put_u32(&mut regs[8..], s.ib.0);
    put_u32(&mut regs[10..], s.ic.0);
    regs[12] = s.freq.0;
    regs[13] = s.pf.0 as u16;
    put_u32(&mut regs[14..], s.p.0 as u32);
    put_u32(&mut regs[16..], s.q.0 as u32);
}

fn get_sample(regs: &[u16]) -> Sample {
    Sample {
        vab: Volts(get_u32(&regs[0..])),
        vbc: Volts(get_u32(&regs[2..])),
        vca: Volts(get_u32(&regs[4..])),
        ia: MilliAmps(get_u32(&regs[6..])),
        ib: MilliAmps(get_u32(&regs[8..])),
        ic: MilliAmps(get_u32(&regs[10..])),
        freq: MilliHertz(regs[12]),
        pf: PerMille(regs[13] as i16),
        p: Watts(get_u32(&regs[14..]) as i32),
        q: Vars(get_u32(&regs[16..]) as i32),
    }
}

fn put_str(regs: &mut [u16], s: &str) {
    let bytes = s.as_bytes();
    for (i, r) in regs.iter_mut().enumerate() {
        let hi = bytes.get(2 * i).copied().unwrap_or(0);
        let lo = bytes.get(2 * i + 1).copied().unwrap_or(0);
        *r = u16::from_be_bytes([hi, lo]);
    }
}

/// Reads a NUL-padded UTF-8 string; invalid UTF-8 is cut at the first bad byte.
fn get_str<'b>(regs: &[u16], buf: &'b mut [u8]) -> &'b str {
    for (i, pair) in buf.chunks_exact_mut(2).enumerate() {
        pair.copy_from_slice(&regs[i].to_be_bytes());
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match core::str::from_utf8(&buf[..len]) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_do_not_overlap_and_fit_one_read() {
        assert!(IDENTITY.end() <= LIVE.start);
        assert!(LIVE.end() <= RECORD.start);
        assert!(RECORD.end() <= CLOCK.start);
        for b in [IDENTITY, LIVE, RECORD, CLOCK] {
            assert!(b.len <= MAX_READ, "{b:?} needs more than one request");
        }
        assert_eq!(RECORD.len, 117);
        assert_eq!(MAP_LEN, 404);
    }

    #[test]
    fn read_checks_quantity_then_address() {
        let image = RegisterImage::new(&Identity::new(RelayId(7), "R", "S"), 6);
        assert_eq!(image.read(0, 0), Err(Exception::IllegalDataValue));
        assert_eq!(image.read(0, 126), Err(Exception::IllegalDataValue));
        assert_eq!(image.read(60000, 126), Err(Exception::IllegalDataValue));
        assert_eq!(
            image.read(MAP_LEN as u16, 1),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(
            image.read(MAP_LEN as u16 - 1, 2),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(
            image.read(u16::MAX, 125),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(image.read(MAP_LEN as u16 - 1, 1).map(<[u16]>::len), Ok(1));
        assert_eq!(image.read(0, 125).map(<[u16]>::len), Ok(125));
    }

    #[test]
    fn identity_round_trips_with_utf8() {
        let id = Identity::new(
            RelayId(0x0102_0304),
            "Relay 1",
            "Bogotá Electrical Substation - U.D.",
        );
        let image = RegisterImage::new(&id, 6);
        let read = decode_identity(image.read(IDENTITY.start, IDENTITY.len).expect("in map"))
            .expect("decodes");
        assert_eq!(read.identity, id);
        assert_eq!(read.samples_per_record, 6);
        assert_eq!(read.sample_secs, 10);
        // "Re" in the first name register, high byte first.
        assert_eq!(image.as_slice()[identity::NAME], u16::from_be_bytes(*b"Re"));
    }

    #[test]
    fn empty_record_block_says_no_record_yet() {
        let image = RegisterImage::new(&Identity::new(RelayId(1), "R", "S"), 6);
        let regs = image.read(RECORD.start, RECORD.len).expect("in map");
        assert_eq!(decode_record(regs), Err(RegisterError::NoRecordYet));
    }

    #[test]
    fn torn_record_is_detected() {
        let mut rec = MinuteRecord {
            relay: RelayId(1),
            minute: Minute(100),
            faults: 0,
            flags: RecordFlags::CLOCK_SET,
            samples: heapless::Vec::new(),
        };
        rec.samples.push(Sample::default()).expect("room");
        let mut a = RegisterImage::new(&Identity::new(RelayId(1), "R", "S"), 6);
        a.set_record(1, &rec);
        let mut b = a.clone();
        rec.minute = Minute(101);
        b.set_record(2, &rec);
        // First half from record 1, second half from record 2.
        let mut regs = [0u16; RECORD.len as usize];
        let split = 60;
        regs[..split].copy_from_slice(a.read(RECORD.start, split as u16).expect("in map"));
        regs[split..].copy_from_slice(
            b.read(RECORD.start + split as u16, RECORD.len - split as u16)
                .expect("in map"),
        );
        assert_eq!(
            decode_record(&regs),
            Err(RegisterError::Torn { head: 1, tail: 2 })
        );
    }
}
