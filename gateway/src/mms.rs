//! Reading an IEC 61850 IED over MMS for the recorder: one association per device, kept
//! open between samples; one MMS Read per sample carries every reference the profile names
//! (no data set needs to exist on the IED).
//!
//! The MMS stack is the `iec61850-client` crate's. What this module adds is the profile's
//! view: it finds the IED's name from its directory when the command line does not give
//! it, reduces the values read to numbers, and drops the association on any failure so that
//! the next sample starts afresh: an IED that dropped the association mid-read is
//! reconnected at the next sample instant, and the samples it missed are gaps.

use std::sync::Arc;
use std::time::Duration;

use device_profile::iec61850::{Fc, MmsProfile, Value};
use device_profile::Reading;
use iec61850_client::IedConnection;
use iec61850_mms::mms::client::MmsClientBuilder;
use iec61850_mms::AccessResult;
use iec61850_model::FC;
use tracing::info;

/// An IED recorded through an IEC 61850 profile.
#[derive(Debug)]
pub struct MmsSource {
    /// `host:port`.
    addr: String,
    profile: Arc<MmsProfile>,
    /// The IED name given on the command line, if any.
    ied: Option<String>,
    conn: Option<Associated>,
    /// How far the IED's latest `t` was from this host's clock, seconds.
    clock_off_s: Option<u64>,
    /// When that was last logged.
    clock_logged: Option<std::time::Instant>,
}

struct Associated {
    conn: IedConnection,
    /// The references read each sample, with the IED's name in front; the last is the first
    /// quantity's time (`t`) when `timed`.
    targets: Vec<(String, FC)>,
    timed: bool,
}

impl std::fmt::Debug for Associated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Associated")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl MmsSource {
    /// A source for the IED at `addr` (`host:port`), named `ied` if given.
    #[must_use]
    pub fn new(addr: String, profile: Arc<MmsProfile>, ied: Option<String>) -> Self {
        MmsSource {
            addr,
            profile,
            ied,
            conn: None,
            clock_off_s: None,
            clock_logged: None,
        }
    }

    /// How far the IED's values' time (`t`) was from this host's clock at the latest
    /// sample, in seconds, if the IED gives one.
    #[must_use]
    pub fn clock_off_s(&self) -> Option<u64> {
        self.clock_off_s
    }

    /// One sample: every reference of the profile in one Read.
    pub async fn sample(&mut self) -> Result<Reading, String> {
        let timeout = self.profile.timeout;
        if self.conn.is_none() {
            let a = tokio::time::timeout(timeout * 2, self.associate())
                .await
                .map_err(|_| format!("{}: no association within {:?}", self.addr, timeout * 2))??;
            self.conn = Some(a);
        }
        let Some(a) = self.conn.as_ref() else {
            return Err("not associated".into());
        };
        let targets: Vec<(&str, FC)> = a.targets.iter().map(|(r, fc)| (r.as_str(), *fc)).collect();
        let wanted = targets.len();
        let read = match tokio::time::timeout(timeout, a.conn.read_objects(&targets)).await {
            Ok(Ok(r)) if r.len() == wanted => Ok(r),
            Ok(Ok(r)) => Err(format!("{} results for {wanted} references", r.len())),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        let results = match read {
            Ok(r) => r,
            Err(why) => {
                // Start afresh at the next sample: a late answer or a half-closed
                // association must not be taken for the next sample's.
                self.drop_association().await;
                return Err(format!("{}: {why}", self.addr));
            }
        };
        let (results, time) = match (a.timed, results.split_last()) {
            (true, Some((t, rest))) => (rest, Some(t)),
            _ => (&results[..], None),
        };
        if let Some(iec61850_mms::MmsData::UtcTime(t)) = time.and_then(|t| match t {
            AccessResult::Success(d) => Some(d),
            AccessResult::Failure(_) => None,
        }) {
            self.check_clock(*t);
        }
        let values: Vec<Option<Value>> = results.iter().map(value_of).collect();
        self.profile.decode(&values).map_err(|e| e.to_string())
    }

    /// Logs (once an hour at most) an IED whose values' time is more than
    /// [`CLOCK_TOLERANCE`] from this host's clock: its clock, or its time source, needs a look
    /// (the record's minute comes from the host's clock, not the IED's).
    fn check_clock(&mut self, t: [u8; 8]) {
        let secs = u64::from(u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
        if secs == 0 {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let off = now.abs_diff(secs);
        self.clock_off_s = Some(off);
        let due = self
            .clock_logged
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(3600));
        if off > CLOCK_TOLERANCE.as_secs() && due {
            self.clock_logged = Some(std::time::Instant::now());
            tracing::warn!(addr = %self.addr, off_s = off, "the IED's values carry a time {off} s from this host's clock: check the IED's clock and its time source");
        }
    }

    async fn associate(&self) -> Result<Associated, String> {
        let (host, port) = split_host_port(&self.addr)?;
        let ms = u64::try_from(self.profile.timeout.as_millis()).unwrap_or(u64::MAX);
        let mms = MmsClientBuilder::new()
            .connect_timeout_ms(ms)
            .request_timeout_ms(ms)
            .build();
        let conn = IedConnection::with_mms_client(mms);
        conn.connect(host, port)
            .await
            .map_err(|e| format!("{}: association refused or failed: {e}", self.addr))?;
        let ied = match &self.ied {
            Some(name) => name.clone(),
            None => match self.discover(&conn).await {
                Ok(name) => name,
                Err(e) => {
                    let _ = conn.abort().await;
                    return Err(e);
                }
            },
        };
        if let Err(e) = self.check_units(&conn, &ied).await {
            let _ = conn.abort().await;
            return Err(e);
        }
        let mut targets: Vec<(String, FC)> = self
            .profile
            .targets()
            .into_iter()
            .map(|(r, fc)| (r.on(&ied), fc_of(fc)))
            .collect();
        // The first quantity's `t` (IEC 61850-7-3: the time of the value's last change),
        // read with the sample, to see how far the IED's clock is from this host's.
        let time_ref = targets.iter().find_map(|(r, _)| time_of(r));
        let timed = time_ref.is_some();
        if let Some(t) = time_ref {
            targets.push((t, FC::Mx));
        }
        info!(addr = %self.addr, ied, "associated with the IED");
        Ok(Associated {
            conn,
            targets,
            timed,
        })
    }

    /// Reads each quantity's `units` (SIUnit and multiplier, CF) and refuses to record if
    /// the profile disagrees. An IED that does not publish `units` is taken at the
    /// profile's word.
    async fn check_units(&self, conn: &IedConnection, ied: &str) -> Result<(), String> {
        let mut refs: Vec<(String, FC)> = Vec::new();
        for p in &self.profile.points {
            for part in ["SIUnit", "multiplier"] {
                if let Some(r) = p.reference.units(part) {
                    refs.push((r.on(ied), FC::Cf));
                }
            }
        }
        if refs.len() != 2 * self.profile.points.len() {
            return Ok(());
        }
        let targets: Vec<(&str, FC)> = refs.iter().map(|(r, fc)| (r.as_str(), *fc)).collect();
        let results = conn
            .read_objects(&targets)
            .await
            .map_err(|e| format!("{}: reading units: {e}", self.addr))?;
        let number = |k: usize| match results.get(k) {
            Some(AccessResult::Success(iec61850_mms::MmsData::Integer(i))) => Some(*i),
            Some(AccessResult::Success(iec61850_mms::MmsData::Unsigned(u))) => {
                i64::try_from(*u).ok()
            }
            _ => None,
        };
        for (i, p) in self.profile.points.iter().enumerate() {
            p.check_units(number(2 * i), number(2 * i + 1))
                .map_err(|e| format!("{}: {e}", self.addr))?;
        }
        Ok(())
    }

    /// The IED's name: the part in front of the profile's logical device instances, which
    /// must be the same for all and name exactly one IED.
    async fn discover(&self, conn: &IedConnection) -> Result<String, String> {
        let lds = conn
            .get_server_directory(false)
            .await
            .map_err(|e| format!("{}: directory: {e}", self.addr))?;
        discover_ied(&lds, &self.profile.lds()).map_err(|e| format!("{}: {e}", self.addr))
    }

    async fn drop_association(&mut self) {
        if let Some(a) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), a.conn.abort()).await;
        }
    }
}

/// The IED name whose logical devices include every one of `wanted` (instances such as
/// `LD0`), from the server directory `lds` (`GLRelayLD0`, …).
pub fn discover_ied(lds: &[String], wanted: &[&str]) -> Result<String, String> {
    let Some(first) = wanted.first() else {
        return Err("the profile names no logical device".into());
    };
    let mut names: Vec<&str> = lds
        .iter()
        .filter_map(|ld| ld.strip_suffix(first))
        .filter(|ied| {
            wanted
                .iter()
                .all(|w| lds.iter().any(|ld| ld.as_str() == format!("{ied}{w}")))
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [one] if !one.is_empty() => Ok((*one).to_owned()),
        [] | [_] => Err(format!(
            "no logical device named IED+{} in the IED's directory ({}): give ied=NAME",
            wanted.join(", IED+"),
            lds.join(", ")
        )),
        many => Err(format!(
            "several IEDs have {}: {}; give ied=NAME",
            wanted.join(", "),
            many.join(", ")
        )),
    }
}

fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr}: give host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{addr}: port is not a number"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

fn fc_of(fc: Fc) -> FC {
    match fc {
        Fc::MX => FC::Mx,
        Fc::ST => FC::St,
        Fc::CF => FC::Cf,
        Fc::DC => FC::Dc,
        Fc::SP => FC::Sp,
    }
}

/// How far an IED's `t` may be from this host's clock before the recorder says so.
pub const CLOCK_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The `t` of the data object a magnitude reference belongs to (`…/MMXU1.PPV.phsAB.cVal.mag.f`
/// → `…/MMXU1.PPV.phsAB.t`), if it is one.
fn time_of(reference: &str) -> Option<String> {
    ["cVal.mag.f", "cVal.mag.i", "mag.f", "mag.i"]
        .iter()
        .find_map(|tail| reference.strip_suffix(tail))
        .map(|head| format!("{head}t"))
}

/// A read result as a profile sees it: a number, a boolean, a quality's bits, or nothing
/// (refused, or a type no quantity can be).
fn value_of(r: &AccessResult) -> Option<Value> {
    use iec61850_mms::MmsData;
    match r {
        AccessResult::Success(d) => match d {
            MmsData::Float32(f) => Some(Value::Number(f64::from(*f))),
            MmsData::Float64(f) => Some(Value::Number(*f)),
            MmsData::Integer(i) => Some(Value::Number(*i as f64)),
            MmsData::Unsigned(u) => Some(Value::Number(*u as f64)),
            MmsData::Boolean(b) => Some(Value::Bool(*b)),
            MmsData::BitString { data, .. } => {
                let byte = |i: usize| u16::from(data.get(i).copied().unwrap_or(0));
                Some(Value::Bits(byte(0) << 8 | byte(1)))
            }
            _ => None,
        },
        AccessResult::Failure(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ied_name_comes_from_the_directory() {
        let lds = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            discover_ied(&lds(&["GLRelayLD0", "GLRelayLD1"]), &["LD0"]),
            Ok("GLRelay".into())
        );
        assert_eq!(
            discover_ied(&lds(&["A_LD0", "B_LD0", "B_LD1"]), &["LD0", "LD1"]),
            Ok("B_".into())
        );
        assert!(discover_ied(&lds(&["A_LD0", "B_LD0"]), &["LD0"]).is_err());
        assert!(discover_ied(&lds(&["PROT", "CTRL"]), &["LD0"]).is_err());
        assert!(
            discover_ied(&lds(&["LD0"]), &["LD0"]).is_err(),
            "no IED name"
        );
        assert_eq!(split_host_port("[::1]:102"), Ok(("::1", 102)));
        assert!(split_host_port("host").is_err());
    }
}
