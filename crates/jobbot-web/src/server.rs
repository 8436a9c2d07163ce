//! The web server's connections, with the limits `axum::serve` does not set. A client cannot
//! hold a connection (and its file descriptor, which SQLite, session files and reconnects need
//! too) for longer than it takes to send a request and read the answer:
//!
//! - headers must arrive within [`ServerLimits::header_read_timeout`], also while a kept-alive
//!   connection waits for its next request (hyper's header-read timer, which axum's `serve`
//!   leaves unset);
//! - a request body must arrive within [`ServerLimits::body_timeout`] (a `408`, from
//!   tower-http's body timeout, see `crate::app_with`);
//! - each write must make progress within [`ServerLimits::write_timeout`] (a client that stops
//!   reading its responses or its WebSocket);
//! - at most [`ServerLimits::max_connections`] connections are served at once; one more gets a
//!   `503` with `Retry-After` and is closed at once, so the cap never hides a refusal.
//!
//! HTTP/1 only (a local admin UI, optionally behind a reverse proxy that speaks HTTP/2 to
//! browsers), with upgrades for the live WebSocket.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use crate::metrics::WebMetrics;

/// How long a client may take, and how many may be served at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to send a request's headers; also how long an idle kept-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
    /// Time a single write may wait for the client to read.
    pub write_timeout: Duration,
    /// HTTP connections served at once. A WebSocket leaves this count when it upgrades and
    /// counts against `max_websockets` instead.
    pub max_connections: usize,
    /// Live WebSockets at once.
    pub max_websockets: usize,
    /// Largest WebSocket message or frame a client may send (the live view takes none).
    pub websocket_max_message: usize,
    /// Largest request body.
    pub max_body: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_websockets: 32,
            websocket_max_message: 16 * 1024,
            max_body: 1024 * 1024,
        }
    }
}

/// The response to a connection beyond the cap, written before the connection is closed.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 84\r\nConnection: close\r\n\r\n{\"success\":false,\"error\":\"unavailable\",\"message\":\"too many connections; retry soon\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in progress finish (`close_live` tells long-lived WebSockets to close) and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    metrics: Arc<WebMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    close_live: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection task holds a receiver; the sender's `closed()` resolves once all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment instead of spinning, then keep serving.
                    tracing::warn!(target: "web", %error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let metrics = Arc::clone(&metrics);
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    metrics.connections_open.inc();
                    serve_connection(stream, peer, router, limits, &mut stop).await;
                    metrics.connections_open.dec();
                    drop(permit);
                });
            }
            Err(_) => {
                metrics.connections_refused.inc();
                tokio::spawn(refuse(stream, limits.write_timeout));
            }
        }
    }
    drop(listener);
    close_live();
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    stop: &mut watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(limits.write_timeout));
    let io = TokioIo::new(Box::pin(stream));
    let service = router.map_request(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    let connection = builder
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(target: "web", %error, "connection ended");
                }
                return;
            }
            changed = stop.changed(), if !*stop.borrow() => {
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Tells a connection beyond the cap that the server is busy, then closes it.
async fn refuse(mut stream: TcpStream, write_timeout: Duration) {
    let _ = tokio::time::timeout(write_timeout, async {
        stream.write_all(BUSY_RESPONSE).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_response_states_its_body_length() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["error"], "unavailable");
    }
}
