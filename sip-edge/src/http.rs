//! The HTTP API (DESIGN §5) with axum: health, metrics, and `/v1` for the proxy and operators.
//!
//! `/v1` needs `Authorization: Bearer <token>` when `[http].token_file` is set; without a token
//! it answers loopback clients only (DESIGN §3). Errors are `{"error": "...", "reason": "..."}`
//! with a fitting status: 400 bad input, 401/403 auth, 404 unknown call, 409 a call no longer
//! reserved, 422 no further grant (the reason says why), 500 a reload that failed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tollgate_engine::{CallError, Settlement};

use crate::server::{now, Server};

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub server: Arc<Server>,
    /// The bearer token for `/v1`, when configured.
    pub token: Option<Arc<str>>,
}

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(api: Api) -> Router {
    let v1 = Router::new()
        .route("/v1/calls/{call_id}", get(call))
        .route("/v1/calls/{call_id}/end", post(end))
        .route("/v1/calls/{call_id}/extend", post(extend))
        .route("/v1/pools", get(pools))
        .route("/v1/decide", get(decide))
        .route("/v1/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(api.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .merge(v1)
        .with_state(api)
}

/// A JSON error (DESIGN §5).
fn error(status: StatusCode, error: &str, reason: &str) -> Response {
    (status, Json(json!({ "error": error, "reason": reason }))).into_response()
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    match &api.token {
        Some(token) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
                return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad_token");
            }
        }
        None => {
            let loopback = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|c| c.0.ip().is_loopback());
            if !loopback {
                return error(StatusCode::FORBIDDEN, "forbidden", "loopback_only");
            }
        }
    }
    next.run(req).await
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(api): State<Api>) -> Response {
    api.server.refresh_gauges();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    (headers, api.server.metrics.encode()).into_response()
}

fn call_error(e: CallError) -> Response {
    match e {
        CallError::UnknownCall => error(StatusCode::NOT_FOUND, "unknown call", "unknown_call"),
        CallError::NotActive(state) => error(
            StatusCode::CONFLICT,
            &format!("call already {}", state.as_str()),
            state.as_str(),
        ),
        CallError::Exhausted(r) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no further grant",
            r.as_str(),
        ),
    }
}

/// `GET /v1/calls/{call_id}`.
async fn call(State(api): State<Api>, Path(call_id): Path<String>) -> Response {
    let Some(r) = api.server.engine.reservations().get(&call_id) else {
        return call_error(CallError::UnknownCall);
    };
    let pool = match &r.grant.funding {
        tollgate_engine::reservations::Funding::Pool(c) => Some(pool_json(&c.status())),
        _ => None,
    };
    Json(json!({
        "call_id": call_id,
        "state": r.state.as_str(),
        "tenant": &*r.grant.tenant,
        "basis": r.grant.basis.as_str(),
        "pool": pool,
        "reserved_seconds": r.grant.reserved_seconds,
        "billable_seconds": r.billable_seconds,
        "charged_seconds": r.charged_seconds,
        "started_at": r.grant.started_at,
        "expires_at": r.grant.expires_at,
        "ended_at": r.ended_at,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    billable_seconds: u64,
}

fn settlement_json(s: &Settlement) -> Value {
    json!({
        "call_id": s.call_id,
        "state": s.state.as_str(),
        "tenant": &*s.tenant,
        "basis": s.basis.as_str(),
        "reserved_seconds": s.reserved_seconds,
        "billable_seconds": s.billable_seconds,
        "charged_seconds": s.charged_seconds,
        "changed": s.changed,
    })
}

/// `POST /v1/calls/{call_id}/end` `{"billable_seconds": N}`: settles (twice is harmless).
async fn end(State(api): State<Api>, Path(call_id): Path<String>, body: String) -> Response {
    let end: End = match serde_json::from_str(&body) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"billable_seconds\": N}}: {e}"),
                "bad_request",
            )
        }
    };
    match api
        .server
        .engine
        .settle(&call_id, end.billable_seconds, now())
    {
        Ok(s) => Json(settlement_json(&s)).into_response(),
        Err(e) => call_error(e),
    }
}

/// `POST /v1/calls/{call_id}/extend`: another grant.
async fn extend(State(api): State<Api>, Path(call_id): Path<String>) -> Response {
    match api.server.engine.extend(&call_id, now()) {
        Ok(x) => Json(json!({
            "call_id": call_id,
            "granted_seconds": x.granted_seconds,
            "max_duration": x.max_duration,
            "expires_at": x.expires_at,
        }))
        .into_response(),
        Err(e) => call_error(e),
    }
}

fn pool_json(p: &tollgate_engine::pools::PoolStatus) -> Value {
    json!({
        "tenant": &*p.key.tenant,
        "region": p.key.region.as_str(),
        "sku": &*p.key.sku,
        "kind": p.key.kind.as_str(),
        "month": format!("{:04}-{:02}", p.month.year(), p.month.month()),
        "capacity_seconds": p.capacity_seconds,
        "used_seconds": p.used_seconds,
        "reserved_seconds": p.reserved_seconds,
        "remaining_seconds": p.remaining_seconds,
    })
}

#[derive(Deserialize)]
struct PoolsQuery {
    tenant: Option<String>,
}

/// `GET /v1/pools[?tenant=]`.
async fn pools(State(api): State<Api>, Query(q): Query<PoolsQuery>) -> Response {
    let pools: Vec<Value> = api
        .server
        .engine
        .pools(now())
        .iter()
        .filter(|p| q.tenant.as_deref().is_none_or(|t| *p.key.tenant == *t))
        .map(pool_json)
        .collect();
    Json(json!({ "pools": pools })).into_response()
}

#[derive(Deserialize)]
struct DecideQuery {
    caller: Option<String>,
    dial: Option<String>,
}

#[derive(Serialize)]
struct DecideError {
    error: &'static str,
    reason: &'static str,
}

/// `GET /v1/decide?caller=&dial=`: a dry run, as `tollgate decide --json`.
async fn decide(State(api): State<Api>, Query(q): Query<DecideQuery>) -> Response {
    let (Some(caller), Some(dial)) = (q.caller, q.dial) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(DecideError {
                error: "caller and dial are required",
                reason: "bad_request",
            }),
        )
            .into_response();
    };
    let engine = &api.server.engine;
    let d = engine.decide(&caller, &dial, now());
    Json(crate::cli::decide::line(engine, &caller, &dial, &d)).into_response()
}

/// `POST /v1/reload`: the directory again; a bad one keeps the old snapshot.
async fn reload(State(api): State<Api>) -> Response {
    let server = Arc::clone(&api.server);
    match tokio::task::spawn_blocking(move || server.reload()).await {
        Ok(Ok(users)) => Json(json!({ "reloaded": true, "users": users })).into_response(),
        Ok(Err(errors)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({ "error": errors.join("; "), "reason": "reload_failed", "errors": errors }),
            ),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            "reload_failed",
        ),
    }
}
