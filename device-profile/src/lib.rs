//! Device profiles: how to read a maker's Modbus register layout as relay-core's ten
//! quantities, so that the gateway can record any relay or meter (docs/book/src/profiles.md).
//!
//! A profile is a TOML file: the device (maker, the document it was written from, unit id,
//! timeout), where each quantity sits (address, function code, type, word order, scale,
//! unit), and where fault openings come from (a trip counter or a trip status bit).
//! [`Profile::load`] checks it whole and names the file, line and key of the first fault;
//! [`Profile::reads`] are the requests one sample takes, coalesced up to 125 registers;
//! [`Profile::decode`] turns their answers into a [`Sample`]; [`Profile::encode`] does
//! the reverse, for a simulated device that plays the profile.
//!
//! - [`value`]: register types and word orders.
//! - [`unit`]: the units a quantity may be given in.
//! - [`plan`]: coalescing the registers into requests.
//! - [`faults`]: fault openings from a counter or a status bit.

pub mod faults;
pub mod iec61850;
pub mod plan;
pub mod unit;
pub mod value;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use relay_core::measure::Quantity;
use relay_core::Sample;
use serde::Deserialize;
use toml::Spanned;

pub use plan::Read;
pub use value::{Kind, Raw, WordOrder};

/// Most registers one Modbus read returns.
pub const MAX_READ: u16 = 125;

/// A Modbus data table, by the function code that reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Coils (FC01), one bit each.
    Coils,
    /// Discrete inputs (FC02), one bit each.
    Discrete,
    /// Holding registers (FC03).
    Holding,
    /// Input registers (FC04).
    Input,
}

impl Table {
    /// The function code that reads it.
    #[must_use]
    pub fn function(self) -> u8 {
        match self {
            Table::Coils => 1,
            Table::Discrete => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }

    fn of(function: u8) -> Option<Table> {
        match function {
            1 => Some(Table::Coils),
            2 => Some(Table::Discrete),
            3 => Some(Table::Holding),
            4 => Some(Table::Input),
            _ => None,
        }
    }

    /// True for the bit tables (coils, discrete inputs).
    #[must_use]
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coils | Table::Discrete)
    }
}

/// How a register value becomes the quantity in the profile's unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// Multiply by this (a power of ten given as `scale_pow10` becomes one).
    Factor(f64),
    /// Multiply by ten to the power held in another register (a signed exponent, as some
    /// makers publish beside their integer values).
    Register {
        /// Its table.
        table: Table,
        /// Its address.
        address: u16,
        /// Its type (an integer).
        kind: Kind,
    },
}

/// Where one quantity sits and how to read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The quantity.
    pub quantity: Quantity,
    /// Its table (holding or input registers).
    pub table: Table,
    /// Its 0-based address.
    pub address: u16,
    /// Its type.
    pub kind: Kind,
    /// Its word order.
    pub order: WordOrder,
    /// Its scale.
    pub scale: Scale,
    /// The unit of the scaled value, as the profile names it.
    pub unit: String,
    /// relay-core's stored integer per one of `unit`.
    pub factor: f64,
    /// The maker's own reference (1-based, 3xxxx/4xxxx), for people.
    pub reference: Option<String>,
}

impl Point {
    /// The smallest and largest values the register can carry, in relay-core's stored
    /// units (unbounded for floats and for a scale register, whose exponent adapts).
    #[must_use]
    pub fn limits(&self) -> (f64, f64) {
        let (lo, hi) = match self.kind {
            Kind::U16 => (0.0, 65_535.0),
            Kind::I16 => (-32_768.0, 32_767.0),
            Kind::U32 => (0.0, 4_294_967_295.0),
            Kind::I32 => (-2_147_483_648.0, 2_147_483_647.0),
            Kind::U64 => (0.0, 1.8e19),
            Kind::F32 | Kind::F64 => return (f64::NEG_INFINITY, f64::INFINITY),
        };
        match self.scale {
            Scale::Factor(f) => {
                let (a, b) = (lo * f * self.factor, hi * f * self.factor);
                (a.min(b), a.max(b))
            }
            Scale::Register { .. } => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }
}

/// Where fault openings come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Faults {
    /// A trip or operation counter: the openings of a minute are its increase, a wrap
    /// past its largest value counted, a decrease taken as a reset (the openings since are
    /// its new value).
    Counter {
        /// Its table.
        table: Table,
        /// Its address.
        address: u16,
        /// Its type (an unsigned integer).
        kind: Kind,
        /// Its word order.
        order: WordOrder,
    },
    /// A breaker-open or trip bit: each rising edge seen is one opening.
    Status {
        /// Its table (a coil or discrete input, or a register with `bit`).
        table: Table,
        /// Its address.
        address: u16,
        /// The bit, for a register.
        bit: Option<u8>,
    },
}

/// A checked profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
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
    /// What a user should know (quirks, settings the device needs).
    pub notes: Option<String>,
    /// The device's unit id.
    pub unit: u8,
    /// How long one request may take.
    pub timeout: Duration,
    /// The ten quantities, in [`Quantity::ALL`] order.
    pub points: Vec<Point>,
    /// Where fault openings come from (`None`: the device does not say; records carry 0).
    pub faults: Option<Faults>,
    reads: Vec<Read>,
}

/// Why a profile is refused: the file, the line and key, and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {reason}")]
pub struct ProfileError {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// The key (`quantities.Vab.scale`).
    pub key: String,
    /// Why.
    pub reason: String,
}

/// Why an answer does not give a sample.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An answer holds fewer registers than its read asked for.
    #[error("read {index} answered {got} registers, {wanted} asked")]
    Short {
        /// The read.
        index: usize,
        /// Registers in the answer.
        got: usize,
        /// Registers asked.
        wanted: u16,
    },
    /// A value is not a number, or out of what relay-core stores.
    #[error("{quantity}: {reason}")]
    Value {
        /// The quantity's name.
        quantity: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a sample reads of the fault source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultReading {
    /// A counter's value.
    Counter(u128),
    /// A status bit.
    Status(bool),
}

/// One sample read through a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// The ten quantities.
    pub sample: Sample,
    /// The fault source, if the profile has one.
    pub faults: Option<FaultReading>,
}

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    device: Spanned<RawDevice>,
    quantities: Spanned<BTreeMap<String, Spanned<RawPoint>>>,
    faults: Option<Spanned<RawFaults>>,
    blocks: Option<Vec<Spanned<RawBlock>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    /// `modbus` (the default) or `iec61850` (read by [`iec61850::MmsProfile`]).
    #[serde(rename = "kind")]
    protocol: Option<String>,
    name: String,
    maker: String,
    model: String,
    source: String,
    tested_on_hardware: bool,
    notes: Option<String>,
    unit: Option<u8>,
    timeout_ms: Option<u64>,
    function: Option<u8>,
    #[serde(rename = "type")]
    kind: Option<Kind>,
    word_order: Option<WordOrder>,
    max_gap: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    address: u32,
    reference: Option<String>,
    function: Option<u8>,
    #[serde(rename = "type")]
    kind: Option<Kind>,
    word_order: Option<WordOrder>,
    scale: Option<f64>,
    scale_pow10: Option<i8>,
    scale_register: Option<RawScaleRegister>,
    unit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScaleRegister {
    address: u32,
    function: Option<u8>,
    #[serde(rename = "type")]
    kind: Option<Kind>,
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
    address: u32,
    /// The maker's name for it, for people (not used).
    #[serde(rename = "reference")]
    _reference: Option<String>,
    function: Option<u8>,
    #[serde(rename = "type")]
    kind: Option<Kind>,
    word_order: Option<WordOrder>,
    bit: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    function: u8,
    start: u32,
    count: u32,
}

/// Reads a profile file: its name for errors, and its text.
pub fn read_profile(path: &Path) -> Result<(String, String), ProfileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
        file: file.clone(),
        line: 0,
        key: "(file)".into(),
        reason: e.to_string(),
    })?;
    Ok((file, text))
}

/// A profile's TOML as `T`, a syntax or type fault named by its line.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ProfileError> {
    toml::from_str(text).map_err(|e: toml::de::Error| ProfileError {
        file: file.to_owned(),
        line: e.span().map_or(0, |s| line_of(text, s.start)),
        key: "(syntax)".into(),
        reason: e.message().trim().to_owned(),
    })
}

/// The ten quantities of a `[quantities]` table in [`Quantity::ALL`] order, each with its
/// line; the first missing, or the first name that is not a quantity, is refused.
pub(crate) fn ten_quantities<P>(
    file: &str,
    text: &str,
    table: Spanned<BTreeMap<String, Spanned<P>>>,
) -> Result<Vec<(Quantity, usize, P)>, ProfileError> {
    let err = |line: usize, key: String, reason: String| ProfileError {
        file: file.to_owned(),
        line,
        key,
        reason,
    };
    let table_line = line_of(text, table.span().start);
    let mut quantities = table.into_inner();
    let mut out = Vec::with_capacity(Quantity::ALL.len());
    for q in Quantity::ALL {
        let Some(p) = quantities.remove(q.name()) else {
            return Err(err(
                table_line,
                format!("quantities.{}", q.name()),
                format!(
                    "missing: every one of Vab, Vbc, Vca, Ia, Ib, Ic, f, PF, P, Q is needed (in {})",
                    unit::units_of(q)
                ),
            ));
        };
        out.push((q, line_of(text, p.span().start), p.into_inner()));
    }
    if let Some((name, p)) = quantities.into_iter().next() {
        return Err(err(
            line_of(text, p.span().start),
            format!("quantities.{name}"),
            "not a quantity: use Vab, Vbc, Vca, Ia, Ib, Ic, f, PF, P, Q".into(),
        ));
    }
    Ok(out)
}

/// relay-core's stored integer per one of `unit` for `quantity`, or why it is not one of
/// that quantity's units.
pub(crate) fn unit_factor(quantity: Quantity, unit: &str) -> Result<f64, String> {
    unit::factor(quantity, unit).ok_or_else(|| {
        format!(
            "'{unit}' is not a unit of {} (use {})",
            quantity.name(),
            unit::units_of(quantity)
        )
    })
}

/// What every profile's `[device]` must say, whatever its kind: the document it was
/// written from, and a timeout of 10 ms to 60 s (1 s by default). The key and reason of
/// the first fault.
pub(crate) fn device_basics(
    source: &str,
    timeout_ms: Option<u64>,
) -> Result<Duration, (&'static str, String)> {
    if source.trim().is_empty() {
        return Err((
            "device.source",
            "say which document (and version) the profile was written from".into(),
        ));
    }
    let ms = timeout_ms.unwrap_or(1000);
    if !(10..=60_000).contains(&ms) {
        return Err(("device.timeout_ms", format!("{ms}: use 10 to 60000")));
    }
    Ok(Duration::from_millis(ms))
}

/// The line (1-based) of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
}

/// A register range one item of the profile takes, to find overlaps.
#[derive(Clone, Debug)]
struct Claim {
    table: Table,
    start: u32,
    end: u32,
    what: String,
    line: usize,
    shared: bool,
}

impl Profile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let (file, text) = read_profile(path)?;
        Profile::parse(&file, &text)
    }

    /// Checks a profile given as text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Profile, ProfileError> {
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
        match dev.protocol.as_deref() {
            None | Some("modbus") => {}
            Some("iec61850") => {
                return Err(err(
                    dev_line,
                    "device.kind",
                    "an IEC 61850 profile, read over MMS: give the device upstream=mms://HOST:PORT"
                        .into(),
                ))
            }
            Some(k) => {
                return Err(err(
                    dev_line,
                    "device.kind",
                    format!("'{k}': use modbus (the default) or iec61850"),
                ))
            }
        }
        let timeout = device_basics(&dev.source, dev.timeout_ms)
            .map_err(|(key, reason)| err(dev_line, key, reason))?;
        let default_table = match dev.function.unwrap_or(3) {
            f @ (3 | 4) => Table::of(f).unwrap_or(Table::Holding),
            f => {
                return Err(err(
                    dev_line,
                    "device.function",
                    format!("{f}: quantities are read with 3 (holding) or 4 (input)"),
                ))
            }
        };
        let default_kind = dev.kind.unwrap_or(Kind::U16);
        let default_order = dev.word_order.unwrap_or(WordOrder::Abcd);
        let unit = dev.unit.unwrap_or(1);
        if unit == 0 || unit > 247 {
            return Err(err(
                dev_line,
                "device.unit",
                format!("{unit}: a unit id is 1 to 247"),
            ));
        }
        let max_gap = dev.max_gap.unwrap_or(16);
        if max_gap >= MAX_READ {
            return Err(err(
                dev_line,
                "device.max_gap",
                format!("{max_gap}: at most {}", MAX_READ - 1),
            ));
        }

        let mut claims: Vec<Claim> = Vec::new();
        let mut points = Vec::with_capacity(10);
        for (q, line, p) in ten_quantities(file, text, raw.quantities)? {
            let key = format!("quantities.{}", q.name());
            let k = |field: &str| format!("{key}.{field}");
            let table = register_table(p.function, default_table).map_err(|f| {
                err(
                    line,
                    &k("function"),
                    format!("{f}: quantities are read with 3 (holding) or 4 (input)"),
                )
            })?;
            let kind = p.kind.unwrap_or(default_kind);
            let order = p.word_order.unwrap_or(default_order);
            let factor = unit_factor(q, &p.unit).map_err(|e| err(line, &k("unit"), e))?;
            let scale = match (p.scale, p.scale_pow10, p.scale_register) {
                (None, None, None) => Scale::Factor(1.0),
                (Some(f), None, None) => {
                    if f == 0.0 || !f.is_finite() {
                        return Err(err(
                            line,
                            &k("scale"),
                            format!("{f}: a scale must be a finite number other than 0"),
                        ));
                    }
                    Scale::Factor(f)
                }
                (None, Some(e), None) => {
                    if !(-9..=9).contains(&e) {
                        return Err(err(line, &k("scale_pow10"), format!("{e}: use -9 to 9")));
                    }
                    Scale::Factor(10f64.powi(i32::from(e)))
                }
                (None, None, Some(r)) => {
                    let t = register_table(r.function, table).map_err(|f| {
                        err(
                            line,
                            &k("scale_register.function"),
                            format!("{f}: use 3 or 4"),
                        )
                    })?;
                    let rk = r.kind.unwrap_or(Kind::I16);
                    if !rk.is_integer() {
                        return Err(err(
                            line,
                            &k("scale_register.type"),
                            "a scale register holds an integer exponent".into(),
                        ));
                    }
                    let address = check_address(r.address, rk)
                        .map_err(|e| err(line, &k("scale_register.address"), e))?;
                    claims.push(Claim {
                        table: t,
                        start: u32::from(address),
                        end: u32::from(address) + u32::from(rk.registers()),
                        what: format!("the scale register of {}", q.name()),
                        line,
                        shared: true,
                    });
                    Scale::Register {
                        table: t,
                        address,
                        kind: rk,
                    }
                }
                _ => {
                    return Err(err(
                        line,
                        &k("scale"),
                        "give one of scale, scale_pow10 and scale_register".into(),
                    ))
                }
            };
            let address =
                check_address(p.address, kind).map_err(|e| err(line, &k("address"), e))?;
            claims.push(Claim {
                table,
                start: u32::from(address),
                end: u32::from(address) + u32::from(kind.registers()),
                what: key.clone(),
                line,
                shared: false,
            });
            points.push(Point {
                quantity: q,
                table,
                address,
                kind,
                order,
                scale,
                unit: p.unit,
                factor,
                reference: p.reference,
            });
        }

        let faults = match raw.faults {
            None => None,
            Some(f) => {
                let line = at(f.span());
                let f = f.into_inner();
                let fk = |field: &str| format!("faults.{field}");
                match f.from {
                    FaultSource::Counter => {
                        let table = register_table(f.function, default_table).map_err(|_| {
                            err(
                                line,
                                &fk("function"),
                                "a counter is read with 3 or 4".into(),
                            )
                        })?;
                        let kind = f.kind.unwrap_or(Kind::U16);
                        if kind.wrap().is_none() {
                            return Err(err(
                                line,
                                &fk("type"),
                                "a counter is u16, u32 or u64".into(),
                            ));
                        }
                        if f.bit.is_some() {
                            return Err(err(line, &fk("bit"), "a counter has no bit".into()));
                        }
                        let address = check_address(f.address, kind)
                            .map_err(|e| err(line, &fk("address"), e))?;
                        claims.push(Claim {
                            table,
                            start: u32::from(address),
                            end: u32::from(address) + u32::from(kind.registers()),
                            what: "faults".into(),
                            line,
                            shared: false,
                        });
                        Some(Faults::Counter {
                            table,
                            address,
                            kind,
                            order: f.word_order.unwrap_or(default_order),
                        })
                    }
                    FaultSource::Status => {
                        let Some(table) = f.function.and_then(Table::of) else {
                            return Err(err(line, &fk("function"), "a status bit is read with 1 (coil), 2 (discrete input), 3 or 4 (a register, with bit)".into()));
                        };
                        match (table.is_bits(), f.bit) {
                            (true, Some(_)) => {
                                return Err(err(
                                    line,
                                    &fk("bit"),
                                    "a coil or discrete input is one bit already: no bit".into(),
                                ))
                            }
                            (false, None) => {
                                return Err(err(
                                    line,
                                    &fk("bit"),
                                    "which bit of the register (0 to 15)".into(),
                                ))
                            }
                            (false, Some(b)) if b > 15 => {
                                return Err(err(
                                    line,
                                    &fk("bit"),
                                    format!("{b}: a register has bits 0 to 15"),
                                ))
                            }
                            _ => {}
                        }
                        if f.kind.is_some() || f.word_order.is_some() {
                            return Err(err(
                                line,
                                &fk("type"),
                                "a status bit has no type or word order".into(),
                            ));
                        }
                        let address = u16::try_from(f.address).map_err(|_| {
                            err(
                                line,
                                &fk("address"),
                                format!("{}: at most 65535", f.address),
                            )
                        })?;
                        claims.push(Claim {
                            table,
                            start: u32::from(address),
                            end: u32::from(address) + 1,
                            what: "faults".into(),
                            line,
                            shared: false,
                        });
                        Some(Faults::Status {
                            table,
                            address,
                            bit: f.bit,
                        })
                    }
                }
            }
        };

        // No two items may share a register (scale registers may be shared among
        // quantities, but not with a value).
        claims.sort_by_key(|c| (c.table, c.start));
        for (i, a) in claims.iter().enumerate() {
            for b in &claims[i + 1..] {
                if b.table != a.table || b.start >= a.end {
                    break;
                }
                let same_scale = a.shared && b.shared && a.start == b.start && a.end == b.end;
                if !same_scale {
                    return Err(err(
                        b.line,
                        &b.what,
                        format!(
                            "overlaps {} (line {}) at {} register {}",
                            a.what,
                            a.line,
                            table_name(a.table),
                            b.start
                        ),
                    ));
                }
            }
        }

        let reads = match raw.blocks {
            None => plan::coalesce(&claims_as_ranges(&claims), max_gap),
            Some(blocks) => {
                let mut reads = Vec::new();
                for b in blocks {
                    let line = at(b.span());
                    let b = b.into_inner();
                    let Some(table) = Table::of(b.function) else {
                        return Err(err(
                            line,
                            "blocks.function",
                            format!("{}: use 1 to 4", b.function),
                        ));
                    };
                    let max = if table.is_bits() {
                        2000
                    } else {
                        u32::from(MAX_READ)
                    };
                    if b.count == 0 || b.count > max {
                        return Err(err(
                            line,
                            "blocks.count",
                            format!(
                                "{}: one read takes 1 to {max} {}",
                                b.count,
                                if table.is_bits() { "bits" } else { "registers" }
                            ),
                        ));
                    }
                    if b.start + b.count > 65_536 {
                        return Err(err(
                            line,
                            "blocks.start",
                            "the block runs past address 65535".into(),
                        ));
                    }
                    reads.push(Read {
                        table,
                        start: b.start as u16,
                        count: b.count as u16,
                    });
                }
                for c in &claims {
                    let inside = reads.iter().any(|r| {
                        r.table == c.table
                            && u32::from(r.start) <= c.start
                            && c.end <= u32::from(r.start) + u32::from(r.count)
                    });
                    if !inside {
                        return Err(err(
                            c.line,
                            &c.what,
                            "not inside any of the profile's blocks".into(),
                        ));
                    }
                }
                reads
            }
        };

        Ok(Profile {
            name: dev.name,
            maker: dev.maker,
            model: dev.model,
            source: dev.source,
            tested_on_hardware: dev.tested_on_hardware,
            notes: dev.notes,
            unit,
            timeout,
            points,
            faults,
            reads,
        })
    }

    /// The requests one sample takes, in order.
    #[must_use]
    pub fn reads(&self) -> &[Read] {
        &self.reads
    }

    /// The point of `q`.
    #[must_use]
    pub fn point(&self, q: Quantity) -> &Point {
        let i = Quantity::ALL.iter().position(|x| *x == q).unwrap_or(0);
        &self.points[i]
    }

    /// Finds `count` registers (or bits) at `address` of `table` in the answers.
    fn find<'a>(
        &self,
        answers: &'a [Vec<u16>],
        table: Table,
        address: u16,
        count: u16,
    ) -> Option<&'a [u16]> {
        self.reads.iter().zip(answers).find_map(|(r, a)| {
            let start = usize::from(address.checked_sub(r.start)?);
            let end = start + usize::from(count);
            (r.table == table && end <= usize::from(r.count))
                .then(|| a.get(start..end))
                .flatten()
        })
    }

    /// Turns the answers to [`Profile::reads`] (one per read, in order; bits as 0 or 1 per
    /// register) into a sample.
    pub fn decode(&self, answers: &[Vec<u16>]) -> Result<Reading, DecodeError> {
        for (i, (r, a)) in self.reads.iter().zip(answers).enumerate() {
            if a.len() < usize::from(r.count) {
                return Err(DecodeError::Short {
                    index: i,
                    got: a.len(),
                    wanted: r.count,
                });
            }
        }
        if answers.len() < self.reads.len() {
            return Err(DecodeError::Short {
                index: answers.len(),
                got: 0,
                wanted: self.reads[answers.len()].count,
            });
        }
        let mut values = [0i64; 10];
        for (slot, p) in values.iter_mut().zip(&self.points) {
            let name = p.quantity.name();
            let bad = |reason: String| DecodeError::Value {
                quantity: name,
                reason,
            };
            let words = self
                .find(answers, p.table, p.address, p.kind.registers())
                .ok_or_else(|| bad("not in any read".into()))?;
            let raw = value::decode(words, p.kind, p.order).as_f64();
            let scale = match p.scale {
                Scale::Factor(f) => f,
                Scale::Register {
                    table,
                    address,
                    kind,
                } => {
                    let w = self
                        .find(answers, table, address, kind.registers())
                        .ok_or_else(|| bad("scale register not in any read".into()))?;
                    let e = value::decode(w, kind, WordOrder::Abcd).as_f64();
                    if !(-12.0..=12.0).contains(&e) {
                        return Err(bad(format!("scale exponent {e} out of -12..=12")));
                    }
                    10f64.powi(e as i32)
                }
            };
            let stored = raw * scale * p.factor;
            if !stored.is_finite() {
                return Err(bad(format!("not a number ({raw})")));
            }
            let (lo, hi) = range(p.quantity);
            let v = stored.round();
            if v < lo || v > hi {
                return Err(bad(format!("{} {} is out of range", raw * scale, p.unit)));
            }
            *slot = v as i64;
        }
        // Each value was checked against its quantity's range above.
        let sample = Sample::from_raw(values).ok_or_else(|| DecodeError::Value {
            quantity: "sample",
            reason: "a value does not fit its type".into(),
        })?;
        let faults = match &self.faults {
            None => None,
            Some(Faults::Counter {
                table,
                address,
                kind,
                order,
            }) => {
                let w = self
                    .find(answers, *table, *address, kind.registers())
                    .ok_or_else(|| DecodeError::Value {
                        quantity: "faults",
                        reason: "not in any read".into(),
                    })?;
                match value::decode(w, *kind, *order) {
                    Raw::Int(i) => Some(FaultReading::Counter(i.max(0) as u128)),
                    Raw::Float(_) => None,
                }
            }
            Some(Faults::Status {
                table,
                address,
                bit,
            }) => {
                let w =
                    self.find(answers, *table, *address, 1)
                        .ok_or_else(|| DecodeError::Value {
                            quantity: "faults",
                            reason: "not in any read".into(),
                        })?;
                let v = w[0];
                Some(FaultReading::Status(match bit {
                    Some(b) => v >> b & 1 == 1,
                    None => v != 0,
                }))
            }
        };
        Ok(Reading { sample, faults })
    }

    /// The registers (and bits) a device playing this profile serves for `sample` and the
    /// fault source `faults`: `(table, address, value)`. Scale registers get the smallest
    /// exponent at which every quantity sharing them fits its type.
    #[must_use]
    pub fn encode(&self, sample: &Sample, faults: Option<FaultReading>) -> Vec<(Table, u16, u16)> {
        let mut out = Vec::new();
        // Exponents first: one per scale register.
        let mut exponents: BTreeMap<(Table, u16), i32> = BTreeMap::new();
        for p in &self.points {
            if let Scale::Register { table, address, .. } = p.scale {
                let v = (p.quantity.raw(sample) as f64 / p.factor).abs();
                let e = (-6..=9)
                    .find(|e| fits(v / 10f64.powi(*e), p.kind))
                    .unwrap_or(9);
                let slot = exponents.entry((table, address)).or_insert(e);
                *slot = (*slot).max(e);
            }
        }
        for p in &self.points {
            let scale = match p.scale {
                Scale::Factor(f) => f,
                Scale::Register {
                    table,
                    address,
                    kind,
                } => {
                    let e = exponents.get(&(table, address)).copied().unwrap_or(0);
                    for (i, w) in value::encode(f64::from(e), kind, WordOrder::Abcd)
                        .into_iter()
                        .enumerate()
                    {
                        out.push((table, address + i as u16, w));
                    }
                    10f64.powi(e)
                }
            };
            let v = p.quantity.raw(sample) as f64 / p.factor / scale;
            for (i, w) in value::encode(v, p.kind, p.order).into_iter().enumerate() {
                out.push((p.table, p.address + i as u16, w));
            }
        }
        match (&self.faults, faults) {
            (
                Some(Faults::Counter {
                    table,
                    address,
                    kind,
                    order,
                }),
                Some(FaultReading::Counter(n)),
            ) => {
                let n = kind.wrap().map_or(n, |w| n % w);
                for (i, w) in value::encode(n as f64, *kind, *order)
                    .into_iter()
                    .enumerate()
                {
                    out.push((*table, address + i as u16, w));
                }
            }
            (
                Some(Faults::Status {
                    table,
                    address,
                    bit,
                }),
                Some(FaultReading::Status(on)),
            ) => {
                let w = match bit {
                    Some(b) => u16::from(on) << b,
                    None => u16::from(on),
                };
                out.push((*table, *address, w));
            }
            _ => {}
        }
        out
    }

    /// How far a value of `q` read through this profile may be from the truth, in
    /// relay-core's stored units, when the device holds `truth`: half a step of the
    /// register's resolution (integer types) or of float precision, plus the rounding to
    /// relay-core's integer.
    #[must_use]
    pub fn quantisation(&self, q: Quantity, truth: f64) -> f64 {
        let p = self.point(q);
        let step = match (p.kind, p.scale) {
            (Kind::F32, _) => truth.abs() * f64::from(f32::EPSILON),
            (Kind::F64, _) => truth.abs() * f64::EPSILON,
            (_, Scale::Factor(f)) => f.abs() * p.factor,
            // The exponent is chosen per value: at most one part in the type's range.
            (k, Scale::Register { .. }) => {
                truth.abs() / ((1u64 << (16 * u32::from(k.registers()) - 1)) as f64 / 10.0) + 1.0
            }
        };
        step / 2.0 + 0.5
    }
}

fn fits(v: f64, kind: Kind) -> bool {
    let max = match kind {
        Kind::U16 => 65_535.0,
        Kind::I16 => 32_767.0,
        Kind::U32 => 4_294_967_295.0,
        Kind::I32 => 2_147_483_647.0,
        Kind::U64 => 1.8e19,
        Kind::F32 | Kind::F64 => f64::MAX,
    };
    v <= max
}

/// The range relay-core stores for `q`, in its integers.
pub(crate) fn range(q: Quantity) -> (f64, f64) {
    use Quantity as Q;
    match q {
        Q::Vab | Q::Vbc | Q::Vca | Q::Ia | Q::Ib | Q::Ic => (0.0, f64::from(u32::MAX)),
        Q::Freq => (0.0, f64::from(u16::MAX)),
        Q::Pf => (-1000.0, 1000.0),
        Q::P | Q::Q => (f64::from(i32::MIN), f64::from(i32::MAX)),
    }
}

/// Every Modbus profile (`*.toml` whose `[device]` has no `kind = "iec61850"`) in `dir`,
/// checked, in file-name order: for tools and tests that play or record each shipped
/// Modbus profile. The first bad file ends it.
pub fn load_dir(dir: &Path) -> Result<Vec<(std::path::PathBuf, Profile)>, ProfileError> {
    let unreadable = |e: std::io::Error| ProfileError {
        file: dir.display().to_string(),
        line: 0,
        key: "(directory)".into(),
        reason: e.to_string(),
    };
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| iec61850::kind_of(&t))
                .is_none_or(|k| k != "iec61850")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| Profile::load(&f).map(|p| (f, p)))
        .collect()
}

/// The register table of function code `function` (3 or 4; `None`: `default`); the code
/// itself if it reads no registers.
fn register_table(function: Option<u8>, default: Table) -> Result<Table, u8> {
    match function {
        None => Ok(default),
        Some(f @ (3 | 4)) => Table::of(f).ok_or(f),
        Some(f) => Err(f),
    }
}

fn table_name(t: Table) -> &'static str {
    match t {
        Table::Coils => "coil",
        Table::Discrete => "discrete input",
        Table::Holding => "holding",
        Table::Input => "input",
    }
}

fn check_address(address: u32, kind: Kind) -> Result<u16, String> {
    if address + u32::from(kind.registers()) > 65_536 {
        return Err(format!(
            "{address}: a 0-based address of 0 to {} for a {kind:?}",
            65_536 - u32::from(kind.registers())
        ));
    }
    Ok(address as u16)
}

fn claims_as_ranges(claims: &[Claim]) -> Vec<(Table, u16, u16)> {
    claims
        .iter()
        .map(|c| (c.table, c.start as u16, (c.end - c.start) as u16))
        .collect()
}
