//! The recorder: any Modbus device, read through a device profile, served as a relay of
//! relay-core's register map (identity, live sample, last closed minute record), so that
//! the nodes read a maker's relay exactly as they read relay-sim.
//!
//! Each device has its own task. At every aligned instant of the host's UTC clock (every
//! `sample_secs`) it makes the profile's reads, decodes them, and publishes the live block;
//! at each minute boundary it closes the minute's record. A sample the device did not
//! answer is never invented: its slot is marked missing in the record (relay-core's
//! missing-slot mask, `docs/book/src/FORMAT.md` section 6), and a minute with no sample at all has
//! no record, which the nodes show as a gap. A device that stops answering is retried at
//! every sample instant and picked up again by itself.
//!
//! Fault openings come from the profile's counter or trip bit
//! ([`device_profile::faults::FaultTracker`]). After a sample the device did not answer,
//! the tracker starts again from the next reading: openings while the device was silent
//! are not counted, rather than being put in a minute they may not belong to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use device_profile::faults::FaultTracker;
use device_profile::iec61850::MmsProfile;
use device_profile::{Faults, Profile, Reading, Table};
use relay_core::registers::{Exception, LiveValues, RegisterImage};
use relay_core::{Identity, Minute, MinuteRecord, RecordFlags, RelayId, Sample, MAX_SAMPLES};
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;
use tracing::{info, warn};

use crate::mms::MmsSource;
use crate::Bus;

/// Where a device is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// On the gateway's serial bus (`--serial`).
    Bus,
    /// A Modbus TCP device (`tcp://host:port`).
    Tcp(String),
    /// An IEC 61850 IED over MMS (`mms://host:port`, port 102 by default).
    Mms(String),
}

/// How a device is read: a Modbus register layout or an IEC 61850 data model.
#[derive(Clone, Debug)]
pub enum DeviceProfile {
    /// A Modbus profile ([`Profile`]).
    Modbus(Arc<Profile>),
    /// An IEC 61850 profile ([`MmsProfile`]).
    Iec61850(Arc<MmsProfile>),
}

impl DeviceProfile {
    /// The profile's short name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            DeviceProfile::Modbus(p) => &p.name,
            DeviceProfile::Iec61850(p) => &p.name,
        }
    }

    /// Reads and checks the profile at `path`, of either kind.
    pub fn load(path: &std::path::Path) -> Result<DeviceProfile, device_profile::ProfileError> {
        let (file, text) = device_profile::read_profile(path)?;
        if device_profile::iec61850::kind_of(&text).as_deref() == Some("iec61850") {
            Ok(DeviceProfile::Iec61850(Arc::new(MmsProfile::parse(
                &file, &text,
            )?)))
        } else {
            Ok(DeviceProfile::Modbus(Arc::new(Profile::parse(
                &file, &text,
            )?)))
        }
    }
}

impl From<Arc<Profile>> for DeviceProfile {
    fn from(p: Arc<Profile>) -> Self {
        DeviceProfile::Modbus(p)
    }
}

impl From<Arc<MmsProfile>> for DeviceProfile {
    fn from(p: Arc<MmsProfile>) -> Self {
        DeviceProfile::Iec61850(p)
    }
}

/// A device to record.
#[derive(Clone, Debug)]
pub struct Device {
    /// Its profile.
    pub profile: DeviceProfile,
    /// The unit id it is served under on the gateway's Modbus TCP side.
    pub unit: u8,
    /// Its unit id on its own bus or TCP server (the profile's by default).
    pub device_unit: u8,
    /// The relay id its records carry.
    pub relay: RelayId,
    /// Its name in the identity block (the profile's name by default).
    pub name: String,
    /// The substation, in the identity block.
    pub substation: String,
    /// Where it is reached.
    pub upstream: Upstream,
    /// An IEC 61850 IED's name (`ied=`); `None`: asked of the IED.
    pub ied: Option<String>,
    /// The key the recorder signs this device's records with (`key=`); `None`: unsigned.
    pub key: Option<crate::signer::DeviceKey>,
}

/// What a recorder did, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Samples read and decoded.
    pub samples: AtomicU64,
    /// Sample instants the device did not answer (or answered with values that do not
    /// decode).
    pub missed: AtomicU64,
    /// Minute records closed.
    pub records: AtomicU64,
    /// Minutes with no sample at all (no record).
    pub gaps: AtomicU64,
    /// Modbus requests made.
    pub requests: AtomicU64,
    jitter_us: Mutex<VecDeque<u64>>,
}

/// How many sampling delays [`Stats::jitter_us`] keeps.
pub const JITTER_KEPT: usize = 4096;

impl Stats {
    /// The delays from each aligned instant to the first request of its sample, in wall
    /// microseconds, most recent last (at most [`JITTER_KEPT`]).
    #[must_use]
    pub fn jitter_us(&self) -> Vec<u64> {
        self.jitter_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    fn note_jitter(&self, us: u64) {
        let mut j = self
            .jitter_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if j.len() == JITTER_KEPT {
            j.pop_front();
        }
        j.push_back(us);
    }
}

/// The host's clock as the recorder sees it: UTC, or for tests a compressed one.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin_ms: u64,
    origin: Instant,
    speed: f64,
}

impl Clock {
    /// The system's UTC clock.
    #[must_use]
    pub fn system() -> Self {
        Clock {
            origin_ms: unix_ms(),
            origin: Instant::now(),
            speed: 1.0,
        }
    }

    /// A clock that reads `origin_ms` now and runs `speed` times faster than the wall
    /// clock (tests: a minute in two seconds).
    #[must_use]
    pub fn compressed(origin_ms: u64, speed: f64) -> Self {
        Clock {
            origin_ms,
            origin: Instant::now(),
            speed: speed.max(1e-3),
        }
    }

    /// Unix milliseconds now.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        if self.speed == 1.0 {
            // Follow the system clock (NTP steps included).
            return unix_ms();
        }
        self.origin_ms + (self.origin.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }

    /// The wall time until the clock reads `ms`.
    fn until(&self, ms: u64) -> Duration {
        let now = self.now_ms();
        Duration::from_secs_f64(ms.saturating_sub(now) as f64 / 1000.0 / self.speed)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A device being recorded: its register image (what the gateway serves for it) and its
/// counters.
#[derive(Debug)]
pub struct Recording {
    /// The device.
    pub device: Device,
    /// What it did.
    pub stats: Stats,
    image: RwLock<RegisterImage>,
    samples_per_record: u16,
}

impl Recording {
    /// A recording of `device` at `sample_secs` (10, 12, 15, 20, 30 or 60).
    #[must_use]
    pub fn new(device: Device, sample_secs: u16) -> Self {
        let per_record = 60 / sample_secs.clamp(10, 60);
        let identity = Identity::new(device.relay, &device.name, &device.substation);
        let mut image = RegisterImage::new(&identity, per_record);
        image.set_status(RecordFlags::CLOCK_SET);
        if let Some(key) = &device.key {
            image.set_key(&key.public());
        }
        Recording {
            device,
            stats: Stats::default(),
            image: RwLock::new(image),
            samples_per_record: per_record,
        }
    }

    /// Reads `quantity` registers from `address` of the served map (FC03 and FC04 alike).
    pub fn read(&self, address: u16, quantity: u16) -> Result<Vec<u16>, Exception> {
        let image = self.image.read().unwrap_or_else(PoisonError::into_inner);
        image.read(address, quantity).map(<[u16]>::to_vec)
    }

    fn update(&self, f: impl FnOnce(&mut RegisterImage)) {
        f(&mut self.image.write().unwrap_or_else(PoisonError::into_inner));
    }
}

/// How the recorder reaches a device.
enum Conn {
    Bus(Bus),
    Tcp {
        addr: String,
        unit: u8,
        ctx: Option<Context>,
    },
}

impl Conn {
    async fn read(
        &mut self,
        unit: u8,
        table: Table,
        start: u16,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<u16>, String> {
        let bits = |v: Vec<bool>| v.into_iter().map(u16::from).collect::<Vec<u16>>();
        match self {
            Conn::Bus(bus) => {
                let request = match table {
                    Table::Coils => Request::ReadCoils(start, count),
                    Table::Discrete => Request::ReadDiscreteInputs(start, count),
                    Table::Holding => Request::ReadHoldingRegisters(start, count),
                    Table::Input => Request::ReadInputRegisters(start, count),
                };
                match bus.call(unit, request).await {
                    Ok(Response::ReadCoils(v) | Response::ReadDiscreteInputs(v)) => Ok(bits(v)),
                    Ok(Response::ReadHoldingRegisters(v) | Response::ReadInputRegisters(v)) => {
                        Ok(v)
                    }
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(format!("exception {e:?}")),
                }
            }
            Conn::Tcp { addr, unit: u, ctx } => {
                if ctx.is_none() || *u != unit {
                    let target = tokio::net::lookup_host(addr.as_str())
                        .await
                        .map_err(|e| format!("{addr}: {e}"))?
                        .next()
                        .ok_or_else(|| format!("{addr}: no address"))?;
                    let c = tokio::time::timeout(timeout, tcp::connect_slave(target, Slave(unit)))
                        .await
                        .map_err(|_| format!("{addr}: no connection within {timeout:?}"))?
                        .map_err(|e| format!("{addr}: {e}"))?;
                    *ctx = Some(c);
                    *u = unit;
                }
                let Some(c) = ctx.as_mut() else {
                    return Err("not connected".into());
                };
                let answer = tokio::time::timeout(timeout, async {
                    match table {
                        Table::Coils => c.read_coils(start, count).await.map(|r| r.map(bits)),
                        Table::Discrete => c
                            .read_discrete_inputs(start, count)
                            .await
                            .map(|r| r.map(bits)),
                        Table::Holding => c.read_holding_registers(start, count).await,
                        Table::Input => c.read_input_registers(start, count).await,
                    }
                })
                .await;
                match answer {
                    Ok(Ok(Ok(v))) => Ok(v),
                    Ok(Ok(Err(e))) => Err(format!("exception {e:?}")),
                    Ok(Err(e)) => {
                        *ctx = None;
                        Err(format!("{addr}: {e}"))
                    }
                    Err(_) => {
                        // The stream may hold a late answer: start afresh.
                        *ctx = None;
                        Err(format!("{addr}: no answer within {timeout:?}"))
                    }
                }
            }
        }
    }
}

/// The minute being recorded.
/// Where a sample comes from.
enum Source {
    Modbus { conn: Conn, profile: Arc<Profile> },
    Mms(Box<MmsSource>),
}

impl Source {
    /// One sample: the profile's reads (Modbus) or its one MMS Read, decoded.
    async fn sample(&mut self, rec: &Recording) -> Result<Reading, String> {
        match self {
            Source::Modbus { conn, profile } => {
                let mut answers = Vec::with_capacity(profile.reads().len());
                for r in profile.reads() {
                    rec.stats.requests.fetch_add(1, Ordering::Relaxed);
                    answers.push(
                        conn.read(
                            rec.device.device_unit,
                            r.table,
                            r.start,
                            r.count,
                            profile.timeout,
                        )
                        .await?,
                    );
                }
                profile.decode(&answers).map_err(|e| e.to_string())
            }
            Source::Mms(m) => {
                rec.stats.requests.fetch_add(1, Ordering::Relaxed);
                m.sample().await
            }
        }
    }
}

struct Open {
    minute: Minute,
    slots: [Option<Sample>; MAX_SAMPLES],
    faults: u32,
}

impl Open {
    fn new(minute: Minute) -> Self {
        Open {
            minute,
            slots: [None; MAX_SAMPLES],
            faults: 0,
        }
    }

    /// The record of this minute, if any slot holds a sample.
    fn close(&self, relay: RelayId, per_record: usize) -> Option<MinuteRecord> {
        let mut samples = heapless::Vec::new();
        let mut missing = 0u8;
        for (i, slot) in self.slots.iter().take(per_record).enumerate() {
            match slot {
                Some(s) => {
                    let _ = samples.push(*s);
                }
                None => missing |= 1 << i,
            }
        }
        if samples.is_empty() {
            return None;
        }
        Some(MinuteRecord {
            relay,
            minute: self.minute,
            faults: u16::try_from(self.faults).unwrap_or(u16::MAX),
            flags: RecordFlags::CLOCK_SET.with_missing(missing),
            samples,
            signature: None,
        })
    }
}

/// Records `rec` until the task is aborted: samples at the aligned instants of `clock`,
/// closes a record at each minute boundary. `bus` is the gateway's serial bus, for devices
/// on it.
pub async fn record(rec: Arc<Recording>, bus: Option<Bus>, sample_secs: u16, clock: Clock) {
    let device = &rec.device;
    let (mut source, wrap) = match (&device.profile, &device.upstream, bus) {
        (DeviceProfile::Iec61850(p), Upstream::Mms(addr), _) => (
            Source::Mms(Box::new(MmsSource::new(
                addr.clone(),
                Arc::clone(p),
                device.ied.clone(),
            ))),
            // An INT32 operation counter: a decrease is a reset, not a wrap.
            None,
        ),
        (DeviceProfile::Iec61850(_), _, _) => {
            warn!(
                unit = device.unit,
                "an IEC 61850 profile needs upstream=mms://HOST:PORT: not recorded"
            );
            return;
        }
        (DeviceProfile::Modbus(p), Upstream::Mms(_), _) => {
            warn!(unit = device.unit, profile = %p.name, "a Modbus profile cannot be read over MMS: not recorded");
            return;
        }
        (DeviceProfile::Modbus(p), Upstream::Tcp(addr), _) => (
            Source::Modbus {
                conn: Conn::Tcp {
                    addr: addr.clone(),
                    unit: device.device_unit,
                    ctx: None,
                },
                profile: Arc::clone(p),
            },
            counter_wrap(p),
        ),
        (DeviceProfile::Modbus(p), Upstream::Bus, Some(bus)) => (
            Source::Modbus {
                conn: Conn::Bus(bus),
                profile: Arc::clone(p),
            },
            counter_wrap(p),
        ),
        (DeviceProfile::Modbus(_), Upstream::Bus, None) => {
            warn!(
                unit = device.unit,
                "device on the serial bus, but no --serial: not recorded"
            );
            return;
        }
    };
    let step_ms = u64::from(sample_secs.clamp(10, 60)) * 1000;
    let per_record = usize::from(rec.samples_per_record);
    let mut tracker = FaultTracker::new();
    let mut open: Option<Open> = None;
    let mut seq = 0u16;
    let mut down: Option<String> = None;
    let mut last_closed: Option<Minute> = None;
    loop {
        let next = (clock.now_ms() / step_ms + 1) * step_ms;
        let target = Instant::now() + clock.until(next);
        tokio::time::sleep_until(target.into()).await;
        // How late the sample starts, in wall time.
        let late_us = Instant::now().saturating_duration_since(target).as_micros() as u64;
        let t = next / 1000;
        let minute = Minute::containing(t);
        let slot = ((t % 60) * 1000 / step_ms) as usize;

        // The host's clock went back (an NTP step) into a minute already closed or before
        // the open one: a second record for a minute would contradict the first. Wait for
        // the clock instead.
        if !may_sample(minute, open.as_ref().map(|o| o.minute), last_closed) {
            warn!(unit = device.unit, minute = %minute, "the host clock went back into a closed minute: no sample until it passes it");
            continue;
        }
        // A new minute: close the one before.
        if open.as_ref().is_some_and(|o| o.minute != minute) {
            if let Some(o) = open.take() {
                last_closed = Some(o.minute);
                match o.close(device.relay, per_record) {
                    Some(mut r) => {
                        seq = next_seq(seq);
                        let missing = r.flags.missing().count_ones();
                        if let Some(key) = &device.key {
                            key.sign(&mut r);
                        }
                        // Record and signature in one update: a reader never sees one
                        // without the other, except across its two reads.
                        rec.update(|image| {
                            image.set_record(seq, &r);
                            if let Some(sig) = &r.signature {
                                image.set_signature(seq, sig);
                            }
                        });
                        rec.stats.records.fetch_add(1, Ordering::Relaxed);
                        info!(
                            unit = device.unit,
                            minute = %r.minute,
                            samples = r.samples.len(),
                            missing,
                            faults = r.faults,
                            seq,
                            total_samples = rec.stats.samples.load(Ordering::Relaxed),
                            total_missed = rec.stats.missed.load(Ordering::Relaxed),
                            total_gaps = rec.stats.gaps.load(Ordering::Relaxed),
                            "closed minute record"
                        );
                    }
                    None => {
                        rec.stats.gaps.fetch_add(1, Ordering::Relaxed);
                        warn!(unit = device.unit, minute = %o.minute, "no sample in the minute: no record (a gap)");
                    }
                }
            }
        }
        let current = open.get_or_insert_with(|| Open::new(minute));

        // One sample: the profile's reads, in order.
        rec.stats.note_jitter(late_us);
        let reading = source.sample(&rec).await;
        match reading {
            Ok(reading) => {
                if let Some(why) = down.take() {
                    info!(unit = device.unit, "device answers again (was: {why})");
                }
                rec.stats.samples.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = reading.faults {
                    current.faults += tracker.observe(f, wrap);
                }
                if let Some(s) = current.slots.get_mut(slot) {
                    *s = Some(reading.sample);
                }
                let live = LiveValues {
                    sample: reading.sample,
                    minute,
                    second: (t % 60) as u16,
                    faults_so_far: u16::try_from(current.faults).unwrap_or(u16::MAX),
                };
                rec.update(|image| {
                    image.set_live(&live);
                    image.set_clock(t);
                });
            }
            Err(e) => {
                rec.stats.missed.fetch_add(1, Ordering::Relaxed);
                tracker.forget();
                if down.is_none() {
                    warn!(unit = device.unit, minute = %minute, slot, "no sample from the device: {e} (the slot is marked missing; trying again at every sample)");
                }
                down = Some(e);
            }
        }
    }
}

/// True if a sample in `minute` may be taken: not in a minute already closed, nor before
/// the open one (the host's clock stepped back).
/// Where a Modbus counter wraps (its largest value plus one), if it is one.
fn counter_wrap(p: &Profile) -> Option<u128> {
    match &p.faults {
        Some(Faults::Counter { kind, .. }) => kind.wrap(),
        _ => None,
    }
}

fn may_sample(minute: Minute, open: Option<Minute>, last_closed: Option<Minute>) -> bool {
    !(last_closed.is_some_and(|c| minute <= c) || open.is_some_and(|o| minute < o))
}

/// The sequence number after `seq`: 1, 2, … 65535, 1, … (0 means "no record yet").
fn next_seq(seq: u16) -> u16 {
    if seq == u16::MAX {
        1
    } else {
        seq + 1
    }
}

/// Why a `--device` value cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The profile is refused.
    #[error(transparent)]
    Profile(#[from] device_profile::ProfileError),
    /// The value does not parse.
    #[error("--device {0}")]
    Syntax(String),
}

/// Parses `--device PROFILE,unit=U,relay=R[,name=N][,device-unit=D][,upstream=URL][,ied=I][,key=FILE]`.
pub fn parse_device(spec: &str, substation: &str) -> Result<Device, DeviceError> {
    let mut parts = spec.split(',');
    let path = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| DeviceError::Syntax(format!("'{spec}': start with the profile's path")))?;
    let profile = DeviceProfile::load(std::path::Path::new(path))?;
    let (mut unit, mut relay, mut name, mut device_unit, mut upstream, mut ied) =
        (None, None, None, None, Upstream::Bus, None);
    let mut key = None;
    for part in parts {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| DeviceError::Syntax(format!("'{part}': use key=value")))?;
        let num = |max: u64| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| DeviceError::Syntax(format!("{k}={v}: a number from 1 to {max}")))
        };
        match k {
            "unit" => unit = Some(num(247)? as u8),
            "relay" => relay = Some(num(u64::from(u32::MAX))? as u32),
            "device-unit" => device_unit = Some(num(247)? as u8),
            "name" => name = Some(v.to_owned()),
            "upstream" => {
                if let Some(addr) = v.strip_prefix("mms://") {
                    // MMS's well-known port (ISO on TCP, RFC 1006) when none is given.
                    let addr = if addr.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
                        addr.to_owned()
                    } else {
                        format!("{addr}:102")
                    };
                    if addr
                        .rsplit_once(':')
                        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                    {
                        return Err(DeviceError::Syntax(format!(
                            "upstream={v}: use mms://HOST[:PORT]"
                        )));
                    }
                    upstream = Upstream::Mms(addr);
                    continue;
                }
                let addr = v.strip_prefix("tcp://").ok_or_else(|| {
                    DeviceError::Syntax(format!(
                        "upstream={v}: use tcp://HOST:PORT, mms://HOST[:PORT] (IEC 61850), or leave it out for the serial bus"
                    ))
                })?;
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(DeviceError::Syntax(format!(
                        "upstream={v}: use tcp://HOST:PORT"
                    )));
                }
                upstream = Upstream::Tcp(addr.to_owned());
            }
            "ied" => {
                if v.is_empty()
                    || v.len() > 64
                    || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(DeviceError::Syntax(format!(
                        "ied={v}: an IED name is 1 to 64 letters, digits and _"
                    )));
                }
                ied = Some(v.to_owned());
            }
            "key" => {
                let k = crate::signer::DeviceKey::load_or_create(std::path::Path::new(v))
                    .map_err(|e| DeviceError::Syntax(format!("key={v}: {e}")))?;
                key = Some(k);
            }
            _ => {
                return Err(DeviceError::Syntax(format!(
                    "'{k}': the keys are unit, relay, name, device-unit, upstream, ied, key"
                )))
            }
        }
    }
    let unit = unit.ok_or_else(|| {
        DeviceError::Syntax(format!(
            "'{spec}': give unit=U, the unit id the gateway serves it under"
        ))
    })?;
    let relay = relay.ok_or_else(|| {
        DeviceError::Syntax(format!(
            "'{spec}': give relay=R, the relay id its records carry"
        ))
    })?;
    match (&profile, &upstream) {
        (DeviceProfile::Iec61850(_), Upstream::Mms(_))
        | (DeviceProfile::Modbus(_), Upstream::Tcp(_) | Upstream::Bus) => {}
        (DeviceProfile::Iec61850(p), _) => {
            return Err(DeviceError::Syntax(format!(
                "'{spec}': {} is an IEC 61850 profile: give upstream=mms://HOST[:PORT]",
                p.name
            )))
        }
        (DeviceProfile::Modbus(p), Upstream::Mms(_)) => {
            return Err(DeviceError::Syntax(format!(
            "'{spec}': {} is a Modbus profile: give upstream=tcp://HOST:PORT or use the serial bus",
            p.name
        )))
        }
    }
    if ied.is_some() && !matches!(upstream, Upstream::Mms(_)) {
        return Err(DeviceError::Syntax(format!(
            "'{spec}': ied= names an IEC 61850 IED, read with upstream=mms://"
        )));
    }
    let name = name.unwrap_or_else(|| profile.name().to_owned());
    if name.len() > relay_core::Identity::NAME_MAX {
        return Err(DeviceError::Syntax(format!(
            "name '{name}' is over {} bytes",
            relay_core::Identity::NAME_MAX
        )));
    }
    let default_unit = match &profile {
        DeviceProfile::Modbus(p) => p.unit,
        DeviceProfile::Iec61850(_) => 1,
    };
    Ok(Device {
        device_unit: device_unit.unwrap_or(default_unit),
        profile,
        unit,
        relay: RelayId(relay),
        name,
        substation: substation.to_owned(),
        upstream,
        ied,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_keeps_its_slots_and_never_invents_one() {
        let mut o = Open::new(Minute(29_000_000));
        let s = Sample::default();
        o.slots[0] = Some(s);
        o.slots[2] = Some(s);
        o.slots[5] = Some(s);
        o.faults = 3;
        let r = o.close(RelayId(9), 6).expect("a record");
        assert_eq!(r.samples.len(), 3);
        assert_eq!(r.flags.missing(), 0b01_1010);
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.sample_seconds().collect::<Vec<_>>(), [0, 20, 50]);
        assert_eq!(r.faults, 3);
        assert!(
            Open::new(Minute(1)).close(RelayId(9), 6).is_none(),
            "no sample, no record"
        );
    }

    #[test]
    fn device_flags_are_checked() {
        let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiles/sel-751a.toml");
        let d = parse_device(
            &format!("{profile},unit=9,relay=751,upstream=tcp://10.0.0.5:502"),
            "North",
        )
        .expect("parses");
        assert_eq!((d.unit, d.relay, d.device_unit), (9, RelayId(751), 1));
        assert_eq!(d.upstream, Upstream::Tcp("10.0.0.5:502".into()));
        assert_eq!(d.name, "SEL-751A");
        let d = parse_device(
            &format!("{profile},unit=9,relay=1,device-unit=4,name=F4"),
            "",
        )
        .expect("parses");
        assert_eq!(
            (d.device_unit, d.name.as_str(), &d.upstream),
            (4, "F4", &Upstream::Bus)
        );
        for bad in [
            format!("{profile},relay=1"),
            format!("{profile},unit=9"),
            format!("{profile},unit=0,relay=1"),
            format!("{profile},unit=9,relay=1,upstream=10.0.0.5:502"),
            format!("{profile},unit=9,relay=1,upstream=tcp://host"),
            format!("{profile},unit=9,relay=1,colour=red"),
            format!("{profile},unit=9,relay=1,name={}", "x".repeat(40)),
            ",unit=9,relay=1".to_owned(),
        ] {
            assert!(
                matches!(parse_device(&bad, ""), Err(DeviceError::Syntax(_))),
                "{bad} accepted"
            );
        }
        // An IEC 61850 profile goes with mms:// (port 102 by default), a Modbus one never.
        let ied = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../profiles/generic-iec61850-ied.toml"
        );
        let d = parse_device(&format!("{ied},unit=3,relay=9,upstream=mms://10.0.0.7"), "")
            .expect("parses");
        assert_eq!(d.upstream, Upstream::Mms("10.0.0.7:102".into()));
        assert!(matches!(d.profile, DeviceProfile::Iec61850(_)));
        let d = parse_device(
            &format!("{ied},unit=3,relay=9,upstream=mms://[::1]:10102,ied=GLRelay"),
            "",
        )
        .expect("parses");
        assert_eq!(
            (d.upstream, d.ied.as_deref()),
            (Upstream::Mms("[::1]:10102".into()), Some("GLRelay"))
        );
        for bad in [
            format!("{ied},unit=3,relay=9"),
            format!("{ied},unit=3,relay=9,upstream=tcp://10.0.0.7:502"),
            format!("{ied},unit=3,relay=9,upstream=mms://10.0.0.7:x"),
            format!("{ied},unit=3,relay=9,upstream=mms://h:102,ied=bad/name"),
            format!("{profile},unit=3,relay=9,upstream=mms://10.0.0.7:102"),
            format!("{profile},unit=3,relay=9,upstream=tcp://10.0.0.7:502,ied=X"),
        ] {
            assert!(
                matches!(parse_device(&bad, ""), Err(DeviceError::Syntax(_))),
                "{bad} accepted"
            );
        }
        let e = parse_device("/nonexistent.toml,unit=9,relay=1", "").expect_err("no file");
        assert!(matches!(e, DeviceError::Profile(_)), "{e}");
    }

    #[test]
    fn a_clock_stepping_back_never_reopens_a_closed_minute() {
        let m = Minute(100);
        assert!(may_sample(m, None, None));
        assert!(may_sample(m, Some(m), Some(Minute(99))));
        assert!(may_sample(Minute(101), Some(m), Some(Minute(99))));
        assert!(!may_sample(Minute(99), Some(m), Some(Minute(99))), "closed");
        assert!(
            !may_sample(Minute(98), Some(m), Some(Minute(97))),
            "before the open minute"
        );
        assert!(!may_sample(Minute(97), None, Some(Minute(97))));
    }
}
