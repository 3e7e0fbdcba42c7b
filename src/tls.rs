//! TLS for the servers sluicegate runs (the HTTP receiver, the admin endpoint): rustls on `ring`
//! (already built for the AWS clients), a certificate chain and key from PEM files, reloaded in
//! place on SIGHUP so a renewed certificate needs no restart.
//!
//! Owns: [`Certificate`] — the files' paths and the key pair they held when last read — and
//! the process's list of them, which [`reload_all`] (the SIGHUP handler) walks.
//!
//! Invariants: a handshake always gets a complete key pair: a reload that fails (a missing
//! file, a key that does not match, a half-written file) keeps the previous pair and says why;
//! the start fails instead when the first read does. TLS 1.2 and 1.3 only (rustls's defaults),
//! no client certificates. Bounds: one key pair per server, read whole (PEM files are small).

use rustls::crypto::ring::default_provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// `tls = { cert_file = "…", key_file = "…" }` of a server's configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the server's certificate first, then its chain.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS #8, PKCS #1 or SEC1).
    pub key_file: PathBuf,
}

/// A server's key pair from its files, replaced in place by [`Certificate::reload`].
#[derive(Debug)]
pub struct Certificate {
    config: TlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
}

/// Every certificate in use, for SIGHUP.
static LOADED: Mutex<Vec<Weak<Certificate>>> = Mutex::new(Vec::new());

impl Certificate {
    /// Read the files (failing the start if they are unusable) and register for reloads.
    pub fn load(config: &TlsConfig) -> Result<Arc<Certificate>, String> {
        let c = Arc::new(Certificate {
            current: RwLock::new(Arc::new(read(config)?)),
            config: config.clone(),
        });
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|w| w.strong_count() > 0);
        loaded.push(Arc::downgrade(&c));
        Ok(c)
    }

    /// Read the files again; on failure keep the key pair in use and say why.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = read(&self.config)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// A rustls server configuration that asks this certificate for its key pair at every
    /// handshake (so a reload takes effect at the next connection). `alpn`: the protocols
    /// offered (`http/1.1`).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    pub fn paths(&self) -> (&Path, &Path) {
        (&self.config.cert_file, &self.config.key_file)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Reload every certificate in use (SIGHUP); returns one line per certificate.
pub fn reload_all() -> Vec<String> {
    let loaded: Vec<Arc<Certificate>> = LOADED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    loaded
        .iter()
        .map(|c| {
            let (cert, _) = c.paths();
            match c.reload() {
                Ok(()) => {
                    tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                    format!("{}: reloaded", cert.display())
                }
                Err(e) => {
                    tracing::error!(cert = %cert.display(), error = %e, "TLS certificate not reloaded: the previous one stays in use");
                    format!("{}: {e}", cert.display())
                }
            }
        })
        .collect()
}

/// The key pair in `config`'s files, checked to belong together. Errors name the file, never
/// a byte of the key.
fn read(config: &TlsConfig) -> Result<CertifiedKey, String> {
    let (cert_file, key_file) = (&config.cert_file, &config.key_file);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("tls.cert_file {}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_file {}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("tls.cert_file {}: no certificate in it", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("tls.key_file {}: no usable private key ({e})", key_file.display()))?;
    let provider = default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("tls.key_file {}: {e}", key_file.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "tls: the key in {} is not the certificate's in {} ({e})",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok(certified)
}

/// Self-signed certificates and a TLS client, for the tests of every server that speaks TLS.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// A fresh self-signed certificate for `localhost` written as `<name>.crt` / `<name>.key`
    /// in `dir`; returns the configuration naming them and the certificate.
    pub fn self_signed(dir: &Path, name: &str) -> (TlsConfig, CertificateDer<'static>) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let config = TlsConfig {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
        };
        std::fs::write(&config.cert_file, c.cert.pem()).unwrap();
        std::fs::write(&config.key_file, c.signing_key.serialize_pem()).unwrap();
        (config, c.cert.der().clone())
    }

    /// Send `request` (raw HTTP/1.1, `connection: close`) to `addr` over TLS, trusting only
    /// `root` for `localhost`; returns the whole answer, or the handshake's error.
    pub fn request(addr: &str, root: &CertificateDer<'static>, request: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
        let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        match tls.read_to_end(&mut answer) {
            Ok(_) => {}
            // Some servers close without a close_notify once the answer is out.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => return Err(e.to_string()),
        }
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::self_signed;
    use super::*;

    fn in_use(c: &Certificate) -> CertificateDer<'static> {
        c.current.read().unwrap().cert[0].clone()
    }

    #[test]
    fn a_certificate_reloads_in_place_and_a_bad_reload_keeps_the_one_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_der) = self_signed(dir.path(), "a");
        let c = Certificate::load(&a).unwrap();
        assert_eq!(in_use(&c), a_der);
        // The files are replaced by a renewed certificate: SIGHUP takes it.
        let (b, b_der) = self_signed(dir.path(), "b");
        std::fs::copy(&b.cert_file, &a.cert_file).unwrap();
        std::fs::copy(&b.key_file, &a.key_file).unwrap();
        assert!(reload_all().iter().any(|l| l.ends_with("a.crt: reloaded")));
        assert_eq!(in_use(&c), b_der);
        // A key that is not the certificate's (a renewal half copied): refused, the old stays.
        std::fs::copy(dir.path().join("b.crt"), &a.cert_file).unwrap();
        let (_, _) = self_signed(dir.path(), "c");
        std::fs::copy(dir.path().join("c.key"), &a.key_file).unwrap();
        let e = c.reload().unwrap_err();
        assert!(e.contains("is not the certificate's"), "{e}");
        assert_eq!(in_use(&c), b_der);
        // Missing or empty files fail the start, naming them.
        let missing = TlsConfig {
            cert_file: dir.path().join("none.crt"),
            key_file: a.key_file.clone(),
        };
        assert!(Certificate::load(&missing).unwrap_err().contains("tls.cert_file"));
        std::fs::write(dir.path().join("empty.crt"), "").unwrap();
        let empty = TlsConfig {
            cert_file: dir.path().join("empty.crt"),
            key_file: a.key_file.clone(),
        };
        assert!(Certificate::load(&empty).unwrap_err().contains("no certificate in it"));
    }
}
