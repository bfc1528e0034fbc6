//! IEC 61850 device profiles: where an IED publishes the ten quantities in its data model,
//! read over MMS (docs/book/src/iec61850.md).
//!
//! A profile of `kind = "iec61850"` names, per quantity, an object reference relative to
//! the IED (`LD0/MMXU1.PPV.phsAB.cVal.mag.f`: logical device instance, logical node, data
//! object, data attribute), its functional constraint (`MX` for measurements) and the unit
//! the value is in once multiplied by ten to the profile's `multiplier` (the SI multiplier
//! of the data object's `units`). Fault openings come from an operation counter
//! (`XCBR1.OpCnt.stVal`) or a trip indication (`PTRC1.Op.general`), as for Modbus.
//!
//! Each value's quality (`q`, IEC 61850-7-3 section 6.2) is read with it: a sample is taken
//! only if every quantity's validity is `good` and its `test` flag is clear. An invalid,
//! questionable or test value makes the sample missing, never a recorded number, since a
//! minute record has no room to say that one value of a sample was doubtful. The quality
//! reference is derived from the value's (`….cVal.mag.f` or `….mag.f` becomes `….q`) or
//! given per quantity (`quality = "LD0/…"`); `quality = false` in `[device]` reads none.
//!
//! The IED's name, which MMS puts in front of the logical device (`GLRelayLD0`), is
//! deliberately not in the profile: one profile serves every IED of a model, and the
//! recorder learns the name from the IED's directory (or from `ied=` on the command line).

use std::collections::BTreeMap;
use std::time::Duration;

use relay_core::measure::Quantity;
use relay_core::Sample;
use serde::Deserialize;
use toml::Spanned;

use crate::{
    device_basics, line_of, parse_toml, range, ten_quantities, unit_factor, DecodeError,
    FaultReading, ProfileError, Reading,
};

/// A functional constraint (IEC 61850-8-1 section 8.1.3.2.2): the part of a data object a
/// reference reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Fc {
    /// Measurands (analogue values).
    MX,
    /// Status information.
    ST,
    /// Configuration.
    CF,
    /// Description.
    DC,
    /// Setting (outside setting groups).
    SP,
}

impl Fc {
    /// Its two letters.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Fc::MX => "MX",
            Fc::ST => "ST",
            Fc::CF => "CF",
            Fc::DC => "DC",
            Fc::SP => "SP",
        }
    }
}

/// An object reference relative to the IED: logical device instance and the rest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The logical device instance (`LD0`).
    pub ld: String,
    /// Logical node, data object and attribute (`MMXU1.PPV.phsAB.cVal.mag.f`).
    pub path: String,
}

impl Reference {
    /// Parses `LD0/MMXU1.PPV.phsAB.cVal.mag.f`.
    pub fn parse(s: &str) -> Result<Reference, String> {
        let (ld, path) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}': write LDinst/LN.DO.DA, as LD0/MMXU1.Hz.mag.f"))?;
        let ok_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if !ok_name(ld) {
            return Err(format!(
                "'{ld}': a logical device instance is letters, digits and _"
            ));
        }
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len() < 3 || !parts.iter().all(|p| ok_name(p)) {
            return Err(format!(
                "'{path}': a logical node, a data object and an attribute, separated by dots"
            ));
        }
        Ok(Reference {
            ld: ld.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The quality attribute of the data object this value belongs to: `….cVal.mag.f`,
    /// `….cVal.mag.i`, `….mag.f` or `….mag.i` becomes `….q`.
    #[must_use]
    pub fn quality(&self) -> Option<Reference> {
        self.sibling("q")
    }

    /// The `units` attribute (functional constraint CF) of the data object this value
    /// belongs to, with `part` `SIUnit` or `multiplier`.
    #[must_use]
    pub fn units(&self, part: &str) -> Option<Reference> {
        self.sibling(&format!("units.{part}"))
    }

    fn sibling(&self, name: &str) -> Option<Reference> {
        [".cVal.mag.f", ".cVal.mag.i", ".mag.f", ".mag.i"]
            .iter()
            .find_map(|suffix| self.path.strip_suffix(suffix))
            .map(|data_object| Reference {
                ld: self.ld.clone(),
                path: format!("{data_object}.{name}"),
            })
    }

    /// The IEC reference on the IED named `ied` (`GLRelayLD0/MMXU1.Hz.mag.f`).
    #[must_use]
    pub fn on(&self, ied: &str) -> String {
        format!("{ied}{}/{}", self.ld, self.path)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ld, self.path)
    }
}

/// Where one quantity sits in the IED's model.
#[derive(Clone, Debug, PartialEq)]
pub struct MmsPoint {
    /// The quantity.
    pub quantity: Quantity,
    /// Its object reference.
    pub reference: Reference,
    /// Its functional constraint.
    pub fc: Fc,
    /// Ten to this times the value is in `unit`.
    pub multiplier: i8,
    /// The unit, as the profile names it.
    pub unit: String,
    /// relay-core's stored integer per one of `unit`.
    pub factor: f64,
    /// Its quality attribute (same functional constraint), if the profile checks quality.
    pub quality: Option<Reference>,
}

impl MmsPoint {
    /// What the data object's `units` must say for the profile to be right: the SI unit
    /// (IEC 61850-7-3 annex A: 29 V, 5 A, 33 Hz, 62 W, 63 var, 1 dimensionless) and the
    /// multiplier's exponent (the profile's `multiplier` plus that of its `unit`: `kV` is
    /// 10^3 V).
    #[must_use]
    pub fn expected_units(&self) -> Option<(i64, i64)> {
        let (si, exp) = match self.unit.as_str() {
            "V" => (29, 0),
            "kV" => (29, 3),
            "mA" => (5, -3),
            "A" => (5, 0),
            "kA" => (5, 3),
            "mHz" => (33, -3),
            "Hz" => (33, 0),
            "1" => (1, 0),
            "%" => (1, -2),
            "permille" => (1, -3),
            "W" => (62, 0),
            "kW" => (62, 3),
            "MW" => (62, 6),
            "var" => (63, 0),
            "kvar" => (63, 3),
            "Mvar" => (63, 6),
            _ => return None,
        };
        Some((si, exp + i64::from(self.multiplier)))
    }

    /// Checks what the IED's `units` say (`SIUnit`, `multiplier`, each if the IED has it)
    /// against the profile: a profile off by a power of ten would record every value a
    /// thousand times too large or small, so a mismatch is refused with both sides named.
    pub fn check_units(&self, si_unit: Option<i64>, multiplier: Option<i64>) -> Result<(), String> {
        let Some((si, exp)) = self.expected_units() else {
            return Ok(());
        };
        let name = self.quantity.name();
        if let Some(s) = si_unit.filter(|&s| s != si) {
            return Err(format!(
                "{name}: the profile reads {} as {} (SI unit {si}), the IED's units.SIUnit is {s}",
                self.reference, self.unit
            ));
        }
        // Dimensionless values (PF) often leave the multiplier out: 0 is the default.
        if let Some(m) = multiplier.filter(|&m| m != exp) {
            return Err(format!(
                "{name}: the profile reads {} as {} with multiplier {} (10^{exp} of the SI unit), the IED's units.multiplier is 10^{m}: fix the profile's multiplier",
                self.reference, self.unit, self.multiplier
            ));
        }
        Ok(())
    }
}

/// Where fault openings come from.
#[derive(Clone, Debug, PartialEq)]
pub enum MmsFaults {
    /// An operation or trip counter (`XCBR1.OpCnt.stVal`).
    Counter {
        /// Its reference.
        reference: Reference,
        /// Its functional constraint.
        fc: Fc,
    },
    /// A trip indication (`PTRC1.Op.general`): each rising edge seen is one opening.
    Status {
        /// Its reference.
        reference: Reference,
        /// Its functional constraint.
        fc: Fc,
    },
}

/// A checked IEC 61850 profile.
#[derive(Clone, Debug, PartialEq)]
pub struct MmsProfile {
    /// A short name.
    pub name: String,
    /// The maker.
    pub maker: String,
    /// The model(s).
    pub model: String,
    /// The document (and its version) the profile was written from.
    pub source: String,
    /// False until someone has recorded the real device with it.
    pub tested_on_hardware: bool,
    /// What a user should know.
    pub notes: Option<String>,
    /// How long one read may take.
    pub timeout: Duration,
    /// The ten quantities, in [`Quantity::ALL`] order.
    pub points: Vec<MmsPoint>,
    /// Where fault openings come from (`None`: records carry 0).
    pub faults: Option<MmsFaults>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    device: Spanned<RawDevice>,
    quantities: Spanned<BTreeMap<String, Spanned<RawPoint>>>,
    faults: Option<Spanned<RawFaults>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    #[serde(rename = "kind")]
    _kind: String,
    name: String,
    maker: String,
    model: String,
    source: String,
    tested_on_hardware: bool,
    notes: Option<String>,
    timeout_ms: Option<u64>,
    quality: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    reference: String,
    fc: Option<Fc>,
    multiplier: Option<i8>,
    unit: String,
    quality: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FaultSource {
    Counter,
    Status,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    from: FaultSource,
    reference: String,
    fc: Option<Fc>,
}

impl MmsProfile {
    /// Checks an IEC 61850 profile given as text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<MmsProfile, ProfileError> {
        let err = |line: usize, key: &str, reason: String| ProfileError {
            file: file.to_owned(),
            line,
            key: key.to_owned(),
            reason,
        };
        let raw: RawFile = parse_toml(file, text)?;
        let at = |span: std::ops::Range<usize>| line_of(text, span.start);
        let dev_line = at(raw.device.span());
        let dev = raw.device.into_inner();
        let timeout = device_basics(&dev.source, dev.timeout_ms)
            .map_err(|(key, reason)| err(dev_line, key, reason))?;
        let mut points = Vec::with_capacity(10);
        for (q, line, p) in ten_quantities(file, text, raw.quantities)? {
            let key = format!("quantities.{}", q.name());
            let reference = Reference::parse(&p.reference)
                .map_err(|e| err(line, &format!("{key}.reference"), e))?;
            let factor =
                unit_factor(q, &p.unit).map_err(|e| err(line, &format!("{key}.unit"), e))?;
            let multiplier = p.multiplier.unwrap_or(0);
            if !(-24..=24).contains(&multiplier) {
                return Err(err(
                    line,
                    &format!("{key}.multiplier"),
                    format!("{multiplier}: an SI multiplier is -24 to 24"),
                ));
            }
            let quality = match (dev.quality.unwrap_or(true), p.quality) {
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(err(
                        line,
                        &format!("{key}.quality"),
                        "device.quality is false: no quality is read".into(),
                    ))
                }
                (true, Some(r)) => Some(
                    Reference::parse(&r).map_err(|e| err(line, &format!("{key}.quality"), e))?,
                ),
                (true, None) => Some(reference.quality().ok_or_else(|| {
                    err(
                        line,
                        &format!("{key}.quality"),
                        format!(
                            "cannot derive the quality of {reference} (it does not end in mag.f, mag.i, cVal.mag.f or cVal.mag.i): give quality = \"LD/LN.DO.q\", or device.quality = false"
                        ),
                    )
                })?),
            };
            points.push(MmsPoint {
                quantity: q,
                reference,
                fc: p.fc.unwrap_or(Fc::MX),
                multiplier,
                unit: p.unit,
                factor,
                quality,
            });
        }
        let faults = match raw.faults {
            None => None,
            Some(f) => {
                let line = at(f.span());
                let f = f.into_inner();
                let reference =
                    Reference::parse(&f.reference).map_err(|e| err(line, "faults.reference", e))?;
                let fc = f.fc.unwrap_or(Fc::ST);
                Some(match f.from {
                    FaultSource::Counter => MmsFaults::Counter { reference, fc },
                    FaultSource::Status => MmsFaults::Status { reference, fc },
                })
            }
        };
        Ok(MmsProfile {
            name: dev.name,
            maker: dev.maker,
            model: dev.model,
            source: dev.source,
            tested_on_hardware: dev.tested_on_hardware,
            notes: dev.notes,
            timeout,
            points,
            faults,
        })
    }

    /// What one sample reads, in order: the ten quantities, the fault source if any, then
    /// the quantities' qualities if the profile checks them.
    #[must_use]
    pub fn targets(&self) -> Vec<(&Reference, Fc)> {
        let mut t: Vec<(&Reference, Fc)> =
            self.points.iter().map(|p| (&p.reference, p.fc)).collect();
        match &self.faults {
            Some(MmsFaults::Counter { reference, fc } | MmsFaults::Status { reference, fc }) => {
                t.push((reference, *fc));
            }
            None => {}
        }
        for p in &self.points {
            if let Some(q) = &p.quality {
                t.push((q, p.fc));
            }
        }
        t
    }

    /// The logical device instances the profile reads.
    #[must_use]
    pub fn lds(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.targets().iter().map(|(r, _)| r.ld.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Turns the values read for [`MmsProfile::targets`] (in order: a number, or `None`
    /// for what the IED refused or sent as something else) into a sample.
    pub fn decode(&self, values: &[Option<Value>]) -> Result<Reading, DecodeError> {
        // Qualities first: a doubtful value is not recorded, whatever it reads.
        let first_quality = self.points.len() + usize::from(self.faults.is_some());
        let mut k = first_quality;
        for p in &self.points {
            let Some(q) = &p.quality else { continue };
            let bad = |reason: String| DecodeError::Value {
                quantity: p.quantity.name(),
                reason,
            };
            match values.get(k).copied().flatten() {
                Some(Value::Bits(bits)) => {
                    let quality = Quality(bits);
                    if !quality.is_good() {
                        return Err(bad(format!("{q} is {quality}: the sample is not recorded")));
                    }
                }
                Some(_) => return Err(bad(format!("{q} is not a quality (a bit string)"))),
                None => return Err(bad(format!("{q} was not read"))),
            }
            k += 1;
        }
        let mut raw = [0i64; 10];
        for (i, (slot, p)) in raw.iter_mut().zip(&self.points).enumerate() {
            let name = p.quantity.name();
            let bad = |reason: String| DecodeError::Value {
                quantity: name,
                reason,
            };
            let v = match values.get(i).copied().flatten() {
                Some(Value::Number(v)) => v,
                Some(Value::Bool(_) | Value::Bits(_)) => {
                    return Err(bad(format!("{} is not a number", p.reference)))
                }
                None => return Err(bad(format!("{} was not read", p.reference))),
            };
            let stored = v * 10f64.powi(i32::from(p.multiplier)) * p.factor;
            if !stored.is_finite() {
                return Err(bad(format!("not a number ({v})")));
            }
            let (lo, hi) = range(p.quantity);
            let r = stored.round();
            if r < lo || r > hi {
                return Err(bad(format!(
                    "{v} (×10^{}) {} is out of range",
                    p.multiplier, p.unit
                )));
            }
            *slot = r as i64;
        }
        let sample = Sample::from_raw(raw).ok_or_else(|| DecodeError::Value {
            quantity: "sample",
            reason: "a value does not fit its type".into(),
        })?;
        let fault = values.get(self.points.len()).copied().flatten();
        let bad = |reason: String| DecodeError::Value {
            quantity: "faults",
            reason,
        };
        let faults = match (&self.faults, fault) {
            (None, _) => None,
            (Some(f), None) => {
                let (MmsFaults::Counter { reference, .. } | MmsFaults::Status { reference, .. }) =
                    f;
                return Err(bad(format!("{reference} was not read")));
            }
            (Some(MmsFaults::Counter { .. }), Some(Value::Number(n))) => {
                if !(n.is_finite() && n >= 0.0 && n.fract() == 0.0) {
                    return Err(bad(format!("counter value {n} is not a count")));
                }
                Some(FaultReading::Counter(n as u128))
            }
            (Some(MmsFaults::Counter { .. }), Some(Value::Bool(_) | Value::Bits(_))) => {
                return Err(bad("the counter is not a number".into()))
            }
            (Some(MmsFaults::Status { .. }), Some(Value::Bits(_))) => {
                return Err(bad("the trip indication is not a boolean".into()))
            }
            (Some(MmsFaults::Status { .. }), Some(Value::Bool(b))) => Some(FaultReading::Status(b)),
            (Some(MmsFaults::Status { .. }), Some(Value::Number(n))) => {
                Some(FaultReading::Status(n != 0.0))
            }
        };
        Ok(Reading { sample, faults })
    }
}

/// A value read from an IED, reduced to what a profile uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A float, integer or unsigned.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A bit string's first 16 bits, the first bit as the most significant (a quality).
    Bits(u16),
}

/// An IEC 61850 quality (IEC 61850-7-3 section 6.2): 13 bits, bit 0 first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quality(pub u16);

impl Quality {
    /// `validity`: bits 0 and 1 (00 good, 01 invalid, 10 reserved, 11 questionable).
    #[must_use]
    pub fn validity(self) -> u16 {
        self.0 >> 14
    }

    /// `test`: bit 11, the value comes from a test, not the process.
    #[must_use]
    pub fn test(self) -> bool {
        self.0 >> 4 & 1 == 1
    }

    /// Good and not a test: a value worth recording.
    #[must_use]
    pub fn is_good(self) -> bool {
        self.validity() == 0 && !self.test()
    }
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let validity = match self.validity() {
            0 => "good",
            1 => "invalid",
            2 => "reserved",
            _ => "questionable",
        };
        write!(f, "{validity}")?;
        if self.test() {
            write!(f, ", test")?;
        }
        Ok(())
    }
}

/// The `kind` a profile's `[device]` table declares: `"modbus"` (the default) or
/// `"iec61850"`; `None` if the text is not TOML with a `[device]` table.
#[must_use]
pub fn kind_of(text: &str) -> Option<String> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let dev = doc.get("device")?.as_table()?;
    Some(
        dev.get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("modbus")
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENERIC: &str = include_str!("../../profiles/generic-iec61850-ied.toml");

    #[test]
    fn the_shipped_generic_profile_checks_and_decodes() {
        let p = MmsProfile::parse("generic", GENERIC).expect("checks");
        assert_eq!(p.points.len(), 10);
        assert_eq!(p.lds(), ["LD0"]);
        assert_eq!(
            p.points[0].reference.on("GLRelay"),
            "GLRelayLD0/MMXU1.PPV.phsAB.cVal.mag.f"
        );
        let mut values: Vec<Option<Value>> = [
            115_000.0,
            115_100.0,
            114_900.0,
            12.345,
            12.5,
            12.0,
            60.001,
            0.95,
            1_234_567.0,
            -23_456.0,
        ]
        .iter()
        .map(|&v| Some(Value::Number(v)))
        .collect();
        values.push(Some(Value::Number(41.0)));
        values.extend([Some(Value::Bits(0)); 10]);
        let r = p.decode(&values).expect("decodes");
        assert_eq!(r.sample.vab.0, 115_000);
        assert_eq!(r.sample.ia.0, 12_345);
        assert_eq!(r.sample.freq.0, 60_001);
        assert_eq!(r.sample.pf.0, 950);
        assert_eq!(r.sample.p.0, 1_234_567);
        assert_eq!(r.sample.q.0, -23_456);
        assert_eq!(r.faults, Some(FaultReading::Counter(41)));

        let mut missing = values.clone();
        missing[3] = None;
        assert!(p.decode(&missing).is_err(), "a quantity not read");
        let mut nan = values.clone();
        nan[0] = Some(Value::Number(f64::NAN));
        assert!(p.decode(&nan).is_err(), "NaN");
        let mut neg = values.clone();
        neg[0] = Some(Value::Number(-1.0));
        assert!(p.decode(&neg).is_err(), "a negative voltage");
        let mut bad_count = values.clone();
        bad_count[10] = Some(Value::Number(-3.0));
        assert!(p.decode(&bad_count).is_err(), "a negative count");
        // Quality: invalid (01), questionable (11), test, or not read: no sample.
        assert_eq!(
            p.targets()[11].0.to_string(),
            "LD0/MMXU1.PPV.phsAB.q",
            "qualities follow the values and the fault source"
        );
        for (bits, what) in [
            (0b0100_0000_0000_0000, "invalid"),
            (0b1100_0000_0000_0000, "questionable"),
            (0b0000_0000_0001_0000, "good, test"),
        ] {
            let mut v = values.clone();
            v[13] = Some(Value::Bits(bits));
            let e = p.decode(&v).expect_err(what).to_string();
            assert!(e.contains(what) && e.contains("Vca"), "{e}");
        }
        let mut v = values.clone();
        v[20] = None;
        assert!(p.decode(&v).is_err(), "a quality not read");
        let mut v = values.clone();
        v[12] = Some(Value::Bits(0b0010_0000_0000_0000));
        assert!(p.decode(&v).is_ok(), "overflow alone leaves the value good");
        // Units: the profile's unit and multiplier against the IED's units.
        let vab = &p.points[0];
        assert_eq!(vab.expected_units(), Some((29, 0)));
        assert_eq!(
            vab.reference
                .units("multiplier")
                .map(|r| r.to_string())
                .as_deref(),
            Some("LD0/MMXU1.PPV.phsAB.units.multiplier")
        );
        assert!(vab.check_units(Some(29), Some(0)).is_ok());
        assert!(vab.check_units(None, None).is_ok(), "an IED without units");
        let e = vab
            .check_units(Some(29), Some(3))
            .expect_err("kV served, V read");
        assert!(e.contains("multiplier") && e.contains("10^3"), "{e}");
        assert!(vab.check_units(Some(5), Some(0)).is_err(), "amperes");
        let mut kv = vab.clone();
        kv.unit = "kV".into();
        assert!(kv.check_units(Some(29), Some(3)).is_ok(), "kV is V x 10^3");
        // Without quality: eleven targets.
        let off = GENERIC.replace("timeout_ms = 1000", "timeout_ms = 1000\nquality = false");
        let p = MmsProfile::parse("t", &off).expect("checks");
        assert_eq!(p.targets().len(), 11);
        assert!(p.decode(&values[..11]).is_ok());
        assert_eq!(kind_of(GENERIC).as_deref(), Some("iec61850"));
    }

    #[test]
    fn bad_profiles_name_the_line_and_key() {
        let cases = [
            ("Vab = { reference = \"MMXU1.PPV.phsAB.cVal.mag.f\", unit = \"V\" }", "quantities.Vab.reference"),
            ("Vab = { reference = \"LD0/MMXU1\", unit = \"V\" }", "quantities.Vab.reference"),
            ("Vab = { reference = \"LD0/MMXU1.PPV.phsAB.cVal.mag.f\", unit = \"A\" }", "quantities.Vab.unit"),
            ("Vab = { reference = \"LD0/MMXU1.PPV.phsAB.cVal.mag.f\", unit = \"V\", multiplier = 40 }", "quantities.Vab.multiplier"),
            ("Vab = { reference = \"LD0/MMXU1.PPV.phsAB.cVal.mag.f\", unit = \"V\", fc = \"XX\" }", "(syntax)"),
            ("Vab = { reference = \"LD0/MMXU1.PPV.phsAB.cVal.ang.f\", unit = \"V\" }", "quantities.Vab.quality"),
            ("Vab = { reference = \"LD0/MMXU1.PPV.phsAB.cVal.mag.f\", unit = \"V\", quality = \"q\" }", "quantities.Vab.quality"),
        ];
        let good = GENERIC
            .lines()
            .find(|l| l.starts_with("Vab"))
            .expect("the generic profile has Vab");
        for (line, key) in cases {
            let text = GENERIC.replace(good, line);
            let e = MmsProfile::parse("t", &text).expect_err(line);
            assert_eq!(e.key, key, "{line}: {e}");
            assert!(e.line > 0, "{e}");
        }
        let text = GENERIC.replace(good, "");
        let e = MmsProfile::parse("t", &text).expect_err("no Vab");
        assert_eq!(e.key, "quantities.Vab");
    }
}
