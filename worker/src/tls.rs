//! HTTPS for the worker's HTTP server: Stream Load requests carry bearer tokens, so with a
//! certificate (a `kubernetes.io/tls` Secret mounted in the pod) the worker serves its routes
//! over TLS on a port of its own. The certificate and key are PEM files; they are read again
//! when either file changes (a renewed Secret), so a rotation needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take over its TLS handshake, and over a request's head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's certificate chain and key files, and the TLS settings made from them.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Loaded>,
}

struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    acceptor: TlsAcceptor,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// TLS settings from a PEM certificate chain (the server's first) and its private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        bail!(
            "the TLS certificate file {} holds no certificate",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS private key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and private key do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl TlsFiles {
    /// Reads the files once: a worker with a bad certificate does not start.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self> {
        let loaded = Loaded {
            stamp: (modified(&cert), modified(&key)),
            acceptor: acceptor(&cert, &key)?,
        };
        Ok(Self {
            cert,
            key,
            current: Mutex::new(loaded),
        })
    }

    /// The TLS settings for a new connection: read again when a file changed since; the last
    /// good ones when the new files don't load (a Secret half rewritten: read again at its next
    /// change).
    pub fn acceptor(&self) -> TlsAcceptor {
        let stamp = (modified(&self.cert), modified(&self.key));
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if stamp != current.stamp {
            match acceptor(&self.cert, &self.key) {
                Ok(a) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate read again");
                    current.acceptor = a;
                    current.stamp = stamp;
                }
                Err(e) => {
                    // Tried again when the files change again, not on every connection.
                    current.stamp = stamp;
                    tracing::warn!(error = %format!("{e:#}"), "TLS certificate changed but does not load; keeping the last one");
                }
            }
        }
        current.acceptor.clone()
    }
}

/// Serves `app` over TLS on `listener`, one task per connection (HTTP/1.1, `Expect:
/// 100-continue` answered when a handler reads the body).
pub async fn serve(listener: TcpListener, tls: Arc<TlsFiles>, app: Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an HTTPS connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("rl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.join("missing.pem");
        // (certificate, key, what the error names)
        let cases = [
            (&missing, &missing, "reading the TLS certificate"),
            (&empty, &missing, "holds no certificate"),
        ];
        for (cert, key, want) in cases {
            let err = format!("{:#}", acceptor(cert, key).err().expect("refused"));
            assert!(err.contains(want), "{}: {err}", cert.display());
        }
    }
}
