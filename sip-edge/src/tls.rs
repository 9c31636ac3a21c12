//! TLS (DESIGN §3, §9): the `[tls]` certificate, for `tls:` SIP listeners (RFC 3261 §26.2.1:
//! a proxy reaches us over TLS, framed as over TCP) and for HTTPS (`[http].tls = true`).
//!
//! rustls with the `ring` provider. The certificate, its key and the client CA are read into one
//! [`ServerConfig`] held behind an `ArcSwap`: every connection takes the config current when it
//! is accepted, so a reload ([`Tls::prepare`], then [`Tls::apply`]) gives new connections the new
//! certificate while connections already open keep theirs. A reload whose files do not read or
//! do not match keeps the running config, and the reload reports the error.
//!
//! With `client_ca`, a client must present a certificate signed by one of its CAs (verified by
//! rustls' `WebPkiClientVerifier`): how a proxy proves who it is, the mutual TLS between
//! SIP servers of RFC 3261 §26.3.2.2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsTable;
use crate::metrics::{HandshakeFailures, HandshakeLabels};
use crate::transport::{stopped, Shutdown};

/// How long a TLS handshake may take: a client that connects and then sends nothing (or half a
/// `ClientHello`) holds its connection slot this long at most, never longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTPS handshakes in progress at most; a connection beyond them is closed at once, so a
/// flood of stalled handshakes costs a bounded amount of memory.
const HTTP_HANDSHAKES: usize = 256;

/// A file of `[tls]` that cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[tls].{field}: {path}: cannot read: {source}")]
    Read {
        field: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[tls].{field}: {path}: not a PEM file of {what}: {message}")]
    Pem {
        field: &'static str,
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("[tls].{field}: {path}: holds no {what}")]
    Empty {
        field: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("[tls].{field}: {path}: {message}")]
    Refused {
        field: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl TlsError {
    /// The field of `[tls]` whose file is at fault.
    pub fn field(&self) -> &'static str {
        match self {
            TlsError::Read { field, .. }
            | TlsError::Pem { field, .. }
            | TlsError::Empty { field, .. }
            | TlsError::Refused { field, .. } => field,
        }
    }
}

/// The files of `[tls]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The files `table` names, relative paths resolved as every path of `tollgate.toml`
    /// ([`crate::cli::setup::resolve_path`]).
    pub fn of(config_path: &Path, table: &TlsTable) -> TlsFiles {
        let resolve = |p: &str| crate::cli::resolve_path(config_path, p);
        TlsFiles {
            cert: resolve(&table.cert),
            key: resolve(&table.key),
            client_ca: (!table.client_ca.is_empty()).then(|| resolve(&table.client_ca)),
        }
    }
}

/// rustls' `ring` provider. rustls deprecates it for lacking post-quantum key exchange
/// (X25519MLKEM768, only in the aws-lc-rs provider), but aws-lc-rs needs cmake and a C
/// toolchain to build, and ring's X25519 and ECDHE groups are what SIP proxies offer today.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file (other sections are skipped), at least one.
fn certificates(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = "certificates";
    let pem = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            field,
            path: path.to_path_buf(),
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            field,
            path: path.to_path_buf(),
            what: "certificate (no BEGIN CERTIFICATE section)",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            field: "key",
            path: path.to_path_buf(),
            what: "private key (no BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)",
        },
        e => TlsError::Pem {
            field: "key",
            path: path.to_path_buf(),
            what: "a private key",
            message: e.to_string(),
        },
    })
}

/// Reads the files and builds the server config; every error found (each file is read).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, Vec<TlsError>> {
    let provider = provider();
    let cert = certificates("cert", &files.cert);
    let key = private_key(&files.key);
    let verifier = files.client_ca.as_deref().map(|path| {
        let mut roots = RootCertStore::empty();
        for ca in certificates("client_ca", path)? {
            roots.add(ca).map_err(|e| TlsError::Refused {
                field: "client_ca",
                path: path.to_path_buf(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        }
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| TlsError::Refused {
                field: "client_ca",
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    });
    let (cert, key, verifier) = match (cert, key, verifier.transpose()) {
        (Ok(c), Ok(k), Ok(v)) => (c, k, v),
        (c, k, v) => {
            return Err([c.err(), k.err(), v.err()].into_iter().flatten().collect());
        }
    };
    let refused = |message: String| {
        vec![TlsError::Refused {
            field: "key",
            path: files.key.clone(),
            message,
        }]
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    // Refuses a key that is not the certificate's, or of a kind the provider cannot sign with.
    let config = builder.with_single_cert(cert, key).map_err(|e| {
        refused(format!(
            "cannot serve {} with it: {e}",
            files.cert.display()
        ))
    })?;
    Ok(Arc::new(config))
}

/// The running TLS config, replaced whole by a reload.
pub struct Tls {
    files: Mutex<TlsFiles>,
    config: ArcSwap<ServerConfig>,
}

/// A config read by [`Tls::prepare`], not yet serving.
pub struct Prepared {
    files: TlsFiles,
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files()).finish()
    }
}

impl Tls {
    /// Reads `files` (blocking I/O).
    pub fn load(files: TlsFiles) -> Result<Tls, Vec<TlsError>> {
        let config = server_config(&files)?;
        Ok(Tls {
            files: Mutex::new(files),
            config: ArcSwap::new(config),
        })
    }

    /// The files in effect.
    pub fn files(&self) -> TlsFiles {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// An acceptor with the config in effect now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Reads `files` again (blocking I/O) without changing what serves.
    pub fn prepare(&self, files: TlsFiles) -> Result<Prepared, Vec<TlsError>> {
        let config = server_config(&files)?;
        Ok(Prepared { files, config })
    }

    /// Serves `p` to every connection accepted from now on.
    pub fn apply(&self, p: Prepared) {
        self.config.store(p.config);
        *self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = p.files;
    }
}

/// Runs the TLS handshake on `stream`, at most [`HANDSHAKE_TIMEOUT`] (or `limit` if shorter).
/// A failed or stalled handshake is logged at debug level (a port scanner is not news) and the
/// connection closed: it never touches another connection.
pub async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
    failures: &Failures,
) -> Option<TlsStream<TcpStream>> {
    let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT.min(limit), acceptor.accept(stream))
        .await
    {
        Ok(Ok(s)) => return Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, listener = failures.listener, error = %e, "tls handshake failed");
            "error"
        }
        Err(_) => {
            tracing::debug!(%peer, listener = failures.listener, "tls handshake timed out");
            "timeout"
        }
    };
    failures
        .counters
        .get_or_create(&HandshakeLabels {
            listener: failures.listener,
            reason,
        })
        .inc();
    None
}

/// Where a listener counts its failed handshakes (`tollgate_tls_handshake_failures_total`).
#[derive(Clone)]
pub struct Failures {
    pub counters: HandshakeFailures,
    /// `sip` or `https`.
    pub listener: &'static str,
}

/// An HTTPS listener for `axum::serve`: a task accepts TCP connections and runs each handshake
/// in a task of its own, so a client that stalls mid-handshake never holds up the next one;
/// `accept` hands out the connections whose handshake succeeded.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` until `shutdown`.
    pub fn spawn(
        listener: TcpListener,
        tls: Arc<Tls>,
        failures: Failures,
        mut shutdown: Shutdown,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let handshakes = Arc::new(Semaphore::new(HTTP_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "https accept");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                    () = stopped(&mut shutdown) => return,
                };
                // Beyond the bound the connection is dropped, which closes it.
                let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                    continue;
                };
                let (acceptor, tx, failures) = (tls.acceptor(), tx.clone(), failures.clone());
                tokio::spawn(async move {
                    let s = handshake(acceptor, stream, peer, HANDSHAKE_TIMEOUT, &failures).await;
                    drop(permit);
                    if let Some(s) = s {
                        let _ = tx.send((s, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accepting task stopped (shutdown): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_empty_files_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let files = TlsFiles {
            cert: dir.path().join("missing.pem"),
            key: empty.clone(),
            client_ca: Some(empty.clone()),
        };
        let errors = server_config(&files).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:?}");
        assert_eq!(errors[0].field(), "cert");
        assert!(text[0].contains("missing.pem: cannot read"), "{text:?}");
        assert_eq!(errors[1].field(), "key");
        assert!(text[1].contains("holds no private key"), "{text:?}");
        assert_eq!(errors[2].field(), "client_ca");
        assert!(text[2].contains("holds no certificate"), "{text:?}");
    }

    #[test]
    fn relative_paths_resolve_beside_the_directory() {
        let table = TlsTable {
            cert: "tls/cert.pem".into(),
            key: "/etc/tollgate/key.pem".into(),
            client_ca: String::new(),
        };
        let f = TlsFiles::of(Path::new("/srv/tg/config/tollgate.toml"), &table);
        assert_eq!(f.cert, Path::new("/srv/tg/tls/cert.pem"));
        assert_eq!(f.key, Path::new("/etc/tollgate/key.pem"));
        assert_eq!(f.client_ca, None);
    }
}
