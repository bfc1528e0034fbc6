//! Property tests: the register map and the postcard form round-trip every valid record,
//! never panic on hostile input, and the signal model stays in its documented ranges.

use proptest::prelude::*;
use relay_core::registers::{self, decode_live, decode_record, LiveValues, RegisterImage};
use relay_core::signal::{Profile, SignalModel};
use relay_core::{
    Identity, MilliAmps, MilliHertz, Minute, MinuteRecord, PerMille, Quantity, RecordError,
    RecordFlags, RelayId, Sample, Vars, Volts, Watts, MAX_SAMPLES,
};

fn sample() -> impl Strategy<Value = Sample> {
    (
        any::<[u32; 3]>(),
        any::<[u32; 3]>(),
        any::<u16>(),
        -1000i16..=1000,
        any::<i32>(),
        any::<i32>(),
    )
        .prop_map(|(v, i, f, pf, p, q)| Sample {
            vab: Volts(v[0]),
            vbc: Volts(v[1]),
            vca: Volts(v[2]),
            ia: MilliAmps(i[0]),
            ib: MilliAmps(i[1]),
            ic: MilliAmps(i[2]),
            freq: MilliHertz(f),
            pf: PerMille(pf),
            p: Watts(p),
            q: Vars(q),
        })
}

fn record() -> impl Strategy<Value = MinuteRecord> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        0u16..=1,
        prop::collection::vec(sample(), 1..=MAX_SAMPLES),
    )
        .prop_map(|(relay, minute, faults, flags, samples)| MinuteRecord {
            relay: RelayId(relay),
            minute: Minute(minute),
            faults,
            flags: RecordFlags(flags),
            samples: samples.into_iter().collect(),
            signature: None,
        })
}

fn image() -> RegisterImage {
    RegisterImage::new(&Identity::new(RelayId(1), "Relay 1", "Substation"), 6)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn record_round_trips_through_registers(rec in record(), seq in 1u16..) {
        let mut img = image();
        img.set_record(seq, &rec);
        let regs = img.read(registers::RECORD.start, registers::RECORD.len).expect("in map");
        let read = decode_record(regs).expect("valid");
        prop_assert_eq!(read.seq, seq);
        prop_assert_eq!(read.record, rec);
    }

    #[test]
    fn record_round_trips_through_postcard(rec in record()) {
        let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        let bytes = rec.encode(&mut buf).expect("MAX_ENCODED_LEN suffices");
        prop_assert_eq!(MinuteRecord::decode(bytes), Ok(rec));
    }

    #[test]
    fn a_stored_record_is_found_by_its_key_and_decodes_the_same(rec in record()) {
        let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
        let bytes = rec.encode(&mut buf).expect("MAX_ENCODED_LEN suffices");
        prop_assert_eq!(MinuteRecord::peek_key(bytes), Some((rec.relay, rec.minute)));
        prop_assert_eq!(MinuteRecord::decode_stored(bytes), Ok(rec));
    }

    #[test]
    fn postcard_decode_never_panics_and_accepts_only_canonical(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(rec) = MinuteRecord::decode(&bytes) {
            let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
            prop_assert_eq!(&*rec.encode(&mut buf).expect("fits"), &bytes[..]);
        }
    }

    #[test]
    fn appended_byte_is_rejected(rec in record(), extra in any::<u8>()) {
        let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN + 1];
        let len = rec.encode(&mut buf).expect("fits").len();
        buf[len] = extra;
        prop_assert_eq!(MinuteRecord::decode(&buf[..=len]), Err(RecordError::NonCanonical));
    }

    #[test]
    fn register_decode_never_panics(regs in prop::collection::vec(any::<u16>(), 0..130)) {
        let _ = decode_record(&regs);
        let _ = registers::decode_identity(&regs);
        let _ = decode_live(&regs);
    }

    #[test]
    fn live_floats_are_the_sample_in_display_units(s in sample(), minute in any::<u32>(), second in 0u16..60, faults in any::<u16>()) {
        let mut img = image();
        img.set_live(&LiveValues { sample: s, minute: Minute(minute), second, faults_so_far: faults });
        let live = decode_live(img.read(registers::LIVE.start, registers::LIVE.len).expect("in map")).expect("decodes");
        for (i, q) in Quantity::ALL.iter().enumerate() {
            let exact = q.raw(&s) as f64 / 1000.0;
            let tolerance = exact.abs() * 1e-6 + 1e-6;
            prop_assert!((f64::from(live.values[i]) - exact).abs() <= tolerance, "{} {} vs {}", q.name(), live.values[i], exact);
        }
        prop_assert_eq!((live.minute, live.second, live.faults_so_far), (Minute(minute), second, faults));
    }

    #[test]
    fn paper_profile_stays_in_the_study_ranges(seed in any::<u64>(), relay in any::<u32>(), minute in 0u32..100_000_000) {
        let m = SignalModel::new(seed, Profile::Paper);
        let rec = m.record(RelayId(relay), Minute(minute), 6, RecordFlags::CLOCK_SET);
        prop_assert!(rec.faults <= 28);
        for s in &rec.samples {
            for v in [s.vab, s.vbc, s.vca] { prop_assert!((109_000..=118_000).contains(&v.0)); }
            for i in [s.ia, s.ib, s.ic] { prop_assert!(i.0 <= 50_000); }
            prop_assert!((59_000..=61_000).contains(&s.freq.0));
            prop_assert!((0..=1000).contains(&s.pf.0));
            prop_assert!((0..=700_000).contains(&s.p.0));
            prop_assert!((0..=700_000).contains(&s.q.0));
        }
    }

    #[test]
    fn realistic_profile_is_physically_consistent(seed in any::<u64>(), relay in any::<u32>(), t in 0u64..6_000_000_000) {
        let s = SignalModel::new(seed, Profile::Realistic).sample(RelayId(relay), t);
        for v in [s.vab, s.vbc, s.vca] { prop_assert!((109_000..=118_000).contains(&v.0), "{:?}", s); }
        for i in [s.ia, s.ib, s.ic] { prop_assert!(i.0 <= 50_000, "{:?}", s); }
        prop_assert!((59_980..=60_020).contains(&s.freq.0), "{:?}", s);
        prop_assert!((900..=980).contains(&s.pf.0), "{:?}", s);
        // P = √3·V·I·PF and Q = √3·V·I·sin φ, in floating point, within rounding.
        let v = (s.vab.0 + s.vbc.0 + s.vca.0) as f64 / 3.0;
        let i = (s.ia.0 + s.ib.0 + s.ic.0) as f64 / 3.0 / 1000.0;
        let pf = f64::from(s.pf.0) / 1000.0;
        let sa = 3f64.sqrt() * v * i;
        let p = sa * pf;
        let q = sa * (1.0 - pf * pf).sqrt();
        prop_assert!((f64::from(s.p.0) - p).abs() <= p * 1e-3 + 2.0, "P {} vs {p}", s.p.0);
        prop_assert!((f64::from(s.q.0) - q).abs() <= q * 1e-3 + 2.0, "Q {} vs {q}", s.q.0);
    }

    #[test]
    fn every_model_record_is_valid(seed in any::<u64>(), relay in any::<u32>(), minute in any::<u32>(), n in 1u16..=6, paper in any::<bool>()) {
        let profile = if paper { Profile::Paper } else { Profile::Realistic };
        let rec = SignalModel::new(seed, profile).record(RelayId(relay), Minute(minute), n, RecordFlags::CLOCK_SET);
        prop_assert_eq!(rec.samples.len(), usize::from(n));
        prop_assert_eq!(rec.validate(), Ok(()));
    }
}

#[test]
fn max_encoded_len_is_reached_by_the_largest_record() {
    let big = Sample {
        vab: Volts(u32::MAX),
        vbc: Volts(u32::MAX),
        vca: Volts(u32::MAX),
        ia: MilliAmps(u32::MAX),
        ib: MilliAmps(u32::MAX),
        ic: MilliAmps(u32::MAX),
        freq: MilliHertz(u16::MAX),
        pf: PerMille(-1000),
        p: Watts(i32::MIN),
        q: Vars(i32::MIN),
    };
    let rec = MinuteRecord {
        relay: RelayId(u32::MAX),
        minute: Minute(u32::MAX),
        faults: u16::MAX,
        flags: RecordFlags(u16::MAX),
        samples: core::iter::repeat_n(big, MAX_SAMPLES).collect(),
        signature: None,
    };
    let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
    let len = rec.encode(&mut buf).expect("fits").len();
    // pf -1000 zigzags to 1999, two bytes instead of the bound's three; the five deltas are
    // all zero, one byte each instead of five.
    assert_eq!(
        len,
        MinuteRecord::MAX_UNSIGNED_LEN - 1 - (MAX_SAMPLES - 1) * 10 * 4
    );
    // Extreme deltas: alternate the largest and smallest value of every quantity.
    let small = Sample {
        vab: Volts(0),
        vbc: Volts(0),
        vca: Volts(0),
        ia: MilliAmps(0),
        ib: MilliAmps(0),
        ic: MilliAmps(0),
        freq: MilliHertz(0),
        pf: PerMille(1000),
        p: Watts(i32::MAX),
        q: Vars(i32::MAX),
    };
    let mut rec = rec;
    rec.flags = RecordFlags::CLOCK_SET;
    for (i, s) in rec.samples.iter_mut().enumerate() {
        if i % 2 == 1 {
            *s = small;
        }
    }
    let len = rec.encode(&mut buf).expect("fits").len();
    assert!(len <= MinuteRecord::MAX_UNSIGNED_LEN);
    assert_eq!(MinuteRecord::decode(&buf[..len]), Ok(rec.clone()));
    // With a signature: 64 bytes more, and still within MAX_ENCODED_LEN.
    let mut signed = rec;
    signed.signature = Some(relay_core::RecordSignature([0xff; 64]));
    let signed_len = signed.encode(&mut buf).expect("fits").len();
    assert_eq!(signed_len, len + 64);
    assert!(signed_len <= MinuteRecord::MAX_ENCODED_LEN);
    assert_eq!(MinuteRecord::decode(&buf[..signed_len]), Ok(signed));
}

#[test]
fn typical_record_size() {
    let m = SignalModel::new(1, Profile::Realistic);
    let rec = m.record(
        RelayId(1),
        Minute::containing(1_795_542_600),
        6,
        RecordFlags::CLOCK_SET,
    );
    let mut buf = [0u8; MinuteRecord::MAX_ENCODED_LEN];
    let len = rec.encode(&mut buf).expect("fits").len();
    // Documented in docs/book/src/registers.md ("The record as bytes"): 112 to 135 bytes.
    assert!(
        (100..=150).contains(&len),
        "realistic record is {len} bytes"
    );
}

mod rtu_props {
    use proptest::prelude::*;
    use relay_core::registers::{RegisterImage, MAP_LEN};
    use relay_core::rtu::{build_frame, crc16, parse_frame, Slave, MAX_FRAME};
    use relay_core::{Identity, RelayId};

    fn image() -> RegisterImage {
        RegisterImage::new(&Identity::new(RelayId(3), "Relay 1", "Substation"), 6)
    }

    fn feed(slave: &mut Slave, bytes: &[u8]) -> Option<Vec<u8>> {
        for &b in bytes {
            slave.push(b);
        }
        let mut out = [0u8; MAX_FRAME];
        slave
            .end_of_frame(&mut image(), &mut out)
            .map(|n| out[..n].to_vec())
    }

    proptest! {
        // 100 000 cases: the RTU slave is the firmware's only door to the outside.
        #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Random bytes: never a panic, and an answer only to a frame whose CRC is right,
        /// addressed to this unit, and then a well-formed frame itself.
        #[test]
        fn garbage_never_panics_and_bad_crc_is_never_answered(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut slave = Slave::new(1);
            if let Some(resp) = feed(&mut slave, &bytes) {
                prop_assert!(bytes.len() >= 4 && bytes[0] == 1);
                let (body, crc) = bytes.split_at(bytes.len() - 2);
                prop_assert_eq!(crc16(body).to_le_bytes(), [crc[0], crc[1]]);
                prop_assert!(parse_frame(&resp).is_ok());
            }
        }

        /// A valid frame with one byte changed is never answered: CRC-16 detects every
        /// error burst of up to 16 bits.
        #[test]
        fn corrupted_valid_frames_are_dropped(address in 0u16..400, quantity in 1u16..=125, at in any::<prop::sample::Index>(), flip in 1u8..) {
            let mut f = [0u8; MAX_FRAME];
            let pdu = [0x04, (address >> 8) as u8, address as u8, (quantity >> 8) as u8, quantity as u8];
            let n = build_frame(1, &pdu, &mut f).expect("fits");
            let i = at.index(n);
            f[i] ^= flip;
            let mut slave = Slave::new(1);
            prop_assert_eq!(feed(&mut slave, &f[..n]), None);
        }

        /// Every valid read is answered with exactly what the register map holds.
        #[test]
        fn valid_reads_return_the_map(address in 0u16..(MAP_LEN as u16), quantity in 1u16..=125, fc in 3u8..=4) {
            let mut f = [0u8; MAX_FRAME];
            let pdu = [fc, (address >> 8) as u8, address as u8, (quantity >> 8) as u8, quantity as u8];
            let n = build_frame(1, &pdu, &mut f).expect("fits");
            let mut slave = Slave::new(1);
            let resp = feed(&mut slave, &f[..n]).expect("answered");
            let (unit, rpdu) = parse_frame(&resp).expect("valid");
            prop_assert_eq!(unit, 1);
            match image().read(address, quantity) {
                Ok(regs) => {
                    prop_assert_eq!(rpdu[0], fc);
                    prop_assert_eq!(usize::from(rpdu[1]), regs.len() * 2);
                    let got: Vec<u16> = rpdu[2..].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                    prop_assert_eq!(&got[..], regs);
                }
                Err(e) => prop_assert_eq!(rpdu, &[fc | 0x80, e.code()][..]),
            }
        }
    }
}
