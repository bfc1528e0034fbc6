//! TLS between parties: what a node serves and how it checks the peers it calls.
//!
//! - **Serving**: `--tls-cert`/`--tls-key` (PEM) make the API HTTPS. With `--tls-client-ca`
//!   a client must present a certificate signed by that CA (mutual TLS), so a closed
//!   consortium accepts only its members' nodes; the subject of each client certificate is
//!   logged ([`crate::listen`]).
//! - **Calling peers**: `https://` peers are verified against `--tls-ca`, or the system's
//!   roots when it is not given. A node with a certificate presents it as its client
//!   certificate too, so the same file serves both directions (it needs both the
//!   `serverAuth` and `clientAuth` usages; `gridledger tls init` makes such certificates).
//! - **Reload**: every file is read again on SIGHUP and when one of them changes on disk
//!   ([`Tls::watch`]). A reload is all or nothing: a half-written or mismatched pair
//!   leaves the previous certificates in use and logs why.
//!
//! The crypto is rustls with the `ring` provider (no OpenSSL, no C toolchain beyond what
//! `ring` needs).

pub mod cli;
pub mod issue;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The crypto provider every TLS config of this crate uses.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process default, so that any `reqwest` client built in this
/// process (tests and tools included) has one. Idempotent.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Which files make a node's TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), served and presented to peers.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// The CA(s) that sign `https://` peers' certificates; `None`: the system roots.
    pub ca: Option<PathBuf>,
    /// The CA(s) a client certificate must chain to; `None`: no client certificate asked.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// True if the node serves HTTPS.
    #[must_use]
    pub fn serves(&self) -> bool {
        self.cert.is_some()
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key, &self.ca, &self.client_ca]
            .into_iter()
            .flatten()
    }
}

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that should hold certificates holds none, or one that does not parse.
    #[error("{path}: {reason}")]
    Certificates {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key file holds no usable private key.
    #[error("{path}: no usable private key (PEM PKCS#8, PKCS#1 or SEC1 expected): {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{key} is not the private key of {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The flags do not go together.
    #[error("{0}")]
    Flags(&'static str),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificates {
            path: path.to_owned(),
            reason: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificates {
            path: path.to_owned(),
            reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Certificates {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// Reads a certificate chain and its key and checks that they belong together.
fn read_identity(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    let key_bytes = read(key)?;
    let der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        e => TlsError::Key {
            path: key.to_owned(),
            reason: e.to_string(),
        },
    })?;
    if let Some(v) = certified.cert.first().and_then(|c| validity(c)) {
        let now = SystemTime::now();
        if now > v.1 {
            tracing::warn!(cert = %cert.display(), "certificate expired: peers will refuse it");
        } else if now < v.0 {
            tracing::warn!(cert = %cert.display(), "certificate not valid yet: peers will refuse it");
        }
    }
    Ok(Arc::new(certified))
}

/// The subject of a DER certificate, as `CN=…, O=…`; `None` if it does not parse.
#[must_use]
pub fn subject(der: &[u8]) -> Option<String> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c.subject().to_string())
}

fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let at = |t: i64| {
        u64::try_from(t)
            .ok()
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    };
    Some((
        at(c.validity().not_before.timestamp())?,
        at(c.validity().not_after.timestamp())?,
    ))
}

/// Everything built from the files at one moment; swapped whole on reload.
#[derive(Debug)]
struct Loaded {
    server: Option<Arc<ServerConfig>>,
    identity: Option<Arc<CertifiedKey>>,
    verifier: Arc<dyn ServerCertVerifier>,
    subject: Option<String>,
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    if files.cert.is_some() != files.key.is_some() {
        return Err(TlsError::Flags("--tls-cert and --tls-key go together"));
    }
    if files.client_ca.is_some() && files.cert.is_none() {
        return Err(TlsError::Flags(
            "--tls-client-ca asks clients for certificates over HTTPS: it needs --tls-cert and --tls-key",
        ));
    }
    let provider = provider();
    let identity = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => Some(read_identity(c, k)?),
        _ => None,
    };
    let server = match &identity {
        None => None,
        Some(id) => {
            let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            let builder = match &files.client_ca {
                None => builder.with_no_client_auth(),
                Some(path) => {
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(read_roots(path)?),
                        Arc::clone(&provider),
                    )
                    .build()
                    .map_err(|e| TlsError::Certificates {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    builder.with_client_cert_verifier(verifier)
                }
            };
            let mut config = builder.with_cert_resolver(Arc::new(Fixed(Arc::clone(id))));
            // The API speaks HTTP/1.1 only.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        }
    };
    let verifier: Arc<dyn ServerCertVerifier> = match &files.ca {
        Some(path) => WebPkiServerVerifier::builder_with_provider(
            Arc::new(read_roots(path)?),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| TlsError::Certificates {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
                .map_err(|e| TlsError::Config(format!("system roots: {e}")))?,
        ),
    };
    let subject = identity
        .as_ref()
        .and_then(|id| id.cert.first())
        .and_then(|c| subject(c));
    Ok(Loaded {
        server,
        identity,
        verifier,
        subject,
    })
}

/// A server certificate that is the same for every name asked.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A node's TLS: the files, what was last built from them, and counters.
///
/// The client side (verifier of peers, client certificate) is read through this value
/// on every handshake, so a reload reaches connections opened after it without
/// rebuilding the HTTP client; the server side is read at each accepted connection.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    stamps: std::sync::Mutex<Vec<Option<(SystemTime, u64)>>>,
    /// Handshakes completed by the server.
    pub handshakes: AtomicU64,
    /// Handshakes the server refused or that failed (no or a bad client certificate, a
    /// plain-HTTP client on the HTTPS port, a timeout).
    pub handshake_failures: AtomicU64,
    /// Reloads that took effect.
    pub reloads: AtomicU64,
    /// Reloads refused (the previous certificates stay in use).
    pub reload_failures: AtomicU64,
    clients: std::sync::Mutex<std::collections::BTreeMap<String, ClientSeen>>,
}

/// A client certificate the server accepted (mutual TLS), for `GET /peers`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClientSeen {
    /// Its subject.
    pub subject: String,
    /// The address of its last connection.
    pub addr: std::net::SocketAddr,
    /// When it last connected (Unix ms).
    pub last_ms: u64,
    /// Connections since start.
    pub connections: u64,
}

/// Most client subjects remembered; the one seen longest ago makes room.
pub const MAX_CLIENTS_SEEN: usize = 256;

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Tls {
    /// Reads the files and builds the configurations.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let loaded = load(&files)?;
        let stamps = files.all().map(|p| stamp(p)).collect();
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(loaded)),
            stamps: std::sync::Mutex::new(stamps),
            handshakes: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            clients: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }))
    }

    fn loaded(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The files.
    #[must_use]
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The server configuration in force, if the node serves HTTPS.
    #[must_use]
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.loaded().server.clone()
    }

    /// Notes a client certificate accepted at a handshake; logs a subject the first time
    /// it is seen.
    pub fn saw_client(&self, subject: &str, addr: std::net::SocketAddr, now_ms: u64) {
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        if let Some(c) = clients.get_mut(subject) {
            c.addr = addr;
            c.last_ms = now_ms;
            c.connections += 1;
            return;
        }
        tracing::info!(%subject, %addr, "a new TLS client certificate");
        if clients.len() >= MAX_CLIENTS_SEEN {
            let oldest = clients
                .values()
                .min_by_key(|c| c.last_ms)
                .map(|c| c.subject.clone());
            if let Some(o) = oldest {
                clients.remove(&o);
            }
        }
        clients.insert(
            subject.to_owned(),
            ClientSeen {
                subject: subject.to_owned(),
                addr,
                last_ms: now_ms,
                connections: 1,
            },
        );
    }

    /// The client certificates accepted since start, by subject.
    #[must_use]
    pub fn clients(&self) -> Vec<ClientSeen> {
        self.clients
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The subject of the node's own certificate.
    #[must_use]
    pub fn subject(&self) -> Option<String> {
        self.loaded().subject.clone()
    }

    /// Reads every file again; on success the new certificates serve every connection
    /// from now on, on failure the previous ones stay and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps: Vec<_> = self.files.all().map(|p| stamp(p)).collect();
        if let Ok(mut s) = self.stamps.lock() {
            *s = stamps;
        }
        match load(&self.files) {
            Ok(loaded) => {
                let subject = loaded.subject.clone();
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(loaded),
                    Err(p) => *p.into_inner() = Arc::new(loaded),
                }
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(subject = ?subject, "TLS certificates reloaded");
                Ok(())
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("TLS reload refused, the previous certificates stay in use: {e}");
                Err(e)
            }
        }
    }

    /// True if a file changed (time or size) since the last load.
    fn changed(&self) -> bool {
        let now: Vec<_> = self.files.all().map(|p| stamp(p)).collect();
        self.stamps.lock().map_or(true, |s| *s != now)
    }

    /// Reloads on SIGHUP, and when a file changes (checked every `every`). The SIGHUP
    /// handler is installed when this is called, before the future first runs, so a signal
    /// sent once the node has started never meets the default action (which ends the
    /// process). The future runs until its task is aborted. Needs a Tokio runtime.
    pub fn watch(self: Arc<Self>, every: Duration) -> impl std::future::Future<Output = ()> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        async move {
            loop {
                let signalled = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    () = signalled => {
                        tracing::info!("SIGHUP: reloading TLS certificates");
                        let _ = self.reload();
                    }
                    () = tokio::time::sleep(every) => {
                        if self.changed() {
                            // A writer may be half way through: give it a moment.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let _ = self.reload();
                        }
                    }
                }
            }
        }
    }

    /// The client configuration for calling peers: verifies them with the verifier in
    /// force and presents the node's certificate when a peer asks for one.
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            // Not a weakening: `Current` hands every check to the verifier built from
            // --tls-ca or the system roots, and only makes it reloadable.
            .with_custom_certificate_verifier(Arc::new(Current(Arc::clone(self))))
            .with_client_cert_resolver(Arc::new(Current(Arc::clone(self))));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The client side of [`Tls`], reading whatever was loaded last.
#[derive(Debug)]
struct Current(Arc<Tls>);

impl ServerCertVerifier for Current {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.loaded().verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.loaded().verifier.supported_verify_schemes()
    }
}

impl ResolvesClientCert for Current {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.loaded().identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.loaded().identity.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn errors_name_the_file_and_the_fault() {
        let dir = tempfile::tempdir().expect("dir");
        let set = issue::Consortium::new("test", 30).expect("ca");
        let a = set.node("a", &[]).expect("a");
        let b = set.node("b", &[]).expect("b");
        let cert = write(dir.path(), "a.pem", &a.cert_pem);
        let key_b = write(dir.path(), "b.key", &b.key_pem);
        let junk = write(dir.path(), "junk.pem", "hello");
        let files = |cert: &Path, key: &Path| TlsFiles {
            cert: Some(cert.to_owned()),
            key: Some(key.to_owned()),
            ..TlsFiles::default()
        };
        let e = Tls::load(files(&cert, &key_b)).expect_err("mismatch");
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        let e = Tls::load(files(&junk, &key_b)).expect_err("no cert");
        assert!(e.to_string().contains("junk.pem"), "{e}");
        let e = Tls::load(files(&cert, &junk)).expect_err("no key");
        assert!(matches!(e, TlsError::Key { .. }), "{e}");
        let e = Tls::load(files(&cert, &dir.path().join("absent"))).expect_err("absent");
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        let e = Tls::load(TlsFiles {
            cert: Some(cert.clone()),
            ..TlsFiles::default()
        })
        .expect_err("half");
        assert!(matches!(e, TlsError::Flags(_)), "{e}");
        let e = Tls::load(TlsFiles {
            client_ca: Some(cert.clone()),
            ..TlsFiles::default()
        })
        .expect_err("client ca without cert");
        assert!(matches!(e, TlsError::Flags(_)), "{e}");
    }

    #[test]
    fn a_bad_reload_keeps_the_previous_certificate() {
        let dir = tempfile::tempdir().expect("dir");
        let set = issue::Consortium::new("test", 30).expect("ca");
        let a = set.node("a", &[]).expect("a");
        let cert = write(dir.path(), "a.pem", &a.cert_pem);
        let key = write(dir.path(), "a.key", &a.key_pem);
        let tls = Tls::load(TlsFiles {
            cert: Some(cert.clone()),
            key: Some(key),
            ..TlsFiles::default()
        })
        .expect("load");
        assert!(tls.subject().is_some_and(|s| s.contains("CN=a")));
        let renewed = set.node("a-renewed", &[]).expect("renewed");
        // The certificate changes but the key does not yet: refused, old one kept.
        std::fs::write(&cert, &renewed.cert_pem).expect("write");
        assert!(tls.changed());
        assert!(tls.reload().is_err());
        assert!(tls
            .subject()
            .is_some_and(|s| s.contains("CN=a,") || s.ends_with("CN=a")));
        assert_eq!(tls.reload_failures.load(Ordering::Relaxed), 1);
        std::fs::write(dir.path().join("a.key"), &renewed.key_pem).expect("write");
        tls.reload().expect("reload");
        assert!(tls.subject().is_some_and(|s| s.contains("CN=a-renewed")));
        assert!(!tls.changed());
    }
}
