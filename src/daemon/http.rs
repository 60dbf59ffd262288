//! The optional `metrics_listen` endpoint: `GET /metrics` (Prometheus) and `GET /healthz`.
//!
//! It is bound before `READY=1`, so a taken port fails the start instead of going unnoticed. It serves
//! no secrets and changes nothing, but it does reveal org and channel names: keep it on loopback or
//! behind a firewall.

use super::health::Health;
use crate::audit::Context;
use crate::metrics;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the handlers read.
#[derive(Clone)]
struct Endpoints {
    /// The current context (its config says which orgs and channels to report).
    contexts: watch::Receiver<Arc<Context>>,
    health: Health,
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    contexts: watch::Receiver<Arc<Context>>,
    health: Health,
    mut stop: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .with_state(Endpoints { contexts, health });
    let shutdown = async move { super::stopped(&mut stop).await };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "the metrics endpoint stopped");
    }
}

async fn metrics_page(State(ep): State<Endpoints>, headers: HeaderMap) -> Response {
    let ctx = ep.contexts.borrow().clone();
    let orgs: Vec<String> = ctx.config.orgs.iter().map(|o| o.name.clone()).collect();
    let channels: Vec<String> = ctx.config.channels.iter().map(|c| c.name.clone()).collect();
    let figures = ctx
        .store
        .call(move |c| Ok(metrics::read_figures(c, &orgs, &channels)?))
        .await;
    match figures {
        Ok(figures) => {
            // Prometheus asks for OpenMetrics first when it can read it; anything else (curl, older
            // scrapers) gets the classic text format.
            let openmetrics = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let content_type = if openmetrics {
                metrics::OPENMETRICS_CONTENT_TYPE
            } else {
                metrics::PROMETHEUS_CONTENT_TYPE
            };
            (
                [(header::CONTENT_TYPE, content_type)],
                metrics::render(&figures, openmetrics),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %super::chain(&e), "cannot read metrics from the database");
            (StatusCode::SERVICE_UNAVAILABLE, "the database did not answer\n").into_response()
        }
    }
}

async fn healthz(State(ep): State<Endpoints>) -> Response {
    match ep.health.check().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
