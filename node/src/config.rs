//! `gridledger run`'s configuration: flags, environment variables and the `--config` TOML
//! file, merged in that order of precedence over the defaults, then turned into the
//! [`NodeConfig`] and key a node starts with.

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use crate::chain::Network;
use crate::poll::{PollConfig, RelayAddr};
use crate::run::NodeConfig;

/// Why the configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read --config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML of the allowed keys.
    #[error("--config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why (names the line and key).
        source: Box<toml::de::Error>,
    },
    /// A setting's value is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The allow-list or key file cannot be used.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The admin token file cannot be used.
    #[error(transparent)]
    Token(#[from] crate::admin::TokenError),
}

/// `gridledger run`'s settings. Each comes from its flag, else its environment variable,
/// else the `--config` file, else the default shown.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A TOML file with any of the settings below, named as the flags with `_` for `-`
    /// (`listen`, `data_dir`, `network`, `difficulty_bits`, `relays = [..]`, `peers = [..]`,
    /// `poll_secs`, `mining_slot_secs`, `sync_secs`, `block_relay`, `key_file`, `allow_list`, `relay_registry`, `quorum`,
    /// `finality_interval_secs`, `pin_checkpoint`, `admin_token_file`,
    /// `tls_cert`, `tls_key`, `tls_ca`, `tls_client_ca`, `cors_origins = [..]`, and a `[sink]` section with `to` and `depth`). Flags and env vars
    /// override it.
    #[arg(long, env = "GRIDLEDGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP address of the API [default: 127.0.0.1:5004]
    #[arg(long, env = "GRIDLEDGER_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Where the chain (and, unless --key-file says otherwise, the miner key) lives
    /// [default: data]
    #[arg(long, env = "GRIDLEDGER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Network name: nodes with the same name and difficulty share a genesis block
    /// [default: gridledger]
    #[arg(long, env = "GRIDLEDGER_NETWORK")]
    pub network: Option<String>,
    /// Leading zero bits every block id needs [default: 16]
    #[arg(long, env = "GRIDLEDGER_DIFFICULTY_BITS")]
    pub difficulty_bits: Option<u8>,
    /// A relay to poll, host:port[/unit]; repeat for several.
    #[arg(long = "relay", env = "GRIDLEDGER_RELAYS", value_delimiter = ',')]
    pub relays: Vec<RelayAddr>,
    /// A peer's base URL (http://host:port, or https://host:port verified with --tls-ca);
    /// repeat for several.
    #[arg(long = "peer", env = "GRIDLEDGER_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Seconds between polls, aligned to the minute (plus up to 2 s for the relay to close
    /// it) [default: 60]
    #[arg(long, env = "GRIDLEDGER_POLL_SECS")]
    pub poll_secs: Option<f64>,
    /// Seconds per mining turn: the node first in turn for a minute mines at once,
    /// the next this much later, and so on; longer than a block takes to reach every node
    /// (0: every node mines every record at once) [default: poll period / 30, at most 2]
    #[arg(long, env = "GRIDLEDGER_MINING_SLOT_SECS")]
    pub mining_slot_secs: Option<f64>,
    /// Seconds between pulls from the peers (each asks a peer's /status, and fetches what
    /// this node lacks); new blocks arrive sooner, pushed and relayed. Over slow or metered
    /// links a longer interval saves bytes [default: poll period / 10, 0.5 to 5]
    #[arg(long, env = "GRIDLEDGER_SYNC_SECS")]
    pub sync_secs: Option<f64>,
    /// How a new best block goes to the peers: `adaptive` (whole, except to a peer that
    /// keeps getting that miner's blocks from elsewhere first: announced by id), `push` (the
    /// whole block to each; fastest, most bytes) or `announce` (its id; a peer that lacks it
    /// gets it: fewer bytes for large blocks) [default: adaptive]
    #[arg(long, env = "GRIDLEDGER_BLOCK_RELAY", value_enum)]
    pub block_relay: Option<crate::run::BlockRelay>,
    /// The miner key (see `gridledger keygen`) [default: DATA_DIR/miner.key, created if
    /// absent]
    #[arg(long, env = "GRIDLEDGER_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// A file of miner public keys (hex, one per line) allowed to mine. These are the
    /// network's members: with an allow-list, every member's node cosigns checkpoints and a
    /// block cosigned by a quorum is final (never reorganised away) [default: anyone mines,
    /// and no history is final]
    #[arg(long, env = "GRIDLEDGER_ALLOW_LIST")]
    pub allow_list: Option<PathBuf>,
    /// The relay registry: a file of `RELAY_ID PUBLIC_KEY_HEX [FROM_MINUTE]` lines, shared by
    /// every node of the network like the allow-list. A record of a registered relay must
    /// carry that relay's signature, or its block is refused (docs/book/src/FORMAT.md section 12)
    /// [default: no relay registered; records are taken unsigned]
    #[arg(long, env = "GRIDLEDGER_RELAY_REGISTRY")]
    pub relay_registry: Option<PathBuf>,
    /// Members' votes that make a checkpoint final (more than half of the members)
    /// [default: 2n/3 + 1, rounded down, of the n members of the allow-list]
    #[arg(long, env = "GRIDLEDGER_QUORUM")]
    pub quorum: Option<usize>,
    /// Least seconds between two of this node's prevotes: blocks arriving faster are
    /// finalised together, with fewer votes and a little later (0: a round per block)
    /// [default: 0.5 up to 16 members, 0.03 a member beyond]
    #[arg(long, env = "GRIDLEDGER_FINALITY_INTERVAL_SECS")]
    pub finality_interval_secs: Option<f64>,
    /// A final checkpoint note (as GET /checkpoint serves it) to hold as final at start: a
    /// chain that contradicts it is refused. Its signatures are checked against the
    /// allow-list and the quorum.
    #[arg(long, env = "GRIDLEDGER_PIN_CHECKPOINT")]
    pub pin_checkpoint: Option<PathBuf>,
    /// A file whose first line is the bearer token that admits calls changing the node
    /// (POST/DELETE /peers, /peers/resolve, /nodes/*) from other than loopback
    /// [default: loopback only]
    #[arg(long, env = "GRIDLEDGER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// This node's certificate chain (PEM): the API is served over HTTPS, and the
    /// certificate is presented to peers that ask for one (mutual TLS) [default: plain HTTP]
    #[arg(long, env = "GRIDLEDGER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "GRIDLEDGER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that https:// peers' certificates must chain to
    /// [default: the system's roots]
    #[arg(long, env = "GRIDLEDGER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: CA certificate(s) (PEM) that every client's certificate must chain to; a
    /// client without one is refused at the handshake [default: no client certificate asked]
    #[arg(long, env = "GRIDLEDGER_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// A browser origin (`scheme://host[:port]`) whose pages may read the API (GET and HEAD
    /// only); repeat for several [default: none]
    #[arg(
        long = "cors-origin",
        env = "GRIDLEDGER_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Feed a PostgreSQL historian from this node: the database, as a libpq connection
    /// string or URL (`[sink] to = ".."` in the file; see `gridledger sink`) [default: none]
    #[arg(long, env = "GRIDLEDGER_SINK_TO")]
    pub sink_to: Option<String>,
    /// With --sink-to, on a network without finality: write blocks this far below the tip
    /// (`[sink] depth`) [default: 6]
    #[arg(long, env = "GRIDLEDGER_SINK_DEPTH")]
    pub sink_depth: Option<u32>,
}

/// The `[sink]` section of the `--config` file: the historian this node feeds.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkFile {
    to: Option<String>,
    depth: Option<u32>,
}

/// The `--config` file of `gridledger run`: the same settings as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    network: Option<String>,
    difficulty_bits: Option<u8>,
    #[serde(default)]
    relays: Vec<String>,
    #[serde(default)]
    peers: Vec<String>,
    poll_secs: Option<f64>,
    mining_slot_secs: Option<f64>,
    sync_secs: Option<f64>,
    block_relay: Option<crate::run::BlockRelay>,
    key_file: Option<PathBuf>,
    allow_list: Option<PathBuf>,
    relay_registry: Option<PathBuf>,
    quorum: Option<usize>,
    finality_interval_secs: Option<f64>,
    pin_checkpoint: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default)]
    sink: SinkFile,
}

/// `gridledger run`'s settings once flags, env vars, the file and defaults are merged.
#[derive(Debug)]
pub struct RunSettings {
    pub listen: std::net::SocketAddr,
    pub data_dir: PathBuf,
    pub network: String,
    pub difficulty_bits: u8,
    pub relays: Vec<RelayAddr>,
    pub peers: Vec<String>,
    pub poll_secs: f64,
    pub mining_slot_secs: Option<f64>,
    pub sync_secs: Option<f64>,
    pub block_relay: crate::run::BlockRelay,
    pub key_file: PathBuf,
    pub allow_list: Option<PathBuf>,
    pub relay_registry: Option<PathBuf>,
    pub quorum: Option<usize>,
    pub finality_interval_secs: Option<f64>,
    pub pin_checkpoint: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub tls: crate::tls::TlsFiles,
    pub cors_origins: Vec<String>,
    /// The historian this node feeds, if any, and its depth without finality.
    pub sink_to: Option<String>,
    pub sink_depth: u32,
}

/// Checks a CORS origin: `http://` or `https://`, a host, an optional port, no path.
fn cors_origin(s: &str) -> Result<String, ConfigError> {
    let t = s.trim();
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '*']) => {
            Ok(t.to_owned())
        }
        _ => Err(ConfigError::Invalid(format!(
            "--cors-origin '{s}' is not an origin like https://dashboard.example:8443 (scheme, host, optional port; no path, no wildcard)"
        ))),
    }
}

impl RunArgs {
    /// Merges the flags (and env vars) with the `--config` file and the defaults.
    pub fn settings(self) -> Result<RunSettings, ConfigError> {
        let file = match &self.config {
            None => RunFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source: Box::new(source),
                })?
            }
        };
        let relays = if self.relays.is_empty() {
            file.relays
                .iter()
                .map(|r| {
                    r.parse()
                        .map_err(|e| ConfigError::Invalid(format!("--config relays: {e}")))
                })
                .collect::<Result<_, _>>()?
        } else {
            self.relays
        };
        let peers = if self.peers.is_empty() {
            file.peers
        } else {
            self.peers
        };
        let peers = peers
            .iter()
            .map(|p| crate::peers::peer_url(p).map_err(ConfigError::Invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        Ok(RunSettings {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 5004))),
            key_file: self
                .key_file
                .or(file.key_file)
                .unwrap_or_else(|| data_dir.join("miner.key")),
            data_dir,
            network: self
                .network
                .or(file.network)
                .unwrap_or_else(|| "gridledger".to_owned()),
            difficulty_bits: self.difficulty_bits.or(file.difficulty_bits).unwrap_or(16),
            relays,
            peers,
            poll_secs: self.poll_secs.or(file.poll_secs).unwrap_or(60.0),
            mining_slot_secs: self.mining_slot_secs.or(file.mining_slot_secs),
            sync_secs: self.sync_secs.or(file.sync_secs),
            block_relay: self.block_relay.or(file.block_relay).unwrap_or_default(),
            allow_list: self.allow_list.or(file.allow_list),
            relay_registry: self.relay_registry.or(file.relay_registry),
            quorum: self.quorum.or(file.quorum),
            finality_interval_secs: self.finality_interval_secs.or(file.finality_interval_secs),
            pin_checkpoint: self.pin_checkpoint.or(file.pin_checkpoint),
            admin_token_file: self.admin_token_file.or(file.admin_token_file),
            tls: crate::tls::TlsFiles {
                cert: self.tls_cert.or(file.tls_cert),
                key: self.tls_key.or(file.tls_key),
                ca: self.tls_ca.or(file.tls_ca),
                client_ca: self.tls_client_ca.or(file.tls_client_ca),
            },
            cors_origins: if self.cors_origins.is_empty() {
                file.cors_origins
            } else {
                self.cors_origins
            }
            .iter()
            .map(|o| cors_origin(o))
            .collect::<Result<_, _>>()?,
            sink_to: self.sink_to.or(file.sink.to),
            sink_depth: self.sink_depth.or(file.sink.depth).unwrap_or(6),
        })
    }
}

impl RunSettings {
    /// The historian this node feeds (`--sink-to`, `[sink]`), as `gridledger sink` would
    /// run it; its `from` is set to the node itself once it listens
    /// ([`crate::sink::beside`]).
    #[must_use]
    pub fn sink(&self) -> Option<crate::sink::SinkArgs> {
        self.sink_to.as_ref().map(|to| crate::sink::SinkArgs {
            from: String::new(),
            to: to.clone(),
            depth: self.sink_depth,
            batch_blocks: 500,
            poll_ms: 500,
            once: false,
            tls_ca: self.tls.ca.clone(),
        })
    }

    /// The node's configuration and miner key (created if the key file does not exist).
    pub fn node_config(self) -> Result<(NodeConfig, SigningKey), ConfigError> {
        let key = crate::keys::load_or_create(&self.key_file)?;
        let mut network = Network::new(&self.network, self.difficulty_bits);
        if let Some(path) = &self.allow_list {
            network.allow_list = Some(crate::keys::allow_list(path)?);
        }
        if let Some(path) = &self.relay_registry {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            network.registry = crate::chain::Registry::parse(&text).map_err(|e| {
                ConfigError::Invalid(format!("--relay-registry {}: {e}", path.display()))
            })?;
        }
        let admin_token = match &self.admin_token_file {
            Some(path) => Some(crate::admin::read_token(path)?),
            None => None,
        };
        if !(self.poll_secs >= 0.1 && self.poll_secs.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "--poll-secs {} is not allowed: use a number of seconds >= 0.1",
                self.poll_secs
            )));
        }
        let period = Duration::from_secs_f64(self.poll_secs);
        let mining_slot = match self.mining_slot_secs {
            None => (period / 30).min(Duration::from_secs(2)),
            Some(s) if (0.0..=60.0).contains(&s) => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(ConfigError::Invalid(format!(
                    "--mining-slot-secs {s} is not allowed: use 0 to 60 seconds"
                )))
            }
        };
        let sync_every = match self.sync_secs {
            None => (period / 10).clamp(Duration::from_millis(500), Duration::from_secs(5)),
            Some(s) if (0.1..=3600.0).contains(&s) => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(ConfigError::Invalid(format!(
                    "--sync-secs {s} is not allowed: use 0.1 to 3600 seconds"
                )))
            }
        };
        let config = NodeConfig {
            listen: self.listen,
            data_dir: self.data_dir,
            network,
            relays: self.relays,
            peers: self.peers,
            poll: poll_config(period),
            sync_every,
            block_relay: self.block_relay,
            max_records_per_block: 256,
            // A minute's turns: the first at once, the next 2 s later (a block crosses a
            // wide-area network in well under that).
            mining_slot,
            admin_token,
            tls: self.tls,
            cors_origins: self.cors_origins,
            finality: crate::run::FinalitySettings {
                quorum: self.quorum,
                pin: self.pin_checkpoint,
                interval: match self.finality_interval_secs {
                    None => None,
                    Some(s) if (0.0..=600.0).contains(&s) => Some(Duration::from_secs_f64(s)),
                    Some(s) => {
                        return Err(ConfigError::Invalid(format!(
                            "--finality-interval-secs {s} is not allowed: use 0 to 600 seconds"
                        )))
                    }
                },
            },
        };
        if config.network.allow_list.is_none()
            && (config.finality.quorum.is_some() || config.finality.pin.is_some())
        {
            return Err(ConfigError::Invalid(
                "--quorum and --pin-checkpoint need --allow-list: finality is among the allow-list's members".into(),
            ));
        }
        Ok((config, key))
    }
}

/// How to poll at `period`: aligned to it, a tenth of it (at most 2 s) after each instant
/// for the relay to close its minute, and a timeout of at most 2 s.
#[must_use]
pub fn poll_config(period: Duration) -> PollConfig {
    PollConfig {
        period,
        offset: (period / 10).min(Duration::from_secs(2)),
        io_timeout: Duration::from_secs(2).min(period.max(Duration::from_millis(200))),
    }
}

#[cfg(test)]
mod help_tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }

    /// The sample configuration (`gridledger print config`) names every setting of
    /// `gridledger run`, and with every commented line taken in it is a valid file: a
    /// renamed setting fails here.
    #[test]
    fn the_sample_config_names_every_setting_and_parses() {
        let sample = crate::print::CONFIG;
        let uncommented: String = sample
            .lines()
            .map(|l| {
                let body = l.strip_prefix("# ").unwrap_or(l);
                let key = body.split(" = ").next().unwrap_or("");
                let setting =
                    key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && body.contains(" = ");
                if setting || body == "[sink]" {
                    body.to_owned()
                } else {
                    String::new()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file: RunFile = toml::from_str(&uncommented)
            .unwrap_or_else(|e| panic!("the sample config, uncommented: {e}\n{uncommented}"));
        assert!(
            file.sink.to.is_some() && file.listen.is_some(),
            "{uncommented}"
        );
        for arg in Run::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "config" | "help") {
                continue;
            }
            let key = match long {
                "relay" => "relays".to_owned(),
                "peer" => "peers".to_owned(),
                "cors-origin" => "cors_origins".to_owned(),
                "sink-to" => "to".to_owned(),
                "sink-depth" => "depth".to_owned(),
                other => other.replace('-', "_"),
            };
            assert!(
                uncommented
                    .lines()
                    .any(|l| l.starts_with(&format!("{key} = "))),
                "the sample config does not name --{long} ({key})"
            );
        }
    }

    /// Every `[default: X]` that `gridledger run --help` states for a setting with a value
    /// (not prose) is the value the code takes when the flag, its env var and the config
    /// file are all absent.
    #[test]
    fn stated_defaults_are_the_code_s() {
        let s = Run::try_parse_from(["run"])
            .expect("parses")
            .args
            .settings()
            .expect("settings");
        let effective = |id: &str| -> Option<String> {
            Some(match id {
                "listen" => s.listen.to_string(),
                "data_dir" => s.data_dir.display().to_string(),
                "network" => s.network.clone(),
                "difficulty_bits" => s.difficulty_bits.to_string(),
                "poll_secs" => format!("{}", s.poll_secs),
                "block_relay" => {
                    use clap::ValueEnum;
                    s.block_relay.to_possible_value()?.get_name().to_owned()
                }
                _ => return None,
            })
        };
        let cmd = Run::command();
        let mut checked = 0;
        for arg in cmd.get_arguments() {
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            let Some(stated) = help
                .split("[default: ")
                .nth(1)
                .and_then(|t| t.split(']').next())
            else {
                continue;
            };
            if let Some(code) = effective(arg.get_id().as_str()) {
                assert_eq!(
                    stated,
                    code,
                    "--{} says {stated}, the code takes {code}",
                    arg.get_id()
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 6, "every value default was found in the help");
        // The finality pacing's stated default, from the code's.
        let at = |n: usize| crate::run::default_interval(n).as_secs_f64();
        assert_eq!((at(4), at(16), at(17), at(64)), (0.5, 0.5, 0.51, 1.92));
        // And the ones clap states from the code itself agree with it.
        let defaults: Vec<String> = cmd
            .get_arguments()
            .filter(|a| !a.get_default_values().is_empty())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(
            defaults.is_empty(),
            "run's flags merge with --config: no clap defaults, {defaults:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn settings(args: &[&str]) -> Result<RunSettings, ConfigError> {
        let mut all = vec!["gridledger"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .expect("flags parse")
            .run
            .settings()
    }

    #[test]
    fn cors_origins_are_origins() {
        let s = settings(&["--cors-origin", "https://dash.example:8443"]).expect("ok");
        assert_eq!(s.cors_origins, ["https://dash.example:8443"]);
        for bad in [
            "*",
            "dash.example",
            "https://",
            "https://dash.example/path",
            "ftp://dash.example",
        ] {
            assert!(
                matches!(
                    settings(&["--cors-origin", bad]),
                    Err(ConfigError::Invalid(_))
                ),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn the_mining_slot_is_bounded_and_defaults_to_the_poll_period() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("miner.key");
        let key = key.to_string_lossy();
        let slot = |extra: &[&str]| {
            let mut args = vec!["--key-file", &key];
            args.extend_from_slice(extra);
            settings(&args)
                .expect("settings")
                .node_config()
                .map(|(c, _)| c.mining_slot)
        };
        assert_eq!(slot(&[]).expect("ok"), Duration::from_secs(2));
        assert_eq!(
            slot(&["--poll-secs", "3"]).expect("ok"),
            Duration::from_millis(100)
        );
        assert_eq!(
            slot(&["--mining-slot-secs", "0.5"]).expect("ok"),
            Duration::from_millis(500)
        );
        for bad in ["-1", "61", "NaN"] {
            let bad = format!("--mining-slot-secs={bad}");
            assert!(
                matches!(slot(&[bad.as_str()]), Err(ConfigError::Invalid(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn tls_settings_come_from_flags_or_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "tls_cert = \"a.pem\"\ntls_key = \"a.key\"\ntls_ca = \"ca.pem\"\ncors_origins = [\"http://x.example\"]\n",
        )
        .expect("write");
        let f = file.to_string_lossy().into_owned();
        let s = settings(&["--config", &f, "--tls-ca", "other.pem"]).expect("ok");
        assert_eq!(s.tls.cert, Some(PathBuf::from("a.pem")));
        assert_eq!(s.tls.key, Some(PathBuf::from("a.key")));
        assert_eq!(s.tls.ca, Some(PathBuf::from("other.pem")), "the flag wins");
        assert_eq!(s.tls.client_ca, None);
        assert_eq!(s.cors_origins, ["http://x.example"]);
    }
}
