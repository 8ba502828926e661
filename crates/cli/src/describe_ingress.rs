//! `weft describe ingress NAME`: the Ingress as weft's controller serves it, compiled by the
//! controller's own compiler (`weft_ingress::compile`) from the API's objects: whether its
//! class is served, its address, TLS, each rule's routes with the endpoints they reach, and
//! what is wrong (a missing Service or Secret, a bad regular expression, a bad annotation
//! value), and the ingress-nginx annotations weft does not serve.

use anyhow::Result;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use weft_ingress::routes::{self, class_of, serves, RouteTable};
use weft_ingress::Settings;
use weft_view::{ClusterView, Event};

use crate::client::Cluster;
use crate::describe::Fields;
use crate::policy::all;

pub async fn describe(cluster: &Cluster, ing: &Ingress) -> Result<String> {
    let mut view = ClusterView::new();
    view.apply(Event::Relisted(all::<Ingress>(cluster).await?));
    view.apply(Event::Relisted(all::<IngressClass>(cluster).await?));
    view.apply(Event::Relisted(all::<Service>(cluster).await?));
    view.apply(Event::Relisted(all::<EndpointSlice>(cluster).await?));
    // Secrets only to check TLS ones: their contents are never printed.
    view.apply(Event::Relisted(all::<Secret>(cluster).await?));
    // As the controller reads them: the cluster config may leave class nginx alone.
    let (ns, name) = weft_ingress::run::CLUSTER_CONFIG;
    let at = weft_view::NsName::new(ns, name);
    let settings = weft_ingress::run::configured(&cluster.client, &at, Settings::default()).await;
    let table = weft_ingress::compile(&view, &settings);
    Ok(text(&view, &settings, &table, ing))
}

/// The description (pure).
pub fn text(view: &ClusterView, settings: &Settings, table: &RouteTable, ing: &Ingress) -> String {
    let key = routes::key(ing);
    let mut f = Fields::new();
    f.add("Name", key.name.clone());
    f.add("Namespace", key.namespace.clone());
    f.add("Address", routes::status_addresses(ing).join(","));
    let served = serves(view, settings, ing);
    let class = class_of(ing).unwrap_or("<none>");
    f.add(
        "Ingress Class",
        format!(
            "{class} ({})",
            if served {
                "served by weft"
            } else {
                "not weft's: left alone"
            }
        ),
    );
    let spec = ing.spec.as_ref();
    if let Some(b) = spec.and_then(|s| s.default_backend.as_ref()) {
        f.add("Default backend", backend_text(b));
    }
    let tls: Vec<String> = spec
        .and_then(|s| s.tls.as_ref())
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{} terminates {}",
                t.secret_name.as_deref().unwrap_or("<default certificate>"),
                t.hosts.clone().unwrap_or_default().join(",")
            )
        })
        .collect();
    if !tls.is_empty() {
        f.add("TLS", tls.join("\n"));
    }
    // Each of this Ingress's routes as the compiled table tries them, host by host.
    let mut rules = Vec::new();
    for rule in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten() {
        let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
        let compiled = if host.is_empty() {
            Some(&table.any)
        } else if let Some(rest) = host.strip_prefix("*.") {
            table.wildcard.get(rest)
        } else {
            table.exact.get(&host)
        };
        rules.push(if host.is_empty() {
            "*".to_string()
        } else {
            host.clone()
        });
        for route in compiled
            .into_iter()
            .flat_map(|h| &h.routes)
            .filter(|r| r.ingress == key)
        {
            rules.push(format!(
                "  {} ({}){}  ->  {}",
                route.path.text(),
                route_kind(&route.path),
                if route.https_redirect {
                    " [308 to https]"
                } else {
                    ""
                },
                route.backend.describe()
            ));
        }
    }
    if !rules.is_empty() {
        f.add("Rules", rules.join("\n"));
    }
    let annotations: Vec<String> = ing
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    f.add("Annotations", annotations.join("\n"));
    let mut out = f.render();
    let problems: Vec<&str> = table
        .problems
        .iter()
        .filter(|p| p.ingress == key)
        .map(|p| p.what.as_str())
        .collect();
    if served {
        out.push_str("Problems:\n");
        if problems.is_empty() {
            out.push_str("  <none>\n");
        }
        for p in problems {
            out.push_str(&format!("  {p}\n"));
        }
        if let Some(unserved) = table.unserved.get(&key) {
            out.push_str("Not served (annotations weft ignores):\n");
            for a in unserved {
                out.push_str(&format!("  {a}\n"));
            }
        }
    }
    out
}

fn route_kind(p: &weft_ingress::routes::PathMatch) -> &'static str {
    use weft_ingress::routes::PathMatch;
    match p {
        PathMatch::Exact(_) => "Exact",
        PathMatch::Prefix(_) => "Prefix",
        PathMatch::Literal(_) => "ImplementationSpecific",
        PathMatch::Regex(..) => "regex",
    }
}

fn backend_text(b: &k8s_openapi::api::networking::v1::IngressBackend) -> String {
    match &b.service {
        Some(s) => {
            let port = s.port.as_ref().map_or(String::new(), |p| {
                p.name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .or(p.number.map(|n| n.to_string()))
                    .unwrap_or_default()
            });
            format!("{}:{port}", s.name)
        }
        None => "<resource backend: not served>".to_string(),
    }
}
