//! A userspace TCP link emulator: this kernel has no `netem`, so links between testbed sites
//! are TCP proxies that hold every chunk of bytes until the link would have delivered it.
//!
//! A [`Link`] is one direction between two sites: a delay, a jitter (uniform in ±jitter,
//! never reordering: TCP delivers in order), the bandwidth [`Shaper`]s it crosses (a site's
//! access line is one shaper shared by all its links), and a [`State`]: up, cut (open
//! connections are closed and new ones closed at once, as a reset would), or a black hole
//! (connections stay open, bytes vanish: the peer waits for its timeout). Everything can be
//! changed while traffic flows. A [`Proxy`] listens on loopback port 0 and forwards each
//! connection to its target, client-to-target bytes through one link and the answers
//! through the other; each link counts the bytes it delivered.
//!
//! Buffering: each direction of a connection queues at most [`QUEUE_CHUNKS`] reads of at
//! most [`CHUNK`] bytes; beyond that the proxy stops reading and TCP's own flow control
//! pushes back on the sender, as a router's full queue would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest read forwarded as one piece.
pub const CHUNK: usize = 4096;
/// Pieces queued per direction of a connection before the proxy stops reading.
pub const QUEUE_CHUNKS: usize = 64;

/// What a link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Delivers, after its delay.
    Up,
    /// Closes open connections and every new one at once.
    Cut,
    /// Accepts connections and drops every byte.
    BlackHole,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bandwidth limit, shared by every link that crosses it.
#[derive(Debug)]
pub struct Shaper {
    bits_per_sec: u64,
    busy_until: Mutex<Option<Instant>>,
}

impl Shaper {
    /// A line of `bits_per_sec` (at least 1).
    #[must_use]
    pub fn new(bits_per_sec: u64) -> Arc<Self> {
        Arc::new(Self {
            bits_per_sec: bits_per_sec.max(1),
            busy_until: Mutex::new(None),
        })
    }

    /// When `len` bytes that reach the line at `at` have crossed it: after whatever is
    /// ahead of them, plus their own serialisation time.
    fn pass(&self, len: usize, at: Instant) -> Instant {
        let secs = len as f64 * 8.0 / self.bits_per_sec as f64;
        let mut busy = lock(&self.busy_until);
        let start = busy.map_or(at, |b| b.max(at));
        let done = start + Duration::from_secs_f64(secs);
        *busy = Some(done);
        done
    }
}

#[derive(Debug)]
struct Params {
    delay: Duration,
    jitter: Duration,
    shapers: Vec<Arc<Shaper>>,
}

#[derive(Debug)]
struct Inner {
    params: Mutex<Params>,
    state: watch::Sender<State>,
    delivered: AtomicU64,
}

/// One direction of a link: cheap to clone, every clone the same link.
#[derive(Clone, Debug)]
pub struct Link {
    inner: Arc<Inner>,
}

impl Link {
    /// An up link with this one-way delay and jitter, and no bandwidth limit.
    #[must_use]
    pub fn new(delay: Duration, jitter: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                params: Mutex::new(Params {
                    delay,
                    jitter,
                    shapers: Vec::new(),
                }),
                state: watch::Sender::new(State::Up),
                delivered: AtomicU64::new(0),
            }),
        }
    }

    /// Changes the delay and jitter of bytes read from now on.
    pub fn set_delay(&self, delay: Duration, jitter: Duration) {
        let mut p = lock(&self.inner.params);
        p.delay = delay;
        p.jitter = jitter;
    }

    /// Makes the link cross `shaper` too (a bandwidth cap; shared shapers share the line).
    pub fn add_shaper(&self, shaper: Arc<Shaper>) {
        lock(&self.inner.params).shapers.push(shaper);
    }

    /// Removes every bandwidth cap.
    pub fn clear_shapers(&self) {
        lock(&self.inner.params).shapers.clear();
    }

    /// Cuts, black-holes or restores the link, at once.
    pub fn set_state(&self, state: State) {
        self.inner.state.send_replace(state);
    }

    /// The link's state.
    #[must_use]
    pub fn state(&self) -> State {
        *self.inner.state.borrow()
    }

    /// Bytes delivered through this direction so far.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.inner.delivered.load(Ordering::Relaxed)
    }

    /// When `len` bytes read at `now` come out of the link.
    fn departure(&self, len: usize, now: Instant) -> Instant {
        let p = lock(&self.inner.params);
        let through = p.shapers.iter().fold(now, |at, s| s.pass(len, at));
        let jitter = p.jitter.as_secs_f64();
        let delay = p.delay.as_secs_f64() + jitter * (2.0 * fastrand::f64() - 1.0);
        through + Duration::from_secs_f64(delay.max(0.0))
    }
}

/// A listening proxy: connections to [`Proxy::addr`] reach `target` through two links.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1, port 0; `forward` carries what clients send to `target`,
    /// `back` the answers.
    pub async fn start(target: SocketAddr, forward: Link, back: Link) -> std::io::Result<Self> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into(), target, forward, back).await
    }

    /// The same, listening on `ip` (a hub address inside the testbed's namespaces).
    pub async fn start_on(
        ip: std::net::IpAddr,
        target: SocketAddr,
        forward: Link,
        back: Link,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Dropped with the task: aborting the proxy ends its connections.
            let mut conns = JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while conns.try_join_next().is_some() {}
                if forward.state() == State::Cut || back.state() == State::Cut {
                    continue;
                }
                conns.spawn(connection(inbound, target, forward.clone(), back.clone()));
            }
        });
        Ok(Self { addr, task })
    }

    /// Where to connect.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `state` says cut.
async fn until_cut(mut state: watch::Receiver<State>) {
    // A closed sender cannot happen while the link lives; if it did, never end this way.
    if state.wait_for(|s| *s == State::Cut).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn connection(inbound: TcpStream, target: SocketAddr, forward: Link, back: Link) {
    // The target not answering closes the client's connection: it sees a refusal.
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let cut_forward = until_cut(forward.inner.state.subscribe());
    let cut_back = until_cut(back.inner.state.subscribe());
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::select! {
        () = async {
            tokio::join!(pump(in_read, out_write, forward), pump(out_read, in_write, back));
        } => {}
        () = cut_forward => {}
        () = cut_back => {}
    }
}

/// Moves bytes from `from` to `to` as `link` would: each read leaves at its departure time,
/// in order; the end of the stream follows the last byte.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let reader = {
        let link = link.clone();
        async move {
            let mut last = Instant::now();
            loop {
                let mut buf = vec![0; CHUNK];
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.truncate(n);
                let at = link.departure(n, Instant::now()).max(last);
                last = at;
                if tx.send((at, buf)).await.is_err() {
                    break;
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, buf)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if link.state() == State::BlackHole {
                continue;
            }
            if to.write_all(&buf).await.is_err() {
                return;
            }
            link.inner
                .delivered
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<(Vec<u8>, Duration)> {
        let mut s = TcpStream::connect(addr).await?;
        let began = Instant::now();
        s.write_all(bytes).await?;
        let mut got = vec![0; bytes.len()];
        s.read_exact(&mut got).await?;
        Ok((got, began.elapsed()))
    }

    #[tokio::test]
    async fn delays_each_direction_and_counts_bytes() {
        let target = echo().await;
        let (fwd, back) = (
            Link::new(Duration::from_millis(60), Duration::ZERO),
            Link::new(Duration::from_millis(40), Duration::ZERO),
        );
        let proxy = Proxy::start(target, fwd.clone(), back.clone())
            .await
            .expect("proxy");
        let (got, took) = round_trip(proxy.addr(), b"hello").await.expect("echo");
        assert_eq!(got, b"hello");
        assert!(took >= Duration::from_millis(100), "round trip {took:?}");
        assert_eq!((fwd.delivered(), back.delivered()), (5, 5));
    }

    #[tokio::test]
    async fn a_shaper_limits_the_rate() {
        let target = echo().await;
        let fwd = Link::new(Duration::ZERO, Duration::ZERO);
        // 80 kbit/s: 10 000 bytes take at least one second.
        fwd.add_shaper(Shaper::new(80_000));
        let proxy = Proxy::start(target, fwd, Link::new(Duration::ZERO, Duration::ZERO))
            .await
            .expect("proxy");
        let (got, took) = round_trip(proxy.addr(), &[7; 10_000]).await.expect("echo");
        assert_eq!(got.len(), 10_000);
        assert!(took >= Duration::from_millis(950), "10 kB in {took:?}");
    }

    #[tokio::test]
    async fn jitter_never_reorders() {
        let target = echo().await;
        let fwd = Link::new(Duration::from_millis(20), Duration::from_millis(20));
        let proxy = Proxy::start(target, fwd, Link::new(Duration::ZERO, Duration::ZERO))
            .await
            .expect("proxy");
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        let sent: Vec<u8> = (0..200u8).collect();
        for b in &sent {
            s.write_all(&[*b]).await.expect("write");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut got = vec![0; sent.len()];
        s.read_exact(&mut got).await.expect("read");
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn cut_closes_and_refuses_black_hole_swallows_restore_heals() {
        let target = echo().await;
        let (fwd, back) = (
            Link::new(Duration::ZERO, Duration::ZERO),
            Link::new(Duration::ZERO, Duration::ZERO),
        );
        let proxy = Proxy::start(target, fwd.clone(), back.clone())
            .await
            .expect("proxy");
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        open.write_all(b"a").await.expect("write");
        let mut one = [0; 1];
        open.read_exact(&mut one)
            .await
            .expect("echo before the cut");

        fwd.set_state(State::Cut);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest))
            .await
            .expect("the cut closes an open connection");
        assert!(closed.is_err() || rest.is_empty(), "{closed:?} {rest:?}");
        let refused = tokio::time::timeout(Duration::from_secs(5), round_trip(proxy.addr(), b"b"))
            .await
            .expect("a new connection ends at once");
        assert!(refused.is_err(), "a cut link carried bytes: {refused:?}");

        fwd.set_state(State::BlackHole);
        let swallowed =
            tokio::time::timeout(Duration::from_millis(500), round_trip(proxy.addr(), b"c")).await;
        assert!(swallowed.is_err(), "a black hole answered: {swallowed:?}");

        fwd.set_state(State::Up);
        let (got, _) = round_trip(proxy.addr(), b"d").await.expect("healed");
        assert_eq!(got, b"d");
    }
}
