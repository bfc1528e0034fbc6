//! Property tests of the request check: whatever a client sends, `inspect` never panics,
//! never claims more bytes than it was given, and answers exactly what it must.

use modbus_edge::adu::{inspect, Verdict, MAX_MBAP_LENGTH, MIN_MBAP_LENGTH};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 100_000,
        ..ProptestConfig::default()
    }
}

/// A frame with a valid MBAP header (so that the PDU rules are what gets exercised).
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 1..=253),
    )
        .prop_map(|(tid, unit, pdu)| {
            let mut f = tid.to_be_bytes().to_vec();
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
            f.push(unit);
            f.extend_from_slice(&pdu);
            f
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic_and_stay_in_bounds(buf in prop::collection::vec(any::<u8>(), 0..300)) {
        match inspect(&buf) {
            Verdict::Pass(n) | Verdict::Answer { len: n, .. } => {
                prop_assert!(n <= buf.len());
                prop_assert!(n >= 8);
                let length = u16::from_be_bytes([buf[4], buf[5]]);
                prop_assert!((MIN_MBAP_LENGTH..=MAX_MBAP_LENGTH).contains(&length));
                prop_assert_eq!(n, 6 + usize::from(length));
            }
            Verdict::Incomplete => prop_assert!(buf.len() < 6 + 254),
            Verdict::Close(_) => {}
        }
    }

    #[test]
    fn well_headed_frames_are_passed_or_answered_never_closed(f in framed()) {
        let fc = f[7];
        match inspect(&f) {
            Verdict::Pass(n) => {
                prop_assert_eq!(n, f.len());
                prop_assert!(fc != 0 && fc < 0x80);
            }
            Verdict::Answer { len, answer } => {
                prop_assert_eq!(len, f.len());
                match answer {
                    None => prop_assert_eq!(f[6], 0, "only broadcasts go unanswered"),
                    Some(a) => {
                        prop_assert_eq!(&a[..2], &f[..2], "transaction id echoed");
                        prop_assert_eq!(a[6], f[6], "unit echoed");
                        prop_assert_eq!(a[7], fc | 0x80);
                        let expected = if fc == 0 || fc >= 0x80 { 0x01 } else { 0x03 };
                        prop_assert_eq!(a[8], expected);
                    }
                }
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn a_byte_stream_of_frames_is_judged_one_frame_at_a_time(
        frames in prop::collection::vec(framed(), 1..6)
    ) {
        let stream: Vec<u8> = frames.concat();
        let mut at = 0;
        for f in &frames {
            let n = match inspect(&stream[at..]) {
                Verdict::Pass(n) | Verdict::Answer { len: n, .. } => n,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(n, f.len());
            at += n;
        }
        prop_assert_eq!(at, stream.len());
    }
}
