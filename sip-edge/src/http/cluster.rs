//! The HTTP API with several nodes (DESIGN §5, §6 "Several nodes"): calls admitted by any
//! node, the pools cluster-wide, and `GET /v1/cluster`.
//!
//! A call this node does not hold is looked up in the cluster store. An end or release for it
//! is computed by the engine from the stored row ([`tollgate_engine::Engine::end_stored`]) and
//! applied by the store only while the call is still reserved there, so it takes effect
//! exactly once whichever node receives it, the admitting node alive or dead; an extension is
//! made in the store ([`tollgate_engine::Engine::extend_stored`]) and adopted by the admitting
//! node. A Call-ID two nodes admitted (a proxy's failover) names one call: its end settles one
//! admission and releases the others ([`release_duplicates`]). A call admitted
//! in the last second may not have reached the store yet (its node delivers its rows about
//! once a second): the lookup waits for it up to [`ARRIVAL_WAIT`] before answering 404.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tollgate_engine::pools::MonthKey;
use tollgate_engine::{CallError, CallState, Ending, Settlement, StoredCall};

use super::{call_error, error, extension_json, settlement_json, store_error, Api};
use crate::cluster::calls::{primary, Finish};
use crate::cluster::driver::{Parked, PARK_MAX};
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

/// The rows of a Call-ID in the cluster store with their admitting nodes, waiting briefly for
/// one not delivered yet; 404 when none comes (or with one node).
async fn rows(api: &Api, call_id: &str) -> Result<Vec<(String, StoredCall)>, Response> {
    let Some(driver) = api.server.cluster.get() else {
        return Err(call_error(CallError::UnknownCall));
    };
    let deadline = tokio::time::Instant::now() + ARRIVAL_WAIT;
    loop {
        match driver.calls(call_id).await {
            Ok(rows) if !rows.is_empty() => return Ok(rows),
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => return Err(call_error(CallError::UnknownCall)),
            Err(e) => return Err(cluster_error(&e)),
        }
    }
}

/// A call from the cluster store (the row that stands for it, [`primary`]).
pub(super) async fn call(api: &Api, call_id: &str) -> Result<StoredCall, Response> {
    let rows = rows(api, call_id).await?;
    primary(&rows)
        .map(|(_, c)| c.clone())
        .ok_or_else(|| call_error(CallError::UnknownCall))
}

/// Ends a call another node admitted (see the module doc); other admissions of the same
/// Call-ID still reserved are released.
pub(super) async fn end(api: &Api, call_id: &str, ending: Ending) -> Response {
    let Some(driver) = api.server.cluster.get() else {
        return call_error(CallError::UnknownCall);
    };
    let rows = match rows(api, call_id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some((owner, row)) = primary(&rows).cloned() else {
        return call_error(CallError::UnknownCall);
    };
    let answer = if row.state == CallState::Reserved {
        let (ended, settlement) = api.server.engine.end_stored(row, ending, now());
        match driver.finish(&owner, &ended).await {
            Ok(Finish::Finished) => settlement,
            // Another end came first: its figures, nothing changed by this one.
            Ok(Finish::AlreadyFinal(first)) => first.settlement(false),
            Ok(Finish::Unknown) => return call_error(CallError::UnknownCall),
            Err(e) => return cluster_error(&e),
        }
    } else {
        row.settlement(false)
    };
    release_duplicates(api, &rows, &owner).await;
    Json(settlement_json(&answer)).into_response()
}

/// The other admissions of a Call-ID still reserved, `except` the one ended: the proxy sent
/// the same INVITE to a second node (a failover on timeout) and both admitted it. The end
/// report ends the call, so they are released. A failure here is logged; the admitting node
/// releases its admission anyway when it next delivers (`Delivered::duplicates`).
pub(super) async fn release_duplicates(api: &Api, rows: &[(String, StoredCall)], except: &str) {
    let Some(driver) = api.server.cluster.get() else {
        return;
    };
    for (owner, row) in rows {
        if owner == except || row.state != CallState::Reserved {
            continue;
        }
        let (released, _) = api
            .server
            .engine
            .end_stored(row.clone(), Ending::Released, now());
        match driver.finish(owner, &released).await {
            Ok(Finish::Finished) => tracing::info!(
                call_id = %row.call_id,
                node = %owner,
                "the same Call-ID was admitted on another node too (a proxy's failover): released there"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(call_id = %row.call_id, node = %owner, error = %e,
                "could not release another node's admission of this Call-ID (it will on delivery)"),
        }
    }
}

/// Extends a call another node admitted, in the store ([`crate::cluster::calls`]): the
/// admitting node adopts the longer grant within a second or two.
pub(super) async fn extend(api: &Api, call_id: &str) -> Response {
    let Some(driver) = api.server.cluster.get() else {
        return call_error(CallError::UnknownCall);
    };
    let rows = match rows(api, call_id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some((owner, row)) = primary(&rows) else {
        return call_error(CallError::UnknownCall);
    };
    if row.state != CallState::Reserved {
        return call_error(CallError::NotActive(row.state));
    }
    match driver.extend(&api.server.engine, owner, call_id).await {
        Ok(Ok(x)) => Json(extension_json(call_id, &x)).into_response(),
        Ok(Err(e)) => call_error(e),
        Err(e) => cluster_error(&e),
    }
}

/// This node's share could not pay for an extension of its own call: the driver draws what it
/// needs, as for a call that waits ([`crate::cluster::driver::Driver::park`]); then the
/// extension is tried again (by the caller). Waits at most the park's limit.
pub(super) async fn top_up(api: &Api, call_id: &str) {
    let (Some(driver), Some(short)) = (
        api.server.cluster.get(),
        api.server.engine.extension_short(call_id),
    ) else {
        return;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let parked = Parked {
        short,
        since: std::time::Instant::now(),
        retry: Box::new(move |_| {
            let _ = tx.send(());
        }),
    };
    if driver.park(parked).is_ok() {
        let _ = tokio::time::timeout(PARK_MAX + Duration::from_millis(500), rx).await;
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

/// The answer for a Call-ID this node's admission of which was released because another
/// node's admission of the same INVITE carried the call (see [`cluster::release_duplicates`]):
/// that admission's figures; otherwise `s`.
pub(super) fn standing(s: Settlement, rows: &[(String, StoredCall)]) -> Settlement {
    match primary(rows) {
        Some((_, c))
            if !s.changed && s.state == CallState::Released && c.state == CallState::Settled =>
        {
            c.settlement(false)
        }
        _ => s,
    }
}

/// With several nodes, before this node ends a call it holds: the store's rows of the
/// Call-ID. `Err`: this node's admission was ended on another node first (the store keeps the
/// first end): this node ends it the same way and answers the first end's figures,
/// `changed: false`. `Ok`: go on here, then release the other nodes' admissions of the same
/// Call-ID ([`release_duplicates`]); empty with one node or the store away (the local end
/// reaches the store later, and loses to an earlier one there).
pub(super) async fn before_local_end(
    api: &Api,
    call_id: &str,
) -> Result<Vec<(String, StoredCall)>, Response> {
    let Some(driver) = api.server.cluster.get() else {
        return Ok(Vec::new());
    };
    let rows = driver.calls(call_id).await.unwrap_or_default();
    let mine = rows
        .iter()
        .find(|(node, _)| node == driver.node_id())
        .filter(|(_, row)| row.state != CallState::Reserved);
    if let Some((_, row)) = mine {
        crate::cluster::driver::ended_elsewhere(&api.server, row, now());
        let answer = standing(row.settlement(false), &rows);
        return Err(Json(settlement_json(&answer)).into_response());
    }
    Ok(rows)
}
