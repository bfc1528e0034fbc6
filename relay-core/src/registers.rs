//! The Modbus register map, both directions, and the rules for reading it.
//!
//! `docs/book/src/registers.md` is the human version of this module; the two must agree. The map is
//! one flat image of [`MAP_LEN`] 16-bit registers per relay, served identically as input
//! registers (FC04) and read-only holding registers (FC03). It has five blocks:
//!
//! | block      | start | len | what                                                   |
//! |------------|-------|-----|--------------------------------------------------------|
//! | [`IDENTITY`] | 0   | 72  | map version, relay id, sampling, status, name, substation, the relay's public key |
//! | [`LIVE`]     | 100 | 25  | the latest sample as float32 (ABCD), its time, faults so far |
//! | [`RECORD`]   | 200 | 117 | the last closed minute record, scaled integers, with a sequence number at both ends |
//! | [`SIGNATURE`] | 320 | 33 | the relay's signature of that record, under the record's sequence number |
//! | [`CLOCK`]    | 400 | 4   | the relay clock, Unix seconds (`u64`); writable on the firmware to set it |
//!
//! The record and its signature take two requests (117 + 33 registers is more than one read
//! may carry), so the signature block repeats the record's sequence number: a reader that
//! finds the two numbers different read a torn pair, and reads again.
//!
//! Registers between blocks are reserved and read as 0. 32-bit values are big-endian in
//! both bytes and words (ABCD): the high word comes first.

use crate::measure::{
    truncated, Identity, MilliAmps, MilliHertz, Minute, MinuteRecord, PerMille, Quantity,
    RecordError, RecordFlags, RecordSignature, RelayId, Sample, Vars, Volts, Watts, MAX_SAMPLES,
    SIGNATURE_LEN,
};

/// Version of this register map, served at address 0. Bumped on any incompatible change.
/// Version 2 added the public key to the identity block and the [`SIGNATURE`] block;
/// [`decode_identity`] still reads a version-1 relay (which does not sign).
pub const MAP_VERSION: u16 = 2;

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

/// Identity block: who the relay is, how it samples, and the key it signs records with.
pub const IDENTITY: Block = Block { start: 0, len: 72 };
/// The identity block of a version-1 relay (no key).
const IDENTITY_V1_LEN: u16 = 56;
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
/// Signature block: the relay's signature of the record in [`RECORD`], with that record's
/// sequence number first (see [`signature`]).
pub const SIGNATURE: Block = Block {
    start: 320,
    len: signature::LEN as u16,
};
/// Two diagnostic registers after the signature block: how long the relay's last signature
/// took, in microseconds of its own clock, `u32` (the firmware signs in its main loop;
/// relay-sim signs at once and leaves it 0). Not part of the record or its signature.
pub const SIGN_TIME: Block = Block { start: 353, len: 2 };
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
    /// The relay's Ed25519 public key: 16 registers, 32 bytes, two per register (first
    /// byte high). All zero: the relay does not sign its records.
    pub const KEY: usize = 56;
    /// Registers of the public key.
    pub const KEY_LEN: usize = 16;
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

/// Offsets inside the signature block.
pub mod signature {
    /// Sequence number of the record signed, `u16`: equal to the record block's in a
    /// consistent pair; 0 while the relay has signed nothing (or does not sign).
    pub const SEQ: usize = 0;
    /// The signature: 32 registers, 64 bytes (`R ‖ S`), two per register, first byte high.
    pub const SIG: usize = 1;
    /// Registers in the block.
    pub const LEN: usize = SIG + super::SIGNATURE_LEN / 2;
}

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

    /// Publishes the relay's Ed25519 public key in the identity block.
    pub fn set_key(&mut self, key: &[u8; 32]) {
        let id = &mut self.regs[IDENTITY.range()];
        put_bytes(
            &mut id[identity::KEY..identity::KEY + identity::KEY_LEN],
            key,
        );
    }

    /// Publishes the signature of the record published under sequence number `seq`.
    /// Call it with the same `seq` as [`Self::set_record`]; until then the signature block
    /// still names the previous record, and a reader sees the pair as torn.
    pub fn set_signature(&mut self, seq: u16, sig: &RecordSignature) {
        let block = &mut self.regs[SIGNATURE.range()];
        block[signature::SEQ] = seq;
        put_bytes(&mut block[signature::SIG..], &sig.0);
    }

    /// Publishes how long the last signature took ([`SIGN_TIME`]), in microseconds,
    /// saturating at `u32::MAX`.
    pub fn set_sign_us(&mut self, us: u64) {
        let block = &mut self.regs[SIGN_TIME.range()];
        put_u32(block, u32::try_from(us).unwrap_or(u32::MAX));
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
    /// The signature block names a different record than the record block read with it
    /// (the relay closed a record between the two reads, or has not signed the new one
    /// yet). Read both again.
    SignatureTorn {
        /// Sequence number of the record read.
        record: u16,
        /// Sequence number in the signature block.
        signature: u16,
    },
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
            RegisterError::SignatureTorn { record, signature } => write!(
                f,
                "the signature read is of record {signature}, not of record {record} read with it"
            ),
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
        signature: None,
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
    /// The relay's public key, if it signs its records.
    pub key: Option<[u8; 32]>,
}

/// Decodes the identity block (all [`IDENTITY`]`.len` registers, from its start; a
/// version-1 relay's 56 suffice, and it has no key).
pub fn decode_identity(regs: &[u16]) -> Result<IdentityRead, RegisterError> {
    let version = *regs
        .get(identity::VERSION)
        .ok_or(RegisterError::Short(IDENTITY.len))?;
    let needed = match version {
        1 => IDENTITY_V1_LEN,
        MAP_VERSION => IDENTITY.len,
        v => return Err(RegisterError::Version(v)),
    };
    if regs.len() < usize::from(needed) {
        return Err(RegisterError::Short(needed));
    }
    let key = if version == 1 {
        None
    } else {
        let mut key = [0u8; 32];
        get_bytes(&regs[identity::KEY..], &mut key);
        Some(key).filter(|k| k.iter().any(|&b| b != 0))
    };
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
        key,
    })
}

/// Decodes the signature block (all [`SIGNATURE`]`.len` registers) read after the record
/// block gave `read`, and attaches the signature to its record. A signature block of
/// sequence number 0 (the relay has not signed) leaves the record unsigned.
pub fn attach_signature(read: &mut RecordRead, regs: &[u16]) -> Result<(), RegisterError> {
    if regs.len() < SIGNATURE.len as usize {
        return Err(RegisterError::Short(SIGNATURE.len));
    }
    let seq = regs[signature::SEQ];
    if seq == 0 {
        read.record.signature = None;
        return Ok(());
    }
    if seq != read.seq {
        return Err(RegisterError::SignatureTorn {
            record: read.seq,
            signature: seq,
        });
    }
    let mut sig = [0u8; SIGNATURE_LEN];
    get_bytes(&regs[signature::SIG..], &mut sig);
    read.record.signature = Some(RecordSignature(sig));
    Ok(())
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

/// Bytes into registers, two per register, first byte high.
fn put_bytes(regs: &mut [u16], bytes: &[u8]) {
    for (r, pair) in regs.iter_mut().zip(bytes.chunks(2)) {
        *r = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
    }
}

/// Registers into bytes, two per register, first byte high.
fn get_bytes(regs: &[u16], out: &mut [u8]) {
    for (pair, r) in out.chunks_mut(2).zip(regs) {
        let b = r.to_be_bytes();
        pair[0] = b[0];
        if let Some(lo) = pair.get_mut(1) {
            *lo = b[1];
        }
    }
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
        assert!(RECORD.end() <= SIGNATURE.start);
        assert!(SIGNATURE.end() <= CLOCK.start);
        for b in [IDENTITY, LIVE, RECORD, SIGNATURE, CLOCK] {
            assert!(b.len <= MAX_READ, "{b:?} needs more than one request");
        }
        assert_eq!(SIGNATURE.len, 33);
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

    fn one_sample_record(relay: u32, minute: u32) -> MinuteRecord {
        let mut samples = heapless::Vec::new();
        samples.push(Sample::default()).expect("room");
        MinuteRecord {
            relay: RelayId(relay),
            minute: Minute(minute),
            faults: 0,
            flags: RecordFlags::CLOCK_SET,
            samples,
            signature: None,
        }
    }

    #[test]
    fn torn_record_is_detected() {
        let mut rec = one_sample_record(1, 100);
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

    #[test]
    fn key_and_signature_round_trip_and_a_torn_pair_is_seen() {
        let mut image = RegisterImage::new(&Identity::new(RelayId(9), "R", "S"), 6);
        let id = decode_identity(image.read(IDENTITY.start, IDENTITY.len).expect("in map"))
            .expect("decodes");
        assert_eq!(id.key, None, "an all-zero key: the relay does not sign");
        let key: [u8; 32] = core::array::from_fn(|i| i as u8 + 1);
        image.set_key(&key);
        let id = decode_identity(image.read(IDENTITY.start, IDENTITY.len).expect("in map"))
            .expect("decodes");
        assert_eq!(id.key, Some(key));
        // A version-1 relay's 56 registers still read, without a key.
        let mut v1 = [0u16; 56];
        v1.copy_from_slice(image.read(0, 56).expect("in map"));
        v1[identity::VERSION] = 1;
        assert_eq!(decode_identity(&v1).map(|r| r.key), Ok(None));
        assert_eq!(
            decode_identity(image.read(0, 56).expect("in map")),
            Err(RegisterError::Short(72))
        );

        let rec = one_sample_record(9, 100);
        let sig = RecordSignature(core::array::from_fn(|i| (i * 3) as u8));
        image.set_record(4, &rec);
        image.set_signature(4, &sig);
        let mut read =
            decode_record(image.read(RECORD.start, RECORD.len).expect("in map")).expect("set");
        attach_signature(
            &mut read,
            image.read(SIGNATURE.start, SIGNATURE.len).expect("in map"),
        )
        .expect("a matching pair");
        assert_eq!(read.record.signature, Some(sig));
        // The next record closes between the two reads: its signature is not the one read.
        image.set_record(5, &rec);
        let mut read =
            decode_record(image.read(RECORD.start, RECORD.len).expect("in map")).expect("set");
        assert_eq!(
            attach_signature(
                &mut read,
                image.read(SIGNATURE.start, SIGNATURE.len).expect("in map")
            ),
            Err(RegisterError::SignatureTorn {
                record: 5,
                signature: 4
            })
        );
    }
}
