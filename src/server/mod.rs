//! Listeners and connections: binds the Unix socket (or takes systemd's), accepts under a
//! connection cap, and runs one task per connection that decodes requests, asks the [`Handler`]
//! and writes replies in order. Knows no Postfix attribute; bounds idle time and input size, and
//! drains on shutdown (in-flight replies finish, idle connections close).

mod listen;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use listen::{Bound, Endpoint, GroupChange, Listener, OwnedSocket, ServerError, bind};

use crate::config::TcpAllow;
use crate::protocol::{Decoder, Reply, Request};

/// How long shutdown waits for in-flight requests before exiting anyway.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Answers one request (the policy, in the daemon).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &Request) -> impl Future<Output = Reply> + Send;
}

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// One slot per connection, at most `max_connections`; `in use = max - available` (for metrics).
#[must_use]
pub fn slots(bounds: &Bounds) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(bounds.max_connections))
}

/// Serves until `shutdown`, then drains (at most [`DRAIN_DEADLINE`]). `permits`: from [`slots`];
/// `allow`: the clients a TCP listener answers (any other is closed unanswered).
pub async fn run<H: Handler>(
    listeners: Vec<Listener>,
    handler: Arc<H>,
    bounds: Bounds,
    permits: Arc<Semaphore>,
    allow: Arc<TcpAllow>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut accept_loops = Vec::new();
    for listener in listeners {
        let ctx = Accept {
            handler: handler.clone(),
            permits: permits.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            bounds,
            allow: allow.clone(),
        };
        accept_loops.push(tokio::spawn(ctx.run(listener)));
    }
    for task in accept_loops {
        let _ = task.await;
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait()).await.is_err() {
        tracing::warn!(
            "shutdown: {} connections still busy after {DRAIN_DEADLINE:?}; exiting",
            tracker.len()
        );
    }
}

struct Accept<H> {
    handler: Arc<H>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    bounds: Bounds,
    allow: Arc<TcpAllow>,
}

impl<H: Handler> Accept<H> {
    async fn run(self, listener: Listener) {
        let mut refused = Throttle::default();
        let mut failed = Throttle::default();
        let mut strangers = Throttle::every(Duration::from_secs(60));
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => return,
                a = accept(&listener) => a,
            };
            let stream = match accepted {
                // Whoever can connect can speak for any sender: only the clients allowed.
                Ok((Stream::Tcp(s), Some(peer))) if !self.allow.allows(peer.ip()) => {
                    drop(s);
                    if let Some(n) = strangers.tick() {
                        tracing::warn!(
                            "listen.tcp: connection from {} closed unanswered (not in listen.tcp_allow); {n} since the last report",
                            peer.ip()
                        );
                    }
                    continue;
                }
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    if let Some(n) = failed.tick() {
                        tracing::warn!("accept failed ({e}); {n} times since the last report");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                // Closing at once lets Postfix fall back to its default_action now, not after
                // its timeout.
                if let Some(n) = refused.tick() {
                    tracing::warn!(
                        "connection cap of {} reached; refused {n} connections since the last report",
                        self.bounds.max_connections
                    );
                }
                continue;
            };
            let handler = self.handler.clone();
            let shutdown = self.shutdown.clone();
            let idle = self.bounds.idle_timeout;
            self.tracker.spawn(async move {
                match stream {
                    Stream::Unix(s) => connection(s, &*handler, idle, &shutdown).await,
                    Stream::Tcp(s) => connection(s, &*handler, idle, &shutdown).await,
                }
                drop(permit);
            });
        }
    }
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// A connection, and its peer's address for TCP.
async fn accept(listener: &Listener) -> io::Result<(Stream, Option<std::net::SocketAddr>)> {
    match listener {
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| (Stream::Unix(s), None)),
        Listener::Tcp(l) => l.accept().await.map(|(s, peer)| {
            let _ = s.set_nodelay(true);
            (Stream::Tcp(s), Some(peer))
        }),
    }
}

/// Counts events and reports at most once a period (10 s by default).
struct Throttle {
    every: Duration,
    last: Option<Instant>,
    count: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::every(Duration::from_secs(10))
    }
}

impl Throttle {
    fn every(every: Duration) -> Self {
        Self { every, last: None, count: 0 }
    }

    fn tick(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// One connection: requests in, replies out in order, until EOF, idle timeout, a protocol
/// error (logged, only this connection closes) or shutdown (between requests).
async fn connection<IO, H>(mut io: IO, handler: &H, idle: Duration, shutdown: &CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(256);
    let mut decoder = Decoder::new();
    loop {
        let mut fault = None;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(req)) => handler.handle(&req).await.encode(&mut out),
                Ok(None) => break,
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        if !out.is_empty() {
            match tokio::time::timeout(idle, io.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                _ => return,
            }
        }
        if let Some(e) = fault {
            tracing::warn!("closing a policy connection: {e}");
            return;
        }
        buf.reserve(4096);
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(idle, io.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::debug!("policy connection read error: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("closing a policy connection idle for {idle:?}");
                return;
            }
        }
    }
}
