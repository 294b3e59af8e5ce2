//! What every Ocelot daemon (operator, agent) shares, so both behave the same: the API client
//! from a kubeconfig or the service account, shutdown on SIGTERM/SIGINT, and `/metrics`
//! (Prometheus text), `/healthz` (the process serves) and `/readyz` (its own readiness).
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// The API client: from `kubeconfig` when given, else in-cluster or the default kubeconfig.
/// Logs to standard error, filtered by `RUST_LOG` (default `info`); colour codes only on a
/// terminal, so log files and collectors get plain `key=value` fields.
pub fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    use anyhow::Context;
    let Some(path) = kubeconfig.filter(|p| !p.as_os_str().is_empty()) else {
        return Client::try_default()
            .await
            .context("no --kubeconfig and no in-cluster or default kubeconfig");
    };
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("read kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {}", path.display()))?;
    Client::try_from(config).context("build the API client")
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

/// What a daemon exposes.
pub trait Endpoints: Send + Sync + 'static {
    /// The metrics in the Prometheus/OpenMetrics text format.
    fn metrics(&self) -> String;
    /// Ok when ready to serve; else why not.
    fn ready(&self) -> Result<(), String>;
}

/// Serves the endpoints until the task is aborted. Binding errors are returned at once; the
/// bound address is logged as `addr=` (with port 0 the kernel picks one, as tests do).
pub async fn serve(
    addr: SocketAddr,
    endpoints: Arc<dyn Endpoints>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let endpoints = endpoints.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(respond(&*endpoints, req.uri().path()))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "endpoint connection");
                }
            });
        }
    }))
}

fn respond(e: &dyn Endpoints, path: &str) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            e.metrics(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => match e.ready() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}
