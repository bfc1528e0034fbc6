//! A relay playing a foreign device: with `--layout PROFILE` it serves its live values in
//! the profile's register layout (addresses, types, word orders, scales, units, fault
//! counter or trip bit) instead of relay-core's map, so that the gateway's recorder can be
//! tested against every shipped profile without the maker's hardware.
//!
//! The image holds what [`device_profile::Profile::encode`] wrote. A read is answered if
//! it stays within the span from the table's lowest to its highest register the profile
//! uses (unused registers in between read 0, as on many devices); outside it, exception 02.
//! The fault source counts every opening since the simulator started (from 1000, so that
//! a reader never mistakes it for a fresh counter): a counter holds the total, a trip bit is
//! set in each sample that saw a new opening since the one before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use device_profile::{FaultReading, Faults, Profile, Table};
use relay_core::registers::{Exception, LiveValues};
use relay_core::signal::SignalModel;
use relay_core::{Minute, RecordFlags, RelayId};

/// Where the fault total starts.
pub const FAULTS_FROM: u128 = 1000;

/// The registers of one relay playing `profile`.
#[derive(Debug)]
pub struct Foreign {
    profile: Arc<Profile>,
    image: RwLock<HashMap<(Table, u16), u16>>,
    spans: HashMap<Table, (u16, u16)>,
    faults: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// The minute the total below counts up to (not included).
    minute: Option<Minute>,
    /// Openings in all minutes before `minute`.
    before: u128,
    /// The total shown by the last sample.
    last_total: u128,
}

impl Foreign {
    /// A relay playing `profile`, nothing published yet (every register reads 0).
    #[must_use]
    pub fn new(profile: Arc<Profile>) -> Self {
        let mut spans: HashMap<Table, (u16, u16)> = HashMap::new();
        for r in profile.reads() {
            let end = r.start + (r.count - 1);
            spans
                .entry(r.table)
                .and_modify(|(lo, hi)| {
                    *lo = (*lo).min(r.start);
                    *hi = (*hi).max(end);
                })
                .or_insert((r.start, end));
        }
        Foreign {
            profile,
            image: RwLock::new(HashMap::new()),
            spans,
            faults: Mutex::new(FaultState::default()),
        }
    }

    /// The profile played.
    #[must_use]
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Publishes `live` (the sample of relay `id` at that time; `model` gives the openings
    /// of earlier minutes).
    pub fn publish(&self, model: &SignalModel, id: RelayId, live: &LiveValues, per_record: u16) {
        let total = {
            let mut f = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
            match f.minute {
                None => f.minute = Some(live.minute),
                Some(m) if m < live.minute => {
                    // Every minute from m to this one has closed: add their openings.
                    let mut k = m;
                    while k < live.minute {
                        f.before += u128::from(
                            model
                                .record(id, k, per_record, RecordFlags::CLOCK_SET)
                                .faults,
                        );
                        k = Minute(k.0 + 1);
                    }
                    f.minute = Some(live.minute);
                }
                Some(_) => {}
            }
            let total = FAULTS_FROM + f.before + u128::from(live.faults_so_far);
            let rose = total > f.last_total && f.last_total != 0;
            f.last_total = total;
            match self.profile.faults {
                Some(Faults::Counter { .. }) => Some(FaultReading::Counter(total)),
                Some(Faults::Status { .. }) => Some(FaultReading::Status(rose)),
                None => None,
            }
        };
        let words = self.profile.encode(&live.sample, total);
        let mut image = self.image.write().unwrap_or_else(PoisonError::into_inner);
        image.clear();
        image.extend(words.into_iter().map(|(t, a, v)| ((t, a), v)));
    }

    /// Reads `quantity` registers (or bits, as 0 or 1) of `table` from `address`.
    pub fn read(&self, table: Table, address: u16, quantity: u16) -> Result<Vec<u16>, Exception> {
        let max = if table.is_bits() { 2000 } else { 125 };
        if quantity == 0 || quantity > max {
            return Err(Exception::IllegalDataValue);
        }
        let (lo, hi) = self
            .spans
            .get(&table)
            .copied()
            .ok_or(Exception::IllegalDataAddress)?;
        let end = u32::from(address) + u32::from(quantity) - 1;
        if address < lo || end > u32::from(hi) {
            return Err(Exception::IllegalDataAddress);
        }
        let image = self.image.read().unwrap_or_else(PoisonError::into_inner);
        Ok((0..quantity)
            .map(|i| image.get(&(table, address + i)).copied().unwrap_or(0))
            .collect())
    }
}
