//! The `/metrics` endpoint: a small HTTP/1 server (hyper) on a loopback TCP port or a Unix
//! socket. `GET /metrics` answers the exposition (OpenMetrics when the `Accept` header asks for
//! it, as Prometheus does; else the text format 0.0.4); anything else 404. Bounded so that scrapers
//! cannot hurt the policy socket, and so that idle connections cannot lock scrapers out: at most
//! 4 connections at once, one request each; a connection that sends nothing within 1 s is closed;
//! when all 4 are taken, a new one closes the oldest that has sent nothing yet (or, when every
//! one is answering a request, waits in the kernel's queue until one ends: never closed with its
//! request unread); 2 s for a request head, 10 s per connection, so a slot frees within 11 s.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use super::format::{self, Format};
use crate::server::Listener;

const MAX_CONNECTIONS: usize = 4;
/// How long a connection may stay silent before its request starts.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a slot stays taken (silent, then a request): a bound on waiting for one.
const SLOT_WAIT: Duration = Duration::from_secs(IDLE_TIMEOUT.as_secs() + CONNECTION_TIMEOUT.as_secs());

/// Produces the exposition text (updating the state gauges first).
pub type Scrape = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// The endpoint for the start-up log line: `http://ADDR/metrics`, or the socket file.
#[must_use]
pub fn describe(listener: &Listener) -> String {
    match listener {
        Listener::Tcp(l) => l.local_addr().map_or_else(|_| "tcp".into(), |a| format!("http://{a}/metrics")),
        Listener::Unix(..) => listener.describe(),
    }
}

/// One open connection: when it came, whether its request has started, how to close it.
struct Open {
    id: u64,
    since: Instant,
    started: Arc<AtomicBool>,
    close: CancellationToken,
}

/// The open connections, for the bound and for closing the oldest idle one.
#[derive(Default)]
struct Slots {
    open: Mutex<(u64, Vec<Open>)>,
    /// Signalled when a connection ends (a stored permit when nobody waits yet).
    freed: tokio::sync::Notify,
}

impl Slots {
    /// Takes a slot for a new connection, closing the oldest idle one when all are taken;
    /// `None` when every connection is answering a request.
    fn take(&self) -> Option<(u64, Arc<AtomicBool>, CancellationToken)> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.1.len() >= MAX_CONNECTIONS {
            let oldest = open
                .1
                .iter()
                .enumerate()
                .filter(|(_, o)| !o.started.load(Ordering::Acquire))
                .min_by_key(|(_, o)| o.since)
                .map(|(i, _)| i)?;
            open.1.swap_remove(oldest).close.cancel();
        }
        open.0 += 1;
        let (id, started, close) = (open.0, Arc::new(AtomicBool::new(false)), CancellationToken::new());
        open.1.push(Open { id, since: Instant::now(), started: started.clone(), close: close.clone() });
        Some((id, started, close))
    }

    fn free(&self, id: u64) {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.retain(|o| o.id != id);
        self.freed.notify_one();
    }

    /// A slot for a new connection, waiting while every one is answering a request (each ends
    /// within `SLOT_WAIT`); `None` only if none frees in that time.
    async fn wait(&self) -> Option<(u64, Arc<AtomicBool>, CancellationToken)> {
        let deadline = tokio::time::Instant::now() + SLOT_WAIT;
        loop {
            if let Some(slot) = self.take() {
                return Some(slot);
            }
            // A connection that ended since `take` left a permit: no wake-up is lost.
            tokio::time::timeout_at(deadline, self.freed.notified()).await.ok()?;
        }
    }
}

/// Serves until `shutdown`.
pub async fn serve(listener: Listener, scrape: Scrape, shutdown: CancellationToken) {
    let slots = Arc::new(Slots::default());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = accept(&listener) => a,
        };
        let Ok(conn) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Over the bound with every connection answering a request (or closed by its client, as
        // its task has yet to see): the new one waits for a slot, and later ones wait in the
        // kernel's queue. Dropped unread, it would be reset.
        let slot = tokio::select! {
            () = shutdown.cancelled() => return,
            s = slots.wait() => s,
        };
        let Some((id, started, close)) = slot else { continue };
        let (scrape, slots) = (scrape.clone(), slots.clone());
        tokio::spawn(async move {
            let served = async {
                // Silent for a second: an idle connection, not a scraper.
                if tokio::time::timeout(IDLE_TIMEOUT, conn.readable()).await.is_err() {
                    return;
                }
                started.store(true, Ordering::Release);
                let service = service_fn(move |req: Request<Incoming>| {
                    let scrape = scrape.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &scrape).await) }
                });
                let http = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(conn.io(), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, http).await;
            };
            tokio::select! {
                () = close.cancelled() => {}
                () = served => {}
            }
            slots.free(id);
        });
    }
}

/// An accepted connection, TCP or Unix.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    /// Waits until the peer has sent something (or closed).
    async fn readable(&self) {
        let _ = match self {
            Self::Tcp(s) => s.readable().await,
            Self::Unix(s) => s.readable().await,
        };
    }

    fn io(self) -> Box<dyn IoStream> {
        match self {
            Self::Tcp(s) => Box::new(TokioIo::new(s)),
            Self::Unix(s) => Box::new(TokioIo::new(s)),
        }
    }
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    Ok(match listener {
        Listener::Tcp(l) => Conn::Tcp(l.accept().await?.0),
        Listener::Unix(l, _) => Conn::Unix(l.accept().await?.0),
    })
}

/// A connection hyper can serve.
trait IoStream: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static {}
impl<T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static> IoStream for T {}

async fn answer(req: &Request<Incoming>, scrape: &Scrape) -> Response<Full<Bytes>> {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
        let wanted = Format::negotiate(accept);
        let openmetrics = scrape().await;
        let body = match wanted {
            Format::OpenMetrics => openmetrics,
            Format::Text => format::to_text(&openmetrics),
        };
        return Response::builder()
            .header(hyper::header::CONTENT_TYPE, wanted.content_type())
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    }
    let mut not_found = Response::new(Full::new(Bytes::from_static(b"not found; try GET /metrics\n")));
    *not_found.status_mut() = StatusCode::NOT_FOUND;
    not_found
}
