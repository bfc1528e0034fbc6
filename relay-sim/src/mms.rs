//! relay-sim as an IEC 61850 IED: an MMS server (ISO on TCP, IEC 61850-8-1) whose model is
//! the ICD of [`crate::icd`] and whose values are the bank's, written at the same instant
//! as the Modbus live block.
//!
//! The MMS stack (TPKT, COTP, session, presentation, ACSE, MMS) and the model mapping are
//! the `iec61850-server` crate's; this module builds the model from the ICD text, resolves
//! the attributes it writes, and copies each published sample into them.

use std::net::SocketAddr;
use std::sync::Arc;

use iec61850_model::tree::{DataAttribute, IedModel};
use iec61850_model::{NodeRef, ObjectRef};
use iec61850_server::{IedServer, IedServerConfig, ServerHandle};
use relay_core::measure::Quantity;
use relay_core::registers::LiveValues;
use tracing::warn;

use crate::bank::{Bank, SampleSink};
use crate::icd::{self, IcdRelay, IED_NAME};

/// Why the MMS side did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MmsError {
    /// The ICD did not give a model (a bug in [`crate::icd`], caught by its test).
    #[error("the IEC 61850 model does not build: {0}")]
    Model(String),
    /// The model lacks an attribute the simulator writes.
    #[error("the IEC 61850 model has no {0}")]
    Missing(String),
    /// The server did not start (address in use, …).
    #[error("MMS server on {0}: {1}")]
    Serve(SocketAddr, String),
}

/// Builds the model that `icd_text` describes.
pub fn model_of(icd_text: &str) -> Result<IedModel, MmsError> {
    let raw = iec61850_scl::parse_scl(icd_text).map_err(|e| MmsError::Model(e.to_string()))?;
    let resolved =
        iec61850_scl::ResolvedScl::from_raw(raw).map_err(|e| MmsError::Model(e.to_string()))?;
    resolved
        .build_model(IED_NAME)
        .map_err(|e| MmsError::Model(e.to_string()))
}

/// The ICD of `bank`'s relays, served on `port`.
#[must_use]
pub fn icd_of(bank: &Bank, substation: &str, port: u16) -> String {
    let relays: Vec<IcdRelay> = bank
        .relays()
        .iter()
        .map(|r| IcdRelay {
            relay_id: r.id().0,
            unit: r.unit(),
            name: r.name().to_owned(),
        })
        .collect();
    icd::icd(&relays, substation, port)
}

/// The attributes of one relay's logical device that each sample writes.
#[derive(Debug)]
struct Slots {
    /// MMXU1's magnitudes, in [`icd::MEASURED`] order.
    measured: Vec<DataAttribute>,
    /// Their qualities, in the same order.
    quality: Vec<DataAttribute>,
    /// Their times (`t`: IEC 61850-7-3, the time of the value's last change), in the same
    /// order.
    time: Vec<DataAttribute>,
    op_cnt: DataAttribute,
    op: DataAttribute,
}

/// What copies the bank's samples into the served model.
#[derive(Debug)]
struct Writer {
    server: IedServer,
    relays: Vec<Slots>,
}

impl Writer {
    fn set_quality(&self, index: usize, invalid: bool) -> Result<(), MmsError> {
        let Some(slots) = self.relays.get(index) else {
            return Err(MmsError::Missing(format!("relay #{index}")));
        };
        // Quality is 13 bits, bit 0 first: validity 01 (invalid) with failure (bit 6).
        let bits: [u8; 2] = if invalid { [0x42, 0x00] } else { [0, 0] };
        for q in &slots.quality {
            self.server
                .update_bit_string(q, &bits, 3)
                .map_err(|e| MmsError::Missing(format!("{}: {e}", q.name)))?;
        }
        Ok(())
    }
}

impl SampleSink for Writer {
    fn sample(&self, index: usize, live: &LiveValues, openings: u64, tripped: bool) {
        let Some(slots) = self.relays.get(index) else {
            return;
        };
        let values = si_values(live);
        // No `lock_data_model`: it blocks on a lock the server's own tasks take, which on
        // relay-sim's one-thread runtime could wait forever. A client reading at the very
        // instant of a sample may see some values of the new sample and some of the old.
        for (da, v) in slots.measured.iter().zip(values) {
            if let Err(e) = self.server.update_float32(da, v) {
                warn!("MMS: {}: {e}", da.name);
            }
        }
        // The sample's instant by the relay's clock: what a SCADA client shows and sorts
        // by. Written after the values, as an IED stamps a value it has taken.
        let t = sample_time(live);
        for da in &slots.time {
            da.store(iec61850_model::MmsValue::UtcTime(t));
        }
        let count = i32::try_from(openings).unwrap_or(i32::MAX);
        if let Err(e) = self.server.update_int32(&slots.op_cnt, count) {
            warn!("MMS: OpCnt: {e}");
        }
        if let Err(e) = self.server.update_boolean(&slots.op, tripped) {
            warn!("MMS: Op: {e}");
        }
    }
}

/// The UtcTime of a sample's instant (its minute and second by the relay's clock), with a
/// time quality of millisecond accuracy (10 significant bits), leap seconds unknown, the
/// clock neither failed nor unsynchronised.
#[must_use]
pub fn sample_time(live: &LiveValues) -> [u8; 8] {
    use iec61850_model::utc_time::{TimeAccuracy, TimeQuality, UtcTime};
    let secs = u64::from(live.minute.0) * 60 + u64::from(live.second);
    let quality = TimeQuality::new(
        false,
        false,
        false,
        TimeAccuracy::bits(10).unwrap_or(TimeAccuracy::UNSPECIFIED),
    );
    UtcTime::from_duration_since_epoch(std::time::Duration::from_secs(secs), quality)
        .map_or([0; 8], UtcTime::to_bytes)
}

/// A sample's values in SI units, in [`icd::MEASURED`] order.
#[must_use]
pub fn si_values(live: &LiveValues) -> [f32; 13] {
    let s = &live.sample;
    let raw = |q: Quantity| q.raw(s) as f64;
    let kilo = |q: Quantity| (raw(q) / 1000.0) as f32;
    let sqrt3 = 3f64.sqrt();
    [
        raw(Quantity::Vab) as f32,
        raw(Quantity::Vbc) as f32,
        raw(Quantity::Vca) as f32,
        (raw(Quantity::Vab) / sqrt3) as f32,
        (raw(Quantity::Vbc) / sqrt3) as f32,
        (raw(Quantity::Vca) / sqrt3) as f32,
        kilo(Quantity::Ia),
        kilo(Quantity::Ib),
        kilo(Quantity::Ic),
        kilo(Quantity::Freq),
        raw(Quantity::P) as f32,
        raw(Quantity::Q) as f32,
        kilo(Quantity::Pf),
    ]
}

/// What a test or a harness may change in the served model while it runs.
#[derive(Clone, Debug)]
pub struct MmsControl(Arc<Writer>);

impl MmsControl {
    /// Marks every MMXU1 value of the relay at `index` invalid (validity `invalid`,
    /// `failure`: a relay whose measuring input failed), or good again.
    pub fn set_invalid(&self, index: usize, invalid: bool) -> Result<(), MmsError> {
        self.0.set_quality(index, invalid)
    }
}

/// A running MMS server; dropping it does not stop it, [`MmsServer::stop`] does.
#[derive(Debug)]
pub struct MmsServer {
    handle: ServerHandle,
    control: MmsControl,
    /// The address bound.
    pub addr: SocketAddr,
}

impl MmsServer {
    /// Starts serving `bank`'s relays on `listen` and hooks the bank's samples into it.
    /// Call before the simulator runs: the bank takes one sink.
    pub async fn start(
        listen: SocketAddr,
        bank: &Arc<Bank>,
        substation: &str,
    ) -> Result<MmsServer, MmsError> {
        let icd_text = icd_of(bank, substation, listen.port());
        let model = Arc::new(model_of(&icd_text)?);
        let relays = (0..bank.relays().len())
            .map(|k| slots(&model, k))
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = IedServerConfig::default();
        // Room for a station's clients; a connection that has not associated within 5 s
        // (a scan, a half-open socket, a client that speaks something else) is closed, so
        // that such connections cannot hold the slots for long.
        config.max_mms_connections = 32;
        config.association_setup_timeout_ms = 5_000;
        let server = IedServer::builder()
            .model(Arc::clone(&model))
            .bind(listen)
            .config(config)
            .build()
            .map_err(|e| MmsError::Serve(listen, e.to_string()))?;
        // The data sets the ICD declares (LLN0.Measurements) are served only once
        // registered.
        server
            .register_from_model()
            .map_err(|e| MmsError::Model(e.to_string()))?;
        let handle = server
            .start()
            .await
            .map_err(|e| MmsError::Serve(listen, e.to_string()))?;
        let addr = handle.bound_addr;
        let writer = Arc::new(Writer { server, relays });
        if bank
            .set_sink(Arc::clone(&writer) as Arc<dyn SampleSink>)
            .is_err()
        {
            handle.stop().await;
            return Err(MmsError::Serve(
                listen,
                "the relays already publish to another MMS server".into(),
            ));
        }
        Ok(MmsServer {
            handle,
            control: MmsControl(writer),
            addr,
        })
    }

    /// A handle to change the served model while it runs.
    #[must_use]
    pub fn control(&self) -> MmsControl {
        self.control.clone()
    }

    /// Closes every association and the listener.
    pub async fn stop(self) {
        self.handle.stop().await;
    }
}

fn slots(model: &IedModel, index: usize) -> Result<Slots, MmsError> {
    let domain = format!("{IED_NAME}{}", icd::ld_inst(index));
    let da = |path: String| resolve(model, &path).ok_or(MmsError::Missing(path));
    let measured = icd::MEASURED
        .iter()
        .map(|(p, _)| da(format!("{domain}/MMXU1.{p}.{}", icd::magnitude_of(p))))
        .collect::<Result<Vec<_>, _>>()?;
    let quality = icd::MEASURED
        .iter()
        .map(|(p, _)| da(format!("{domain}/MMXU1.{p}.q")))
        .collect::<Result<Vec<_>, _>>()?;
    let time = icd::MEASURED
        .iter()
        .map(|(p, _)| da(format!("{domain}/MMXU1.{p}.t")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Slots {
        measured,
        quality,
        time,
        op_cnt: da(format!("{domain}/XCBR1.OpCnt.stVal"))?,
        op: da(format!("{domain}/PTRC1.Op.general"))?,
    })
}

/// A handle on the served value of the attribute at `iec_path`.
fn resolve(model: &IedModel, iec_path: &str) -> Option<DataAttribute> {
    let r = ObjectRef::parse_iec(iec_path).ok()?;
    match model.node_by_object_ref(&r)? {
        NodeRef::Da(da) => Some(DataAttribute::with_shared_value(
            da.name.clone(),
            da.fc,
            da.ty,
            da.trg_ops,
            da.value.clone(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icd_builds_a_model_with_every_attribute_the_simulator_writes() {
        let relays: Vec<IcdRelay> = (0..3)
            .map(|k| IcdRelay {
                relay_id: 7 + k,
                unit: 1 + k as u8,
                name: format!("Relay <{k}> & co"),
            })
            .collect();
        let text = icd::icd(&relays, "North \"A\"", 10102);
        let model = model_of(&text).expect("the ICD builds");
        for k in 0..3 {
            slots(&model, k).expect("every attribute resolves");
        }
        assert!(slots(&model, 3).is_err(), "no fourth logical device");
        // XML forbids "--" inside a comment; quick-xml lets it pass, stricter readers
        // (open61850's, Python's) refuse the whole file.
        for comment in text.split("<!--").skip(1) {
            let body = comment.split("-->").next().unwrap_or_default();
            assert!(!body.contains("--"), "'--' in an XML comment: {body}");
        }
    }
}
