//! The measurement model: what a relay measures and what a minute record holds.
//!
//! Every quantity is a scaled integer: the stored value is a thousandth of the unit people
//! read (volts for kV, milliamps for A, millihertz for Hz, ‰ for the power factor, watts for
//! kW, var for kvar). Integers make a record exact and bit-for-bit reproducible on every
//! platform, which a ledger that hashes records needs; the three decimals match the
//! resolution of the published study. `to_f32` gives the value in the unit people read.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The most samples a minute record holds: one every 10 seconds.
pub const MAX_SAMPLES: usize = 6;

/// Identifies one relay across the whole network (not just on its Modbus bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RelayId(pub u32);

impl fmt::Display for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A UTC minute: whole minutes since 1970-01-01T00:00Z.
///
/// A `u32` of minutes lasts until the year 10136, unlike a `u32` of seconds (2106).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Minute(pub u32);

impl Minute {
    /// The minute that contains the given Unix time (seconds), saturating past year 10136.
    #[must_use]
    pub fn containing(unix_secs: u64) -> Self {
        Minute(u32::try_from(unix_secs / 60).unwrap_or(u32::MAX))
    }

    /// Unix time (seconds) of the first second of this minute.
    #[must_use]
    pub fn start_unix_secs(self) -> u64 {
        u64::from(self.0) * 60
    }

    /// Reads a minute as people and files write it: whole minutes since 1970, or
    /// `YYYY-MM-DDTHH:MM` in UTC with or without a final `Z` (what [`Minute`]'s `Display`
    /// writes). `None` for anything else, an impossible date included.
    #[must_use]
    pub fn parse(s: &str) -> Option<Minute> {
        if let Ok(n) = s.parse::<u32>() {
            return Some(Minute(n));
        }
        let s = s.strip_suffix('Z').unwrap_or(s);
        let (date, time) = s.split_once('T')?;
        let mut d = date.splitn(3, '-').map(str::parse::<i64>);
        let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
        let (h, mi) = time.split_once(':')?;
        let (h, mi) = (h.parse::<i64>().ok()?, mi.parse::<i64>().ok()?);
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in_month = match mo {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => return None,
        };
        if !(1..=days_in_month).contains(&da) || !(0..24).contains(&h) || !(0..60).contains(&mi) {
            return None;
        }
        let minutes = (days_from_civil(y, mo, da) * 24 + h) * 60 + mi;
        u32::try_from(minutes).ok().map(Minute)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Minute {
    /// ISO 8601 in UTC, e.g. `2026-11-24T17:50Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(i64::from(self.0 / 1440));
        let in_day = self.0 % 1440;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}Z",
            in_day / 60,
            in_day % 60
        )
    }
}

/// Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

macro_rules! scaled_unit {
    ($(#[$doc:meta])* $name:ident($repr:ty), $unit:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $repr);

        impl $name {
            /// The unit people read (the stored integer is a thousandth of it).
            pub const UNIT: &'static str = $unit;

            /// The value in [`Self::UNIT`].
            #[must_use]
            pub fn to_f32(self) -> f32 {
                self.0 as f32 / 1000.0
            }
        }
    };
}

scaled_unit!(
    /// Phase-to-phase voltage in volts, read as kV (`115_000` = 115.000 kV).
    Volts(u32),
    "kV"
);
scaled_unit!(
    /// Line current in milliamps, read as A (`12_345` = 12.345 A).
    MilliAmps(u32),
    "A"
);
scaled_unit!(
    /// Frequency in millihertz, read as Hz (`60_000` = 60.000 Hz; up to 65.535 Hz).
    MilliHertz(u16),
    "Hz"
);
scaled_unit!(
    /// Power factor in thousandths, −1000..=1000 (`950` = 0.950).
    PerMille(i16),
    ""
);
scaled_unit!(
    /// Active power in watts, read as kW; negative when power flows back.
    Watts(i32),
    "kW"
);
scaled_unit!(
    /// Reactive power in var, read as kvar; positive for a lagging (inductive) load.
    Vars(i32),
    "kvar"
);

/// One 10-second sample of the ten quantities a relay measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sample {
    /// Voltage between phases A and B.
    pub vab: Volts,
    /// Voltage between phases B and C.
    pub vbc: Volts,
    /// Voltage between phases C and A.
    pub vca: Volts,
    /// Current in line A.
    pub ia: MilliAmps,
    /// Current in line B.
    pub ib: MilliAmps,
    /// Current in line C.
    pub ic: MilliAmps,
    /// System frequency.
    pub freq: MilliHertz,
    /// Power factor.
    pub pf: PerMille,
    /// Three-phase active power.
    pub p: Watts,
    /// Three-phase reactive power.
    pub q: Vars,
}

impl Sample {
    /// The sample of the ten stored integers in [`Quantity::ALL`] order (the inverse of
    /// [`Quantity::raw`]); `None` if one does not fit its type.
    #[must_use]
    pub fn from_raw(v: [i64; 10]) -> Option<Sample> {
        Some(Sample {
            vab: Volts(v[0].try_into().ok()?),
            vbc: Volts(v[1].try_into().ok()?),
            vca: Volts(v[2].try_into().ok()?),
            ia: MilliAmps(v[3].try_into().ok()?),
            ib: MilliAmps(v[4].try_into().ok()?),
            ic: MilliAmps(v[5].try_into().ok()?),
            freq: MilliHertz(v[6].try_into().ok()?),
            pf: PerMille(v[7].try_into().ok()?),
            p: Watts(v[8].try_into().ok()?),
            q: Vars(v[9].try_into().ok()?),
        })
    }
}

/// The ten quantities of a [`Sample`], in register-map order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quantity {
    Vab,
    Vbc,
    Vca,
    Ia,
    Ib,
    Ic,
    Freq,
    Pf,
    P,
    Q,
}

impl Quantity {
    /// All quantities, in register-map order.
    pub const ALL: [Quantity; 10] = [
        Quantity::Vab,
        Quantity::Vbc,
        Quantity::Vca,
        Quantity::Ia,
        Quantity::Ib,
        Quantity::Ic,
        Quantity::Freq,
        Quantity::Pf,
        Quantity::P,
        Quantity::Q,
    ];

    /// Short name, as in the study (`Vab`, `Ia`, `f`, `PF`, `P`, `Q`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Vab => "Vab",
            Quantity::Vbc => "Vbc",
            Quantity::Vca => "Vca",
            Quantity::Ia => "Ia",
            Quantity::Ib => "Ib",
            Quantity::Ic => "Ic",
            Quantity::Freq => "f",
            Quantity::Pf => "PF",
            Quantity::P => "P",
            Quantity::Q => "Q",
        }
    }

    /// The unit people read.
    #[must_use]
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::Vab | Quantity::Vbc | Quantity::Vca => Volts::UNIT,
            Quantity::Ia | Quantity::Ib | Quantity::Ic => MilliAmps::UNIT,
            Quantity::Freq => MilliHertz::UNIT,
            Quantity::Pf => PerMille::UNIT,
            Quantity::P => Watts::UNIT,
            Quantity::Q => Vars::UNIT,
        }
    }

    /// The stored integer (thousandths of [`Self::unit`]).
    #[must_use]
    pub fn raw(self, s: &Sample) -> i64 {
        match self {
            Quantity::Vab => s.vab.0.into(),
            Quantity::Vbc => s.vbc.0.into(),
            Quantity::Vca => s.vca.0.into(),
            Quantity::Ia => s.ia.0.into(),
            Quantity::Ib => s.ib.0.into(),
            Quantity::Ic => s.ic.0.into(),
            Quantity::Freq => s.freq.0.into(),
            Quantity::Pf => s.pf.0.into(),
            Quantity::P => s.p.0.into(),
            Quantity::Q => s.q.0.into(),
        }
    }

    /// The value in [`Self::unit`].
    #[must_use]
    pub fn value(self, s: &Sample) -> f32 {
        match self {
            Quantity::Vab => s.vab.to_f32(),
            Quantity::Vbc => s.vbc.to_f32(),
            Quantity::Vca => s.vca.to_f32(),
            Quantity::Ia => s.ia.to_f32(),
            Quantity::Ib => s.ib.to_f32(),
            Quantity::Ic => s.ic.to_f32(),
            Quantity::Freq => s.freq.to_f32(),
            Quantity::Pf => s.pf.to_f32(),
            Quantity::P => s.p.to_f32(),
            Quantity::Q => s.q.to_f32(),
        }
    }
}

/// Status bits of a relay and of each record it closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordFlags(pub u16);

impl RecordFlags {
    /// The relay's clock was set from a trusted source: the minute is a real UTC minute.
    /// Without it, the minute counts from the relay's power-up and must not be trusted as a
    /// date (a board without a battery-backed clock, before its first time sync).
    pub const CLOCK_SET: RecordFlags = RecordFlags(1);
    /// Bits 8 to 13: bit `8 + i` set means slot `i` of the minute has no sample (the device
    /// did not answer then). The minute has `samples + missing` evenly spaced slots; a
    /// record from a relay that never misses a sample has none of these bits.
    pub const MISSING: RecordFlags = RecordFlags(0x3F00);
    /// Every bit this version of the map defines.
    pub const KNOWN: RecordFlags = RecordFlags(0x3F01);

    /// True if every bit of `other` is set in `self`.
    #[must_use]
    pub fn contains(self, other: RecordFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The missing-slot mask: bit `i` set = slot `i` has no sample.
    #[must_use]
    pub fn missing(self) -> u8 {
        ((self.0 & Self::MISSING.0) >> 8) as u8
    }

    /// These flags with the missing-slot mask `mask` (bits 0 to 5).
    #[must_use]
    pub fn with_missing(self, mask: u8) -> RecordFlags {
        RecordFlags((self.0 & !Self::MISSING.0) | (u16::from(mask & 0x3F) << 8))
    }
}

/// What a relay closes at each minute boundary: everything it measured in that minute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MinuteRecord {
    /// The relay that measured it.
    pub relay: RelayId,
    /// The minute it covers.
    pub minute: Minute,
    /// Breaker openings caused by faults during the minute.
    pub faults: u16,
    /// Status bits at closing time.
    pub flags: RecordFlags,
    /// The samples, oldest first, in the minute's evenly spaced slots (six at 10 s); a slot
    /// the device did not answer is marked in [`RecordFlags::MISSING`] and holds none.
    ///
    /// Encoded as the first sample, then each later one as per-quantity differences from
    /// the one before: consecutive samples are close, so the record shrinks by a quarter.
    #[serde(with = "delta_samples")]
    pub samples: heapless::Vec<Sample, MAX_SAMPLES>,
    /// The relay's Ed25519 signature of the record ([`MinuteRecord::signing_message`]), when
    /// the relay signs. It is not part of the signed bytes: [`MinuteRecord::encode`] appends
    /// it after them, and [`MinuteRecord::encode_unsigned`] leaves it out.
    #[serde(skip)]
    pub signature: Option<RecordSignature>,
}

/// A relay's Ed25519 signature (RFC 8032) of one minute record: 64 bytes, `R ‖ S`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordSignature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for RecordSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordSignature(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Bytes in a record signature.
pub const SIGNATURE_LEN: usize = 64;

/// The domain-separation prefix of a record signature: a relay signs
/// `SIGNING_CONTEXT ‖ canonical record bytes`, so that a signature made for a record can
/// never pass for a signature of anything else its key signs (and the other way round).
pub const SIGNING_CONTEXT: &[u8] = b"gridledger record v1\n";

/// Why bytes or registers do not hold a valid minute record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The postcard bytes do not decode (truncated, overlong, bad varint, too many samples).
    Malformed,
    /// The bytes decode but are not the one canonical encoding of the record
    /// (trailing bytes or a non-minimal varint): a ledger hashes bytes, so only one
    /// encoding per record is accepted.
    NonCanonical,
    /// A record holds 1 to [`MAX_SAMPLES`] samples; this one holds the given number.
    SampleCount(usize),
    /// A power factor outside −1000..=1000 ‰, at the given sample index.
    PowerFactor(usize),
    /// Status bits this version of the map does not define.
    UnknownFlags(u16),
    /// The missing-slot mask (flag bits 8 to 13, given here as bits 0 to 5) names a slot
    /// past the minute's slots, or makes more than [`MAX_SAMPLES`] slots.
    MissingSlots(u8),
    /// The buffer given to [`MinuteRecord::encode`] is too small.
    BufferTooSmall,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Malformed => f.write_str("record bytes do not decode"),
            RecordError::NonCanonical => f.write_str("record bytes are not in canonical form"),
            RecordError::SampleCount(n) => {
                write!(f, "record holds {n} samples, expected 1 to {MAX_SAMPLES}")
            }
            RecordError::PowerFactor(i) => {
                write!(f, "sample {i} has a power factor outside -1..1")
            }
            RecordError::UnknownFlags(bits) => write!(f, "unknown status bits {bits:#06x}"),
            RecordError::MissingSlots(mask) => write!(
                f,
                "missing-sample mask {mask:#08b} does not fit the record's samples (at most 6 slots in all)"
            ),
            RecordError::BufferTooSmall => f.write_str("buffer too small for the record"),
        }
    }
}

impl core::error::Error for RecordError {}

impl MinuteRecord {
    /// The largest postcard encoding of any valid record without its signature, in bytes:
    /// the header fields, the first sample, then five deltas of ten zigzag varints of up to
    /// 33 bits (5 bytes).
    pub const MAX_UNSIGNED_LEN: usize =
        5 + 5 + 3 + 3 + 1 + (3 * 5 + 3 * 5 + 3 + 3 + 5 + 5) + (MAX_SAMPLES - 1) * 10 * 5;

    /// The largest encoding of any valid record with its signature: what
    /// [`MinuteRecord::encode`] may write.
    pub const MAX_ENCODED_LEN: usize = Self::MAX_UNSIGNED_LEN + SIGNATURE_LEN;

    /// The longest [`MinuteRecord::signing_message`].
    pub const MAX_SIGNING_MESSAGE_LEN: usize = SIGNING_CONTEXT.len() + Self::MAX_UNSIGNED_LEN;

    /// Checks the rules that the types alone do not enforce.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.samples.is_empty() {
            return Err(RecordError::SampleCount(0));
        }
        if let Some(i) = self
            .samples
            .iter()
            .position(|s| !(-1000..=1000).contains(&s.pf.0))
        {
            return Err(RecordError::PowerFactor(i));
        }
        let unknown = self.flags.0 & !RecordFlags::KNOWN.0;
        if unknown != 0 {
            return Err(RecordError::UnknownFlags(unknown));
        }
        let missing = self.flags.missing();
        if missing != 0 {
            let slots = self.slots();
            if slots > MAX_SAMPLES || u16::from(missing) >> slots != 0 {
                return Err(RecordError::MissingSlots(missing));
            }
        }
        Ok(())
    }

    /// The minute's sample slots: the samples held plus those marked missing.
    #[must_use]
    pub fn slots(&self) -> usize {
        self.samples.len() + self.flags.missing().count_ones() as usize
    }

    /// The second of the minute each held sample was taken at, in order: slot `i` of `n`
    /// is at second `i × 60 / n`, and missing slots are skipped.
    pub fn sample_seconds(&self) -> impl Iterator<Item = u16> + '_ {
        let n = self.slots().max(1);
        let missing = self.flags.missing();
        (0..n)
            .filter(move |i| missing >> i & 1 == 0)
            .map(move |i| (i * 60 / n) as u16)
    }

    /// Writes the record as a block carries it into `buf` and returns the bytes written:
    /// the canonical postcard encoding ([`Self::encode_unsigned`]), then the 64 bytes of the
    /// signature when the record has one.
    ///
    /// A buffer of [`Self::MAX_ENCODED_LEN`] bytes always suffices.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], RecordError> {
        let len = self.encode_unsigned(buf)?.len();
        let Some(sig) = &self.signature else {
            return Ok(&mut buf[..len]);
        };
        let end = len + SIGNATURE_LEN;
        buf.get_mut(len..end)
            .ok_or(RecordError::BufferTooSmall)?
            .copy_from_slice(&sig.0);
        Ok(&mut buf[..end])
    }

    /// Writes the canonical postcard encoding of the record alone, without its signature:
    /// the bytes a relay signs (after [`SIGNING_CONTEXT`]) and a witness compares.
    ///
    /// A buffer of [`Self::MAX_UNSIGNED_LEN`] bytes always suffices.
    pub fn encode_unsigned<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], RecordError> {
        postcard::to_slice(self, buf).map_err(|_| RecordError::BufferTooSmall)
    }

    /// Writes the message a relay signs: [`SIGNING_CONTEXT`], then the canonical record
    /// bytes ([`Self::encode_unsigned`]).
    ///
    /// A buffer of [`Self::MAX_SIGNING_MESSAGE_LEN`] bytes always suffices.
    pub fn signing_message<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], RecordError> {
        let ctx = SIGNING_CONTEXT.len();
        buf.get_mut(..ctx)
            .ok_or(RecordError::BufferTooSmall)?
            .copy_from_slice(SIGNING_CONTEXT);
        let len = self.encode_unsigned(&mut buf[ctx..])?.len();
        Ok(&buf[..ctx + len])
    }

    /// Whether two records say the same thing: every field but the signature.
    #[must_use]
    pub fn same_reading(&self, other: &MinuteRecord) -> bool {
        self.relay == other.relay
            && self.minute == other.minute
            && self.faults == other.faults
            && self.flags == other.flags
            && self.samples == other.samples
    }

    /// The relay and minute of the record encoded in `bytes`, from its first two fields
    /// alone: enough to find one record among a stored block's without decoding the others.
    #[must_use]
    pub fn peek_key(bytes: &[u8]) -> Option<(RelayId, Minute)> {
        postcard::take_from_bytes::<(RelayId, Minute)>(bytes)
            .ok()
            .map(|(key, _)| key)
    }

    /// Decodes and validates a record that was checked by [`Self::decode`] before it was
    /// stored (a ledger's own blocks), without the canonical-form check, which encodes the
    /// record again. Bytes from anywhere else go through [`Self::decode`].
    pub fn decode_stored(bytes: &[u8]) -> Result<Self, RecordError> {
        Self::decode_parts(bytes).map(|(record, _)| record)
    }

    /// The record and the length of its unsigned part.
    fn decode_parts(bytes: &[u8]) -> Result<(Self, usize), RecordError> {
        let (mut record, rest): (MinuteRecord, _) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed)?;
        let body = bytes.len() - rest.len();
        record.signature = match rest.len() {
            0 => None,
            SIGNATURE_LEN => {
                let mut sig = [0u8; SIGNATURE_LEN];
                sig.copy_from_slice(rest);
                Some(RecordSignature(sig))
            }
            _ => return Err(RecordError::NonCanonical),
        };
        record.validate()?;
        Ok((record, body))
    }

    /// Decodes and validates a record from exactly `bytes`, accepting only the canonical
    /// encoding (what [`Self::encode`] writes): the record's canonical bytes, then nothing
    /// or exactly a 64-byte signature. Whether the signature verifies is not checked here:
    /// that needs the relay's key, from a registry (the `chain` crate's rule).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (record, body) = Self::decode_parts(bytes)?;
        let mut buf = [0u8; Self::MAX_UNSIGNED_LEN];
        let canonical = record.encode_unsigned(&mut buf)?;
        if *canonical != bytes[..body] {
            return Err(RecordError::NonCanonical);
        }
        Ok(record)
    }
}

/// The samples of a record as postcard sees them: a sequence whose first element is a
/// [`Sample`] and whose later elements are `[i64; 10]` differences from the previous sample,
/// in [`Quantity::ALL`] order.
mod delta_samples {
    use core::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    use super::{Quantity, Sample, MAX_SAMPLES};

    type Samples = heapless::Vec<Sample, MAX_SAMPLES>;

    fn raw(s: &Sample) -> [i64; 10] {
        Quantity::ALL.map(|q| q.raw(s))
    }

    pub(super) fn serialize<S: Serializer>(samples: &Samples, ser: S) -> Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(samples.len()))?;
        let mut prev: Option<[i64; 10]> = None;
        for s in samples {
            let now = raw(s);
            match prev {
                None => seq.serialize_element(s)?,
                Some(p) => {
                    let mut delta = [0i64; 10];
                    for i in 0..10 {
                        delta[i] = now[i] - p[i];
                    }
                    seq.serialize_element(&delta)?;
                }
            }
            prev = Some(now);
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Samples, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Samples;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sample followed by up to five sample deltas")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Samples, A::Error> {
                let mut out = Samples::new();
                let Some(first) = seq.next_element::<Sample>()? else {
                    return Ok(out);
                };
                let mut prev = raw(&first);
                out.push(first)
                    .map_err(|_| A::Error::custom("too many samples"))?;
                while let Some(delta) = seq.next_element::<[i64; 10]>()? {
                    let mut now = [0i64; 10];
                    for i in 0..10 {
                        now[i] = prev[i]
                            .checked_add(delta[i])
                            .ok_or_else(|| A::Error::custom("sample delta overflows"))?;
                    }
                    let sample = Sample::from_raw(now)
                        .ok_or_else(|| A::Error::custom("sample out of range"))?;
                    out.push(sample)
                        .map_err(|_| A::Error::custom("too many samples"))?;
                    prev = now;
                }
                Ok(out)
            }
        }
        de.deserialize_seq(V)
    }
}

/// Who a relay is: its network-wide id, its name and its substation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The relay's network-wide id.
    pub relay: RelayId,
    /// Relay name, at most 32 bytes of UTF-8.
    pub name: heapless::String<32>,
    /// Substation name, at most 64 bytes of UTF-8.
    pub substation: heapless::String<64>,
}

impl Identity {
    /// The longest relay name, in bytes of UTF-8.
    pub const NAME_MAX: usize = 32;
    /// The longest substation name, in bytes of UTF-8.
    pub const SUBSTATION_MAX: usize = 64;

    /// Builds an identity, cutting each name at a character boundary to fit its field.
    /// Configuration that comes from a person should be checked against
    /// [`Identity::NAME_MAX`] and [`Identity::SUBSTATION_MAX`] first and refused, not cut.
    #[must_use]
    pub fn new(relay: RelayId, name: &str, substation: &str) -> Self {
        Identity {
            relay,
            name: truncated(name),
            substation: truncated(substation),
        }
    }
}

/// The longest prefix of `s` that fits in `N` bytes without splitting a character.
pub(crate) fn truncated<const N: usize>(s: &str) -> heapless::String<N> {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = heapless::String::new();
    // Cannot fail: `end <= N` bytes.
    let _ = out.push_str(&s[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_formats_as_utc() {
        assert_eq!(format_minute(Minute(0)), "1970-01-01T00:00Z");
        // 2026-11-24T17:50:00Z = 1795542600 s.
        assert_eq!(
            format_minute(Minute::containing(1_795_542_600)),
            "2026-11-24T17:50Z"
        );
        // Leap day.
        assert_eq!(
            format_minute(Minute::containing(951_782_400)),
            "2000-02-29T00:00Z"
        );
        // Past the year 9999, as FORMAT.md section 9 says: five digits.
        assert_eq!(format_minute(Minute(4_223_371_679)), "9999-12-31T23:59Z");
        assert_eq!(format_minute(Minute(4_223_371_680)), "10000-01-01T00:00Z");
        assert_eq!(format_minute(Minute(u32::MAX)), "10136-02-16T04:15Z");
    }

    #[test]
    fn minute_parses_what_it_displays() {
        for m in [0, 29_943_840, 951_782_400 / 60, 4_223_371_680, u32::MAX] {
            assert_eq!(Minute::parse(&format_minute(Minute(m))), Some(Minute(m)));
        }
        assert_eq!(Minute::parse("2026-12-07T08:00"), Some(Minute(29_943_840)));
        assert_eq!(Minute::parse("29943840"), Some(Minute(29_943_840)));
        for bad in [
            "2026-02-29T00:00Z",
            "2026-13-01T00:00Z",
            "2026-01-01T24:00Z",
            "x",
            "2026-01-01",
        ] {
            assert_eq!(Minute::parse(bad), None, "{bad}");
        }
    }

    fn format_minute(m: Minute) -> heapless::String<32> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        write!(s, "{m}").expect("fits");
        s
    }

    #[test]
    fn identity_truncates_on_char_boundary() {
        let id = Identity::new(
            RelayId(1),
            "Relay 1",
            "Bogotá Electrical Substation - U.D. and a lot more text",
        );
        assert!(id.substation.len() <= 64);
        assert!(id.substation.starts_with("Bogotá"));
        let long = "ááááááááááááááááá"; // 17 two-byte characters = 34 bytes
        let id = Identity::new(RelayId(1), long, "");
        assert_eq!(id.name.len(), 32);
        assert_eq!(id.name.chars().count(), 16);
    }

    fn record_of(n: usize, flags: RecordFlags) -> MinuteRecord {
        let mut samples = heapless::Vec::new();
        for k in 0..n {
            let s = Sample {
                vab: Volts(100_000 + k as u32),
                ..Sample::default()
            };
            samples.push(s).expect("fits");
        }
        MinuteRecord {
            relay: RelayId(1),
            minute: Minute(29_000_000),
            faults: 0,
            flags,
            samples,
            signature: None,
        }
    }

    #[test]
    fn a_signature_rides_after_the_canonical_bytes() {
        let mut r = record_of(6, RecordFlags::CLOCK_SET);
        let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        let unsigned = r.encode(&mut buf).expect("encodes").to_vec();
        r.signature = Some(RecordSignature([7; SIGNATURE_LEN]));
        let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        let signed = r.encode(&mut buf).expect("encodes").to_vec();
        // The signed form is the unsigned bytes, untouched, and the signature.
        assert_eq!(&signed[..unsigned.len()], &unsigned[..]);
        assert_eq!(&signed[unsigned.len()..], &[7; SIGNATURE_LEN][..]);
        assert_eq!(MinuteRecord::decode(&signed), Ok(r.clone()));
        // The message signed is the context and the unsigned bytes.
        let mut m = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        let msg = r.signing_message(&mut m).expect("fits");
        assert_eq!(&msg[..SIGNING_CONTEXT.len()], SIGNING_CONTEXT);
        assert_eq!(&msg[SIGNING_CONTEXT.len()..], &unsigned[..]);
        // Any other tail length is not a record.
        for cut in [1, 63, 65] {
            let mut bad = unsigned.clone();
            bad.extend(core::iter::repeat_n(7u8, cut));
            assert_eq!(MinuteRecord::decode(&bad), Err(RecordError::NonCanonical));
        }
        assert!(r.same_reading(&MinuteRecord::decode(&unsigned).expect("decodes")));
    }

    #[test]
    fn missing_samples_keep_their_slots() {
        // Six slots, slots 1 and 4 not answered: four samples at 0, 20, 30 and 50 s.
        let r = record_of(4, RecordFlags::CLOCK_SET.with_missing(0b01_0010));
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.slots(), 6);
        let mut seconds = [0u16; 6];
        let mut k = 0;
        for s in r.sample_seconds() {
            seconds[k] = s;
            k += 1;
        }
        assert_eq!(&seconds[..k], &[0, 20, 30, 50]);
        // It survives its encoding.
        let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        let bytes = r.encode(&mut buf).expect("encodes");
        assert_eq!(MinuteRecord::decode(bytes), Ok(r.clone()));
        // A record without missing bits is what it always was.
        let full = record_of(6, RecordFlags::CLOCK_SET);
        assert_eq!(full.flags.0, 1);
        assert_eq!(full.slots(), 6);
    }

    #[test]
    fn a_mask_past_the_slots_is_refused() {
        // Two samples and slot 5 missing: three slots, so slot 5 does not exist.
        let r = record_of(2, RecordFlags::CLOCK_SET.with_missing(0b10_0000));
        assert_eq!(r.validate(), Err(RecordError::MissingSlots(0b10_0000)));
        // Six samples and one missing: seven slots.
        let r = record_of(6, RecordFlags::CLOCK_SET.with_missing(0b1));
        assert_eq!(r.validate(), Err(RecordError::MissingSlots(1)));
        // Bits above 13 stay unknown.
        let r = record_of(6, RecordFlags(0x4001));
        assert_eq!(r.validate(), Err(RecordError::UnknownFlags(0x4000)));
    }
}
