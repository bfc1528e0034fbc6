//! Checking a Modbus TCP request ADU before a server's decoder sees it.
//!
//! tokio-modbus 0.17's request decoder panics on some malformed PDUs (an FC15 whose byte
//! count is smaller than its coil quantity: slowtec/tokio-modbus#298), closes the connection
//! on function codes 0x80–0xFF instead of answering 0x01, and buffers up to 64 KiB behind a
//! header whose length field is absurd. [`inspect`] looks at the bytes a client sent and
//! says, for the frame at the front: pass it on, answer it here with an exception, wait for
//! more bytes, or close the connection (a header that cannot be Modbus TCP).
//!
//! The rules, from the Modbus Application Protocol Specification V1.1b3 and the Modbus
//! Messaging on TCP/IP Implementation Guide V1.0b:
//! - MBAP header: protocol id 0; length (unit id + PDU) 2 to 254. Anything else closes the
//!   connection: the stream cannot be resynchronised.
//! - Function code 0 and 0x80–0xFF are not functions: exception 0x01 (Illegal Function).
//! - The functions the decoder knows are checked for their exact length and quantities;
//!   a malformed one gets exception 0x03 (Illegal Data Value): FC01/02 1–2000 bits, FC03/04
//!   1–125 registers, FC05 value 0x0000 or 0xFF00, FC06, FC15 1–1968 coils with a byte count
//!   of ⌈n/8⌉, FC16 1–123 registers with a byte count of 2n, FC17, FC22, FC23 (read 1–125,
//!   write 1–121), FC43.
//! - Other function codes pass: the server answers them (0x01 from relay-sim; the gateway
//!   forwards them to the bus, where the slave decides).
//! - Requests to unit 0 are broadcasts and are never answered, not even with an exception.

/// The MBAP header's length in bytes.
pub const MBAP_LEN: usize = 7;
/// The largest MBAP length field: unit id + a PDU of at most 253 bytes.
pub const MAX_MBAP_LENGTH: u16 = 254;
/// The smallest: unit id + a function code.
pub const MIN_MBAP_LENGTH: u16 = 2;

/// Exception 0x01: the function is not one.
pub const ILLEGAL_FUNCTION: u8 = 0x01;
/// Exception 0x03: the request's fields are malformed.
pub const ILLEGAL_DATA_VALUE: u8 = 0x03;

/// Why a header closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Protocol id other than 0 (not Modbus).
    ProtocolId(u16),
    /// Length field outside 2–254.
    Length(u16),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::ProtocolId(p) => write!(f, "MBAP protocol id {p}, not 0"),
            HeaderError::Length(l) => write!(
                f,
                "MBAP length {l}, outside {MIN_MBAP_LENGTH}-{MAX_MBAP_LENGTH}"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

/// What to do with the front of a client's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A whole, well-formed request of this many bytes: pass it to the server.
    Pass(usize),
    /// A whole request of `len` bytes that the edge answers itself: `answer` holds the
    /// exception response (9 bytes), or `None` for a broadcast (unit 0), which gets none.
    Answer {
        /// Bytes the request takes.
        len: usize,
        /// The response to send, if any.
        answer: Option<[u8; 9]>,
    },
    /// Not a whole request yet.
    Incomplete,
    /// Not Modbus TCP: close the connection.
    Close(HeaderError),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Checks the PDU of a known function: `None` if well formed or not a function the
/// decoder knows, `Some(exception)` otherwise.
fn check_pdu(pdu: &[u8]) -> Option<u8> {
    let fc = *pdu.first()?;
    if fc == 0 || fc >= 0x80 {
        return Some(ILLEGAL_FUNCTION);
    }
    let len = pdu.len();
    let word = |at: usize| (len >= at + 2).then(|| u16_at(pdu, at));
    let ok = match fc {
        0x01 | 0x02 => len == 5 && word(3).is_some_and(|q| (1..=2000).contains(&q)),
        0x03 | 0x04 => len == 5 && word(3).is_some_and(|q| (1..=125).contains(&q)),
        0x05 => len == 5 && word(3).is_some_and(|v| v == 0x0000 || v == 0xFF00),
        0x06 => len == 5,
        0x0F => {
            len >= 6
                && word(3).is_some_and(|q| {
                    (1..=1968).contains(&q)
                        && usize::from(pdu[5]) == usize::from(q).div_ceil(8)
                        && len == 6 + usize::from(pdu[5])
                })
        }
        0x10 => {
            len >= 6
                && word(3).is_some_and(|q| {
                    (1..=123).contains(&q)
                        && usize::from(pdu[5]) == 2 * usize::from(q)
                        && len == 6 + usize::from(pdu[5])
                })
        }
        0x11 => len == 1,
        0x16 => len == 7,
        0x17 => {
            len >= 10
                && word(3).is_some_and(|r| (1..=125).contains(&r))
                && word(7).is_some_and(|w| {
                    (1..=121).contains(&w)
                        && usize::from(pdu[9]) == 2 * usize::from(w)
                        && len == 10 + usize::from(pdu[9])
                })
        }
        0x2B => len == 4,
        _ => true,
    };
    (!ok).then_some(ILLEGAL_DATA_VALUE)
}

/// Looks at the front of `buf`, the bytes a client has sent and nobody has consumed yet.
#[must_use]
pub fn inspect(buf: &[u8]) -> Verdict {
    if buf.len() < 6 {
        return Verdict::Incomplete;
    }
    let protocol = u16_at(buf, 2);
    if protocol != 0 {
        return Verdict::Close(HeaderError::ProtocolId(protocol));
    }
    let length = u16_at(buf, 4);
    if !(MIN_MBAP_LENGTH..=MAX_MBAP_LENGTH).contains(&length) {
        return Verdict::Close(HeaderError::Length(length));
    }
    let total = 6 + usize::from(length);
    if buf.len() < total {
        return Verdict::Incomplete;
    }
    let unit = buf[6];
    let pdu = &buf[MBAP_LEN..total];
    match check_pdu(pdu) {
        None => Verdict::Pass(total),
        Some(code) => Verdict::Answer {
            len: total,
            answer: (unit != 0).then(|| {
                let fc = pdu[0] | 0x80;
                [buf[0], buf[1], 0, 0, 0, 3, unit, fc, code]
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_fc15_panic_is_answered_here() {
        // slowtec/tokio-modbus#298: 16 coils, a byte count of 1.
        let frame = [
            0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x01, 0x0F, 0x00, 0x00, 0x00, 0x10, 0x01, 0xFF,
        ];
        assert_eq!(
            inspect(&frame),
            Verdict::Answer {
                len: 14,
                answer: Some([0x00, 0x01, 0, 0, 0, 3, 0x01, 0x8F, ILLEGAL_DATA_VALUE])
            }
        );
        // The same, well formed (byte count 2), passes.
        let good = [
            0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x01, 0x0F, 0x00, 0x00, 0x00, 0x10, 0x02, 0xFF,
            0x00,
        ];
        assert_eq!(inspect(&good), Verdict::Pass(15));
    }

    #[test]
    fn reserved_function_codes_get_illegal_function() {
        for fc in [0x00u8, 0x80, 0x81, 0xAB, 0xFF] {
            let frame = [0x12, 0x34, 0, 0, 0, 2, 0x07, fc];
            assert_eq!(
                inspect(&frame),
                Verdict::Answer {
                    len: 8,
                    answer: Some([0x12, 0x34, 0, 0, 0, 3, 0x07, fc | 0x80, ILLEGAL_FUNCTION])
                },
                "fc {fc:#04x}"
            );
        }
        // A broadcast gets no answer.
        assert_eq!(
            inspect(&[0, 1, 0, 0, 0, 2, 0x00, 0xFF]),
            Verdict::Answer {
                len: 8,
                answer: None
            }
        );
    }

    #[test]
    fn headers_that_are_not_modbus_close_at_once() {
        assert_eq!(
            inspect(&[0, 1, 0, 1, 0, 6]),
            Verdict::Close(HeaderError::ProtocolId(1))
        );
        for len in [0u16, 1, 255, 65_535] {
            let [hi, lo] = len.to_be_bytes();
            assert_eq!(
                inspect(&[0, 1, 0, 0, hi, lo]),
                Verdict::Close(HeaderError::Length(len))
            );
        }
    }

    #[test]
    fn partial_frames_wait_and_reads_pass() {
        let read = [0, 1, 0, 0, 0, 6, 1, 0x04, 0, 0, 0, 117];
        for cut in 0..read.len() {
            assert_eq!(inspect(&read[..cut]), Verdict::Incomplete, "cut at {cut}");
        }
        assert_eq!(inspect(&read), Verdict::Pass(12));
        // Two frames back to back: the first is judged alone.
        let two = [read.as_slice(), read.as_slice()].concat();
        assert_eq!(inspect(&two), Verdict::Pass(12));
        // 126 registers is one too many.
        let over = [0, 1, 0, 0, 0, 6, 1, 0x03, 0, 0, 0, 126];
        assert!(matches!(inspect(&over), Verdict::Answer { .. }));
    }
}
