//! Certificates for a test consortium: a small CA and one certificate per node, made with
//! rcgen (`gridledger tls init` and `gridledger tls issue`).
//!
//! Each node certificate names the node in its CN and its subject alternative names (the
//! node's name, `localhost`, `127.0.0.1` and `::1`, and any extra host given), and carries
//! both the `serverAuth` and `clientAuth` usages: a node serves it and presents it to peers
//! that ask for mutual TLS. Keys are ECDSA P-256. A production consortium uses its own PKI;
//! this is for labs, tests and the book's three-node setup (Running a consortium, TLS).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// rcgen refused (a bad name, a key that does not parse).
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `tls init` would overwrite a CA.
    #[error("{0} exists: tls init never overwrites a CA (use tls issue to add a node)")]
    Exists(PathBuf),
    /// A node name that cannot be a file name or a DNS name.
    #[error("node name '{0}': use letters, digits and '-' (1 to 63 characters)")]
    Name(String),
}

/// A CA able to sign node certificates.
pub struct Consortium {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA key, PEM.
    pub ca_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    days: u32,
}

impl std::fmt::Debug for Consortium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consortium")
            .field("days", &self.days)
            .finish()
    }
}

/// One node's certificate and key.
#[derive(Clone, Debug)]
pub struct NodeCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its key, PEM (PKCS#8).
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn check_name(name: &str) -> Result<(), IssueError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(IssueError::Name(name.to_owned()))
    }
}

impl Consortium {
    /// A new CA named `name`, its certificates valid for `days`.
    pub fn new(name: &str, days: u32) -> Result<Self, IssueError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} gridledger CA"));
        dn.push(DnType::OrganizationName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, days.saturating_mul(2));
        let cert = params.self_signed(&key)?;
        Ok(Consortium {
            ca_pem: cert.pem(),
            ca_key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            days,
        })
    }

    /// The CA of `ca_pem` and `ca_key_pem` (as `tls init` wrote them).
    pub fn open(ca_pem: &str, ca_key_pem: &str, days: u32) -> Result<Self, IssueError> {
        let key = KeyPair::from_pem(ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(ca_pem, key)?;
        Ok(Consortium {
            ca_pem: ca_pem.to_owned(),
            ca_key_pem: ca_key_pem.to_owned(),
            issuer,
            days,
        })
    }

    /// A certificate for node `name`, valid for `name`, `localhost`, `127.0.0.1`, `::1`
    /// and `extra` hosts (names or addresses).
    pub fn node(&self, name: &str, extra: &[String]) -> Result<NodeCert, IssueError> {
        check_name(name)?;
        let mut sans = vec![
            name.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        for e in extra {
            if !sans.contains(e) {
                sans.push(e.clone());
            }
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params, self.days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IssueError + '_ {
    move |source| IssueError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so that a node watching
/// the file never reads half of it; keys are readable by their owner only.
pub fn write_atomic(path: &Path, text: &str, secret: bool) -> Result<(), IssueError> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut f = options.open(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// File names in a consortium directory.
#[must_use]
pub fn paths(dir: &Path, node: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{node}.pem")),
        dir.join(format!("{node}.key")),
    )
}

/// `gridledger tls init`: a new CA in `dir` (`ca.pem`, `ca.key`) and a certificate per
/// node. Never overwrites a CA. Returns the files written.
pub fn init(
    dir: &Path,
    name: &str,
    nodes: &[String],
    extra: &[String],
    days: u32,
) -> Result<Vec<PathBuf>, IssueError> {
    for n in nodes {
        check_name(n)?;
    }
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    for p in [&ca, &ca_key] {
        if p.exists() {
            return Err(IssueError::Exists(p.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let set = Consortium::new(name, days)?;
    write_atomic(&ca_key, &set.ca_key_pem, true)?;
    write_atomic(&ca, &set.ca_pem, false)?;
    let mut written = vec![ca, ca_key];
    for n in nodes {
        written.extend(write_node(&set, dir, n, extra)?);
    }
    Ok(written)
}

/// `gridledger tls issue`: a new (or renewed) certificate for `node` from the CA in `dir`;
/// the key is written before the certificate, so a watching node reloads a matching pair.
pub fn issue(
    dir: &Path,
    node: &str,
    extra: &[String],
    days: u32,
) -> Result<Vec<PathBuf>, IssueError> {
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca_pem = std::fs::read_to_string(&ca).map_err(io(&ca))?;
    let key_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
    let set = Consortium::open(&ca_pem, &key_pem, days)?;
    write_node(&set, dir, node, extra)
}

fn write_node(
    set: &Consortium,
    dir: &Path,
    node: &str,
    extra: &[String],
) -> Result<Vec<PathBuf>, IssueError> {
    let made = set.node(node, extra)?;
    let (cert, key) = paths(dir, node);
    write_atomic(&key, &made.key_pem, true)?;
    write_atomic(&cert, &made.cert_pem, false)?;
    Ok(vec![cert, key])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_issue_from_the_same_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let written = init(dir.path(), "lab", &["n1".into(), "n2".into()], &[], 30).expect("init");
        assert_eq!(written.len(), 6);
        let e = init(dir.path(), "lab", &["n1".into()], &[], 30).expect_err("again");
        assert!(matches!(e, IssueError::Exists(_)), "{e}");
        issue(dir.path(), "n3", &["10.0.0.3".into()], 30).expect("issue");
        let ca = crate::tls::read_certs(&dir.path().join("ca.pem")).expect("ca");
        let n3 = crate::tls::read_certs(&dir.path().join("n3.pem")).expect("n3");
        let subject = crate::tls::subject(&n3[0]).expect("subject");
        assert_eq!(subject, "CN=n3");
        // n3 chains to the CA that init made.
        let (_, c) = x509_parser::parse_x509_certificate(&n3[0]).expect("parse");
        let (_, a) = x509_parser::parse_x509_certificate(&ca[0]).expect("parse");
        assert_eq!(c.issuer(), a.subject());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("n3.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "keys are the owner's only");
        }
        assert!(matches!(
            issue(dir.path(), "../x", &[], 30),
            Err(IssueError::Name(_))
        ));
    }
}
