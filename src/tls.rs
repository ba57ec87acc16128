//! TLS for the listeners: `[http]` and `[grpc]` `tls_cert` / `tls_key` (PEM files), checked at
//! start-up with errors naming the key, and turned into the server configurations actix-web
//! (rustls) and tonic take. ring is the one crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why a listener's certificate or key cannot be used; every variant names the setting.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{set} is set but {missing} is not: TLS needs both a certificate and its key")]
    OnlyOne {
        set: &'static str,
        missing: &'static str,
    },
    #[error("{key} = {path}: cannot read the file: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key} = {path}: no PEM certificate in the file ({detail})")]
    NoCertificate {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{key} = {path}: no PEM private key in the file ({detail})")]
    NoKey {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{cert_key} and {key_key}: the certificate and key cannot serve TLS: {detail}")]
    Unusable {
        cert_key: &'static str,
        key_key: &'static str,
        detail: String,
    },
}

/// A listener's certificate chain and key, read and parsed.
pub struct Identity {
    /// The PEM text of the chain (for tonic).
    pub cert_pem: Vec<u8>,
    /// The PEM text of the key (for tonic).
    pub key_pem: Vec<u8>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The two settings of one listener, by their config names (`http.tls_cert`, …).
pub struct Settings<'c> {
    pub cert_key: &'static str,
    pub cert: Option<&'c Path>,
    pub key_key: &'static str,
    pub key: Option<&'c Path>,
}

impl Settings<'_> {
    /// `None` without TLS; the identity when both files are set and sound.
    pub fn load(&self) -> Result<Option<Identity>, TlsError> {
        let (cert, key) = match (self.cert, self.key) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(TlsError::OnlyOne {
                    set: self.cert_key,
                    missing: self.key_key,
                })
            }
            (None, Some(_)) => {
                return Err(TlsError::OnlyOne {
                    set: self.key_key,
                    missing: self.cert_key,
                })
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        let read = |name: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                key: name,
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read(self.cert_key, cert)?;
        let key_pem = read(self.key_key, key)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::NoCertificate {
                key: self.cert_key,
                path: cert.to_owned(),
                detail: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                key: self.cert_key,
                path: cert.to_owned(),
                detail: "no CERTIFICATE block".into(),
            });
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
            key: self.key_key,
            path: key.to_owned(),
            detail: e.to_string(),
        })?;
        let identity = Identity {
            cert_pem,
            key_pem,
            certs,
            key: private,
        };
        // Building the server configuration checks that the key suits the certificate.
        identity.rustls(self)?;
        Ok(Some(identity))
    }
}

impl Identity {
    /// A rustls server configuration (HTTP/1.1 and HTTP/2 by ALPN) for actix-web.
    pub fn rustls(&self, settings: &Settings<'_>) -> Result<rustls::ServerConfig, TlsError> {
        let unusable = |detail: String| TlsError::Unusable {
            cert_key: settings.cert_key,
            key_key: settings.key_key,
            detail,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| unusable(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A tonic server TLS configuration.
    pub fn tonic(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_pem,
            &self.key_pem,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(cert: Option<&'a Path>, key: Option<&'a Path>) -> Settings<'a> {
        Settings {
            cert_key: "http.tls_cert",
            cert,
            key_key: "http.tls_key",
            key,
        }
    }

    #[test]
    fn no_files_is_no_tls() {
        assert!(settings(None, None).load().expect("fine").is_none());
    }

    #[test]
    fn one_of_the_pair_names_the_other() {
        let cert = Path::new("/nonexistent/cert.pem");
        let Err(e) = settings(Some(cert), None).load() else {
            panic!("refused");
        };
        assert!(e.to_string().contains("http.tls_key"), "{e}");
        let Err(e) = settings(None, Some(cert)).load() else {
            panic!("refused");
        };
        assert!(e.to_string().contains("http.tls_cert"), "{e}");
    }

    #[test]
    fn missing_and_bad_files_name_the_key() {
        let missing = Path::new("/nonexistent/cert.pem");
        let e = settings(Some(missing), Some(missing))
            .load()
            .err()
            .expect("refused");
        assert!(
            e.to_string()
                .starts_with("http.tls_cert = /nonexistent/cert.pem"),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("switchboard-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let e = settings(Some(&junk), Some(&junk))
            .load()
            .err()
            .expect("refused");
        assert!(
            matches!(
                e,
                TlsError::NoCertificate {
                    key: "http.tls_cert",
                    ..
                }
            ),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
