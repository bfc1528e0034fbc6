//! `gridledger tls`: the subcommands that make a test consortium's certificates.

use std::path::PathBuf;

/// `gridledger tls`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TlsCommand {
    /// Makes DIR/ca.pem and DIR/ca.key (never overwritten), and NODE.pem and NODE.key for
    /// each --node, valid for the node's name, localhost, 127.0.0.1, ::1 and each --san.
    #[command(after_help = crate::book::TLS)]
    Init {
        /// Where to write the files.
        #[arg(long)]
        dir: PathBuf,
        /// The consortium's name, in the CA's subject.
        #[arg(long, default_value = "gridledger test consortium")]
        name: String,
        /// A node to make a certificate for; repeat [default: node1 node2 node3]
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// An extra host name or address every node certificate is valid for; repeat.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Days the node certificates are valid (the CA twice as long).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Makes (or renews, replacing NODE.pem and NODE.key) one node's certificate from the
    /// CA in DIR. A node using the files picks the new ones up within a second.
    #[command(after_help = crate::book::TLS)]
    Issue {
        /// The directory of `tls init`.
        #[arg(long)]
        dir: PathBuf,
        /// The node.
        #[arg(long)]
        node: String,
        /// An extra host name or address it is valid for; repeat.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Carries out `gridledger tls …`: the files written.
pub fn run(command: TlsCommand) -> Result<Vec<PathBuf>, super::issue::IssueError> {
    use super::issue;
    match command {
        TlsCommand::Init {
            dir,
            name,
            nodes,
            sans,
            days,
        } => {
            let nodes = if nodes.is_empty() {
                vec!["node1".into(), "node2".into(), "node3".into()]
            } else {
                nodes
            };
            issue::init(&dir, &name, &nodes, &sans, days)
        }
        TlsCommand::Issue {
            dir,
            node,
            sans,
            days,
        } => issue::issue(&dir, &node, &sans, days),
    }
}
