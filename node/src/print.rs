//! `gridledger print`: the files an installation needs, from the binary itself, so that
//! they always match the version installed: the systemd unit and the sample configuration
//! (kept in `packaging/`, where the packages take them from too), and the manual page and
//! shell completions, generated from the command line's own definition.

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
    /// The manual page, gridledger(1), in roff (`man -l -` reads it).
    Man,
    /// Completions for bash.
    CompletionsBash,
    /// Completions for zsh.
    CompletionsZsh,
    /// Completions for fish.
    CompletionsFish,
}

/// The text of `what`; `cli` is the binary's command line (the manual and completions are
/// made from it).
pub fn text(what: What, cli: clap::Command) -> std::io::Result<Vec<u8>> {
    use clap_complete::Shell;
    let shell = |s: Shell, mut cli: clap::Command| {
        let mut out = Vec::new();
        clap_complete::generate(s, &mut cli, "gridledger", &mut out);
        out
    };
    Ok(match what {
        What::Unit => UNIT.as_bytes().to_vec(),
        What::Config => CONFIG.as_bytes().to_vec(),
        What::Man => {
            let mut out = Vec::new();
            let cli = cli.after_help(
                "The manual is a book: docs/book/src/introduction.md in the source, \
                 /usr/share/doc/gridledger in the package. Each command's --help names its chapter.",
            );
            clap_mangen::Man::new(cli).render(&mut out)?;
            out
        }
        What::CompletionsBash => shell(Shell::Bash, cli),
        What::CompletionsZsh => shell(Shell::Zsh, cli),
        What::CompletionsFish => shell(Shell::Fish, cli),
    })
}
