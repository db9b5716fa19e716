//! What `weir --ui ADDRESS` serves while queries run: a page listing the session's streaming
//! queries, a page per query with live charts, the JSON API those pages read, and Prometheus
//! metrics at `/metrics`. Everything the pages need is compiled into the binary.

mod api;
pub mod metrics;
mod process;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use log::warn;

use crate::error::{Error, Result};
use crate::queries::QueryRegistry;
use api::{ApiError, ProgressQuery, QueryDetail, QuerySummary};
pub use metrics::Metrics;

/// What the handlers read.
#[derive(Debug, Clone)]
struct ServerState {
    queries: Arc<QueryRegistry>,
    metrics: Arc<Metrics>,
}

/// Starts serving on `address` in the current Tokio runtime; returns the address bound (port 0
/// picks a free port).
pub fn serve(
    address: SocketAddr,
    queries: Arc<QueryRegistry>,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot serve the web UI on {address}: {e}"),
            ))
        })?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::Io(std::io::Error::other(
            "the web UI needs a Tokio runtime: build the engine inside one",
        ))
    })?;
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = router(ServerState { queries, metrics });
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("the web UI on {bound} stopped: {e}");
        }
    });
    Ok(bound)
}

fn router(state: ServerState) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/query/{name}",
            get(|| async { asset("text/html; charset=utf-8", QUERY_HTML) }),
        )
        .route(
            "/assets/weir.js",
            get(|| async { asset("text/javascript", WEIR_JS) }),
        )
        .route(
            "/assets/weir.css",
            get(|| async { asset("text/css", WEIR_CSS) }),
        )
        .route("/api/queries", get(list_queries))
        .route("/api/queries/{name}", get(query_detail))
        .route("/api/queries/{name}/progress", get(query_progress))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { not_found("no such page; the pages are / and /query/NAME".into()) })
        .with_state(state)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const QUERY_HTML: &str = include_str!("assets/query.html");
const WEIR_JS: &str = include_str!("assets/weir.js");
const WEIR_CSS: &str = include_str!("assets/weir.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn not_found(error: String) -> Response {
    (StatusCode::NOT_FOUND, axum::Json(ApiError { error })).into_response()
}

async fn list_queries(State(state): State<ServerState>) -> Response {
    let list: Vec<QuerySummary> = state
        .queries
        .all()
        .iter()
        .map(|q| QuerySummary::of(q))
        .collect();
    axum::Json(list).into_response()
}

async fn query_detail(State(state): State<ServerState>, Path(name): Path<String>) -> Response {
    match state.queries.get(&name) {
        Ok(query) => axum::Json(QueryDetail::of(&query)).into_response(),
        Err(e) => not_found(e.to_string()),
    }
}

async fn query_progress(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    Query(asked): Query<ProgressQuery>,
) -> Response {
    match state.queries.get(&name) {
        Ok(query) => axum::Json(api::progress(&query, asked.last)).into_response(),
        Err(e) => not_found(e.to_string()),
    }
}

async fn metrics_text(State(state): State<ServerState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.queries),
    )
        .into_response()
}
