//! Certificates for Ingresses that ask cert-manager for one (`cert-manager.io/cluster-issuer` or
//! `cert-manager.io/issuer`), issued by weft's controller from the cluster CA (the Secret
//! [`CA_SECRET`] in `weft-system`: its certificate and key; the lab makes one at `lab up`, and
//! `weft lab ca` prints its certificate). There is no ACME here (no internet): any issuer name is
//! answered from that CA. Each `spec.tls` entry's Secret is created when missing, and issued
//! again when its hosts change or it has less than a third of its 90 days left, as cert-manager
//! renews; a Secret weft did not issue is never touched. What to issue is decided purely
//! ([`wanted`]); the controller writes it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::ByteString;
use weft_view::{ClusterView, NsName};

/// The cluster CA's Secret (namespace, name).
pub const CA_SECRET: (&str, &str) = ("weft-system", "weft-cluster-ca");
/// On the CA Secret: the CA certificate's common name (to sign as it).
pub const CA_NAME: &str = "weft.dev/ca-common-name";
const ISSUED_BY: &str = "weft.dev/issued-by";
const HOSTS: &str = "weft.dev/hosts";
const NOT_AFTER: &str = "weft.dev/not-after";
const CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";
const ISSUER: &str = "cert-manager.io/issuer";
/// Certificates live 90 days (as Let's Encrypt's) and are renewed with 30 left.
const LIFETIME: Duration = Duration::from_secs(90 * 86_400);
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// A new CA: (certificate PEM, key PEM) with common name `name`.
pub fn new_ca(name: &str) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = ca_params(name)
        .self_signed(&key)
        .map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The CA to sign with, from its Secret.
pub struct Ca {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    pem: String,
}

impl Ca {
    pub fn from_secret(secret: &Secret) -> Result<Ca, String> {
        let field = |name: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(name))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .ok_or_else(|| format!("has no {name}"))
        };
        let name = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CA_NAME))
            .ok_or_else(|| format!("has no {CA_NAME} annotation"))?;
        let key =
            rcgen::KeyPair::from_pem(&field("tls.key")?).map_err(|e| format!("tls.key: {e}"))?;
        // The same name and key make the same issuer: what it signs chains to tls.crt.
        let cert = ca_params(name)
            .self_signed(&key)
            .map_err(|e| e.to_string())?;
        Ok(Ca {
            key,
            cert,
            pem: field("tls.crt")?,
        })
    }

    /// A certificate for `hosts`, valid from now for 90 days: (chain PEM, key PEM, not-after
    /// in Unix seconds).
    pub fn issue(&self, hosts: &[String]) -> Result<(String, String, u64), String> {
        let mut params =
            rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            hosts.first().cloned().unwrap_or_default(),
        );
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(300)).into();
        params.not_after = (now + LIFETIME).into();
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| e.to_string())?;
        let not_after = (now + LIFETIME)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok((
            format!("{}{}", cert.pem(), self.pem),
            key.serialize_pem(),
            not_after,
        ))
    }
}

/// One Secret to (re)issue: where, for which hosts, and for which Ingress and issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub secret: NsName,
    pub hosts: Vec<String>,
    pub ingress: NsName,
    pub issuer: String,
}

/// The Secrets the served Ingresses' issuer annotations want (re)issued at `now`.
pub fn wanted(view: &ClusterView, served: &[NsName], now: SystemTime) -> Vec<Wanted> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut out: BTreeMap<NsName, Wanted> = BTreeMap::new();
    for key in served {
        let Some(ing) = view.ingress(key) else {
            continue;
        };
        let Some(issuer) = issuer_of(ing) else {
            continue;
        };
        for tls in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            let Some(name) = tls.secret_name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let mut hosts: Vec<String> = tls.hosts.clone().unwrap_or_default();
            hosts.sort();
            hosts.dedup();
            if hosts.is_empty() {
                continue;
            }
            let secret = NsName::new(&key.namespace, name);
            let due = match view.secret(&secret) {
                None => true,
                Some(s) => {
                    let a = s.metadata.annotations.clone().unwrap_or_default();
                    if !a.contains_key(ISSUED_BY) {
                        // Someone else's: never overwritten.
                        false
                    } else {
                        let not_after: u64 =
                            a.get(NOT_AFTER).and_then(|v| v.parse().ok()).unwrap_or(0);
                        a.get(HOSTS).map(String::as_str) != Some(hosts.join(",").as_str())
                            || not_after.saturating_sub(now) < RENEW_BEFORE.as_secs()
                    }
                }
            };
            if due {
                out.entry(secret.clone()).or_insert(Wanted {
                    secret,
                    hosts,
                    ingress: key.clone(),
                    issuer: issuer.clone(),
                });
            }
        }
    }
    out.into_values().collect()
}

fn issuer_of(ing: &Ingress) -> Option<String> {
    let a = ing.metadata.annotations.as_ref()?;
    a.get(CLUSTER_ISSUER).or_else(|| a.get(ISSUER)).cloned()
}

/// The Secret holding a certificate issued for `w`.
pub fn secret(w: &Wanted, chain: &str, key: &str, not_after: u64) -> Secret {
    let mut s = Secret {
        type_: Some("kubernetes.io/tls".into()),
        ..Secret::default()
    };
    s.metadata.namespace = Some(w.secret.namespace.clone());
    s.metadata.name = Some(w.secret.name.clone());
    s.metadata.annotations = Some(BTreeMap::from([
        (
            ISSUED_BY.to_string(),
            format!("weft ingress for issuer {}", w.issuer),
        ),
        (HOSTS.to_string(), w.hosts.join(",")),
        (NOT_AFTER.to_string(), not_after.to_string()),
        ("cert-manager.io/issuer-name".to_string(), w.issuer.clone()),
    ]));
    s.data = Some(BTreeMap::from([
        ("tls.crt".to_string(), ByteString(chain.as_bytes().to_vec())),
        ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
    ]));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_view::Event;

    fn view_with(secret: Option<Secret>) -> ClusterView {
        let mut v = ClusterView::new();
        v.apply(Event::Apply(
            serde_json::from_value::<Ingress>(json!({
                "metadata": {"name": "shop", "namespace": "default", "resourceVersion": "1",
                    "annotations": {"cert-manager.io/cluster-issuer": "lab-ca"}},
                "spec": {"tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                    "rules": [{"host": "shop.example.com"}]}
            }))
            .unwrap(),
        ));
        if let Some(mut s) = secret {
            s.metadata.resource_version = Some("1".into());
            v.apply(Event::Apply(s));
        }
        v
    }

    #[test]
    fn issues_when_missing_renews_when_due_and_leaves_others_alone() {
        let served = [NsName::new("default", "shop")];
        let now = SystemTime::now();
        let want = wanted(&view_with(None), &served, now);
        assert_eq!(want.len(), 1);
        assert_eq!(want[0].hosts, ["shop.example.com"]);
        assert_eq!(want[0].issuer, "lab-ca");
        // Issued and stored: nothing to do until 30 days before its end.
        let (ca_pem, ca_key) = new_ca("weft test CA").unwrap();
        let mut ca_secret = secret(&want[0], &ca_pem, &ca_key, 0);
        ca_secret.metadata.annotations = Some(BTreeMap::from([(
            CA_NAME.to_string(),
            "weft test CA".to_string(),
        )]));
        let ca = Ca::from_secret(&ca_secret).unwrap();
        let (chain, key, not_after) = ca.issue(&want[0].hosts).unwrap();
        let issued = secret(&want[0], &chain, &key, not_after);
        assert!(wanted(&view_with(Some(issued.clone())), &served, now).is_empty());
        let later = now + Duration::from_secs(61 * 86_400);
        assert_eq!(wanted(&view_with(Some(issued)), &served, later).len(), 1);
        // A Secret someone else made is never replaced.
        let mut theirs = secret(&want[0], "x", "y", 0);
        theirs.metadata.annotations = None;
        assert!(wanted(&view_with(Some(theirs)), &served, later).is_empty());
        // What it issues is a valid certificate and key for the host, chained to the CA.
        let mut tls = Secret {
            data: Some(BTreeMap::from([
                ("tls.crt".to_string(), ByteString(chain.into_bytes())),
                ("tls.key".to_string(), ByteString(key.into_bytes())),
            ])),
            ..Secret::default()
        };
        tls.type_ = Some("kubernetes.io/tls".into());
        let certified = crate::tls::certified_key(&tls).unwrap();
        assert_eq!(certified.cert.len(), 2, "leaf and CA");
    }
}
