//! The serving loop: TLS (the lab CA's serving certificate; client certificates signed by the
//! same CA are accepted, as are the lab's bearer tokens), HTTP/1.1 and HTTP/2 by ALPN, upgrades
//! for the WebSocket subresources, and the check that every request is authenticated before it
//! reaches the API.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::pki::{Pki, PkiError};
use crate::status::ApiError;
use crate::Body;

/// The TLS configuration from the lab's PKI.
pub fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, PkiError> {
    let invalid = |path: std::path::PathBuf| {
        move |e: rustls::pki_types::pem::Error| PkiError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.server_cert())
        .map_err(invalid(pki.server_cert()))?
        .collect::<Result<_, _>>()
        .map_err(invalid(pki.server_cert()))?;
    let key = PrivateKeyDer::from_pem_file(pki.server_key()).map_err(invalid(pki.server_key()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.ca_cert()).map_err(invalid(pki.ca_cert()))? {
        let ca = ca.map_err(invalid(pki.ca_cert()))?;
        roots.add(ca).map_err(|e| PkiError::Invalid {
            path: pki.ca_cert(),
            message: e.to_string(),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |e: rustls::Error| PkiError::Invalid {
        path: pki.dir().to_path_buf(),
        message: e.to_string(),
    };
    // Client certificates are optional at the TLS layer: a client may use a bearer token instead.
    // Whether the request is authenticated is decided per request, below.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Invalid {
            path: pki.ca_cert(),
            message: e.to_string(),
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Who made a request, as far as the server cares: the lab has one cluster-admin identity per
/// client certificate or token, and no authorization beyond being known.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: Option<String>,
}

/// Serves `api` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, api: Arc<Api>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!("TLS handshake with {peer}: {e}");
                    return;
                }
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|_| "certificate".to_string());
            let service = service_fn(move |req: Request<Incoming>| {
                let api = api.clone();
                let cert_user = cert_user.clone();
                async move {
                    Ok::<Response<Body>, std::convert::Infallible>(
                        dispatch(&api, req, cert_user, peer).await,
                    )
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// Paths anyone may read, as kube-apiserver's `system:public-info-viewer` role allows.
fn is_public(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz")
}

async fn dispatch(
    api: &Api,
    req: Request<Incoming>,
    cert_user: Option<String>,
    peer: SocketAddr,
) -> Response<Body> {
    let token_user = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| api.user_for_token(token.trim()));
    let caller = Caller {
        user: cert_user.or(token_user),
    };
    if caller.user.is_none() && !is_public(req.uri().path()) {
        tracing::info!(
            "{} {} from {peer}: unauthenticated",
            req.method(),
            req.uri()
        );
        return crate::api::error_response(&ApiError::unauthorized());
    }
    let req = req.map(|body| body.map_err(std::io::Error::other).boxed());
    api.handle(req, caller).await
}
