//! The relays a simulator serves: one register image per unit id, refreshed by a ticker.
//!
//! Readers copy registers out under a read lock and the ticker replaces a whole block
//! under the write lock, so a single request always sees one consistent image: the record
//! block is never torn within one read.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use relay_core::registers::{Exception, LiveValues, RegisterImage};
use relay_core::signal::SignalModel;
use relay_core::{Identity, Minute, MinuteRecord, RecordFlags, RelayId};

use crate::layout::Foreign;

/// One simulated relay.
#[derive(Debug)]
pub struct Relay {
    unit: u8,
    id: RelayId,
    name: String,
    image: RwLock<RegisterImage>,
    foreign: Option<Foreign>,
    openings: Mutex<Openings>,
}

/// Fault openings since the relay started, for a sink that publishes a counter.
#[derive(Debug, Default)]
struct Openings {
    /// The minute of the last sample published.
    minute: Option<Minute>,
    /// Openings of the minutes before it.
    before: u64,
    /// The count at the last sample.
    last: u64,
}

/// Something else that publishes the bank's samples (the MMS server): it is handed each
/// sample right after the Modbus live block takes it.
pub trait SampleSink: Send + Sync + std::fmt::Debug {
    /// The sample of the relay at `index` (unit id order); `openings` counts its fault
    /// openings since the simulator started, `tripped` says it grew since the last sample.
    fn sample(&self, index: usize, live: &LiveValues, openings: u64, tripped: bool);
}

impl Relay {
    /// Its Modbus unit id.
    #[must_use]
    pub fn unit(&self) -> u8 {
        self.unit
    }

    /// Its network-wide relay id.
    #[must_use]
    pub fn id(&self) -> RelayId {
        self.id
    }

    /// Copies `quantity` registers from `address` out of one consistent image.
    pub fn read(&self, address: u16, quantity: u16) -> Result<Vec<u16>, Exception> {
        let image = self.image.read().unwrap_or_else(PoisonError::into_inner);
        image.read(address, quantity).map(<[u16]>::to_vec)
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The foreign layout this relay plays instead of relay-core's map, if any.
    #[must_use]
    pub fn foreign(&self) -> Option<&Foreign> {
        self.foreign.as_ref()
    }

    fn update(&self, f: impl FnOnce(&mut RegisterImage)) {
        f(&mut self.image.write().unwrap_or_else(PoisonError::into_inner));
    }
}

/// All relays of one simulator, behind consecutive unit ids.
#[derive(Debug)]
pub struct Bank {
    relays: Vec<Relay>,
    first_unit: u8,
    model: SignalModel,
    samples_per_record: u16,
    sink: OnceLock<Arc<dyn SampleSink>>,
    keys: crate::keys::RelayKeys,
}

/// Who the relays of a bank are.
#[derive(Clone, Debug)]
pub struct BankSpec {
    /// Unit id of the first relay; the others follow.
    pub first_unit: u8,
    /// Number of relays.
    pub relays: u8,
    /// Relay id of the first relay; the others follow.
    pub first_relay_id: u32,
    /// Name template; `{unit}` is replaced by the unit id.
    pub name: String,
    /// Substation name, shared by all relays.
    pub substation: String,
    /// Samples in each minute record (1..=6).
    pub samples_per_record: u16,
    /// A device profile every relay plays instead of relay-core's map (`--layout`).
    pub layout: Option<std::sync::Arc<device_profile::Profile>>,
}

impl Bank {
    /// Builds the relays: identities filled in, clock set, no sample or record yet.
    #[must_use]
    pub fn new(spec: &BankSpec, model: SignalModel) -> Self {
        let relays = (0..spec.relays)
            .map(|k| {
                let unit = spec.first_unit + k;
                let id = RelayId(spec.first_relay_id.wrapping_add(u32::from(k)));
                let name = spec.name.replace("{unit}", &unit.to_string());
                let mut image = RegisterImage::new(
                    &Identity::new(id, &name, &spec.substation),
                    spec.samples_per_record,
                );
                image.set_status(RecordFlags::CLOCK_SET);
                Relay {
                    unit,
                    id,
                    name,
                    openings: Mutex::new(Openings::default()),
                    image: RwLock::new(image),
                    foreign: spec
                        .layout
                        .as_ref()
                        .map(|p| Foreign::new(std::sync::Arc::clone(p))),
                }
            })
            .collect();
        Bank {
            relays,
            first_unit: spec.first_unit,
            model,
            samples_per_record: spec.samples_per_record,
            sink: OnceLock::new(),
            keys: crate::keys::RelayKeys::default(),
        }
    }

    /// Gives the relays their signing keys: each relay with a key serves its public key in
    /// its identity block and signs every record it closes from now on.
    #[must_use]
    pub fn with_keys(mut self, keys: crate::keys::RelayKeys) -> Self {
        for relay in &self.relays {
            if let Some(pk) = keys.public(relay.id) {
                relay.update(|image| image.set_key(&pk));
            }
        }
        self.keys = keys;
        self
    }

    /// Hands every later sample to `sink` as well; a bank takes one sink (a second is
    /// refused and returned).
    pub fn set_sink(&self, sink: Arc<dyn SampleSink>) -> Result<(), Arc<dyn SampleSink>> {
        self.sink.set(sink)
    }

    /// The relay behind `unit`, if any.
    #[must_use]
    pub fn relay(&self, unit: u8) -> Option<&Relay> {
        let k = unit.checked_sub(self.first_unit)?;
        self.relays.get(usize::from(k))
    }

    /// All relays, in unit id order.
    #[must_use]
    pub fn relays(&self) -> &[Relay] {
        &self.relays
    }

    /// Publishes, on every relay, the sample taken at Unix second `t`.
    pub fn publish_sample(&self, t: u64) {
        for (index, relay) in self.relays.iter().enumerate() {
            let values = self.model.live(relay.id, t, self.samples_per_record);
            if let Some(f) = &relay.foreign {
                f.publish(&self.model, relay.id, &values, self.samples_per_record);
            }
            relay.update(|image| {
                image.set_live(&values);
                image.set_clock(t);
            });
            if let Some(sink) = self.sink.get() {
                let (openings, tripped) = self.count_openings(relay, &values);
                sink.sample(index, &values, openings, tripped);
            }
        }
    }

    /// Openings since start at this sample: the minutes before this one (their records'
    /// counts, from the signal model) and this minute's so far.
    fn count_openings(&self, relay: &Relay, values: &LiveValues) -> (u64, bool) {
        let mut o = relay
            .openings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if o.minute != Some(values.minute) {
            if let Some(prev) = o.minute.filter(|&m| m < values.minute) {
                let closed = self.model.record(
                    relay.id,
                    prev,
                    self.samples_per_record,
                    RecordFlags::CLOCK_SET,
                );
                o.before += u64::from(closed.faults);
            }
            o.minute = Some(values.minute);
        }
        let now = o.before + u64::from(values.faults_so_far);
        let tripped = now > o.last;
        o.last = now;
        (now, tripped)
    }

    /// Closes `minute` on every relay under sequence number `seq`, signing each record
    /// whose relay has a key (record and signature published together); returns the
    /// records.
    pub fn close_minute(&self, minute: Minute, seq: u16) -> Vec<MinuteRecord> {
        self.relays
            .iter()
            .map(|relay| {
                let mut record = self.model.record(
                    relay.id,
                    minute,
                    self.samples_per_record,
                    RecordFlags::CLOCK_SET,
                );
                self.keys.sign(&mut record);
                relay.update(|image| {
                    image.set_record(seq, &record);
                    if let Some(sig) = &record.signature {
                        image.set_signature(seq, sig);
                    }
                });
                record
            })
            .collect()
    }
}

/// The sequence number after `seq`: 1, 2, … 65535, 1, … (0 means "no record yet").
#[must_use]
pub fn next_seq(seq: u16) -> u16 {
    if seq == u16::MAX {
        1
    } else {
        seq + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::registers::{decode_identity, decode_record, IDENTITY, RECORD};
    use relay_core::signal::Profile;

    fn bank(relays: u8) -> Bank {
        Bank::new(
            &BankSpec {
                first_unit: 3,
                relays,
                first_relay_id: 100,
                name: "Relay {unit}".into(),
                substation: "S".into(),
                samples_per_record: 6,
                layout: None,
            },
            SignalModel::new(1, Profile::Realistic),
        )
    }

    #[test]
    fn units_map_to_relays() {
        let b = bank(2);
        assert!(b.relay(2).is_none());
        assert!(b.relay(5).is_none());
        let r = b.relay(4).expect("unit 4 exists");
        assert_eq!(r.id(), RelayId(101));
        let id = decode_identity(&r.read(IDENTITY.start, IDENTITY.len).expect("in map"))
            .expect("decodes");
        assert_eq!(id.identity.name.as_str(), "Relay 4");
        assert!(id.status.contains(RecordFlags::CLOCK_SET));
    }

    #[test]
    fn closed_minute_is_served() {
        let b = bank(2);
        let recs = b.close_minute(Minute(1000), 9);
        for (relay, rec) in b.relays().iter().zip(&recs) {
            let read = decode_record(&relay.read(RECORD.start, RECORD.len).expect("in map"))
                .expect("decodes");
            assert_eq!((read.seq, &read.record), (9, rec));
            assert_eq!(read.record.relay, relay.id());
        }
    }

    #[test]
    fn a_relay_with_a_key_serves_it_and_signs_each_record() {
        use relay_core::registers::{attach_signature, SIGNATURE};
        let keys = crate::keys::RelayKeys::from_seeds([(RelayId(100), [5; 32])]);
        let pk = keys.public(RelayId(100)).expect("a key");
        let b = bank(2).with_keys(keys);
        let recs = b.close_minute(Minute(1000), 3);
        let signing = &b.relays()[0];
        let id = decode_identity(&signing.read(IDENTITY.start, IDENTITY.len).expect("in map"))
            .expect("decodes");
        assert_eq!(id.key, Some(pk));
        let mut read =
            decode_record(&signing.read(RECORD.start, RECORD.len).expect("in map")).expect("set");
        attach_signature(
            &mut read,
            &signing
                .read(SIGNATURE.start, SIGNATURE.len)
                .expect("in map"),
        )
        .expect("one pair");
        assert_eq!(read.record, recs[0]);
        assert!(read.record.signature.is_some());
        // Its signature verifies under the served key (ed25519-dalek's strict check here;
        // the outside check in tests/ uses PyNaCl).
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).expect("a key");
        let mut buf = [0u8; MinuteRecord::MAX_SIGNING_MESSAGE_LEN];
        let msg = read.record.signing_message(&mut buf).expect("fits");
        let sig = ed25519_dalek::Signature::from_bytes(&read.record.signature.expect("signed").0);
        assert!(vk.verify_strict(msg, &sig).is_ok());
        // The relay without a key serves none and does not sign.
        let other = &b.relays()[1];
        let id = decode_identity(&other.read(IDENTITY.start, IDENTITY.len).expect("in map"))
            .expect("decodes");
        assert_eq!(id.key, None);
        assert_eq!(recs[1].signature, None);
    }

    #[test]
    fn seq_skips_zero() {
        assert_eq!(next_seq(0), 1);
        assert_eq!(next_seq(41), 42);
        assert_eq!(next_seq(u16::MAX), 1);
    }
}
