//! Register types and word orders: how a maker lays a number over 16-bit registers.

use serde::Deserialize;

/// A value's type in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Unsigned 16 bits, one register.
    U16,
    /// Signed 16 bits, one register.
    I16,
    /// Unsigned 32 bits, two registers.
    U32,
    /// Signed 32 bits, two registers.
    I32,
    /// Unsigned 64 bits, four registers.
    U64,
    /// IEEE-754 binary32, two registers.
    F32,
    /// IEEE-754 binary64, four registers.
    F64,
}

impl Kind {
    /// Registers it takes.
    #[must_use]
    pub fn registers(self) -> u16 {
        match self {
            Kind::U16 | Kind::I16 => 1,
            Kind::U32 | Kind::I32 | Kind::F32 => 2,
            Kind::U64 | Kind::F64 => 4,
        }
    }

    /// True for the integer kinds.
    #[must_use]
    pub fn is_integer(self) -> bool {
        !matches!(self, Kind::F32 | Kind::F64)
    }

    /// The largest value plus one of an unsigned counter of this kind (its wrap).
    #[must_use]
    pub fn wrap(self) -> Option<u128> {
        match self {
            Kind::U16 => Some(1 << 16),
            Kind::U32 => Some(1 << 32),
            Kind::U64 => Some(1 << 64),
            _ => None,
        }
    }
}

/// The order of a value's bytes over its registers, named as the big-endian bytes
/// A (most significant) to D would be laid out in a two-register value. For four-register
/// values the same rule extends to words: `CDAB` puts the least significant word first
/// (words reversed, each big-endian), `BADC` swaps the bytes in each word, `DCBA` is fully
/// little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum WordOrder {
    /// Big-endian: most significant word first, each word big-endian (Modbus's own order).
    #[serde(rename = "ABCD")]
    Abcd,
    /// Least significant word first, each word big-endian ("word swap", common for floats).
    #[serde(rename = "CDAB")]
    Cdab,
    /// Most significant word first, bytes swapped in each word.
    #[serde(rename = "BADC")]
    Badc,
    /// Fully little-endian.
    #[serde(rename = "DCBA")]
    Dcba,
}

/// Puts registers into big-endian order (ABCD).
fn to_big_endian(words: &[u16], order: WordOrder) -> Vec<u16> {
    let swap_words = matches!(order, WordOrder::Cdab | WordOrder::Dcba);
    let swap_bytes = matches!(order, WordOrder::Badc | WordOrder::Dcba);
    let mut w: Vec<u16> = words.to_vec();
    if swap_words {
        w.reverse();
    }
    if swap_bytes {
        for x in &mut w {
            *x = x.swap_bytes();
        }
    }
    w
}

/// Registers as a big-endian unsigned integer.
fn be_bits(words: &[u16], order: WordOrder) -> u64 {
    to_big_endian(words, order)
        .iter()
        .fold(0u64, |acc, &w| (acc << 16) | u64::from(w))
}

/// A decoded register value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Raw {
    /// An integer (every integer kind fits).
    Int(i128),
    /// A float (NaN and infinities included: the caller decides).
    Float(f64),
}

impl Raw {
    /// As a float.
    #[must_use]
    pub fn as_f64(self) -> f64 {
        match self {
            Raw::Int(i) => i as f64,
            Raw::Float(f) => f,
        }
    }
}

/// Decodes `words` (exactly `kind.registers()` of them) in `order`.
#[must_use]
pub fn decode(words: &[u16], kind: Kind, order: WordOrder) -> Raw {
    let bits = be_bits(words, order);
    match kind {
        Kind::U16 => Raw::Int(i128::from(bits as u16)),
        Kind::I16 => Raw::Int(i128::from(bits as u16 as i16)),
        Kind::U32 => Raw::Int(i128::from(bits as u32)),
        Kind::I32 => Raw::Int(i128::from(bits as u32 as i32)),
        Kind::U64 => Raw::Int(i128::from(bits)),
        Kind::F32 => Raw::Float(f64::from(f32::from_bits(bits as u32))),
        Kind::F64 => Raw::Float(f64::from_bits(bits)),
    }
}

/// Encodes `value` as `kind` in `order`: the inverse of [`decode`]. An integer kind takes
/// the value rounded and saturated to its range.
#[must_use]
pub fn encode(value: f64, kind: Kind, order: WordOrder) -> Vec<u16> {
    let n = usize::from(kind.registers());
    let bits: u64 = match kind {
        Kind::U16 => value.round().clamp(0.0, 65_535.0) as u64,
        Kind::I16 => u64::from(value.round().clamp(-32_768.0, 32_767.0) as i16 as u16),
        Kind::U32 => value.round().clamp(0.0, 4_294_967_295.0) as u64,
        Kind::I32 => {
            u64::from(value.round().clamp(-2_147_483_648.0, 2_147_483_647.0) as i32 as u32)
        }
        Kind::U64 => value.round().max(0.0) as u64,
        Kind::F32 => u64::from((value as f32).to_bits()),
        Kind::F64 => value.to_bits(),
    };
    let be: Vec<u16> = (0..n).rev().map(|i| (bits >> (16 * i)) as u16).collect();
    // Every order is its own inverse.
    to_big_endian(&be, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_orders_of_one_float() {
        // 123.456f32 = 0x42F6E979: A=42 B=F6 C=E9 D=79.
        let v = 123.456f32;
        assert_eq!(
            encode(f64::from(v), Kind::F32, WordOrder::Abcd),
            [0x42F6, 0xE979]
        );
        assert_eq!(
            encode(f64::from(v), Kind::F32, WordOrder::Cdab),
            [0xE979, 0x42F6]
        );
        assert_eq!(
            encode(f64::from(v), Kind::F32, WordOrder::Badc),
            [0xF642, 0x79E9]
        );
        assert_eq!(
            encode(f64::from(v), Kind::F32, WordOrder::Dcba),
            [0x79E9, 0xF642]
        );
        for order in [
            WordOrder::Abcd,
            WordOrder::Cdab,
            WordOrder::Badc,
            WordOrder::Dcba,
        ] {
            let w = encode(f64::from(v), Kind::F32, order);
            assert_eq!(decode(&w, Kind::F32, order), Raw::Float(f64::from(v)));
        }
    }

    #[test]
    fn signed_and_wide_integers() {
        assert_eq!(decode(&[0xFFFF], Kind::I16, WordOrder::Abcd), Raw::Int(-1));
        assert_eq!(
            decode(&[0xFFFF], Kind::U16, WordOrder::Abcd),
            Raw::Int(65_535)
        );
        assert_eq!(
            decode(&[0x0001, 0x0000], Kind::U32, WordOrder::Abcd),
            Raw::Int(65_536)
        );
        assert_eq!(
            decode(&[0x0000, 0x0001], Kind::U32, WordOrder::Cdab),
            Raw::Int(65_536)
        );
        assert_eq!(
            decode(&[0, 0, 0, 1], Kind::U64, WordOrder::Cdab),
            Raw::Int(1 << 48)
        );
        assert_eq!(
            decode(
                &encode(-5.0, Kind::I32, WordOrder::Dcba),
                Kind::I32,
                WordOrder::Dcba
            ),
            Raw::Int(-5)
        );
    }

    proptest::proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(v in -2_000_000_000i64..2_000_000_000, f in proptest::num::f64::NORMAL) {
            for order in [WordOrder::Abcd, WordOrder::Cdab, WordOrder::Badc, WordOrder::Dcba] {
                proptest::prop_assert_eq!(decode(&encode(v as f64, Kind::I32, order), Kind::I32, order), Raw::Int(i128::from(v)));
                proptest::prop_assert_eq!(decode(&encode(f, Kind::F64, order), Kind::F64, order), Raw::Float(f));
                let u = v.unsigned_abs() as f64;
                proptest::prop_assert_eq!(decode(&encode(u, Kind::U64, order), Kind::U64, order), Raw::Int(i128::from(v.unsigned_abs())));
            }
        }
    }
}
