//! The webhook's TLS material: the API server only calls webhooks over HTTPS and checks the
//! serving certificate against the `caBundle` of the webhook configuration.
//!
//! By default the controller generates a CA and a serving certificate signed by it at start
//! ([`generate`]): nothing to install (no cert-manager), and the private keys never leave the
//! process's memory. A restart makes new ones, and the configuration sync publishes the new CA.
//! [`from_files`] uses a provided certificate instead (cert-manager, a corporate CA).

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or certificate failed (for example a SAN that is not a valid DNS name).
    #[error("generating the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A provided file could not be read or holds no usable PEM.
    #[error("reading {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the certificate and key (for example a key that does not match).
    #[error("the webhook certificate and key are unusable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What the webhook serves with, and what the API server must trust.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The server configuration (certificate chain and key), for the TLS acceptor.
    pub server_config: Arc<rustls::ServerConfig>,
    /// The PEM of the CA that signed the serving certificate: the webhook's `caBundle`
    /// (before base64, which the API types apply when serializing).
    pub ca_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    // The server configuration holds the private key: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// The DNS names the API server uses for a webhook behind Service `service` in `namespace`:
/// `<service>.<namespace>.svc` (what it verifies) and the `.cluster.local` form, then `extra`
/// (names or IP addresses, e.g. `127.0.0.1` for a `--webhook-url` in tests). No duplicates.
pub fn subject_alt_names(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// A fresh CA and a serving certificate for `names` (DNS names or IP addresses) signed by it.
pub fn generate(names: &[String]) -> Result<TlsMaterial, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "nes-controller webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("nes-controller", |n| n),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;

    let chain = vec![cert.der().clone()];
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::File {
        path: "<generated key>".into(),
        message: e.to_owned(),
    })?;
    Ok(TlsMaterial {
        server_config: server_config(chain, key)?,
        ca_pem: ca_cert.pem(),
    })
}

/// The provided serving certificate chain and key (PEM files), trusted through the CA in
/// `ca_file` (PEM; its content becomes the `caBundle`).
pub fn from_files(
    cert_file: &Path,
    key_file: &Path,
    ca_file: &Path,
) -> Result<TlsMaterial, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_error(cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert_file, "no CERTIFICATE block".into()));
    }
    // The error names the file but never shows its content: it is a private key.
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| file_error(key_file, format!("no usable private key ({e})")))?;
    let ca_pem =
        std::fs::read_to_string(ca_file).map_err(|e| file_error(ca_file, e.to_string()))?;
    let cas = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(ca_file, e.to_string()))?;
    if cas.is_empty() {
        return Err(file_error(ca_file, "no CERTIFICATE block".into()));
    }
    Ok(TlsMaterial {
        server_config: server_config(chain, key)?,
        ca_pem,
    })
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    // An explicit provider: the build has one crypto backend (ring), so nothing depends on a
    // process-wide default being installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // The API server talks HTTP/1.1 to webhooks; offer both so any client works.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_the_service_and_extras_once() {
        let names = subject_alt_names(
            "nes-controller",
            "nes-system",
            &["127.0.0.1".into(), "nes-controller.nes-system.svc".into()],
        );
        assert_eq!(
            names,
            [
                "nes-controller.nes-system.svc",
                "nes-controller.nes-system.svc.cluster.local",
                "127.0.0.1"
            ]
        );
    }

    #[test]
    fn generated_material_has_a_ca_and_serves() {
        let material = generate(&subject_alt_names("svc", "ns", &["127.0.0.1".into()])).unwrap();
        assert!(material.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let debug = format!("{material:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn a_bad_name_is_an_error_not_a_panic() {
        let error = generate(&["nöt-ascii.example".into()]).unwrap_err();
        assert!(error.to_string().contains("certificate"), "{error}");
    }

    #[test]
    fn provided_files_are_loaded_and_bad_ones_named() {
        let dir = std::env::temp_dir().join(format!("nes-tls-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["svc.ns.svc".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let (cert_file, key_file, ca_file) =
            (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let material = from_files(&cert_file, &key_file, &ca_file).unwrap();
        assert_eq!(material.ca_pem, ca.pem());

        std::fs::write(&key_file, "garbage").unwrap();
        let error = from_files(&cert_file, &key_file, &ca_file).unwrap_err();
        assert!(error.to_string().contains("tls.key"), "{error}");
        let error = from_files(&cert_file, &dir.join("missing"), &ca_file).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
