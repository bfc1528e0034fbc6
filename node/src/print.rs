//! `gridledger print`: the files an installation needs, from the binary itself, so that
//! they always match the version installed: the systemd unit and the sample configuration
//! (kept in `packaging/`, where the packages take them from too).

/// `packaging/systemd/gridledger.service`.
pub const UNIT: &str = include_str!("../../packaging/systemd/gridledger.service");
/// `packaging/gridledger.toml`: every setting of `gridledger run`, commented.
pub const CONFIG: &str = include_str!("../../packaging/gridledger.toml");

/// Which file to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The systemd unit.
    Unit,
    /// The sample configuration.
    Config,
}

/// The text of `what`.
#[must_use]
pub fn text(what: What) -> &'static str {
    match what {
        What::Unit => UNIT,
        What::Config => CONFIG,
    }
}
