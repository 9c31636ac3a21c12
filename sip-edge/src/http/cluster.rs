//! The HTTP API with several nodes (DESIGN §5, §6 "Several nodes"): calls admitted by any
//! node, the pools cluster-wide, and `GET /v1/cluster`.
//!
//! A call this node does not hold is looked up in the cluster store. An end or release for it
//! is computed by the engine from the stored row ([`tollgate_engine::Engine::end_stored`]) and
//! applied by the store only while the call is still reserved there, so it takes effect
//! exactly once whichever node receives it, the admitting node alive or dead. A call admitted
//! in the last second may not have reached the store yet (its node delivers its rows about
//! once a second): the lookup waits for it up to [`ARRIVAL_WAIT`] before answering 404.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tollgate_engine::pools::MonthKey;
use tollgate_engine::{CallError, Ending, StoredCall};

use super::{call_error, error, settlement_json, store_error, Api};
use crate::cluster::calls::Finish;
use crate::cluster::store::{ClusterError, PoolRow};
use crate::server::now;

/// How long a lookup waits for a call that may still be on its way to the store.
pub const ARRIVAL_WAIT: Duration = Duration::from_millis(2500);

/// A cluster store failure as the API says it: 503 `store_unavailable`, or 404.
fn cluster_error(e: &ClusterError) -> Response {
    match e {
        ClusterError::UnknownCall => call_error(CallError::UnknownCall),
        e => store_error(&format!("cluster store: {e}")),
    }
}

/// A call from the cluster store, waiting briefly for one not delivered yet; 404 when it
/// never comes (or with one node).
pub(super) async fn call(api: &Api, call_id: &str) -> Result<StoredCall, Response> {
    let Some(driver) = api.server.cluster.get() else {
        return Err(call_error(CallError::UnknownCall));
    };
    let deadline = tokio::time::Instant::now() + ARRIVAL_WAIT;
    loop {
        match driver.call(call_id).await {
            Ok(Some(c)) => return Ok(c),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(None) => return Err(call_error(CallError::UnknownCall)),
            Err(e) => return Err(cluster_error(&e)),
        }
    }
}

/// Ends a call another node admitted (see the module doc).
pub(super) async fn end(api: &Api, call_id: &str, ending: Ending) -> Response {
    let Some(driver) = api.server.cluster.get() else {
        return call_error(CallError::UnknownCall);
    };
    let row = match call(api, call_id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (ended, settlement) = api.server.engine.end_stored(row, ending, now());
    if !settlement.changed {
        return Json(settlement_json(&settlement)).into_response();
    }
    match driver.finish(&ended).await {
        Ok(Finish::Finished) => Json(settlement_json(&settlement)).into_response(),
        // Another end came first: its figures, nothing changed by this one.
        Ok(Finish::AlreadyFinal(first)) => {
            Json(settlement_json(&first.settlement(false))).into_response()
        }
        Ok(Finish::Unknown) => call_error(CallError::UnknownCall),
        Err(e) => cluster_error(&e),
    }
}

/// The JSON of a pool of the cluster store: `GET /v1/pools`'s fields, plus `held_seconds`
/// (unused shares nodes hold); `remaining_seconds` = capacity − used − reserved − held.
fn pool_row_json(p: &PoolRow) -> Value {
    json!({
        "tenant": &*p.key.tenant,
        "region": p.key.region.as_str(),
        "sku": &*p.key.sku,
        "kind": p.key.kind.as_str(),
        "month": p.month.to_string(),
        "capacity_seconds": p.capacity_seconds,
        "used_seconds": p.used_seconds,
        "reserved_seconds": p.reserved_seconds,
        "held_seconds": p.held_seconds,
        "remaining_seconds": p.remaining_seconds(),
    })
}

/// `GET /v1/pools` with several nodes: the cluster-wide figures of the store.
pub(super) async fn pools(api: &Api, month: MonthKey, tenant: Option<&str>) -> Response {
    let Some(driver) = api.server.cluster.get() else {
        return error(StatusCode::NOT_FOUND, "one node", "not_found");
    };
    match driver.pools(month).await {
        Ok(rows) => {
            let pools: Vec<Value> = rows
                .iter()
                .filter(|p| tenant.is_none_or(|t| *p.key.tenant == *t))
                .map(pool_row_json)
                .collect();
            Json(json!({ "pools": pools })).into_response()
        }
        Err(e) => cluster_error(&e),
    }
}

/// `GET /v1/cluster`: this node, the nodes the store knows with when each was last seen, and
/// the shares each holds. With one node: this node alone, no store.
pub(super) async fn view(State(api): State<Api>) -> Response {
    let Some(driver) = api.server.cluster.get() else {
        return Json(json!({ "node": null, "store": null, "nodes": [] })).into_response();
    };
    let t = now();
    // This node's shares as its engine holds them now (the store's `held` also counts what
    // its calls took and have not delivered yet).
    let local: Vec<Value> = api
        .server
        .engine
        .shares(t)
        .iter()
        .filter_map(|of| {
            let s = of.share()?;
            Some(json!({
                "account": crate::cluster::driver::account_of(of),
                "free": s.free(),
                "drained": s.is_drained(),
            }))
        })
        .filter(|v| v["free"] != 0 || v["drained"] == true)
        .collect();
    match driver.view().await {
        Ok(v) => Json(json!({
            "node": driver.node_id(),
            "store": "up",
            "now": t,
            "shares": local,
            "nodes": v.nodes.iter().map(|n| json!({
                "node_id": n.node_id,
                "http": n.http,
                "started_at": n.started_at,
                "seen_at": n.seen_at,
                "shares": n.shares.iter().map(|(account, held, expires_at)| json!({
                    "account": account,
                    "held": held,
                    "expires_at": expires_at,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => Json(json!({
            "node": driver.node_id(),
            "store": format!("unreachable: {e}"),
            "now": t,
            "shares": local,
            "nodes": [],
        }))
        .into_response(),
    }
}

/// With several nodes, a call this node holds may have been ended on another node first (the
/// store keeps the first end): then this node ends it the same way and answers the first
/// end's figures, `changed: false`. `None`: go on here (one node, the call still reserved in
/// the store or not there yet, or the store away: the local end reaches it later and loses
/// to an earlier one there).
pub(super) async fn ended_elsewhere(api: &Api, call_id: &str) -> Option<Response> {
    let driver = api.server.cluster.get()?;
    let row = driver.call(call_id).await.ok()??;
    if row.state == tollgate_engine::CallState::Reserved {
        return None;
    }
    crate::cluster::driver::ended_elsewhere(&api.server.engine, &row, now());
    Some(Json(settlement_json(&row.settlement(false))).into_response())
}
