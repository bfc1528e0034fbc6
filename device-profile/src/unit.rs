//! Units: what a profile may say a register is in, and the factor to relay-core's stored
//! integers (V, mA, mHz, ‰, W, var).

use relay_core::measure::Quantity;

/// The integer relay-core stores per one of `unit`, for `quantity`; `None` if the unit is
/// not one of that quantity's (an ampere reading for a voltage).
#[must_use]
pub fn factor(quantity: Quantity, unit: &str) -> Option<f64> {
    use Quantity as Q;
    match (quantity, unit) {
        (Q::Vab | Q::Vbc | Q::Vca, "V") => Some(1.0),
        (Q::Vab | Q::Vbc | Q::Vca, "kV") => Some(1e3),
        (Q::Ia | Q::Ib | Q::Ic, "mA") => Some(1.0),
        (Q::Ia | Q::Ib | Q::Ic, "A") => Some(1e3),
        (Q::Ia | Q::Ib | Q::Ic, "kA") => Some(1e6),
        (Q::Freq, "mHz") => Some(1.0),
        (Q::Freq, "Hz") => Some(1e3),
        (Q::Pf, "1") => Some(1e3),
        (Q::Pf, "%") => Some(10.0),
        (Q::Pf, "permille") => Some(1.0),
        (Q::P, "W") | (Q::Q, "var") => Some(1.0),
        (Q::P, "kW") | (Q::Q, "kvar") => Some(1e3),
        (Q::P, "MW") | (Q::Q, "Mvar") => Some(1e6),
        _ => None,
    }
}

/// The units `quantity` may be given in, for error messages.
#[must_use]
pub fn units_of(quantity: Quantity) -> &'static str {
    use Quantity as Q;
    match quantity {
        Q::Vab | Q::Vbc | Q::Vca => "V, kV",
        Q::Ia | Q::Ib | Q::Ic => "mA, A, kA",
        Q::Freq => "mHz, Hz",
        Q::Pf => "1 (a ratio, 0.95), % or permille",
        Q::P => "W, kW, MW",
        Q::Q => "var, kvar, Mvar",
    }
}
