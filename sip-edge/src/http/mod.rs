//! The HTTP API (DESIGN §5) with axum: health, metrics, and `/v1` for the proxy and operators.
//!
//! `/v1` needs `Authorization: Bearer <token>` when `[http].token_file` is set; without a token
//! it answers loopback clients only (DESIGN §3). Errors are `{"error": "...", "reason": "..."}`
//! with a fitting status: 400 bad input, 401/403 auth, 404 unknown call, 409 a call no longer
//! reserved, 422 no further grant (the reason says why), 500 a reload that failed, 503
//! `store_unavailable` when the ledger could not commit a change (it is kept in memory and
//! retried; the change stands). Unknown paths are `404 not_found`, wrong methods
//! `405 method_not_allowed` with `Allow`, and axum's own refusals (a query, a path or a body it
//! cannot read) keep their status but get the same JSON shape ([`json_errors`]), so a client
//! can read every refusal the same way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tollgate_engine::{CallError, Ending, Settlement, StoredCall, StoredFunding};

use tollgate_engine::conference::Service;

use crate::server::{now, Server};
use crate::store::StoreReader;

mod cluster;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    /// The bearer token for `/v1` is the server's ([`Server::api_token`]): a reload may
    /// change it.
    pub server: Arc<Server>,
}

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(api: Api) -> Router {
    let v1 = Router::new()
        .route("/v1/calls/{call_id}", get(call))
        .route("/v1/calls/{call_id}/end", post(end))
        .route("/v1/calls/{call_id}/extend", post(extend))
        .route("/v1/calls/{call_id}/release", post(release))
        .route("/v1/pools", get(pools))
        .route("/v1/tenants/{tenant}", get(tenant))
        .route("/v1/cluster", get(cluster::view))
        .route("/v1/decide", get(decide))
        .route("/v1/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(api.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint", "not_found") })
        // Axum adds the `Allow` header of the path to this answer.
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "method_not_allowed",
            )
        })
        .layer(middleware::map_response(json_errors))
        .with_state(api)
}

/// Serves `app` on `listener` until `shutdown`: HTTPS with `tls` (each handshake in a task of
/// its own, [`crate::tls::TlsListener`]), else plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<crate::tls::Tls>>,
    failures: crate::metrics::HandshakeFailures,
    app: Router,
    mut shutdown: crate::transport::Shutdown,
) -> std::io::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(tls) => {
            let failures = crate::tls::Failures {
                counters: failures,
                listener: "https",
            };
            let https = crate::tls::TlsListener::spawn(listener, tls, failures, shutdown.clone())?;
            // `tap_io` does nothing to the stream: it gives a listener of ours axum's
            // `ConnectInfo<SocketAddr>` (the loopback check of `/v1` needs the peer).
            use axum::serve::ListenerExt;
            axum::serve(https.tap_io(|_| ()), service)
                .with_graceful_shutdown(
                    async move { crate::transport::stopped(&mut shutdown).await },
                )
                .await
        }
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(
                    async move { crate::transport::stopped(&mut shutdown).await },
                )
                .await
        }
    }
}

/// Bodies of refusals axum writes itself, at most (they are a line of text).
const REFUSAL_BODY_LIMIT: usize = 64 * 1024;

/// Turns a client error that is not JSON (axum's rejections: a query, path or body it cannot
/// read, a body too large) into the JSON error of DESIGN §5, keeping its status and headers:
/// its text becomes `error`, its status `reason` (`bad_request`, `payload_too_large`, ...).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REFUSAL_BODY_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let name = status.canonical_reason().unwrap_or("client error");
    let reason = name.to_ascii_lowercase().replace([' ', '-'], "_");
    let message = if text.is_empty() {
        name.to_ascii_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let json = Json(json!({ "error": message, "reason": reason })).into_response();
    let (json_parts, body) = json.into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, body)
}

/// Whether `/v1` without a token answers this client: loopback, including an IPv4 loopback
/// client of a dual-stack (`[::]`) listener, which the socket reports as `::ffff:127.0.0.1`.
fn is_loopback_client(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Ready while the ledger commits (a failing ledger answers admissions `503 store_unavailable`,
/// so a balancer should prefer another instance), and with several nodes once this node is in
/// step with the cluster store (it then serves from its shares even if the store goes away).
async fn readyz(State(api): State<Api>) -> Response {
    if api.server.cluster.get().is_some_and(|c| !c.in_step()) {
        // Several nodes: not in step with the cluster store yet since start.
        return (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable\n").into_response();
    }
    if api.server.store_ok() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable\n").into_response()
    }
}

/// A JSON error (DESIGN §5).
fn error(status: StatusCode, error: &str, reason: &str) -> Response {
    (status, Json(json!({ "error": error, "reason": reason }))).into_response()
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let token = api.server.api_token();
    match &*token {
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
                .is_some_and(|c| is_loopback_client(c.0.ip()));
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
        CallError::ShareShort => store_error(
            "this node's share of the pool or balance is short and the cluster store gave no \
             more in time",
        ),
    }
}

/// `GET /v1/calls/{call_id}`: from memory while the call runs (and a while after), else from
/// the ledger.
async fn call(State(api): State<Api>, Path(call_id): Path<String>) -> Response {
    let stored = match api.server.engine.reservations().get(&call_id) {
        Some(r) => StoredCall::from_record(&call_id, &r),
        None => match stored_call(&api, &call_id).await {
            Ok(Some(c)) => c,
            Ok(None) => match cluster::call(&api, &call_id).await {
                Ok(c) => c,
                Err(r) => return r,
            },
            Err(r) => return r,
        },
    };
    Json(call_json(&stored)).into_response()
}

/// A call from the ledger (`None` with the in-memory seam, or if unknown).
async fn stored_call(api: &Api, call_id: &str) -> Result<Option<StoredCall>, Response> {
    if !api.server.ledger.is_durable() {
        return Ok(None);
    }
    let server = Arc::clone(&api.server);
    let id = call_id.to_string();
    let r = tokio::task::spawn_blocking(move || server.ledger.call(&id)).await;
    match r {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(store_error(&e.to_string())),
        Err(e) => Err(store_error(&e.to_string())),
    }
}

fn store_error(e: &str) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e, "store_unavailable")
}

/// The JSON of a call (DESIGN §5 `GET /v1/calls/{call_id}`); also the body of `tollgate cdrs
/// --format json` lines.
pub fn call_json(c: &StoredCall) -> Value {
    let (pool_region, pool_sku, pool_kind) = match &c.funding {
        StoredFunding::Pool { key, .. } => (
            Some(key.region.as_str()),
            Some(&*key.sku),
            Some(key.kind.as_str()),
        ),
        _ => (None, None, None),
    };
    let d = c.destination.as_ref();
    json!({
        "call_id": c.call_id,
        "state": c.state.as_str(),
        "tenant": &*c.tenant,
        "user": &*c.user,
        "dialed": &*c.dialed,
        "e164": d.map(|d| d.e164()),
        "region": d.map(|d| d.region.as_str()),
        "number_type": d.map(|d| d.number_type.as_str()),
        "basis": c.basis.as_str(),
        "pool": pool_kind.map(|kind| json!({
            "region": pool_region,
            "sku": pool_sku,
            "kind": kind,
            "month": c.month().to_string(),
        })),
        "month": c.month().to_string(),
        "reserved_seconds": c.reserved_seconds,
        "billable_seconds": c.billable_seconds,
        "charged_seconds": c.charged_seconds,
        "reserved_credits": c.reserved_money.to_string(),
        "charged_credits": c.charged_money.to_string(),
        "started_at": c.started_at,
        "expires_at": c.expires_at,
        "ended_at": c.ended_at,
    })
}

/// The largest `billable_seconds` an `end` accepts: 10^9 s, ~31.7 years
/// ([`tollgate_engine::config::MAX_SECONDS`]). A call is charged at most its reservation
/// (`[grants].max_call_seconds` in all), so a larger figure would change no charge; it is
/// refused rather than stored because anything past `i64::MAX` cannot be a SQLite integer,
/// and a settlement the ledger cannot store must never be accepted.
pub const MAX_BILLABLE_SECONDS: u64 = tollgate_engine::config::MAX_SECONDS;

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
    let end = match serde_json::from_str::<End>(&body) {
        Ok(e) if e.billable_seconds <= MAX_BILLABLE_SECONDS => e,
        Ok(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "billable_seconds must be an integer from 0 to {MAX_BILLABLE_SECONDS}, not {}",
                    e.billable_seconds
                ),
                "bad_request",
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"billable_seconds\": N}}, N an integer from 0 to \
                     {MAX_BILLABLE_SECONDS}: {e}"
                ),
                "bad_request",
            )
        }
    };
    let others = match cluster_rows(&api, &call_id).await {
        Ok(rows) => rows,
        Err(r) => return r,
    };
    match api
        .server
        .engine
        .settle(&call_id, end.billable_seconds, now())
    {
        Ok(s) if s.changed && !api.server.persist(&call_id).await => {
            store_error("settled, but the ledger could not commit it yet (retrying)")
        }
        Ok(s) => {
            release_duplicates(&api, &others).await;
            Json(settlement_json(&cluster::standing(s, &others))).into_response()
        }
        Err(CallError::UnknownCall) => {
            let ending = Ending::Settled {
                billable_seconds: end.billable_seconds,
            };
            not_in_memory(&api, &call_id, ending).await
        }
        Err(e) => call_error(e),
    }
}

/// `POST /v1/calls/{call_id}/release`: admitted but never connected (a CANCEL the proxy saw,
/// a failed attempt); the whole reservation goes back. Twice is harmless.
async fn release(State(api): State<Api>, Path(call_id): Path<String>) -> Response {
    let others = match cluster_rows(&api, &call_id).await {
        Ok(rows) => rows,
        Err(r) => return r,
    };
    match api.server.engine.release(&call_id, now()) {
        Ok(s) if s.changed && !api.server.persist(&call_id).await => {
            store_error("released, but the ledger could not commit it yet (retrying)")
        }
        Ok(s) => {
            release_duplicates(&api, &others).await;
            Json(settlement_json(&s)).into_response()
        }
        Err(CallError::UnknownCall) => not_in_memory(&api, &call_id, Ending::Released).await,
        Err(e) => call_error(e),
    }
}

/// With several nodes, for a call this node holds: the store's rows of its Call-ID, or the
/// answer if another node ended it first ([`cluster::before_local_end`]).
async fn cluster_rows(api: &Api, call_id: &str) -> Result<Vec<(String, StoredCall)>, Response> {
    if api.server.engine.reservations().contains(call_id) {
        cluster::before_local_end(api, call_id).await
    } else {
        Ok(Vec::new())
    }
}

/// After this node ended its admission of a Call-ID: the other nodes' admissions of it.
async fn release_duplicates(api: &Api, others: &[(String, StoredCall)]) {
    if let Some(driver) = api.server.cluster.get() {
        cluster::release_duplicates(api, others, driver.node_id()).await;
    }
}

/// Ending a call memory does not hold: ended long ago (the ledger's answer, nothing changes),
/// or, with several nodes, admitted by another node ([`cluster::end`]).
async fn not_in_memory(api: &Api, call_id: &str, ending: Ending) -> Response {
    match stored_call(api, call_id).await {
        Ok(Some(c)) => match api.server.engine.settle_stored(c) {
            Ok(s) => Json(settlement_json(&s)).into_response(),
            Err(e) => call_error(e),
        },
        Ok(None) if api.server.cluster.get().is_some() => cluster::end(api, call_id, ending).await,
        Ok(None) => call_error(CallError::UnknownCall),
        Err(r) => r,
    }
}

/// `POST /v1/calls/{call_id}/extend`: another grant. With several nodes: for a call of this
/// node whose share is short, after a draw; for another node's call, in the store
/// ([`cluster::extend`]).
async fn extend(State(api): State<Api>, Path(call_id): Path<String>) -> Response {
    let mut r = api.server.engine.extend(&call_id, now());
    if r == Err(CallError::ShareShort) {
        cluster::top_up(&api, &call_id).await;
        r = api.server.engine.extend(&call_id, now());
    }
    match r {
        Ok(_) if !api.server.persist(&call_id).await => {
            store_error("extended, but the ledger could not commit it yet (retrying)")
        }
        Ok(x) => Json(extension_json(&call_id, &x)).into_response(),
        Err(CallError::UnknownCall) if api.server.cluster.get().is_some() => {
            cluster::extend(&api, &call_id).await
        }
        Err(e) => call_error(e),
    }
}

/// The answer of `POST /v1/calls/{call_id}/extend` (DESIGN §5).
fn extension_json(call_id: &str, x: &tollgate_engine::Extension) -> Value {
    json!({
        "call_id": call_id,
        "granted_seconds": x.granted_seconds,
        "max_duration": x.max_duration,
        "expires_at": x.expires_at,
    })
}

/// The JSON of a pool (DESIGN §5 `GET /v1/pools`).
pub fn pool_json(p: &tollgate_engine::pools::PoolStatus) -> Value {
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
    /// `YYYY-MM`; another month than the current one is read from the ledger.
    month: Option<String>,
}

/// `GET /v1/tenants/{id}` (DESIGN §5): the tenant's credits (the live `balance` and the
/// `configured` figure of `tenants.toml`, money as strings like every amount of the API),
/// `user_spend_limit`, this month's credits `spend` per user (settled calls and what live
/// calls hold, as the limit counts it; users who spent nothing are left out) and `live_calls`,
/// its calls holding a reservation. From this node's memory: with several nodes, this node's
/// share of the balance and its own calls and spending.
async fn tenant(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let engine = &api.server.engine;
    let t = now();
    let snap = engine.snapshot();
    let Some(tenant) = snap.tenants.iter().find(|x| *x.id == *id) else {
        return error(StatusCode::NOT_FOUND, "unknown tenant", "unknown_tenant");
    };
    let mut spend: Vec<_> = engine
        .user_spend(t)
        .into_iter()
        .filter(|s| *s.tenant == *id && s.spent.0 != 0)
        .collect();
    spend.sort_by(|a, b| a.user.cmp(&b.user));
    let spend: Vec<Value> = spend
        .iter()
        .map(|s| json!({ "user": &*s.user, "spent": s.spent.to_string() }))
        .collect();
    let mut live_calls = 0u64;
    engine.reservations().for_each(|_, r| {
        if r.state == tollgate_engine::CallState::Reserved && *r.grant.tenant == *id {
            live_calls += 1;
        }
    });
    Json(json!({
        "tenant": &*tenant.id,
        "name": tenant.name,
        "currency": tenant.currency,
        "balance": engine.credits_balance(&id).map(|m| m.to_string()),
        "configured": tenant.credits.to_string(),
        "user_spend_limit": tenant.user_spend_limit.map(|m| m.to_string()),
        "month": engine.month(t).to_string(),
        "spend": spend,
        "live_calls": live_calls,
    }))
    .into_response()
}

/// `GET /v1/pools[?tenant=][&month=YYYY-MM]`.
async fn pools(State(api): State<Api>, Query(q): Query<PoolsQuery>) -> Response {
    let current = api.server.engine.month(now());
    let month = match q.month.as_deref().map(crate::ledger::rows::parse_month) {
        None => current,
        Some(Some(m)) => m,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "month must be YYYY-MM",
                "bad_request",
            )
        }
    };
    if api.server.cluster.get().is_some() {
        return cluster::pools(&api, month, q.tenant.as_deref()).await;
    }
    let statuses = if month == current {
        api.server.engine.pools(now())
    } else if !api.server.ledger.is_durable() {
        Vec::new()
    } else {
        let server = Arc::clone(&api.server);
        let r = tokio::task::spawn_blocking(move || server.ledger.pools(month)).await;
        match r {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return store_error(&e.to_string()),
            Err(e) => return store_error(&e.to_string()),
        }
    };
    let pools: Vec<Value> = statuses
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
    /// `call` (default) or `conference-dialout`.
    service: Option<String>,
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
    let service = match q.service.as_deref().map(Service::from_header) {
        None => Service::Call,
        Some(Some(s)) => s,
        Some(None) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(DecideError {
                    error: "service is `call` or `conference-dialout`",
                    reason: "bad_request",
                }),
            )
                .into_response()
        }
    };
    let engine = &api.server.engine;
    let d = engine.decide_as(&caller, &dial, service, now());
    Json(crate::decision::line(engine, &caller, &dial, service, &d)).into_response()
}

#[derive(Deserialize)]
struct ReloadQuery {
    /// Apply a directory that the reload guard would refuse (most users gone, an empty
    /// catalog): the operator means it.
    #[serde(default)]
    force: bool,
}

/// `POST /v1/reload[?force=true]`: the directory again; a bad one keeps the old snapshot.
async fn reload(State(api): State<Api>, Query(q): Query<ReloadQuery>) -> Response {
    let server = Arc::clone(&api.server);
    match tokio::task::spawn_blocking(move || server.reload(q.force)).await {
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn loopback_clients_include_ipv4_mapped_loopback() {
        for (ip, loopback) in [
            (IpAddr::V4(Ipv4Addr::LOCALHOST), true),
            (IpAddr::V4(Ipv4Addr::new(127, 9, 9, 9)), true),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), true),
            (IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()), true),
            (
                IpAddr::V6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped()),
                true,
            ),
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), false),
            (
                IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
                false,
            ),
            // IPv4-compatible (deprecated), not mapped: not loopback.
            (IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_compatible()), false),
            (IpAddr::V6("2001:db8::1".parse().unwrap()), false),
        ] {
            assert_eq!(is_loopback_client(ip), loopback, "{ip}");
        }
    }
}
