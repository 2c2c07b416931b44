//! The control plane's PKI, generated fresh for every cluster: one CA, the API server's serving
//! certificate, a client certificate per component (its user and groups are what RBAC sees), and
//! the service-account signing key. Written as PEM files into the cluster's directory, readable
//! by the owner only.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM (PKCS#8) private key.
    pub key: PathBuf,
}

/// The CA that signs every certificate of one cluster.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate and key files.
    pub files: CertFiles,
}

/// Who a client certificate names: the user (CN) and groups (O) the API server sees.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The user name.
    pub user: &'a str,
    /// The groups.
    pub groups: &'a [&'a str],
}

/// Writes `text` to `path`, readable by the owner only (keys, kubeconfigs).
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

impl Ca {
    /// A new CA, written to `<dir>/ca.crt` and `<dir>/ca.key`.
    pub fn generate(dir: &Path) -> Result<Self, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kubecrew local cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let files = CertFiles {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        std::fs::write(&files.cert, cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            files,
        })
    }

    /// The API server's serving certificate: valid for loopback and the in-cluster names of
    /// the `kubernetes` Service (`service_ip` is its ClusterIP).
    pub fn serving(&self, dir: &Path, name: &str, service_ip: IpAddr) -> Result<CertFiles, Error> {
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .subject_alt_names
            .push(SanType::IpAddress(service_ip));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(dir, name, params)
    }

    /// A client certificate for `identity`, as `<dir>/<file>.crt` and `.key`.
    pub fn client(
        &self,
        dir: &Path,
        file: &str,
        identity: Identity<'_>,
    ) -> Result<CertFiles, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, identity.user);
        for group in identity.groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(dir, file, params)
    }

    fn sign(
        &self,
        dir: &Path,
        file: &str,
        mut params: CertificateParams,
    ) -> Result<CertFiles, Error> {
        params.is_ca = IsCa::ExplicitNoCa;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

/// The key service-account tokens are signed with (ES256): the private key in `sa.key`
/// (PKCS#8), the public key, which verifies them, in `sa.pub`.
pub fn service_account_key(dir: &Path) -> Result<CertFiles, Error> {
    let key = KeyPair::generate()?;
    let files = CertFiles {
        cert: dir.join("sa.pub"),
        key: dir.join("sa.key"),
    };
    write_private(&files.key, &key.serialize_pem())?;
    // The API server's public key reader takes PKIX public keys, not PKCS#8 private ones.
    std::fs::write(&files.cert, key.public_key_pem())?;
    Ok(files)
}
