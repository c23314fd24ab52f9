//! Serving HTTPS with a certificate that can change under a running server.
//!
//! Kubernetes updates a mounted Secret by writing a new timestamped directory and swapping the
//! `..data` symlink, so the certificate files are never written in place: watching the files
//! themselves misses the change. [`watch_files`] watches the directories that hold them and
//! reloads on any change there; a certificate that fails to load is logged and the previous one
//! keeps serving. The resolver can also be fed from memory ([`ReloadingCert::replace`]) by a
//! certificate manager.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use inotify::{Inotify, WatchMask};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the open connections go on being served once serving stops: twice the longest an
/// API server waits for a webhook (`timeoutSeconds` 5 here).
const CONNECTION_DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("{0} holds no PEM private key")]
    NoKey(String),
    #[error("unusable private key in {path}: {source}")]
    BadKey { path: String, source: rustls::Error },
    #[error("the private key does not match the certificate: {0}")]
    Mismatch(rustls::Error),
    #[error("TLS setup failed: {0}")]
    Config(#[from] rustls::Error),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a serving certificate from PEM text; `source` names it in errors.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    source: &str,
) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(source.to_owned()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey(source.to_owned()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source_err| TlsError::BadKey {
            path: source.to_owned(),
            source: source_err,
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(TlsError::Mismatch)?;
    Ok(certified)
}

/// Where the serving certificate and its key are read from.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertificateFiles {
    /// The directories to watch for a change of either file: a bare file name is in `.`.
    fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.cert, &self.key]
            .iter()
            .map(|path| match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.dedup();
        dirs
    }

    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        certified_key_from_pem(
            &read(&self.cert)?,
            &read(&self.key)?,
            &format!("{} / {}", self.cert.display(), self.key.display()),
        )
    }
}

/// The certificate in force, swappable while connections are being served.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    pub fn new(initial: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(initial)),
        })
    }

    pub fn replace(&self, next: CertifiedKey) {
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Arc::new(next);
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A server configuration (TLS 1.2 and 1.3, HTTP/1.1) that always presents the current
    /// certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reloads `files` into `cert` whenever anything changes in the directories that hold them.
///
/// The directories are watched from the moment this returns, not from the moment the returned
/// task first runs: a Secret updated while the server starts is not missed until the next
/// renewal. The task reloads once when it starts, for a change between the first load and the
/// watch, then on every change; it runs until the watch cannot continue. Errors are logged,
/// never fatal to serving.
pub fn watch_files(
    cert: Arc<ReloadingCert>,
    files: CertificateFiles,
) -> impl Future<Output = ()> + Send + 'static {
    let watching = watch_directories(&files);
    async move {
        let followed = match watching {
            Ok(inotify) => follow_changes(inotify, &cert, &files).await,
            Err(err) => Err(err),
        };
        if let Err(err) = followed {
            warn!(error = %err, "certificate reload stopped; the current certificate keeps serving");
        }
    }
}

fn watch_directories(files: &CertificateFiles) -> std::io::Result<Inotify> {
    let inotify = Inotify::init()?;
    let mask = WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE
        | WatchMask::ATTRIB;
    for dir in &files.directories() {
        inotify.watches().add(dir, mask)?;
    }
    Ok(inotify)
}

async fn follow_changes(
    inotify: Inotify,
    cert: &ReloadingCert,
    files: &CertificateFiles,
) -> std::io::Result<()> {
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    reload(cert, files);
    while let Some(event) = events.next().await {
        event?;
        // A Secret update is several events in a row; settle before reading the pair.
        tokio::time::sleep(Duration::from_millis(200)).await;
        reload(cert, files);
    }
    Ok(())
}

fn reload(cert: &ReloadingCert, files: &CertificateFiles) {
    match files.load() {
        Ok(next) => {
            if next.cert != cert.current().cert {
                cert.replace(next);
                info!(cert = %files.cert.display(), "reloaded serving certificate");
            }
        }
        Err(err) => debug!(error = %err, "certificate files changed but do not load yet"),
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves. Each connection is served
/// with keep-alive; a client that does not finish its handshake in time is dropped. Once
/// `shutdown` resolves, no connection is accepted, and the open ones go on being served until
/// they close or [`CONNECTION_DRAIN`] is over: an API server's request in flight, or sent on a
/// connection it holds, is answered rather than cut off. (The webhook's answers close their
/// connections by then.) A connection is not told to stop: watching for that cost each
/// request more than the rest of its connection handling under load.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(config);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let app = app.clone();
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(err) = connection.await {
                debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(CONNECTION_DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Clients' idle keep-alive connections, mostly: nothing was being served on them.
        info!(
            open = connections.len(),
            "connections still open after {CONNECTION_DRAIN:?}; closing them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request being served when serving stops is answered; the next connection is refused.
    #[tokio::test]
    async fn a_request_in_flight_when_serving_stops_is_answered() {
        let issued = crate::certs::issue(&["localhost".to_owned()], 1).unwrap();
        let config = issued.server_config().unwrap();
        let (begun, begun_rx) = tokio::sync::oneshot::channel::<()>();
        let begun = Arc::new(std::sync::Mutex::new(Some(begun)));
        let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered_in_handler = answered.clone();
        let app = Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let (begun, answered) = (begun.clone(), answered_in_handler.clone());
                async move {
                    if let Some(begun) = begun.lock().unwrap().take() {
                        let _ = begun.send(());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    answered.store(true, std::sync::atomic::Ordering::SeqCst);
                    // As the stopping webhook's answers do.
                    ([(axum::http::header::CONNECTION, "close")], "done")
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, config, app, async move {
            let _ = begun_rx.await;
        }));
        let client = || {
            reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(issued.ca_pem.as_bytes()).unwrap(),
                )
                .resolve("localhost", address)
                .build()
                .unwrap()
        };
        let url = format!("https://localhost:{}/slow", address.port());
        let request = tokio::spawn(client().get(&url).send());
        // Serving stops while the request is being served, and returns once it is answered.
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(answered.load(std::sync::atomic::Ordering::SeqCst));
        let answer = request.await.unwrap().unwrap();
        assert_eq!(answer.text().await.unwrap(), "done");
        assert!(client().get(&url).send().await.is_err());
    }

    fn files(cert: &str, key: &str) -> CertificateFiles {
        CertificateFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }

    #[test]
    fn a_mounted_secret_is_watched_in_its_directory() {
        assert_eq!(
            files("/tls/tls.crt", "/tls/tls.key").directories(),
            [PathBuf::from("/tls")]
        );
        assert_eq!(
            files("/certs/tls.crt", "/keys/tls.key").directories(),
            [PathBuf::from("/certs"), PathBuf::from("/keys")]
        );
    }

    fn write_pair(dir: &Path, issued: &crate::certs::IssuedCertificates) {
        std::fs::write(dir.join("tls.crt"), &issued.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &issued.key_pem).unwrap();
    }

    #[tokio::test]
    async fn a_renewal_while_the_server_starts_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let first = crate::certs::issue(&["localhost".to_owned()], 1).unwrap();
        write_pair(dir.path(), &first);
        let files = CertificateFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let cert = ReloadingCert::new(files.load().unwrap());
        let watching = watch_files(cert.clone(), files.clone());
        // Renewed after the watch was set up, before its task first runs.
        let renewed = crate::certs::issue(&["localhost".to_owned()], 2).unwrap();
        write_pair(dir.path(), &renewed);
        let want = files.load().unwrap().cert;
        let task = tokio::spawn(watching);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while cert.current().cert != want {
            assert!(
                std::time::Instant::now() < deadline,
                "the renewed certificate was never loaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
    }

    #[test]
    fn bare_file_names_are_watched_in_the_working_directory() {
        // Path::parent of a bare name is "", which inotify refuses: reloading used to stop.
        assert_eq!(
            files("tls.crt", "tls.key").directories(),
            [PathBuf::from(".")]
        );
        assert_eq!(
            files("tls.crt", "keys/tls.key").directories(),
            [PathBuf::from("."), PathBuf::from("keys")]
        );
    }
}
