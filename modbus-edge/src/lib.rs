//! The client edge of a Modbus TCP server, shared by relay-sim and the gateway: a bounded
//! number of connections ([`Slots`]) and an idle timeout per connection ([`Guarded`]).
//!
//! A server accepts every TCP connection, asks [`Slots::admit`] for it, and serves the
//! returned [`Guarded`] stream in place of the socket: the stream holds its slot for as
//! long as it lives, and its reads fail with `TimedOut` once the client has sent nothing for
//! the idle timeout, which ends the connection and frees the slot. A connection over the
//! limit is refused (closed at once) with a warning. So a client that stalls holds only its
//! own slot, and only for the idle timeout.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::{debug, warn};

/// Limits on client connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Connections served at once; more are accepted and closed at once.
    pub max_clients: usize,
    /// A connection that sends nothing for this long is closed; `None` never closes.
    pub idle_timeout: Option<Duration>,
}

/// The connection slots of one server.
#[derive(Clone, Debug)]
pub struct Slots {
    free: Arc<Semaphore>,
    limits: ClientLimits,
}

impl Slots {
    /// Slots for `limits.max_clients` connections.
    #[must_use]
    pub fn new(limits: ClientLimits) -> Self {
        Slots {
            free: Arc::new(Semaphore::new(limits.max_clients)),
            limits,
        }
    }

    /// The limits.
    #[must_use]
    pub fn limits(&self) -> ClientLimits {
        self.limits
    }

    /// Takes a slot for the connection from `peer`, or refuses it (logged) when all are
    /// taken. The stream gets `TCP_NODELAY`: Modbus is request and answer.
    #[must_use]
    pub fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Option<Guarded> {
        let Ok(slot) = Arc::clone(&self.free).try_acquire_owned() else {
            warn!(%peer, max = self.limits.max_clients, "refusing client: too many connections");
            return None;
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        debug!(%peer, "client connected");
        Some(Guarded {
            stream,
            idle: self
                .limits
                .idle_timeout
                .map(|t| (t, Box::pin(tokio::time::sleep(t)))),
            _slot: slot,
        })
    }
}

/// A client connection: holds its slot for as long as it lives, and fails its read when the
/// client has sent nothing for the idle timeout.
#[derive(Debug)]
pub struct Guarded {
    stream: TcpStream,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if let Some((timeout, sleep)) = &mut this.idle {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *timeout);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = match &mut this.idle {
                    Some((_, sleep)) => sleep.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client idle for too long",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connects");
        let (server, peer) = listener.accept().await.expect("accepts");
        (client, server, peer)
    }

    #[tokio::test]
    async fn slots_are_bounded_and_freed_and_idle_clients_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let slots = Slots::new(ClientLimits {
            max_clients: 1,
            idle_timeout: Some(Duration::from_millis(200)),
        });
        let (mut c1, s1, p1) = pair(&listener).await;
        let mut g1 = slots.admit(s1, p1).expect("first admitted");
        let (_c2, s2, p2) = pair(&listener).await;
        assert!(slots.admit(s2, p2).is_none(), "second refused");

        // Data flows both ways.
        c1.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        g1.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        g1.write_all(b"pong").await.expect("write");
        c1.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"pong");

        // Silence: the read fails with TimedOut.
        let err = g1.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(g1);
        let (_c3, s3, p3) = pair(&listener).await;
        assert!(slots.admit(s3, p3).is_some(), "the slot is free again");
    }
}
