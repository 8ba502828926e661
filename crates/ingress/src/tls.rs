//! TLS: the certificates of the served Ingresses' `spec.tls`, from their `kubernetes.io/tls`
//! Secrets, chosen by SNI (exact host, then `*.` wildcard), and a self-signed default for
//! names no Ingress has a certificate for (ingress-nginx's "Kubernetes Ingress Controller Fake
//! Certificate"). rustls with ring: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::proxy::Proxy;

/// Certificates by host.
#[derive(Debug, Default)]
pub struct Certs {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certs {
    /// The certificate for `host` (lowercase): its own, else its wildcard's.
    pub fn find(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.exact.get(host).cloned().or_else(|| {
            host.split_once('.')
                .and_then(|(_, rest)| self.wildcard.get(rest).cloned())
        })
    }

    /// Adds `key` for `host` unless an older Ingress gave it one.
    pub fn add(&mut self, host: &str, key: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(rest) => self.wildcard.entry(rest.to_string()).or_insert(key),
            None => self.exact.entry(host).or_insert(key),
        };
    }
}

/// The certificate and key of a `kubernetes.io/tls` Secret (`tls.crt`: the chain in PEM,
/// leaf first; `tls.key`: the key in PEM), or what is wrong with it.
pub fn certified_key(secret: &Secret) -> Result<CertifiedKey, String> {
    let data = secret.data.as_ref();
    let field = |name: &str| -> Result<&[u8], String> {
        data.and_then(|d| d.get(name))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("has no {name}"))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(field("tls.crt")?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not PEM certificates: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(field("tls.key")?)
        .map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let signer = any_supported_type(&key).map_err(|e| format!("tls.key: {e}"))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| format!("tls.key does not belong to tls.crt's certificate: {e}"))?;
    Ok(certified)
}

/// A self-signed certificate for names nothing else covers.
pub fn default_certificate() -> Result<Arc<CertifiedKey>, String> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .map_err(|e| e.to_string())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Kubernetes Ingress Controller Fake Certificate",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "weft");
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let signer = any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// Picks the certificate by SNI from the proxy's current table.
pub struct SniResolver {
    proxy: Arc<Proxy>,
    default: Arc<CertifiedKey>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello
            .server_name()
            .and_then(|name| self.proxy.table().certs.find(&name.to_ascii_lowercase()));
        Some(found.unwrap_or_else(|| self.default.clone()))
    }
}

/// The server's TLS configuration: certificates by SNI from `proxy`'s table, `default` for the
/// rest; ALPN h2 and http/1.1.
pub fn server_config(
    proxy: Arc<Proxy>,
    default: Arc<CertifiedKey>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { proxy, default }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS to backends (`backend-protocol: HTTPS`) without verifying their certificates, as
/// nginx's default `proxy_ssl_verify off`: the pod network is the trust boundary.
pub fn backend_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
