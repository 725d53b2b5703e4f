//! The cluster CA and the rustls configurations built from it.
//!
//! Peers authenticate each other with certificates signed by one cluster CA (mutual TLS).
//! Clients on the client QUIC port verify the node against the same CA but present no
//! certificate (client authentication by bearer token belongs to the HTTP/QUIC API layer).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN for node-to-node traffic (SWIM, replication, anti-entropy share this one channel).
pub const ALPN_PEER: &[u8] = b"shoal-peer/1";
/// ALPN for the client QUIC API.
pub const ALPN_CLIENT: &[u8] = b"shoal-client/1";
/// Every node certificate carries this DNS name, and peers and clients verify it, so a node can
/// be reached at any address while still proving it holds a cluster-issued certificate.
pub const SERVER_NAME: &str = "shoal-node";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("certificate generation: {0}")]
    Generate(String),
    #[error("tls configuration: {0}")]
    Config(String),
}

fn gen(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn cfg(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Create a new cluster CA. Returns (certificate PEM, private key PEM).
pub fn generate_ca(cluster_name: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate().map_err(gen)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{cluster_name} shoal cluster CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(gen)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issue a node certificate signed by the CA. `hosts` are extra DNS names or IP addresses the
/// node is reached at; [`SERVER_NAME`], `localhost` and 127.0.0.1 are always included.
pub fn issue_node_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node_id: &str,
    hosts: &[String],
) -> Result<(String, String), TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(gen)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(gen)?;
    let mut sans = vec![
        SERVER_NAME.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    sans.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    sans.sort();
    sans.dedup();
    let mut params = CertificateParams::new(sans).map_err(gen)?;
    params.distinguished_name.push(DnType::CommonName, node_id);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(gen)?;
    let cert = params.signed_by(&key, &issuer).map_err(gen)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Paths to one node's TLS material.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        reason: format!("not a PEM certificate: {e}"),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Read {
            path: path.to_path_buf(),
            reason: "no certificate in file".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        reason: format!("not a PEM private key: {e}"),
    })
}

fn roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        store.add(c).map_err(cfg)?;
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// QUIC requires TLS 1.3; Shoal also pins the ring provider (no aws-lc in the tree).
fn client_builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TlsError> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(cfg)
}

fn server_builder() -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, TlsError> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(cfg)
}

/// Server side of the peer port: requires a client certificate from the cluster CA.
pub fn peer_server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&files.ca_cert)?, provider())
        .build()
        .map_err(cfg)?;
    let mut config = server_builder()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.node_cert)?, private_key(&files.node_key)?)
        .map_err(cfg)?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec()];
    Ok(config)
}

/// Client side of the peer port: verifies the peer against the CA and presents our certificate.
pub fn peer_client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = client_builder()?
        .with_root_certificates(roots(&files.ca_cert)?)
        .with_client_auth_cert(certs(&files.node_cert)?, private_key(&files.node_key)?)
        .map_err(cfg)?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec()];
    Ok(config)
}

/// Server side of the client QUIC port: proves the node's identity, asks clients for nothing.
pub fn client_api_server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = server_builder()?
        .with_no_client_auth()
        .with_single_cert(certs(&files.node_cert)?, private_key(&files.node_key)?)
        .map_err(cfg)?;
    config.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    Ok(config)
}

/// What a Shoal client uses to reach the client QUIC port: trust the cluster CA only.
pub fn client_api_client_config(ca_cert: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = client_builder()?
        .with_root_certificates(roots(ca_cert)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    Ok(config)
}

/// ALPN for HTTPS: Shoal's HTTP API speaks HTTP/1.1 only.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Server side of the HTTP API over TLS: `cert` (a PEM chain) and `key`, from the cluster CA or
/// any other.
pub fn https_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = server_builder()?
        .with_no_client_auth()
        .with_single_cert(certs(cert)?, private_key(key)?)
        .map_err(cfg)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// What a client uses to reach an HTTPS API: trust the CA certificates in `ca` only. No ALPN
/// is set: the HTTP connector (hyper-rustls) sets the protocols it speaks.
pub fn https_client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    Ok(client_builder()?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth())
}

/// Write a PEM file, private keys readable by the owner only.
pub fn write_pem(path: &Path, pem: &str, private: bool) -> Result<(), TlsError> {
    let err = |e: std::io::Error| TlsError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, pem).map_err(err)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}
