//! `tollgate serve [--config config/tollgate.toml]` (DESIGN §5): the daemon.
//!
//! Binds every `[sip].listen` address (UDP: one `SO_REUSEPORT` socket per core; TCP: one
//! listener) and `[http].listen`, logs each bound address on stderr
//! (`listening transport=udp addr=127.0.0.1:5060`), then serves until SIGTERM or SIGINT: stop
//! accepting, let TCP connections finish what they hold, exit 0. SIGHUP reloads the directory
//! and the reloadable part of `tollgate.toml`, the trusted peers (a bad file keeps what runs:
//! [`crate::server::reconfigure`]), and so does a change to the directory's files with
//! `[directory].watch = true` ([`crate::watch`]). Config or directory errors: exit 2, one line
//! each.
//!
//! Before serving, the ledger (`[ledger]`, DESIGN §6) is opened and this month's pools, the
//! credit balances and the open reservations are rebuilt from it; reservations that outlived
//! grant + grace while the daemon was down settle as `expired` at once. On shutdown the ledger
//! commits what is queued before the process exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use super::setup;
use crate::cluster::driver::Driver;
use crate::config::{Checked, ListenKind};
use crate::http::{self, Api};
use crate::ledger::Ledger;
use crate::server::{now, Server};
use crate::transport::{self, tcp, udp};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon configuration file.
    #[arg(long, default_value = "config/tollgate.toml")]
    pub config: PathBuf,
}

/// How long shutdown waits for the tasks to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn run(args: Args) -> anyhow::Result<i32> {
    // Configuration errors are printed (one line each) before any log exists: the log's own
    // settings are in the file being checked.
    let Some(setup) = setup::load_or_report(&args.config, true) else {
        return Ok(2);
    };
    crate::logging::init(&setup.daemon.file.log);
    let daemon = setup.daemon.clone();
    let directory = setup.directory.clone();
    let token = setup.token.clone();
    let tls = setup.tls.clone();
    let ledger_settings = setup::ledger_settings(&args.config, &daemon.file);
    let watch = daemon.file.directory.watch.then(|| directory.clone());
    let engine = setup::engine(setup)?;
    tracing::info!(
        users = engine.snapshot().users.len(),
        directory = %directory.display(),
        "directory loaded"
    );
    let cluster = daemon.file.cluster.enabled().then(|| {
        Arc::new(Driver::new(crate::cluster::driver::Settings::of(
            &daemon.file.cluster,
            &daemon.http.to_string(),
        )))
    });
    let ledger = match ledger_settings {
        None => {
            tracing::warn!("[ledger].enabled = false: reservations live in memory only");
            Ledger::memory()
        }
        Some(settings) => {
            let path = settings.path.clone();
            match Ledger::open(settings, now()) {
                Ok((ledger, recovery)) => {
                    engine.seq_floor(recovery.next_seq);
                    if let Some(c) = &cluster {
                        // What this node admitted reaches the store again (idempotent): the
                        // rows of the instant before a crash are not lost to the cluster.
                        c.outbox.push(recovery.calls.iter().cloned());
                    }
                    let r = engine.restore(recovery.calls, now());
                    tracing::info!(
                        ledger = %path.display(),
                        open = r.open,
                        ended = r.ended,
                        "ledger recovered"
                    );
                    ledger
                }
                Err(e) => {
                    eprintln!("tollgate.toml: [ledger].path: {}: {e}", path.display());
                    return Ok(2);
                }
            }
        }
    };
    let server = Arc::new(
        Server::new(
            engine,
            daemon.trusted.clone(),
            daemon.file.sip.untrusted,
            directory,
            ledger,
        )
        .with_reload_guard(daemon.file.directory.reload_guard())
        .with_config_file(args.config.clone(), daemon.file.clone())
        .with_tcp_limits(tcp::Limits::of(&daemon.file.sip))
        .with_api_token(token)
        .with_tls(tls),
    );
    server.start_ledger().context("starting the ledger")?;
    if let Some(c) = cluster {
        tracing::info!(
            node = c.node_id(),
            "several nodes: pools and credits in the cluster store"
        );
        server.start_cluster(c);
    }
    // Reservations that expired while the daemon was down settle now; pools are recorded.
    server.expire();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(server, daemon, watch))
}

async fn serve(
    server: Arc<Server>,
    daemon: Checked,
    watch: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut udp_threads = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    for l in &daemon.listen {
        match l.kind {
            ListenKind::Udp => {
                let sockets =
                    udp::bind(l.addr, cores).with_context(|| format!("binding udp:{}", l.addr))?;
                if let Some(addr) = sockets.first().and_then(|s| s.0.local_addr().ok()) {
                    tracing::info!(transport = "udp", %addr, sockets = sockets.len(), "listening");
                }
                // A thread per socket, off the runtime (see `transport::udp`).
                for (s, sender) in sockets {
                    let (server, shutdown) = (Arc::clone(&server), shutdown.clone());
                    let thread = std::thread::Builder::new()
                        .name(format!("tollgate-udp-{}", udp_threads.len()))
                        .spawn(move || udp::serve(server, s, sender, shutdown))
                        .context("starting a UDP thread")?;
                    udp_threads.push(thread);
                }
            }
            ListenKind::Tcp | ListenKind::Tls => {
                // A tls: listener is a tcp: one with a handshake first; `check` refuses it
                // without `[tls]`, and serving reads it.
                let (name, tls) = match l.kind {
                    ListenKind::Tls => (
                        "tls",
                        Some(
                            server
                                .tls()
                                .cloned()
                                .context("tls: listener without [tls]")?,
                        ),
                    ),
                    _ => ("tcp", None),
                };
                let listener = tokio::net::TcpListener::bind(l.addr)
                    .await
                    .with_context(|| format!("binding {name}:{}", l.addr))?;
                let addr = listener.local_addr()?;
                tracing::info!(transport = name, %addr, "listening");
                tasks.spawn(tcp::serve(
                    Arc::clone(&server),
                    listener,
                    tls,
                    shutdown.clone(),
                ));
            }
        }
    }
    if let Some(directory) = watch {
        crate::watch::spawn(&mut tasks, Arc::clone(&server), directory, shutdown.clone());
    }
    let listener = tokio::net::TcpListener::bind(daemon.http)
        .await
        .with_context(|| format!("binding http {}", daemon.http))?;
    let https = daemon.file.http.tls;
    let transport = if https { "https" } else { "http" };
    tracing::info!(transport, addr = %listener.local_addr()?, "listening");
    let app = http::router(Api {
        server: Arc::clone(&server),
    });
    let tls = match (https, server.tls()) {
        (false, _) => None,
        (true, Some(tls)) => Some(Arc::clone(tls)),
        // `check` refuses `[http].tls = true` without `[tls]`, and serving reads it.
        (true, None) => anyhow::bail!("[http].tls = true without [tls]"),
    };
    let http_stop = shutdown.clone();
    let failures = server.metrics.tls_handshake_failures.clone();
    tasks.spawn(async move {
        let r = http::serve(listener, tls, failures, app, http_stop).await;
        if let Err(e) = r {
            tracing::error!(error = %e, "http server");
        }
    });
    if let Some(driver) = server.cluster.get() {
        tasks.spawn(Arc::clone(driver).run(Arc::clone(&server), shutdown.clone()));
    }
    let ticker_server = Arc::clone(&server);
    let mut ticker_stop = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => ticker_server.expire(),
                () = transport::stopped(&mut ticker_stop) => return,
            }
        }
    });

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    tracing::info!("ready");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let s = Arc::clone(&server);
                // Errors are logged and counted by `reload`.
                let _ = tokio::task::spawn_blocking(move || s.reload(false)).await;
            }
        }
    }
    tracing::info!("shutting down: draining");
    let _ = stop.send(true);
    // The UDP threads see the flag within `udp::RECV_TIMEOUT`.
    tasks.spawn_blocking(move || {
        for t in udp_threads {
            let _ = t.join();
        }
    });
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown grace elapsed, exiting with tasks still running");
    }
    // Everything admitted so far is committed before the process exits.
    let s = Arc::clone(&server);
    let _ = tokio::task::spawn_blocking(move || s.ledger.stop()).await;
    tracing::info!("stopped");
    Ok(0)
}
