//! The HTTP endpoint for Prometheus and Kubernetes probes.
//!
//! - `GET /metrics`: Prometheus text format.
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 when every cluster answered its last probe and every assigned partition
//!   is running; otherwise 503 with the reasons, one per line (readiness).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::status::{Connectivity, StatusBoard};

/// Metrics path.
pub const METRICS_PATH: &str = "/metrics";
/// Liveness path.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness path.
pub const READYZ_PATH: &str = "/readyz";
/// The port the packaging uses for `--metrics-addr`.
pub const DEFAULT_PORT: u16 = 9404;

/// What the endpoint reports on.
pub struct HttpState {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Partition states.
    pub status: Arc<StatusBoard>,
    /// Cluster reachability.
    pub connectivity: Arc<Connectivity>,
    /// How many distinct clusters the flows use.
    pub expected_clusters: usize,
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        if tokio::time::timeout(Duration::from_secs(10), handle(stream, &state)).await.is_err() {
                            tracing::debug!("metrics connection timed out");
                        }
                    });
                }
                Err(e) => tracing::warn!("metrics endpoint: accept failed: {e}"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(mut stream: TcpStream, state: &HttpState) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let request = String::from_utf8_lossy(&buf);
    let mut parts = request
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = path.split('?').next().unwrap_or_default();
    let (code, content_type, body) = match (method, path) {
        ("GET", METRICS_PATH) => return write_metrics(stream, &state.metrics).await,
        ("GET", HEALTHZ_PATH) => (200, "text/plain", "ok\n".to_owned()),
        ("GET", READYZ_PATH) => match state
            .status
            .readiness(&state.connectivity, state.expected_clusters)
        {
            // With scale-out, what this replica owns, flow by flow.
            Ok(()) => (
                200,
                "text/plain",
                std::iter::once("ready".to_owned())
                    .chain(state.connectivity.roles())
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n",
            ),
            Err(reasons) => (503, "text/plain", reasons.join("\n") + "\n"),
        },
        ("GET", _) => (
            404,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".to_owned(),
        ),
        _ => (405, "text/plain", "only GET\n".to_owned()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Writes the metrics a chunk at a time, the body ended by closing the connection: at 10,000
/// partitions the text is over 20 MB, and rendering it whole would hold all of it at once.
async fn write_metrics(mut stream: TcpStream, metrics: &Metrics) {
    const CHUNK: usize = 64 * 1024;
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut scrape = metrics.scrape();
    let mut buf = Vec::with_capacity(CHUNK + 1024);
    while scrape.next_chunk(&mut buf, CHUNK) {
        if stream.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = stream.shutdown().await;
}
