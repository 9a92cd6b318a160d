//! The certificate and key (PEM files), read at start and again after each reload (SIGHUP),
//! so a renewed certificate is served without a restart. A reload whose files do not load
//! keeps the running certificate and says why.

use crate::daemon::EngineHandle;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;

pub(super) struct TlsSource {
    handle: Arc<EngineHandle>,
    /// The acceptor and the reload generation it was built for.
    current: Mutex<(u64, TlsAcceptor)>,
}

impl TlsSource {
    pub(super) fn new(handle: Arc<EngineHandle>, cert: &Path, key: &Path) -> Result<Self, String> {
        let acceptor = load(cert, key)?;
        Ok(TlsSource {
            current: Mutex::new((handle.generation(), acceptor)),
            handle,
        })
    }

    /// The acceptor for a new connection: rebuilt once after a reload.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        let generation = self.handle.generation();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 != generation {
            cur.0 = generation;
            let engine = self.handle.current();
            let h = &engine.config().http;
            if let (Some(c), Some(k)) = (&h.cert_file, &h.key_file) {
                match load(c, k) {
                    Ok(a) => {
                        tracing::info!("http: certificate {} loaded", c.display());
                        cur.1 = a;
                    }
                    Err(e) => tracing::error!("http: keeping the running certificate: {e}"),
                }
            }
        }
        cur.1.clone()
    }
}

fn load(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("http.cert_file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("http.cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "http.cert_file {}: no certificate in it",
            cert.display()
        ));
    }
    // The key's own error could quote the file: name the file only.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        format!(
            "http.key_file {}: no readable PEM private key",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("http.cert_file/key_file: {e}"))?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
