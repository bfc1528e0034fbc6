//! The relay firmware's logic, free of any board: a Modbus RTU slave over `relay-core`'s
//! register map, a clock that counts from power-up until a master sets it, and the same
//! signal model as relay-sim.
//!
//! The board binary (`src/main.rs`, feature `board`) only supplies a UART implementing the
//! `embedded-io` traits, a millisecond counter and the signing key provisioned into the
//! board's key region ([`parse_key_region`]), and calls [`Relay::poll`] and
//! [`Relay::sign_pending`] in a loop. The host tests drive the same code with a mock UART.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;

use embedded_io::{Read, ReadReady, Write};
use relay_core::registers::{Exception, RegisterImage, CLOCK};
use relay_core::rtu::{Registers, Slave, MAX_FRAME};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{Identity, Minute, MinuteRecord, RecordFlags, RecordSignature, RelayId};

/// The first bytes of a provisioned key region: `GLK1`, then the 32-byte Ed25519 seed.
pub const KEY_MAGIC: [u8; 4] = *b"GLK1";
/// Bytes of a provisioned key region that are read: the magic and the seed.
pub const KEY_REGION_LEN: usize = 36;

/// The signing seed in a key region's first [`KEY_REGION_LEN`] bytes, if one was
/// provisioned (erased flash reads `FF`, an unprovisioned QEMU board `00`: no magic, no
/// key, and the relay does not sign).
#[must_use]
pub fn parse_key_region(region: &[u8; KEY_REGION_LEN]) -> Option<[u8; 32]> {
    if region[..4] != KEY_MAGIC {
        return None;
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&region[4..]);
    Some(seed)
}

/// What a board's relay is. The values of the demonstration board are [`BOARD`].
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Modbus unit id.
    pub unit: u8,
    /// Network-wide relay id.
    pub relay: RelayId,
    /// Relay name.
    pub name: &'static str,
    /// Substation name.
    pub substation: &'static str,
    /// Signal model seed.
    pub seed: u64,
    /// Signal profile.
    pub profile: Profile,
    /// Seconds between samples: 10, 12, 15, 20, 30 or 60.
    pub sample_secs: u16,
    /// Milliseconds of line silence that end a request frame (3.5 characters; 1.75 ms
    /// above 19 200 baud, rounded up to the clock's resolution).
    pub silence_ms: u64,
}

/// The firmware's relay: the same identity and model as relay-sim's defaults, so the same
/// seed gives the same records on both.
pub const BOARD: Config = Config {
    unit: 1,
    relay: RelayId(1),
    name: "Relay 1",
    substation: "Bogotá Electrical Substation - U.D.",
    seed: 1,
    profile: Profile::Realistic,
    sample_secs: 10,
    silence_ms: 2,
};

/// How far a set clock may be corrected: this much, plus as much again for every hour since
/// the last correction. A crystal drifts well under a second an hour; a client that wants
/// to move the clock by minutes is not correcting drift.
pub const CLOCK_SLEW_MS_PER_HOUR: u64 = 2_000;

/// The register map with the one writable block: the clock.
#[derive(Debug)]
struct Map {
    image: RegisterImage,
    /// Unix milliseconds at uptime 0, once a master has set the clock.
    offset_ms: Option<u64>,
    uptime_ms: u64,
    /// Uptime of the last accepted clock write.
    set_at_uptime_ms: u64,
    /// Set by a clock write, consumed by the next tick.
    clock_changed: bool,
}

impl Map {
    /// The largest correction accepted now (see [`CLOCK_SLEW_MS_PER_HOUR`]).
    fn slew_allowed_ms(&self) -> u64 {
        let hours = self.uptime_ms.saturating_sub(self.set_at_uptime_ms) / 3_600_000;
        CLOCK_SLEW_MS_PER_HOUR.saturating_mul(hours.saturating_add(1))
    }
}

impl Registers for Map {
    fn read(&self, address: u16, quantity: u16) -> Result<&[u16], Exception> {
        self.image.read(address, quantity)
    }

    /// The clock block takes one FC16 of all four registers (Unix seconds). An unset clock
    /// (after power-up) takes any time; a set one only a correction within the slew
    /// allowance, else 0x03 and the clock is unchanged. Setting an arbitrary time again
    /// takes the privileged sequence: a power cycle (physical access), then a first set.
    fn write(&mut self, address: u16, values: &[u16]) -> Result<(), Exception> {
        if address != CLOCK.start || values.len() != usize::from(CLOCK.len) {
            return Err(Exception::IllegalDataAddress);
        }
        let secs = values
            .iter()
            .fold(0u64, |acc, &v| (acc << 16) | u64::from(v));
        let new_ms = secs.saturating_mul(1000);
        if let Some(offset) = self.offset_ms {
            let now = offset + self.uptime_ms;
            if new_ms.abs_diff(now) > self.slew_allowed_ms() {
                return Err(Exception::IllegalDataValue);
            }
        }
        self.offset_ms = Some(new_ms.saturating_sub(self.uptime_ms));
        self.set_at_uptime_ms = self.uptime_ms;
        self.clock_changed = true;
        Ok(())
    }
}

/// The firmware relay.
pub struct Relay {
    config: Config,
    slave: Slave,
    map: Map,
    model: SignalModel,
    samples_per_record: u16,
    seq: u16,
    last_slot: Option<u64>,
    last_minute: Option<Minute>,
    last_rx_ms: u64,
    out: [u8; MAX_FRAME],
    key: Option<ed25519_compact::KeyPair>,
    /// The sequence number, minute and flags of the record closed last, until it is signed
    /// (the record itself is the signal model's, made again to sign it).
    unsigned: Option<(u16, Minute, RecordFlags)>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .field("seq", &self.seq)
            .field("signs", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay that has just powered up: clock not set, no record yet.
    #[must_use]
    pub fn new(config: Config) -> Self {
        let samples_per_record = 60 / config.sample_secs.clamp(10, 60);
        let image = RegisterImage::new(
            &Identity::new(config.relay, config.name, config.substation),
            samples_per_record,
        );
        Relay {
            config,
            slave: Slave::new(config.unit),
            map: Map {
                image,
                offset_ms: None,
                uptime_ms: 0,
                set_at_uptime_ms: 0,
                clock_changed: false,
            },
            model: SignalModel::new(config.seed, config.profile),
            samples_per_record,
            seq: 0,
            last_slot: None,
            last_minute: None,
            last_rx_ms: 0,
            out: [0; MAX_FRAME],
            key: None,
            unsigned: None,
        }
    }

    /// Gives the relay its signing key, from the seed provisioned on the board: it serves
    /// the public key in its identity registers and signs every record it closes from now.
    pub fn provision(&mut self, seed: [u8; 32]) {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        self.map.image.set_key(&kp.pk);
        self.key = Some(kp);
    }

    /// True if a record closed and waits for its signature ([`Relay::sign_pending`]).
    #[must_use]
    pub fn signing_due(&self) -> bool {
        self.key.is_some() && self.unsigned.is_some()
    }

    /// Signs the record closed last, if it waits, and publishes the signature under the
    /// record's sequence number and the time it took by `now_us` (microseconds). Returns
    /// true if it signed.
    ///
    /// Signing takes a while on a Cortex-M3 (docs/book/src/firmware.md), so it is not done inside
    /// [`Relay::tick`]: the sample of the new minute is published first, and until the
    /// signature is, a reader sees the signature block name the previous record (a torn
    /// pair) and reads again.
    pub fn sign_pending(&mut self, now_us: &mut dyn FnMut() -> u64) -> bool {
        let (Some(kp), Some((seq, minute, flags))) = (&self.key, self.unsigned.take()) else {
            return false;
        };
        let record = self
            .model
            .record(self.config.relay, minute, self.samples_per_record, flags);
        let started = now_us();
        let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        let Ok(message) = record.signing_message(&mut buf) else {
            return false;
        };
        let sig = kp.sk.sign(message, None);
        let took = now_us().saturating_sub(started);
        // A newer record closed while this one was signed (never at a minute's pace): its
        // signature would name the wrong record.
        if seq == self.seq {
            self.map.image.set_signature(seq, &RecordSignature(*sig));
            self.map.image.set_sign_us(took);
        }
        true
    }

    /// The relay clock in Unix milliseconds if set, else milliseconds since power-up.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        self.map.offset_ms.unwrap_or(0) + self.map.uptime_ms
    }

    /// True once a master has set the clock.
    #[must_use]
    pub fn clock_set(&self) -> bool {
        self.map.offset_ms.is_some()
    }

    /// The register map as served.
    #[must_use]
    pub fn image(&self) -> &RegisterImage {
        &self.map.image
    }

    /// Moves the relay to `uptime_ms`: publishes a sample at each sample instant and closes
    /// a minute record at each minute boundary. Until the clock is set, minutes count from
    /// power-up and records carry no CLOCK_SET bit.
    pub fn tick(&mut self, uptime_ms: u64) {
        self.map.uptime_ms = uptime_ms;
        if core::mem::take(&mut self.map.clock_changed) {
            // A new time base: the minute in progress was not observed on it, so the first
            // record closes at the next boundary, as after power-up.
            self.last_slot = None;
            self.last_minute = None;
        }
        let step_ms = u64::from(self.config.sample_secs) * 1000;
        let slot = self.now_ms() / step_ms;
        if self.last_slot == Some(slot) {
            return;
        }
        self.last_slot = Some(slot);
        let t = slot * step_ms / 1000;
        let flags = if self.clock_set() {
            RecordFlags::CLOCK_SET
        } else {
            RecordFlags(0)
        };
        let live = self
            .model
            .live(self.config.relay, t, self.samples_per_record);
        let image = &mut self.map.image;
        image.set_status(flags);
        image.set_live(&live);
        image.set_clock(t);
        let minute = Minute::containing(t);
        if let Some(last) = self.last_minute {
            if minute != last {
                let closed = Minute(minute.0.saturating_sub(1));
                let record =
                    self.model
                        .record(self.config.relay, closed, self.samples_per_record, flags);
                self.seq = if self.seq == u16::MAX {
                    1
                } else {
                    self.seq + 1
                };
                image.set_record(self.seq, &record);
                if self.key.is_some() {
                    self.unsigned = Some((self.seq, closed, flags));
                }
            }
        }
        self.last_minute = Some(minute);
    }

    /// A byte arrived on the line at `uptime_ms`.
    pub fn receive(&mut self, byte: u8, uptime_ms: u64) {
        self.slave.push(byte);
        self.last_rx_ms = uptime_ms;
    }

    /// If a request is complete (the line has been silent long enough at `uptime_ms`),
    /// answers it: returns the response frame, or `None` if there is nothing to send.
    pub fn answer(&mut self, uptime_ms: u64) -> Option<&[u8]> {
        if !self.slave.pending()
            || uptime_ms.saturating_sub(self.last_rx_ms) < self.config.silence_ms
        {
            return None;
        }
        let n = self.slave.end_of_frame(&mut self.map, &mut self.out)?;
        Some(&self.out[..n])
    }

    /// One turn of the main loop: advance time, take every byte the UART holds, answer a
    /// complete request.
    pub fn poll<U: Read + ReadReady + Write>(
        &mut self,
        uart: &mut U,
        uptime_ms: u64,
    ) -> Result<(), U::Error> {
        self.tick(uptime_ms);
        let mut buf = [0u8; 32];
        while uart.read_ready()? {
            let n = uart.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                self.receive(b, uptime_ms);
            }
        }
        if let Some(frame) = self.answer(uptime_ms) {
            uart.write_all(frame)?;
            uart.flush()?;
        }
        // A clock write takes effect at once, not at the next sample.
        if self.map.clock_changed {
            self.tick(uptime_ms);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::registers::{decode_identity, decode_record, encode_clock, IDENTITY, RECORD};
    use relay_core::rtu::{build_frame, parse_frame};

    /// A UART whose receive side is a queue the test fills and whose transmit side is a
    /// buffer the test reads.
    #[derive(Default)]
    struct MockUart {
        rx: std::collections::VecDeque<u8>,
        tx: Vec<u8>,
    }

    impl embedded_io::ErrorType for MockUart {
        type Error = core::convert::Infallible;
    }

    impl Read for MockUart {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(self.rx.len());
            for b in buf.iter_mut().take(n) {
                *b = self.rx.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
    }

    impl ReadReady for MockUart {
        fn read_ready(&mut self) -> Result<bool, Self::Error> {
            Ok(!self.rx.is_empty())
        }
    }

    impl Write for MockUart {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.tx.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    /// Sends a request at `t` and returns the response PDU after the silence.
    fn transact(relay: &mut Relay, uart: &mut MockUart, t: u64, pdu: &[u8]) -> Option<Vec<u8>> {
        let mut f = [0u8; MAX_FRAME];
        let n = build_frame(1, pdu, &mut f).expect("fits");
        uart.rx.extend(&f[..n]);
        relay.poll(uart, t).expect("infallible");
        assert!(uart.tx.is_empty(), "no answer before the line falls silent");
        relay.poll(uart, t + 5).expect("infallible");
        if uart.tx.is_empty() {
            return None;
        }
        let frame = core::mem::take(&mut uart.tx);
        let (unit, pdu) = parse_frame(&frame).expect("valid response");
        assert_eq!(unit, 1);
        Some(pdu.to_vec())
    }

    fn read(relay: &mut Relay, uart: &mut MockUart, t: u64, start: u16, len: u16) -> Vec<u16> {
        let pdu = transact(
            relay,
            uart,
            t,
            &[0x04, (start >> 8) as u8, start as u8, 0, len as u8],
        )
        .expect("answered");
        assert_eq!(pdu[0], 0x04, "{pdu:02x?}");
        pdu[2..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    /// The record block, decoded, and the signature block, read after it at `t`.
    fn read_pair(
        relay: &mut Relay,
        uart: &mut MockUart,
        t: u64,
    ) -> (relay_core::registers::RecordRead, Vec<u16>) {
        use relay_core::registers::SIGNATURE;
        let rec = decode_record(&read(relay, uart, t, RECORD.start, RECORD.len)).expect("a record");
        (rec, read(relay, uart, t, SIGNATURE.start, SIGNATURE.len))
    }

    /// An FC16 request setting the clock block to `secs`.
    fn set_clock_pdu(secs: u64) -> Vec<u8> {
        let mut pdu = vec![0x10, (CLOCK.start >> 8) as u8, CLOCK.start as u8, 0, 4, 8];
        for w in encode_clock(secs) {
            pdu.extend_from_slice(&w.to_be_bytes());
        }
        pdu
    }

    #[test]
    fn a_provisioned_relay_serves_its_key_and_signs_each_record_it_closes() {
        use relay_core::registers::{attach_signature, SIGNATURE, SIGN_TIME};
        let seed = [31u8; 32];
        let mut region = [0xFFu8; KEY_REGION_LEN];
        assert_eq!(parse_key_region(&region), None, "erased flash: no key");
        region[..4].copy_from_slice(&KEY_MAGIC);
        region[4..].copy_from_slice(&seed);
        let mut relay = Relay::new(BOARD);
        relay.provision(parse_key_region(&region).expect("a provisioned key"));
        let mut uart = MockUart::default();
        // The public key, as another implementation derives it from the seed.
        let dalek = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let id = decode_identity(&read(
            &mut relay,
            &mut uart,
            0,
            IDENTITY.start,
            IDENTITY.len,
        ))
        .expect("decodes");
        assert_eq!(id.key, Some(dalek.to_bytes()));
        // Set the clock, let a minute close.
        let pdu = set_clock_pdu(1_795_542_630);
        transact(&mut relay, &mut uart, 1_000, &pdu).expect("answered");
        for t in (1_000..=41_000).step_by(500) {
            relay.poll(&mut uart, t).expect("infallible");
        }
        assert!(relay.signing_due());
        // Before the signature is made, the pair is torn: the reader reads again.
        let (mut rec, sig_regs) = read_pair(&mut relay, &mut uart, 41_000);
        assert_eq!(sig_regs[0], 0, "nothing signed yet");
        // Signing takes 75 ms by a clock the test moves (microseconds).
        let mut clock = 41_000_000u64;
        assert!(relay.sign_pending(&mut || {
            clock += 75_000;
            clock
        }));
        assert!(!relay.signing_due());
        let sig_regs = read(
            &mut relay,
            &mut uart,
            41_200,
            SIGNATURE.start,
            SIGNATURE.len,
        );
        attach_signature(&mut rec, &sig_regs).expect("one record's pair");
        let sig = rec.record.signature.expect("signed");
        let took = read(
            &mut relay,
            &mut uart,
            41_200,
            SIGN_TIME.start,
            SIGN_TIME.len,
        );
        assert_eq!((u32::from(took[0]) << 16) | u32::from(took[1]), 75_000);
        // ed25519-dalek verifies it, strictly, over the documented message.
        let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        let msg = rec.record.signing_message(&mut buf).expect("fits");
        assert!(dalek
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_ok());
        // The signed record is the model's record: the same as relay-sim signs.
        let model = SignalModel::new(BOARD.seed, BOARD.profile).record(
            BOARD.relay,
            rec.record.minute,
            6,
            RecordFlags::CLOCK_SET,
        );
        assert!(model.same_reading(&rec.record));
        // The next minute closes: until it is signed, the signature block names the last
        // record, and a reader sees a torn pair.
        for t in (41_500..=101_000).step_by(500) {
            relay.poll(&mut uart, t).expect("infallible");
        }
        let (mut next, sig_regs) = read_pair(&mut relay, &mut uart, 101_000);
        assert_eq!(
            attach_signature(&mut next, &sig_regs),
            Err(relay_core::registers::RegisterError::SignatureTorn {
                record: rec.seq + 1,
                signature: rec.seq
            })
        );
        // A relay without a key signs nothing.
        let mut plain = Relay::new(BOARD);
        for t in (0..=125_000).step_by(1000) {
            plain.poll(&mut uart, t).expect("infallible");
        }
        assert!(!plain.signing_due());
        assert!(!plain.sign_pending(&mut || 0));
    }

    #[test]
    fn identity_over_the_mock_uart() {
        let mut relay = Relay::new(BOARD);
        let mut uart = MockUart::default();
        let regs = read(&mut relay, &mut uart, 0, IDENTITY.start, IDENTITY.len);
        let id = decode_identity(&regs).expect("decodes");
        assert_eq!(id.identity.name.as_str(), "Relay 1");
        assert_eq!(id.identity.substation.as_str(), BOARD.substation);
        assert!(
            !id.status.contains(RecordFlags::CLOCK_SET),
            "clock not set at power-up"
        );
    }

    #[test]
    fn records_before_the_clock_is_set_say_so_then_carry_real_minutes() {
        let mut relay = Relay::new(BOARD);
        let mut uart = MockUart::default();
        // Two minutes of uptime: a record closes, minute 0 of uptime, no CLOCK_SET.
        for t in (0..=125_000).step_by(1000) {
            relay.poll(&mut uart, t).expect("infallible");
        }
        let rec = decode_record(&read(
            &mut relay,
            &mut uart,
            125_000,
            RECORD.start,
            RECORD.len,
        ))
        .expect("a record");
        assert_eq!(rec.record.minute, Minute(1));
        assert!(!rec.record.flags.contains(RecordFlags::CLOCK_SET));

        // Set the clock to 2026-11-24T17:50:30Z with FC16 on the clock block.
        let secs: u64 = 1_795_542_630;
        let pdu = set_clock_pdu(secs);
        let resp = transact(&mut relay, &mut uart, 126_000, &pdu).expect("answered");
        assert_eq!(resp, &pdu[..5]);
        assert!(relay.clock_set());
        // 40 s later the minute 17:50 has closed: the record is the model's, bit for bit.
        for t in (126_000..=166_000).step_by(500) {
            relay.poll(&mut uart, t).expect("infallible");
        }
        let rec = decode_record(&read(
            &mut relay,
            &mut uart,
            166_000,
            RECORD.start,
            RECORD.len,
        ))
        .expect("a record");
        let model = SignalModel::new(BOARD.seed, BOARD.profile);
        let minute = Minute::containing(secs);
        assert_eq!(
            rec.record,
            model.record(BOARD.relay, minute, 6, RecordFlags::CLOCK_SET)
        );
    }

    /// Issue 15, finding 7: once set, the clock takes only small corrections.
    #[test]
    fn a_set_clock_cannot_be_pulled() {
        let mut relay = Relay::new(BOARD);
        let mut uart = MockUart::default();
        let set = |secs: u64| {
            let mut pdu = vec![0x10, (CLOCK.start >> 8) as u8, CLOCK.start as u8, 0, 4, 8];
            for w in encode_clock(secs) {
                pdu.extend_from_slice(&w.to_be_bytes());
            }
            pdu
        };
        let t0 = 1_795_542_630u64;
        // Unset: any time is taken.
        let ok = transact(&mut relay, &mut uart, 1_000, &set(t0)).expect("answered");
        assert_eq!(ok[0], 0x10);
        assert!(relay.clock_set());
        // Nine minutes back, as in the finding: refused, clock unchanged.
        let before = relay.now_ms();
        let no = transact(&mut relay, &mut uart, 2_000, &set(t0 - 9 * 60)).expect("answered");
        assert_eq!(no, [0x90, 0x03]);
        assert!(relay.now_ms().abs_diff(before + 1_000) < 50, "unchanged");
        // A correction of 2 s within the first hour: taken.
        let ok = transact(&mut relay, &mut uart, 3_000, &set(t0 + 2 + 2)).expect("answered");
        assert_eq!(ok[0], 0x10);
        // 4 s is over the allowance; two hours later, 5 s is within it (3 × 2 s).
        let no = transact(&mut relay, &mut uart, 4_000, &set(t0 + 3 + 3 + 3)).expect("answered");
        assert_eq!(no, [0x90, 0x03]);
        let later = 4_000 + 2 * 3_600_000;
        let now_secs = relay.now_ms() / 1000 + (later - 4_000) / 1000;
        let ok = transact(&mut relay, &mut uart, later, &set(now_secs + 5)).expect("answered");
        assert_eq!(ok[0], 0x10);
    }

    #[test]
    fn writes_elsewhere_and_bad_frames_are_refused() {
        let mut relay = Relay::new(BOARD);
        let mut uart = MockUart::default();
        let resp =
            transact(&mut relay, &mut uart, 0, &[0x10, 0, 0, 0, 1, 2, 0, 5]).expect("answered");
        assert_eq!(resp, [0x90, 0x02]);
        let resp =
            transact(&mut relay, &mut uart, 10, &[0x06, 0x01, 0x90, 0, 5]).expect("answered");
        assert_eq!(
            resp,
            [0x86, 0x02],
            "the clock is set by one FC16 of all four registers"
        );
        // Garbage gets no answer and does not stop the next request.
        uart.rx.extend([0xde, 0xad, 0xbe, 0xef, 0x00]);
        relay.poll(&mut uart, 20).expect("infallible");
        relay.poll(&mut uart, 30).expect("infallible");
        assert!(uart.tx.is_empty());
        assert!(transact(&mut relay, &mut uart, 40, &[0x04, 0, 0, 0, 1]).is_some());
        assert!(!relay.clock_set());
    }
}
