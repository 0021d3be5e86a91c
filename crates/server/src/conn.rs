//! Connections: HTTP/1.1 through hyper with a deadline for each request's
//! headers (axum's own `serve` sets none, so a client sending its headers a
//! byte at a time would hold a connection forever), and a graceful shutdown
//! on SIGTERM or Ctrl-C that refuses new connections and finishes the
//! requests in flight. Request bodies have their own deadline (`api.rs`).

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Serves `app` on `listener` until `stop` resolves, then waits for the open
/// connections to finish their requests. A client must send a request's
/// headers within `read_timeout` of the connection opening or going idle
/// (so idle keep-alive connections close after it too).
pub async fn serve(listener: TcpListener, app: Router, read_timeout: Duration, stop: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A failed accept: a connection reset before it was accepted is the
/// client's business; anything else (out of file descriptors) is logged and
/// waited out, so that the loop does not spin on it.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        tracing::error!("cannot accept a connection: {e}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Resolves on SIGTERM (how containers and systemd stop a service) or SIGINT
/// (Ctrl-C). The handlers are installed here, before the server listens, so
/// that no signal finds the default action (exit at once) in place.
pub fn stop_signal() -> io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name}: finishing the requests in flight, then stopping");
    })
}
