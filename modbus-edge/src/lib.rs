//! The client edge of a Modbus TCP server, shared by relay-sim and the gateway: a bounded
//! number of connections ([`Slots`]), an idle timeout and a request deadline per
//! connection, and a check of every request before the server's decoder sees it
//! ([`adu::inspect`]).
//!
//! A server accepts every TCP connection, asks [`Slots::admit`] for it, and serves the
//! returned [`Guarded`] stream in place of the socket. The stream:
//! - holds its slot for as long as it lives (a connection over the limit is refused, closed
//!   at once, with a warning);
//! - fails its read with `TimedOut` once the client has sent nothing for the idle timeout,
//!   or has sent part of a request and not the rest within the request deadline (so a
//!   client trickling a byte at a time holds its slot for the deadline, not for ever);
//! - hands the server only whole, well-formed request ADUs, answers malformed ones and
//!   reserved function codes itself with a Modbus exception, and ends the connection on a
//!   header that is not Modbus TCP;
//! - counts all of it in the server's [`EdgeStats`].
#![forbid(unsafe_code)]

pub mod adu;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use adu::{inspect, Verdict};

/// Limits on client connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Connections served at once; more are accepted and closed at once.
    pub max_clients: usize,
    /// A connection that sends nothing for this long is closed; `None` never closes.
    pub idle_timeout: Option<Duration>,
    /// A request must arrive whole within this long of its first byte, or the connection
    /// is closed; `None`: no deadline.
    pub request_deadline: Option<Duration>,
}

/// The default request deadline: a Modbus TCP request is at most 260 bytes, so anything
/// slower than this is not a client waiting on a slow link but one holding a slot.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Exception answers the edge may owe one client before it stops reading from it.
const MAX_PENDING_ANSWERS: usize = 64 * 9;

/// What the edge of one server has done, since it started.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Connections refused because every slot was taken.
    pub refused: AtomicU64,
    /// Connections closed for a header that is not Modbus TCP.
    pub bad_headers: AtomicU64,
    /// Requests answered by the edge with an exception (malformed, reserved function).
    pub exceptions: AtomicU64,
    /// Connections closed because a request did not arrive whole in time.
    pub deadlines: AtomicU64,
    /// Connections closed for idleness.
    pub idle: AtomicU64,
}

impl EdgeStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The connection slots of one server.
#[derive(Clone, Debug)]
pub struct Slots {
    free: Arc<Semaphore>,
    limits: ClientLimits,
    stats: Arc<EdgeStats>,
}

impl Slots {
    /// Slots for `limits.max_clients` connections.
    #[must_use]
    pub fn new(limits: ClientLimits) -> Self {
        Slots {
            free: Arc::new(Semaphore::new(limits.max_clients)),
            limits,
            stats: Arc::new(EdgeStats::default()),
        }
    }

    /// The limits.
    #[must_use]
    pub fn limits(&self) -> ClientLimits {
        self.limits
    }

    /// What the edge has done.
    #[must_use]
    pub fn stats(&self) -> Arc<EdgeStats> {
        Arc::clone(&self.stats)
    }

    /// Takes a slot for the connection from `peer`, or refuses it (logged) when all are
    /// taken. The stream gets `TCP_NODELAY`: Modbus is request and answer.
    #[must_use]
    pub fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Option<Guarded> {
        let Ok(slot) = Arc::clone(&self.free).try_acquire_owned() else {
            EdgeStats::bump(&self.stats.refused);
            warn!(%peer, max = self.limits.max_clients, "refusing client: too many connections");
            return None;
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        debug!(%peer, "client connected");
        Some(Guarded {
            stream,
            peer,
            limits: self.limits,
            idle: self
                .limits
                .idle_timeout
                .map(|t| Box::pin(tokio::time::sleep(t))),
            deadline: None,
            inbound: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            answers: Vec::new(),
            stats: Arc::clone(&self.stats),
            _slot: slot,
        })
    }
}

/// A client connection: holds its slot for as long as it lives, passes the server only
/// whole, well-formed requests, and enforces the idle timeout and request deadline.
#[derive(Debug)]
pub struct Guarded {
    stream: TcpStream,
    peer: SocketAddr,
    limits: ClientLimits,
    idle: Option<Pin<Box<Sleep>>>,
    /// Set while part of a request has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes from the client not judged yet.
    inbound: Vec<u8>,
    /// Checked requests for the server, from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    /// Exception answers owed to the client.
    answers: Vec<u8>,
    stats: Arc<EdgeStats>,
    _slot: OwnedSemaphorePermit,
}

impl Guarded {
    /// Writes owed exception answers; `Ready(Ok)` once none are left.
    fn poll_answers(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.answers.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.answers) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.answers.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Judges the buffered bytes: moves whole good requests to `ready`, answers bad ones.
    fn judge(&mut self) -> io::Result<()> {
        loop {
            match inspect(&self.inbound) {
                Verdict::Pass(n) => {
                    if self.ready_at == self.ready.len() {
                        self.ready.clear();
                        self.ready_at = 0;
                    }
                    self.ready.extend(self.inbound.drain(..n));
                }
                Verdict::Answer { len, answer } => {
                    self.inbound.drain(..len);
                    EdgeStats::bump(&self.stats.exceptions);
                    if let Some(a) = answer {
                        debug!(peer = %self.peer, function = a[7], code = a[8], "answering a request with an exception");
                        if self.answers.len() >= MAX_PENDING_ANSWERS {
                            return Err(io::Error::other(
                                "client does not read the answers it is owed",
                            ));
                        }
                        self.answers.extend_from_slice(&a);
                    }
                }
                Verdict::Close(e) => {
                    EdgeStats::bump(&self.stats.bad_headers);
                    debug!(peer = %self.peer, "closing: {e}");
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                Verdict::Incomplete => break,
            }
        }
        if self.inbound.is_empty() {
            self.deadline = None;
        } else if self.deadline.is_none() {
            self.deadline = self
                .limits
                .request_deadline
                .map(|d| Box::pin(tokio::time::sleep(d)));
        }
        Ok(())
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Answers first (the server writes nothing while it waits for a request).
            if let Poll::Ready(Err(e)) = this.poll_answers(cx) {
                return Poll::Ready(Err(e));
            }
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        // End of stream; a partial request is dropped with the connection.
                        return Poll::Ready(Ok(()));
                    }
                    if let (Some(timeout), Some(idle)) = (this.limits.idle_timeout, &mut this.idle)
                    {
                        idle.as_mut().reset(Instant::now() + timeout);
                    }
                    this.inbound.extend_from_slice(rb.filled());
                    if let Err(e) = this.judge() {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if let Some(d) = &mut this.deadline {
                        if d.as_mut().poll(cx).is_ready() {
                            EdgeStats::bump(&this.stats.deadlines);
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "request not completed within the deadline",
                            )));
                        }
                    }
                    if let Some(idle) = &mut this.idle {
                        if idle.as_mut().poll(cx).is_ready() {
                            EdgeStats::bump(&this.stats.idle);
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "client idle for too long",
                            )));
                        }
                    }
                    return Poll::Pending;
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
        let this = self.get_mut();
        match this.poll_answers(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.stream).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_answers(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.stream).poll_flush(cx),
            other => other,
        }
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

    const READ: [u8; 12] = [0, 1, 0, 0, 0, 6, 1, 0x04, 0, 0, 0, 117];

    fn limits(max: usize) -> ClientLimits {
        ClientLimits {
            max_clients: max,
            idle_timeout: Some(Duration::from_millis(300)),
            request_deadline: Some(Duration::from_millis(200)),
        }
    }

    #[tokio::test]
    async fn slots_are_bounded_and_freed_and_idle_clients_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let slots = Slots::new(limits(1));
        let (mut c1, s1, p1) = pair(&listener).await;
        let mut g1 = slots.admit(s1, p1).expect("first admitted");
        let (_c2, s2, p2) = pair(&listener).await;
        assert!(slots.admit(s2, p2).is_none(), "second refused");

        // A request reaches the server; the answer reaches the client.
        c1.write_all(&READ).await.expect("write");
        let mut buf = [0u8; 12];
        g1.read_exact(&mut buf).await.expect("read");
        assert_eq!(buf, READ);
        g1.write_all(b"pong").await.expect("write");
        let mut pong = [0u8; 4];
        c1.read_exact(&mut pong).await.expect("read");
        assert_eq!(&pong, b"pong");

        // Silence: the read fails with TimedOut.
        let err = g1.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(g1);
        let (_c3, s3, p3) = pair(&listener).await;
        assert!(slots.admit(s3, p3).is_some(), "the slot is free again");
        let stats = slots.stats();
        assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
        assert_eq!(stats.idle.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn bad_requests_are_answered_here_and_the_connection_goes_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let slots = Slots::new(limits(4));
        let (mut c, s, p) = pair(&listener).await;
        let mut g = slots.admit(s, p).expect("admitted");
        // The upstream FC15 panic, then FC 0xFF, then a good read, in one write.
        let fc15 = [0, 9, 0, 0, 0, 8, 1, 0x0F, 0, 0, 0, 0x10, 1, 0xFF];
        let fcff = [0, 10, 0, 0, 0, 2, 1, 0xFF];
        c.write_all(&[&fc15[..], &fcff[..], &READ[..]].concat())
            .await
            .expect("write");
        // The server sees only the good read.
        let mut buf = [0u8; 12];
        g.read_exact(&mut buf).await.expect("read");
        assert_eq!(buf, READ);
        // The client got both exceptions, in order.
        let mut answers = [0u8; 18];
        c.read_exact(&mut answers).await.expect("answers");
        assert_eq!(
            answers,
            [0, 9, 0, 0, 0, 3, 1, 0x8F, 0x03, 0, 10, 0, 0, 0, 3, 1, 0xFF, 0x01]
        );
        assert_eq!(slots.stats().exceptions.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_header_that_is_not_modbus_closes_and_a_trickle_meets_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let slots = Slots::new(limits(4));
        let (mut c, s, p) = pair(&listener).await;
        let mut g = slots.admit(s, p).expect("admitted");
        c.write_all(&[0, 1, 0xFF, 0xFF, 0, 6, 1])
            .await
            .expect("write");
        let mut buf = [0u8; 12];
        let err = g.read(&mut buf).await.expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(slots.stats().bad_headers.load(Ordering::Relaxed), 1);

        // One byte every 100 ms keeps the idle timer (300 ms) happy, not the deadline.
        let (mut c, s, p) = pair(&listener).await;
        let mut g = slots.admit(s, p).expect("admitted");
        let trickle = tokio::spawn(async move {
            for b in READ {
                if c.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = std::time::Instant::now();
        let err = g.read(&mut buf).await.expect_err("deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(slots.stats().deadlines.load(Ordering::Relaxed), 1);
        trickle.abort();
    }
}
