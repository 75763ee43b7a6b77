//! The `/metrics` endpoint: a small HTTP/1 server (hyper) on a loopback TCP port or a Unix
//! socket. `GET /metrics` answers the exposition (OpenMetrics when the `Accept` header asks for
//! it, as Prometheus does; else the text format 0.0.4); anything else 404. Bounded so that scrapers
//! cannot hurt the policy socket: at most 4 connections at once (more are closed), 5 s for a
//! request head, 10 s per connection.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::format::{self, Format};

const MAX_CONNECTIONS: usize = 4;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Produces the exposition text (updating the state gauges first).
pub type Scrape = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// A bound metrics listener.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listener {
    /// For the start-up log line.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l.local_addr().map_or_else(|_| "tcp".into(), |a| format!("http://{a}/metrics")),
            Self::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

/// Serves until `shutdown`.
pub async fn serve(listener: Listener, scrape: Scrape, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = accept(&listener) => a,
        };
        let Ok(io) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Over the bound: the connection is closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let scrape = scrape.clone();
                async move { Ok::<_, Infallible>(answer(&req, &scrape).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(io, service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(slot);
        });
    }
}

async fn accept(listener: &Listener) -> std::io::Result<Box<dyn IoStream>> {
    Ok(match listener {
        Listener::Tcp(l) => Box::new(TokioIo::new(l.accept().await?.0)),
        Listener::Unix(l, _) => Box::new(TokioIo::new(l.accept().await?.0)),
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
