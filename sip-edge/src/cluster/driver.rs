//! The node's side of several nodes (DESIGN §6): one task that keeps this node's shares, its
//! place in the store and its calls' rows in step with the cluster store, once a second and
//! whenever a call waits for a share.
//!
//! Each tick, in this order (each step tolerates the store being away and resumes by itself):
//! 1. **Connect** (and create or migrate the tables) if not connected.
//! 2. **Heartbeat**: this node is alive; its shares' leases are renewed.
//! 3. **Capacities**: what this node's directory says each account holds, when it changed
//!    (start, reload, month rollover). Every node computes the same figures from the same
//!    directory, so whichever writes last writes the same.
//! 4. **Outbox** (on a connection and task of its own, every 250 ms, so a large delivery
//!    never delays a waiting call): the rows of this node's calls committed to its ledger,
//!    delivered in one transaction per 2,000 (idempotent: a row delivered twice changes
//!    nothing). At start, the whole recovery set of the ledger goes first, before the shares
//!    are adopted.
//! 5. **Shares**: each account's share sized by [`tollgate_engine::shares::plan`] from the
//!    recent burn and what the account has left; drawn or given back.
//! 6. **Calls ended elsewhere**: calls this node admitted that another node ended (the proxy
//!    sent the end report there) are ended here too, so this node never expires them.
//! 7. **Expired leases** of silent nodes go back to their accounts (any node may do it; each
//!    share returns once).
//!
//! Calls that found their share short wait here ([`Driver::park`]), served on a task and
//! connection of their own (a tick never delays them): the driver draws what they need (and a
//! few seconds of the account's burn) for all their accounts at once, pipelined, then has each
//! decided again; a call waits at most [`PARK_MAX`], then is answered
//! `503 store_unavailable` (the proxy tries another node).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tollgate_engine::pools::MonthKey;
use tollgate_engine::shares::{plan, Plan, Share, ShareOf, Short, Sizing};
use tollgate_engine::{CallError, CallState, Ending, Engine, Extension, StoredCall};

use super::calls::Finish;
use super::store::{
    credits_account, pool_account, spend_account, ClusterError, ClusterStore, ClusterView, PoolRow,
};
use crate::server::Server;

/// How long a call may wait for a share before it is answered `503 store_unavailable`.
pub const PARK_MAX: Duration = Duration::from_millis(1500);

/// Rows kept for the store at most while it is away; beyond, the oldest are dropped from
/// memory (they stay in the ledger and are delivered again at the next start).
const OUTBOX_MAX: usize = 1 << 20;

/// A draw for waiting calls also takes this many seconds of the recent burn (the tick sizes
/// the share properly within a second, within the account's fair part).
const PARKED_TOP_UP_SECONDS: f64 = 10.0;

/// How often the outbox delivers.
const OUTBOX_EVERY: Duration = Duration::from_millis(250);

/// A node counts as alive (for share sizing) if seen within this many seconds.
const ALIVE_WITHIN: u64 = 10;

/// Rows per delivery transaction.
const DELIVER_BATCH: usize = 2000;

/// `[cluster]` as the driver uses it.
#[derive(Clone, Debug)]
pub struct Settings {
    pub url: String,
    pub node_id: String,
    pub lease_seconds: u64,
    /// This node's `[http].listen`, shown to the other nodes.
    pub http: String,
}

impl Settings {
    /// From `[cluster]`; an empty `node_id` is the host name.
    pub fn of(c: &crate::config::ClusterTable, http: &str) -> Settings {
        let node_id = if c.node_id.trim().is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "tollgate".into())
        } else {
            c.node_id.trim().to_string()
        };
        Settings {
            url: c.store.trim().to_string(),
            node_id,
            lease_seconds: c.lease_seconds,
            http: http.to_string(),
        }
    }
}

/// The rows of this node's committed calls on their way to the store.
#[derive(Debug, Default)]
pub struct Outbox {
    rows: Mutex<Vec<StoredCall>>,
}

impl Outbox {
    /// Rows committed to the ledger (the server, after each commit).
    pub fn push(&self, rows: impl IntoIterator<Item = StoredCall>) {
        let mut q = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        q.extend(rows);
        if q.len() > OUTBOX_MAX {
            let n = q.len() - OUTBOX_MAX;
            q.drain(..n);
            tracing::error!(
                dropped = n,
                "cluster outbox full while the store is away: rows left to the next start"
            );
        }
    }

    fn take(&self) -> Vec<StoredCall> {
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn put_back(&self, mut rows: Vec<StoredCall>) {
        let mut q = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.append(&mut q);
        *q = rows;
    }
}

/// The burn of one share: up at once when calls come faster (a share sized to the old rate
/// would make calls wait), down slowly, over about a minute, when they slow.
#[derive(Debug, Default)]
struct Burn {
    taken: u64,
    per_second: f64,
}

impl Burn {
    /// Folds in the share's `taken` counter after `dt` seconds; returns the rate.
    fn update(&mut self, taken: u64, dt: f64) -> u64 {
        let rate = taken.saturating_sub(self.taken) as f64 / dt.max(0.001);
        self.taken = taken;
        if rate > self.per_second {
            self.per_second = rate;
        } else {
            // A minute's time constant: a call every 30 s keeps its pool's share.
            let a = (dt / 60.0).min(1.0);
            self.per_second += a * (rate - self.per_second);
        }
        if rate > 0.0 && self.per_second < 1.0 {
            self.per_second = 1.0;
        }
        self.per_second.ceil() as u64
    }
}

/// One account this node holds a share of, as the driver follows it from tick to tick.
struct Tracked {
    /// Its name in the store ([`account_of`]).
    name: String,
    of: ShareOf,
    burn: Burn,
    /// `burn.per_second` (f64 bits), for the task that serves waiting calls.
    rate: Arc<AtomicU64>,
    /// The capacity last written to the store.
    capacity: u64,
}

/// Each account's recent burn (f64 bits per second) by name, as the tick last measured it: what
/// a draw for waiting calls adds on top of their need.
type Rates = HashMap<String, Arc<AtomicU64>>;

/// The driver's own state between ticks.
#[derive(Default)]
struct State {
    /// The accounts of the engine's shares, in the engine's order; rebuilt only when that set
    /// changes (a reload, the month rollover), so a tick formats no name and hashes no string.
    tracked: Vec<Tracked>,
    /// Accounts no longer in the engine whose shares have not gone back yet.
    gone: Vec<String>,
    last: Option<Instant>,
    /// Changes to this node's calls made by others, seen up to here.
    changed_cursor: i64,
}

impl State {
    /// Follows the engine's accounts: the same set as the last tick (the same counters, in
    /// the same order) costs a pointer comparison each. Says what changed: the accounts that
    /// are gone (last month's pools after the rollover, a pool a reload removed: their shares
    /// go back), whether a capacity changed, and the new set's rates when it was rebuilt.
    fn follow(&mut self, shares: Vec<ShareOf>) -> Followed {
        let same = shares.len() == self.tracked.len()
            && shares
                .iter()
                .zip(&self.tracked)
                .all(|(a, t)| same_account(a, &t.of));
        if same {
            let mut capacity_changed = false;
            for t in &mut self.tracked {
                let c = t.of.capacity();
                if c != t.capacity {
                    t.capacity = c;
                    capacity_changed = true;
                }
            }
            return Followed {
                gone: Vec::new(),
                capacity_changed,
                rates: None,
            };
        }
        let mut old: HashMap<String, (Burn, Arc<AtomicU64>)> = self
            .tracked
            .drain(..)
            .map(|t| (t.name, (t.burn, t.rate)))
            .collect();
        self.tracked = shares
            .into_iter()
            .map(|of| {
                let name = account_of(&of);
                let (burn, rate) = old.remove(&name).unwrap_or_default();
                Tracked {
                    burn,
                    rate,
                    capacity: of.capacity(),
                    name,
                    of,
                }
            })
            .collect();
        let rates = self
            .tracked
            .iter()
            .map(|t| (t.name.clone(), Arc::clone(&t.rate)))
            .collect();
        Followed {
            gone: old.into_keys().collect(),
            capacity_changed: true,
            rates: Some(Arc::new(rates)),
        }
    }
}

/// What [`State::follow`] found.
struct Followed {
    gone: Vec<String>,
    capacity_changed: bool,
    /// The rebuilt set's rates (to publish), if it was rebuilt.
    rates: Option<Arc<Rates>>,
}

/// Whether two shares are of the same live account (the same counter).
fn same_account(a: &ShareOf, b: &ShareOf) -> bool {
    match (a, b) {
        (ShareOf::Pool(x), ShareOf::Pool(y)) => Arc::ptr_eq(x, y),
        (ShareOf::Credits(x), ShareOf::Credits(y)) => Arc::ptr_eq(x, y),
        (ShareOf::Spend(x), ShareOf::Spend(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// A call waiting for a share ([`Driver::park`]).
pub struct Parked {
    /// What it lacks.
    pub short: Short,
    /// When it first waited.
    pub since: Instant,
    /// Decides the call again and answers it; `false`: a share still short is answered
    /// `503 store_unavailable` instead of waiting again.
    pub retry: Box<dyn FnOnce(bool) + Send>,
}

/// The cluster driver of one node.
pub struct Driver {
    settings: Settings,
    /// Rows of committed calls for the store.
    pub outbox: Arc<Outbox>,
    store: tokio::sync::Mutex<Option<ClusterStore>>,
    /// The outbox's own connection.
    outbox_store: tokio::sync::Mutex<Option<ClusterStore>>,
    /// Waiting calls' own connection: a tick (which may draw for thousands of accounts at
    /// once after a start) never delays them.
    parked_store: tokio::sync::Mutex<Option<ClusterStore>>,
    /// The accounts' recent burn, as the tick last measured it.
    rates: Mutex<Arc<Rates>>,
    /// Whether the store has the capacities of the accounts this node holds now.
    capacities_written: AtomicBool,
    parked: tokio::sync::mpsc::Sender<Parked>,
    parked_rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Parked>>,
    /// Whether the last exchange with the store succeeded (a change is logged once).
    up: AtomicBool,
    /// Whether this node has been in step with the store since it started (`/readyz`).
    in_step: AtomicBool,
    logged: AtomicU64,
}

/// Calls waiting for a share at most; beyond, `503 store_unavailable` at once.
const PARKED_MAX: usize = 4096;

impl Driver {
    pub fn new(settings: Settings) -> Driver {
        let (tx, rx) = tokio::sync::mpsc::channel(PARKED_MAX);
        Driver {
            settings,
            outbox: Arc::default(),
            store: tokio::sync::Mutex::new(None),
            outbox_store: tokio::sync::Mutex::new(None),
            parked_store: tokio::sync::Mutex::new(None),
            rates: Mutex::default(),
            capacities_written: AtomicBool::new(false),
            parked: tx,
            parked_rx: tokio::sync::Mutex::new(rx),
            up: AtomicBool::new(false),
            in_step: AtomicBool::new(false),
            logged: AtomicU64::new(0),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// Whether this node has adopted its shares and delivered its rows since it started: until
    /// then it cannot admit a call that needs a pool or credits (`/readyz` says not ready).
    pub fn in_step(&self) -> bool {
        self.in_step.load(Ordering::Acquire)
    }

    /// Queues a call whose share was short; gives it back if too many wait already (answer
    /// it `503 store_unavailable`).
    pub fn park(&self, p: Parked) -> Result<(), Parked> {
        self.parked.try_send(p).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(p)
            | tokio::sync::mpsc::error::TrySendError::Closed(p) => p,
        })
    }

    /// Runs until `shutdown`: a tick a second, and parked calls as they come.
    pub async fn run(
        self: Arc<Self>,
        server: Arc<Server>,
        mut shutdown: crate::transport::Shutdown,
    ) {
        let mut state = State::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Waiting calls, on a task and connection of their own.
        let parked = {
            let (driver, server, shutdown) =
                (Arc::clone(&self), Arc::clone(&server), shutdown.clone());
            tokio::spawn(async move { driver.serve_waiting(&server, shutdown).await })
        };
        // The outbox, on its own connection, a few times a second.
        let outbox = {
            let (driver, server, mut shutdown) =
                (Arc::clone(&self), Arc::clone(&server), shutdown.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(OUTBOX_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            if driver.in_step() {
                                if let Err(e) = driver.deliver(&server).await {
                                    tracing::debug!(error = %e, "cluster outbox");
                                }
                            }
                        }
                        () = crate::transport::stopped(&mut shutdown) => return,
                    }
                }
            })
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let r = self.tick(&server, &mut state).await;
                    self.note(&server, r);
                }
                () = crate::transport::stopped(&mut shutdown) => {
                    let _ = parked.await;
                    let _ = outbox.await;
                    let r = self.deliver(&server).await;
                    self.note(&server, r);
                    return;
                }
            }
        }
    }

    /// Serves waiting calls as they come, until `shutdown` (then they are answered at once).
    async fn serve_waiting(&self, server: &Server, mut shutdown: crate::transport::Shutdown) {
        let mut rx = self.parked_rx.lock().await;
        let mut waiting: Vec<Parked> = Vec::new();
        loop {
            // Calls still waiting wait for another node to give its share back: they are looked
            // at again after 100 ms, or sooner with the next call that comes.
            let idle = waiting.is_empty();
            let again = async move {
                if idle {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            tokio::select! {
                Some(p) = rx.recv() => {
                    waiting.push(p);
                    while waiting.len() < PARKED_MAX {
                        match rx.try_recv() {
                            Ok(p) => waiting.push(p),
                            Err(_) => break,
                        }
                    }
                }
                () = again => {}
                () = crate::transport::stopped(&mut shutdown) => {
                    for p in waiting.drain(..) {
                        (p.retry)(false);
                    }
                    return;
                }
            }
            if !self.in_step() {
                // Not in step with the store yet: nothing to draw against.
                for p in waiting.drain(..) {
                    (p.retry)(false);
                }
            }
            if !waiting.is_empty() {
                let r = self.serve_parked(server, &mut waiting).await;
                self.note(server, r);
            }
        }
    }

    /// The rows of a Call-ID as the store holds them, with the node that admitted each
    /// ([`ClusterStore::calls`]).
    pub async fn calls(&self, call_id: &str) -> Result<Vec<(String, StoredCall)>, ClusterError> {
        self.with_store(async |store| store.calls(call_id).await)
            .await
    }

    /// Ends `owner`'s call, which this node does not hold: `row` ended by
    /// [`Engine::end_stored`]; applied only if the store still has it reserved
    /// ([`ClusterStore::finish`]).
    pub async fn finish(&self, owner: &str, row: &StoredCall) -> Result<Finish, ClusterError> {
        let node = &self.settings.node_id;
        self.with_store(async |store| store.finish(node, owner, row).await)
            .await
    }

    /// Extends `owner`'s call, which this node does not hold, in the store
    /// ([`ClusterStore::extend`] with [`Engine::extend_stored`]).
    pub async fn extend(
        &self,
        engine: &Engine,
        owner: &str,
        call_id: &str,
    ) -> Result<Result<Extension, CallError>, ClusterError> {
        let node = &self.settings.node_id;
        let now = crate::server::now();
        self.with_store(async |store| {
            store
                .extend(node, owner, call_id, |row, available| {
                    engine.extend_stored(row, available, now)
                })
                .await
        })
        .await
    }

    /// The pools of `month`, cluster-wide.
    pub async fn pools(&self, month: MonthKey) -> Result<Vec<PoolRow>, ClusterError> {
        self.with_store(async |store| store.pools(month).await)
            .await
    }

    /// The nodes and their shares (`GET /v1/cluster`).
    pub async fn view(&self) -> Result<ClusterView, ClusterError> {
        self.with_store(async |store| store.cluster().await).await
    }

    /// Records how the last exchange went; logs a failure at most once a minute.
    fn note(&self, server: &Server, r: Result<(), ClusterError>) {
        server.metrics.cluster_store_up.set(i64::from(r.is_ok()));
        match r {
            Ok(()) => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(node = %self.settings.node_id, "cluster store reachable");
                }
            }
            Err(e) => {
                self.up.store(false, Ordering::Release);
                let t = crate::server::now() / 60;
                if self.logged.swap(t, Ordering::AcqRel) != t {
                    tracing::error!(error = %e, "cluster store: calls beyond this node's shares get 503 store_unavailable");
                }
            }
        }
    }

    /// Runs `f` with the store, connecting first if need be; a failure that means the store
    /// is away drops the connection (the next call connects again).
    async fn with_store<T>(
        &self,
        f: impl AsyncFnOnce(&mut ClusterStore) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        self.with_conn(&self.store, f).await
    }

    /// [`Driver::with_store`] on the connection `slot` (shares and calls use one, the outbox
    /// another, so a large delivery never delays a waiting call's draw).
    async fn with_conn<T>(
        &self,
        slot: &tokio::sync::Mutex<Option<ClusterStore>>,
        f: impl AsyncFnOnce(&mut ClusterStore) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(connect(&self.settings).await?);
        }
        let Some(store) = guard.as_mut() else {
            return Err(ClusterError::NotConnected);
        };
        let r = f(store).await;
        if matches!(r, Err(ref e) if e.is_unreachable()) {
            *guard = None;
        }
        r
    }

    /// One tick (see the module doc).
    async fn tick(&self, server: &Server, st: &mut State) -> Result<(), ClusterError> {
        let engine = &server.engine;
        let now = crate::server::now();
        let at = Instant::now();
        let dt = st.last.map_or(1.0, |l| at.duration_since(l).as_secs_f64());
        st.last = Some(at);
        let s = &self.settings;
        let followed = st.follow(engine.shares(now));
        st.gone.extend(followed.gone);
        if followed.capacity_changed {
            self.capacities_written.store(false, Ordering::Release);
        }
        if let Some(rates) = followed.rates {
            *self.rates.lock().unwrap_or_else(|p| p.into_inner()) = rates;
        }
        self.with_store(async |store| {
            store
                .heartbeat(&s.node_id, &s.http, s.lease_seconds, now)
                .await?;
            if !self.capacities_written.load(Ordering::Acquire) {
                let capacities: Vec<(&str, u64)> = st
                    .tracked
                    .iter()
                    .map(|t| (t.name.as_str(), t.capacity))
                    .collect();
                store.set_capacities(&capacities).await?;
                self.capacities_written.store(true, Ordering::Release);
            }
            Ok(())
        })
        .await?;
        if !self.in_step() {
            // This node's rows first (a restart's ledger), then its shares: the delivered
            // calls took theirs out of what the store says it holds.
            self.deliver(server).await?;
            self.adopt(engine, now).await?;
            self.in_step.store(true, Ordering::Release);
        }
        let grant = engine.config().grants.grant_seconds;
        let (accounts, nodes) = self
            .with_store(async |store| {
                let names: Vec<&str> = st.tracked.iter().map(|t| t.name.as_str()).collect();
                let a = store.accounts_in_order(&names, &s.node_id).await?;
                let n = store.nodes_alive(now, ALIVE_WITHIN).await?;
                Ok((a, n))
            })
            .await?;
        // Each share's plan; the exchanges then go out together.
        let mut draws: Vec<(&str, &Share, u64, u64)> = Vec::new();
        let mut returns: Vec<(&str, &Share, u64)> = Vec::new();
        for (t, account) in st.tracked.iter_mut().zip(&accounts) {
            let (name, of) = (t.name.as_str(), &t.of);
            let Some(share) = of.share() else { continue };
            let burn = t.burn.update(share.taken(), dt);
            t.rate.store(t.burn.per_second.to_bits(), Ordering::Relaxed);
            let Some(account) = account else {
                continue;
            };
            let sizing = Sizing {
                free: share.free(),
                burn_per_second: burn,
                grant: unit_grant(of, grant),
                available: account.available(),
                nodes,
            };
            // A user's allowance is drawn call by call, never held ahead: what is left of a
            // draw goes back.
            let planned = match of {
                ShareOf::Spend(_) if sizing.free > 0 => Plan::GiveBack(sizing.free),
                ShareOf::Spend(_) => Plan::Keep,
                _ => plan(sizing),
            };
            match planned {
                Plan::Keep => {}
                Plan::Draw { want, min } => draws.push((name, share, want, min)),
                Plan::GiveBack(n) => {
                    let n = share.reclaim(n);
                    if n > 0 {
                        returns.push((name, share, n));
                    }
                }
            }
            // Drained: nothing left beyond the shares and no other node holds one. (A parked
            // call's draw that falls short also drains it: `serve_parked`.)
            share.set_drained(account.available() == 0 && account.held_by_others() == 0);
        }
        server
            .metrics
            .share_exchanges
            .inc_by((draws.len() + returns.len()) as u64);
        let (drawn, returned) = self
            .with_store(async |store| {
                let store: &ClusterStore = store;
                let drawn = join_all(draws.iter().map(|(name, _, want, min)| {
                    store.draw(&s.node_id, name, *want, *min, s.lease_seconds, now)
                }));
                let returned = join_all(
                    returns
                        .iter()
                        .map(|(name, _, n)| store.give_back(&s.node_id, name, *n)),
                );
                Ok(futures_util::future::join(drawn, returned).await)
            })
            .await?;
        let mut failed = None;
        for ((_, share, _, _), got) in draws.iter().zip(drawn) {
            match got {
                Ok(n) => share.add(n),
                Err(e) => failed = Some(e),
            }
        }
        for ((_, share, n), r) in returns.iter().zip(returned) {
            if let Err(e) = r {
                // Not returned: still this node's.
                share.add(*n);
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        while let Some(name) = st.gone.last() {
            // Its rows are delivered (above): what the store still holds for this node is an
            // unused share.
            self.with_store(async |store| store.give_back(&s.node_id, name, u64::MAX).await)
                .await?;
            server.metrics.share_exchanges.inc();
            st.gone.pop();
        }
        let cursor = st.changed_cursor;
        let (changed, next) = self
            .with_store(async |store| store.calls_changed_since(&s.node_id, cursor).await)
            .await?;
        st.changed_cursor = next;
        for row in changed {
            if row.state == CallState::Reserved {
                // Extended on another node: this node's record follows.
                if engine.adopt_extension(&row) {
                    server.record(&row.call_id);
                }
            } else {
                ended_elsewhere(server, &row, now);
            }
        }
        self.with_store(async |store| store.expire_shares(now).await)
            .await?;
        Ok(())
    }

    /// After a (re)start, once this node's rows are delivered: what the store says this node
    /// still holds is its share again; shares of accounts it no longer has (an old month)
    /// go back.
    async fn adopt(&self, engine: &Engine, now: u64) -> Result<(), ClusterError> {
        let node = &self.settings.node_id;
        let view = self.with_store(async |store| store.cluster().await).await?;
        let held: Vec<(String, i64)> = view
            .nodes
            .into_iter()
            .filter(|n| n.node_id == *node)
            .flat_map(|n| n.shares.into_iter().map(|(a, h, _)| (a, h)))
            .collect();
        let mine: HashMap<String, ShareOf> = engine
            .shares(now)
            .into_iter()
            .map(|x| (account_of(&x), x))
            .collect();
        for (account, amount) in held {
            let amount = u64::try_from(amount).unwrap_or(0);
            match mine.get(&account).and_then(ShareOf::share) {
                Some(share) => share.add(amount),
                None => {
                    self.with_store(async |store| store.give_back(node, &account, amount).await)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Delivers the outbox, batch after batch; what fails goes back to its front.
    async fn deliver(&self, server: &Server) -> Result<(), ClusterError> {
        let rows = self.outbox.take();
        if rows.is_empty() {
            return Ok(());
        }
        let node = &self.settings.node_id;
        let mut done = 0;
        let r = self
            .with_conn(&self.outbox_store, async |store| {
                for chunk in rows.chunks(DELIVER_BATCH) {
                    let now = crate::server::now();
                    let release = |row| server.engine.end_stored(row, Ending::Released, now).0;
                    let d = store.deliver(node, chunk, release).await?;
                    for row in &d.already_final {
                        // Ended on another node first: this node ends it the same way.
                        ended_elsewhere(server, row, now);
                    }
                    for call_id in &d.duplicates {
                        // The same INVITE admitted on another node too, and ended there.
                        if server.engine.release(call_id, now).is_ok_and(|s| s.changed) {
                            tracing::info!(%call_id, "admitted on another node too (a proxy's failover) and ended there: released here");
                            server.record(call_id);
                        }
                    }
                    if d.unbacked > 0 {
                        tracing::warn!(
                            seconds_or_micros = d.unbacked,
                            "calls delivered after their node's share expired: admitted anyway"
                        );
                    }
                    done += chunk.len();
                }
                Ok(())
            })
            .await;
        if r.is_err() {
            self.outbox.put_back(rows[done..].to_vec());
        }
        r
    }

    /// Draws for the accounts parked calls lack, then has each decided again.
    async fn serve_parked(
        &self,
        server: &Server,
        waiting: &mut Vec<Parked>,
    ) -> Result<(), ClusterError> {
        let rates = Arc::clone(&self.rates.lock().unwrap_or_else(|p| p.into_inner()));
        let capacities_written = self.capacities_written.load(Ordering::Acquire);
        let now = crate::server::now();
        let s = &self.settings;
        let mut needs: HashMap<String, (u64, ShareOf)> = HashMap::new();
        for p in waiting.iter() {
            let e = needs
                .entry(account_of(&p.short.of))
                .or_insert((0, p.short.of.clone()));
            e.0 += p.short.needed;
        }
        // Per account: what its waiting calls need beyond the share, and what to draw: that,
        // plus what the share should hold anyway at the recent burn (the tick tops up once a
        // second; calls should not wait for it).
        let grant = server.engine.config().grants.grant_seconds;
        let mut asks: Vec<(&str, &Share, u64, u64)> = Vec::new();
        // Accounts the store may not know yet: a user's allowance at its first call, any
        // account after a reload the tick has not written yet. A draw on an account the store
        // does not have would find it drained.
        let mut capacities: Vec<(&str, u64)> = Vec::new();
        for (name, (total, of)) in &needs {
            let Some(share) = of.share() else { continue };
            let need = total.saturating_sub(share.free());
            if need > 0 {
                let burn = rates
                    .get(name)
                    .map_or(0.0, |r| f64::from_bits(r.load(Ordering::Relaxed)));
                // No burn known yet (a cold start): two more grants, as the tick's smallest
                // share, so the account's next calls do not wait too. A user's allowance:
                // what the calls need, no more.
                let cushion = match of {
                    ShareOf::Spend(_) => 0,
                    _ if burn > 0.0 => (burn * PARKED_TOP_UP_SECONDS) as u64,
                    _ => 2 * unit_grant(of, grant),
                };
                if matches!(of, ShareOf::Spend(_)) || !capacities_written {
                    capacities.push((name, of.capacity()));
                }
                let want = need.saturating_add(cushion);
                asks.push((name, share, need, want));
            }
        }
        server.metrics.share_exchanges.inc_by(asks.len() as u64);
        let r = self
            .with_conn(&self.parked_store, async |store| {
                let store: &ClusterStore = store;
                if !capacities.is_empty() {
                    store.set_capacities(&capacities).await?;
                }
                // Whatever is there (min 1): with what the share holds it may still pay for a
                // call; if not, the account is drained and the share grants what it has.
                let got = join_all(asks.iter().map(|(name, _, _, want)| {
                    store.draw(&s.node_id, name, *want, 1, s.lease_seconds, now)
                }))
                .await;
                let got: Vec<u64> = got.into_iter().collect::<Result<_, _>>()?;
                let short: Vec<String> = asks
                    .iter()
                    .zip(&got)
                    .filter(|((_, _, need, _), g)| **g < *need)
                    .map(|((name, ..), _)| name.to_string())
                    .collect();
                let others = if short.is_empty() {
                    HashMap::new()
                } else {
                    store.accounts(&short, &s.node_id).await?
                };
                Ok((got, others))
            })
            .await;
        let mut again: Vec<String> = Vec::new();
        let result = match r {
            Ok((got, others)) => {
                for ((name, share, need, _), got) in asks.iter().zip(got) {
                    share.add(got);
                    if got < *need {
                        if others.get(*name).is_some_and(|a| a.held_by_others() > 0) {
                            // Another node holds a share it will give back (the pool is low).
                            again.push(name.to_string());
                        } else {
                            share.set_drained(true);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        let up = result.is_ok();
        let mut keep = Vec::new();
        for p in waiting.drain(..) {
            let name = account_of(&p.short.of);
            if up && again.contains(&name) && p.since.elapsed() < PARK_MAX {
                keep.push(p);
            } else {
                // Decided again: admitted from the share now topped up, or answered as a
                // single node would once drained; `store_unavailable` if the store is away.
                (p.retry)(false);
            }
        }
        *waiting = keep;
        result
    }
}

/// A call this node admitted was ended on another node: end it here the same way (and write
/// it to the ledger), so it is neither expired here nor charged twice (the store keeps the
/// first end).
pub fn ended_elsewhere(server: &Server, row: &StoredCall, now: u64) {
    let engine = &server.engine;
    let r = match row.state {
        CallState::Released => engine.release(&row.call_id, now),
        CallState::Reserved => return,
        _ => engine.settle(&row.call_id, row.billable_seconds, now),
    };
    if let Ok(s) = r {
        if s.changed {
            tracing::info!(call_id = %row.call_id, state = s.state.as_str(), "ended on another node");
            server.record(&row.call_id);
        }
    }
}

/// One grant of an account, in its unit: seconds for a pool; for credits, a grant's cost at
/// one currency unit a minute (the sizing only needs an order of magnitude).
fn unit_grant(of: &ShareOf, grant_seconds: u64) -> u64 {
    match of {
        ShareOf::Pool(_) => grant_seconds,
        ShareOf::Credits(_) | ShareOf::Spend(_) => grant_seconds / 60 * 1_000_000,
    }
}

/// Connects to the store, or says why not.
async fn connect(s: &Settings) -> Result<ClusterStore, ClusterError> {
    let mut store = ClusterStore::connect(&s.url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The store name of a share's account.
pub fn account_of(share: &ShareOf) -> String {
    match share {
        ShareOf::Pool(c) => pool_account(c.month, &c.key),
        ShareOf::Credits(a) => credits_account(&a.tenant),
        ShareOf::Spend(a) => spend_account(a.month, &a.tenant, &a.user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_follows_the_rate_and_keeps_a_trickle_alive() {
        let mut b = Burn::default();
        assert_eq!(b.update(0, 1.0), 0);
        assert_eq!(b.update(1800, 1.0), 1800, "up at once");
        // Down slowly; a call every 30 s keeps at least one second's worth.
        for _ in 0..29 {
            b.update(1800, 1.0);
        }
        assert!(b.update(1800, 1.0) >= 1);
    }

    #[test]
    fn the_outbox_keeps_order_when_a_delivery_fails() {
        let o = Outbox::default();
        let row = |id: &str| StoredCall {
            seq: 1,
            call_id: id.into(),
            basis: tollgate_engine::Basis::Emergency,
            tenant: "t".into(),
            user: "u".into(),
            dialed: "911".into(),
            destination: None,
            route: None,
            funding: tollgate_engine::StoredFunding::None,
            reserved_seconds: 0,
            reserved_money: tollgate_engine::credits::Money::ZERO,
            started_at: 0,
            expires_at: 0,
            state: CallState::Reserved,
            billable_seconds: 0,
            charged_seconds: 0,
            charged_money: tollgate_engine::credits::Money::ZERO,
            ended_at: None,
            version: 0,
        };
        o.push([row("a"), row("b")]);
        let taken = o.take();
        o.push([row("c")]);
        o.put_back(taken);
        let ids: Vec<String> = o.take().into_iter().map(|c| c.call_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
