//! The API's listener: plain TCP, or TLS over it, handed to axum as one [`Listener`].
//!
//! TLS handshakes run on their own tasks (at most [`MAX_HANDSHAKES`] at once, each within
//! [`HANDSHAKE_TIMEOUT`]): a client that opens a connection and says nothing holds up no
//! one else's accept. Each connection's [`Remote`] carries the client's address, for the
//! admin boundary, and the subject of its certificate under mutual TLS, for the logs.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::tls::Tls;

/// Most TLS handshakes under way at once; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 256;
/// Most TLS handshakes under way at once from one (non-loopback) address, so that one
/// host opening silent connections cannot fill [`MAX_HANDSHAKES`] and lock everyone out.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 16;
/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct Remote {
    /// Its address.
    pub addr: SocketAddr,
    /// The subject of the certificate it presented (mutual TLS only).
    pub subject: Option<Arc<str>>,
}

impl Connected<IncomingStream<'_, NodeListener>> for Remote {
    fn connect_info(stream: IncomingStream<'_, NodeListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A connection: plain or TLS.
#[derive(Debug)]
pub enum Io {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The node's listener.
#[derive(Debug)]
pub struct NodeListener {
    tcp: TcpListener,
    tls: Option<Arc<Tls>>,
    handshakes: JoinSet<(std::net::IpAddr, Option<(Io, Remote)>)>,
    pending: std::collections::HashMap<std::net::IpAddr, usize>,
}

impl NodeListener {
    /// Serves `tcp`, over TLS when `tls` has a server certificate.
    #[must_use]
    pub fn new(tcp: TcpListener, tls: Option<Arc<Tls>>) -> Self {
        let tls = tls.filter(|t| t.files().serves());
        NodeListener {
            tcp,
            tls,
            handshakes: JoinSet::new(),
            pending: std::collections::HashMap::new(),
        }
    }
}

/// True if a new connection from `ip` may start a handshake while `total` are under way,
/// `from_ip` of them from `ip`. Loopback is not limited per address: what runs on the
/// node's own host is trusted with its API already.
fn admit(total: usize, from_ip: usize, ip: std::net::IpAddr) -> bool {
    total < MAX_HANDSHAKES && (ip.is_loopback() || from_ip < MAX_HANDSHAKES_PER_ADDRESS)
}

async fn handshake(tls: Arc<Tls>, stream: TcpStream, addr: SocketAddr) -> Option<(Io, Remote)> {
    let config = tls.server_config()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => {
            tls.handshakes.fetch_add(1, Ordering::Relaxed);
            let subject: Option<Arc<str>> = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::tls::subject(c))
                .map(Arc::from);
            if let Some(s) = &subject {
                tls.saw_client(s, addr, crate::clock::now_ms());
            }
            Some((Io::Tls(Box::new(s)), Remote { addr, subject }))
        }
        Ok(Err(e)) => {
            tls.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%addr, "TLS handshake refused: {e}");
            None
        }
        Err(_) => {
            tls.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%addr, "TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}");
            None
        }
    }
}

impl Listener for NodeListener {
    type Io = Io;
    type Addr = Remote;

    async fn accept(&mut self) -> (Io, Remote) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        // Small answers go out at once rather than waiting on Nagle.
                        let _ = stream.set_nodelay(true);
                        let Some(tls) = &self.tls else {
                            return (Io::Plain(stream), Remote { addr, subject: None });
                        };
                        let ip = addr.ip();
                        let from_ip = self.pending.get(&ip).copied().unwrap_or(0);
                        if !admit(self.handshakes.len(), from_ip, ip) {
                            tls.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%addr, "too many TLS handshakes under way: connection closed");
                            continue;
                        }
                        *self.pending.entry(ip).or_insert(0) += 1;
                        let tls = Arc::clone(tls);
                        self.handshakes
                            .spawn(async move { (ip, handshake(tls, stream, addr).await) });
                    }
                    // Out of file descriptors and the like: wait a little, as axum does.
                    Err(e) => {
                        tracing::error!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    let Ok((ip, conn)) = done else { continue };
                    if let Some(n) = self.pending.get_mut(&ip) {
                        *n -= 1;
                        if *n == 0 {
                            self.pending.remove(&ip);
                        }
                    }
                    if let Some(conn) = conn {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Remote> {
        Ok(Remote {
            addr: self.tcp.local_addr()?,
            subject: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_fill_the_handshake_slots() {
        let remote: std::net::IpAddr = [192, 0, 2, 7].into();
        let local: std::net::IpAddr = [127, 0, 0, 1].into();
        assert!(admit(0, 0, remote));
        assert!(admit(100, MAX_HANDSHAKES_PER_ADDRESS - 1, remote));
        assert!(!admit(100, MAX_HANDSHAKES_PER_ADDRESS, remote));
        assert!(admit(100, MAX_HANDSHAKES_PER_ADDRESS, local));
        assert!(!admit(MAX_HANDSHAKES, 0, remote));
        assert!(!admit(MAX_HANDSHAKES, 0, local));
    }
}
