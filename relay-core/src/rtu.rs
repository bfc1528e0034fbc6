//! Modbus RTU: CRC-16/MODBUS, frame checking and building, and the slave that turns a
//! request frame into a response frame through a register map.
//!
//! Framing on a serial line is by silence: a frame ends when the line has been quiet for
//! 3.5 character times. The transport (a UART driver, a test's mock) detects that and calls
//! [`Slave::end_of_frame`]; the slave does the rest. As the RTU specification requires,
//! garbage, a wrong CRC, a frame for another unit and a truncated frame are dropped without
//! an answer, and a broadcast (unit 0) is executed but never answered.

use crate::registers::{Exception, RegisterImage};

/// The longest RTU frame: unit, 253 bytes of PDU, CRC.
pub const MAX_FRAME: usize = 256;

/// Most registers one FC16 write may carry (Modbus application protocol, 6.12).
pub const MAX_WRITE: u16 = 123;

/// CRC-16/MODBUS (polynomial 0x8005 reflected, initial value 0xFFFF). On the wire the low
/// byte goes first.
#[must_use]
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Why bytes are not an RTU frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than 4 bytes (unit, function, CRC).
    TooShort,
    /// More than [`MAX_FRAME`] bytes.
    TooLong,
    /// The CRC does not match.
    BadCrc,
}

/// Checks a frame's length and CRC; returns its unit id and PDU.
pub fn parse_frame(frame: &[u8]) -> Result<(u8, &[u8]), FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::TooShort);
    }
    if frame.len() > MAX_FRAME {
        return Err(FrameError::TooLong);
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
        return Err(FrameError::BadCrc);
    }
    Ok((body[0], &body[1..]))
}

/// Writes `unit`, `pdu` and the CRC into `out`; returns the frame length, or `None` if
/// `out` is too small or the PDU too long.
pub fn build_frame(unit: u8, pdu: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = pdu.len() + 3;
    if len > MAX_FRAME || out.len() < len || pdu.is_empty() {
        return None;
    }
    out[0] = unit;
    out[1..=pdu.len()].copy_from_slice(pdu);
    let crc = crc16(&out[..=pdu.len()]);
    out[pdu.len() + 1..len].copy_from_slice(&crc.to_le_bytes());
    Some(len)
}

/// What a slave serves: reads of its register map, and writes where it allows them.
pub trait Registers {
    /// Reads `quantity` registers from `address` (FC03 and FC04).
    fn read(&self, address: u16, quantity: u16) -> Result<&[u16], Exception>;
    /// Writes `values` from `address` (FC06, FC16). A read-only map refuses with 0x01.
    fn write(&mut self, address: u16, values: &[u16]) -> Result<(), Exception>;
}

impl Registers for RegisterImage {
    fn read(&self, address: u16, quantity: u16) -> Result<&[u16], Exception> {
        RegisterImage::read(self, address, quantity)
    }

    fn write(&mut self, _address: u16, _values: &[u16]) -> Result<(), Exception> {
        Err(Exception::IllegalFunction)
    }
}

/// Answers one request PDU into `out` (at least 253 bytes); returns the response PDU's
/// length. Reads (FC03, FC04) and writes (FC06, FC16) go to `regs`; anything else is
/// answered 0x01, a malformed request 0x03.
pub fn respond<R: Registers + ?Sized>(regs: &mut R, pdu: &[u8], out: &mut [u8]) -> usize {
    match answer(regs, pdu, out) {
        Ok(n) => n,
        Err(e) => {
            out[0] = pdu.first().copied().unwrap_or(0) | 0x80;
            out[1] = e.code();
            2
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn answer<R: Registers + ?Sized>(
    regs: &mut R,
    pdu: &[u8],
    out: &mut [u8],
) -> Result<usize, Exception> {
    let fc = *pdu.first().ok_or(Exception::IllegalFunction)?;
    match fc {
        0x03 | 0x04 => {
            if pdu.len() != 5 {
                return Err(Exception::IllegalDataValue);
            }
            let values = regs.read(be16(pdu, 1), be16(pdu, 3))?;
            out[0] = fc;
            out[1] = (values.len() * 2) as u8;
            for (i, v) in values.iter().enumerate() {
                out[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_be_bytes());
            }
            Ok(2 + 2 * values.len())
        }
        0x06 => {
            if pdu.len() != 5 {
                return Err(Exception::IllegalDataValue);
            }
            regs.write(be16(pdu, 1), &[be16(pdu, 3)])?;
            out[..5].copy_from_slice(pdu);
            Ok(5)
        }
        0x10 => {
            if pdu.len() < 6 {
                return Err(Exception::IllegalDataValue);
            }
            let (address, quantity, count) = (be16(pdu, 1), be16(pdu, 3), pdu[5]);
            if quantity == 0
                || quantity > MAX_WRITE
                || usize::from(count) != 2 * usize::from(quantity)
                || pdu.len() != 6 + usize::from(count)
            {
                return Err(Exception::IllegalDataValue);
            }
            let mut values = [0u16; MAX_WRITE as usize];
            for (i, v) in values.iter_mut().take(usize::from(quantity)).enumerate() {
                *v = be16(pdu, 6 + 2 * i);
            }
            regs.write(address, &values[..usize::from(quantity)])?;
            out[..5].copy_from_slice(&pdu[..5]);
            Ok(5)
        }
        _ => Err(Exception::IllegalFunction),
    }
}

/// An RTU slave: collects the bytes of a frame and answers it when the line falls silent.
#[derive(Debug)]
pub struct Slave {
    unit: u8,
    buf: [u8; MAX_FRAME],
    len: usize,
    overflow: bool,
}

impl Slave {
    /// A slave answering at `unit` (1..=247).
    #[must_use]
    pub const fn new(unit: u8) -> Self {
        Slave {
            unit,
            buf: [0; MAX_FRAME],
            len: 0,
            overflow: false,
        }
    }

    /// Its unit id.
    #[must_use]
    pub const fn unit(&self) -> u8 {
        self.unit
    }

    /// A byte arrived.
    pub fn push(&mut self, byte: u8) {
        if self.len < MAX_FRAME {
            self.buf[self.len] = byte;
            self.len += 1;
        } else {
            self.overflow = true;
        }
    }

    /// True if bytes of an unfinished frame are waiting.
    #[must_use]
    pub fn pending(&self) -> bool {
        self.len > 0 || self.overflow
    }

    /// The line has been silent for 3.5 characters: the frame is complete. Returns the
    /// length of the response frame written to `out`, or `None` when nothing is to be sent
    /// (garbage, bad CRC, another unit, a broadcast, an overlong frame).
    pub fn end_of_frame<R: Registers + ?Sized>(
        &mut self,
        regs: &mut R,
        out: &mut [u8; MAX_FRAME],
    ) -> Option<usize> {
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.overflow) {
            return None;
        }
        let (unit, pdu) = parse_frame(&self.buf[..len]).ok()?;
        if unit != self.unit && unit != 0 {
            return None;
        }
        let mut response = [0u8; MAX_FRAME - 3];
        let n = respond(regs, pdu, &mut response);
        if unit == 0 {
            return None;
        }
        build_frame(self.unit, &response[..n], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::MAX_READ;
    use crate::{Identity, RelayId};

    #[test]
    fn crc_matches_the_specification_examples() {
        // CRC-16/MODBUS check value.
        assert_eq!(crc16(b"123456789"), 0x4B37);
        // "Read holding registers 0..10 of unit 1": 01 03 00 00 00 0A C5 CD.
        assert_eq!(
            crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]).to_le_bytes(),
            [0xC5, 0xCD]
        );
        // The Modbus over Serial Line guide's example: 11 03 00 6B 00 03 76 87.
        assert_eq!(
            crc16(&[0x11, 0x03, 0x00, 0x6B, 0x00, 0x03]).to_le_bytes(),
            [0x76, 0x87]
        );
        // "Read input register 0 of unit 1": 01 04 00 00 00 01 31 CA.
        assert_eq!(
            crc16(&[0x01, 0x04, 0x00, 0x00, 0x00, 0x01]).to_le_bytes(),
            [0x31, 0xCA]
        );
    }

    fn image() -> RegisterImage {
        RegisterImage::new(&Identity::new(RelayId(7), "Relay 1", "S"), 6)
    }

    fn ask(
        slave: &mut Slave,
        regs: &mut RegisterImage,
        frame: &[u8],
    ) -> Option<([u8; MAX_FRAME], usize)> {
        for &b in frame {
            slave.push(b);
        }
        let mut out = [0u8; MAX_FRAME];
        slave.end_of_frame(regs, &mut out).map(|n| (out, n))
    }

    fn request(unit: u8, pdu: &[u8]) -> ([u8; MAX_FRAME], usize) {
        let mut f = [0u8; MAX_FRAME];
        let n = build_frame(unit, pdu, &mut f).expect("fits");
        (f, n)
    }

    #[test]
    fn reads_answer_with_the_map_and_a_valid_crc() {
        let mut slave = Slave::new(1);
        let mut regs = image();
        let (f, n) = request(1, &[0x04, 0x00, 0x00, 0x00, 0x03]);
        let (out, len) = ask(&mut slave, &mut regs, &f[..n]).expect("answered");
        let (unit, pdu) = parse_frame(&out[..len]).expect("valid frame");
        assert_eq!(unit, 1);
        assert_eq!(pdu, &[0x04, 6, 0x00, 0x02, 0x00, 0x00, 0x00, 0x07]);
        // The same through FC03.
        let (f, n) = request(1, &[0x03, 0x00, 0x00, 0x00, 0x01]);
        let (out, len) = ask(&mut slave, &mut regs, &f[..n]).expect("answered");
        assert_eq!(
            parse_frame(&out[..len]).expect("valid").1,
            &[0x03, 2, 0x00, 0x02]
        );
        // The largest read fits one frame.
        let (f, n) = request(1, &[0x04, 0x00, 0x00, 0x00, MAX_READ as u8]);
        let (_, len) = ask(&mut slave, &mut regs, &f[..n]).expect("answered");
        assert_eq!(len, 1 + 2 + 250 + 2);
    }

    #[test]
    fn exceptions_are_those_of_relay_sim() {
        let mut slave = Slave::new(1);
        let mut regs = image();
        for (pdu, code) in [
            (&[0x04, 0, 0, 0, 0][..], 0x03),
            (&[0x04, 0, 0, 0, 126][..], 0x03),
            (&[0x04, 0xFF, 0xFF, 0, 1][..], 0x02),
            (&[0x06, 0, 0, 0, 1][..], 0x01),
            (&[0x10, 0, 0, 0, 1, 2, 0, 1][..], 0x01),
            (&[0x01, 0, 0, 0, 1][..], 0x01),
            (&[0x2B, 0x0E, 1, 0][..], 0x01),
            (&[0x04, 0, 0][..], 0x03),
            (&[0x10, 0, 0, 0, 2, 2, 0, 1][..], 0x03),
        ] {
            let (f, n) = request(1, pdu);
            let (out, len) = ask(&mut slave, &mut regs, &f[..n]).expect("answered");
            let (_, resp) = parse_frame(&out[..len]).expect("valid");
            assert_eq!(resp, &[pdu[0] | 0x80, code], "request {pdu:02x?}");
        }
    }

    #[test]
    fn bad_frames_get_no_answer() {
        let mut slave = Slave::new(1);
        let mut regs = image();
        let (f, n) = request(1, &[0x04, 0, 0, 0, 1]);
        let mut bad_crc = f;
        bad_crc[n - 1] ^= 1;
        assert!(
            ask(&mut slave, &mut regs, &bad_crc[..n]).is_none(),
            "bad CRC"
        );
        assert!(
            ask(&mut slave, &mut regs, &f[..n - 1]).is_none(),
            "truncated"
        );
        let (other, m) = request(2, &[0x04, 0, 0, 0, 1]);
        assert!(
            ask(&mut slave, &mut regs, &other[..m]).is_none(),
            "another unit"
        );
        let (broadcast, m) = request(0, &[0x04, 0, 0, 0, 1]);
        assert!(
            ask(&mut slave, &mut regs, &broadcast[..m]).is_none(),
            "broadcast"
        );
        assert!(
            ask(&mut slave, &mut regs, &[0u8; 300]).is_none(),
            "overlong"
        );
        assert!(ask(&mut slave, &mut regs, &[]).is_none(), "empty");
        // And the slave still answers a good frame afterwards.
        assert!(ask(&mut slave, &mut regs, &f[..n]).is_some());
    }
}
