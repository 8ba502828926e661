//! The cluster the user verbs talk to, through the Kubernetes API: a kubeconfig context
//! (`--kubeconfig`, `--context`, as kubectl takes them) or, by default, the lab named by `--lab`
//! through the kubeconfig `weft lab up` wrote for it. Nothing here opens a lab's store, so the
//! same verbs work on a lab and on a real cluster.

use std::fmt;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use futures::{Stream, StreamExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::params::{DeleteParams, GetParams, ListParams, PostParams, WatchParams};
use kube::core::{Request, WatchEvent};
use serde_json::Value;
use tokio::sync::OnceCell;
use weft_lab::layout::Layout;
use weft_model::config::ClusterName;

use crate::resources::{self, Resource};

/// Which cluster: a lab on this machine, or a kubeconfig context.
#[derive(Clone, Debug)]
pub enum Target {
    Lab(ClusterName),
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
}

impl Target {
    /// `--kubeconfig`/`--context` choose a kubeconfig context; without either, the lab.
    pub fn from_flags(
        lab: &ClusterName,
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
    ) -> Target {
        if kubeconfig.is_none() && context.is_none() {
            Target::Lab(lab.clone())
        } else {
            Target::Kubeconfig {
                path: kubeconfig,
                context,
            }
        }
    }
}

/// An error status from the API server, printed the way kubectl prints it:
/// `Error from server (NotFound): services "web" not found`.
#[derive(Debug, Clone)]
pub struct ServerError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// `details.kind` / `details.name` of the status, when it has them.
    pub details: Option<(String, String)>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "Error from server: {}", self.message)
        } else {
            write!(f, "Error from server ({}): {}", self.reason, self.message)
        }
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// The same error with its message prefixed (`error when creating Service default/x: ...`).
    pub fn about(mut self, what: impl fmt::Display) -> ServerError {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// Errors already printed (one line per failed object): the command just exits 1.
#[derive(Debug)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("errors were reported above")
    }
}

impl std::error::Error for Reported {}

/// A connected cluster: the client, the context's namespace and what the server serves.
pub struct Cluster {
    pub client: kube::Client,
    /// The context's namespace: where namespaced verbs act without `-n`.
    pub namespace: String,
    /// "lab weft (https://127.0.0.1:6443)" or "context prod (https://...)", for messages.
    server: String,
    discovered: OnceCell<Vec<Resource>>,
}

impl Cluster {
    pub async fn connect(target: &Target) -> Result<Cluster> {
        let (kubeconfig, context, lab) = match target {
            Target::Lab(lab) => {
                let layout = Layout::new(lab.clone(), &Layout::state_root_from_env());
                let path = layout.kubeconfig_file();
                if !layout.config_file().exists() {
                    return Err(weft_lab::LabError::NotUp {
                        name: lab.to_string(),
                        dir: layout.dir().to_path_buf(),
                    }
                    .into());
                }
                let kubeconfig = Kubeconfig::read_from(&path).with_context(|| {
                    format!(
                        "lab {lab} has no readable kubeconfig at {} (is its API server up? `weft lab list`)",
                        path.display()
                    )
                })?;
                (kubeconfig, None, Some(lab.clone()))
            }
            Target::Kubeconfig { path, context } => {
                // kube's messages already carry their cause: no chain to repeat it.
                let kubeconfig = match path {
                    Some(path) => Kubeconfig::read_from(path)
                        .map_err(|e| anyhow!("reading the kubeconfig {}: {e}", path.display()))?,
                    None => Kubeconfig::read().map_err(|e| {
                        anyhow!("reading the kubeconfig ($KUBECONFIG or ~/.kube/config): {e}")
                    })?,
                };
                if let Some(name) = context {
                    if !kubeconfig.contexts.iter().any(|c| c.name == *name) {
                        bail!("context {name:?} does not exist in the kubeconfig");
                    }
                }
                (kubeconfig, context.clone(), None)
            }
        };
        let options = KubeConfigOptions {
            context: context.clone(),
            ..KubeConfigOptions::default()
        };
        let chosen = context
            .clone()
            .or_else(|| kubeconfig.current_context.clone())
            .unwrap_or_default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .with_context(|| format!("using kubeconfig context {chosen:?}"))?;
        let server = match &lab {
            Some(lab) => format!("the API server of lab {lab} ({})", config.cluster_url),
            None => format!(
                "the API server of context {chosen} ({})",
                config.cluster_url
            ),
        };
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).context("building the API client")?;
        Ok(Cluster {
            client,
            namespace,
            server,
            discovered: OnceCell::new(),
        })
    }

    /// The namespace a verb acts in: `-n`, else the context's.
    pub fn namespace_or_default(&self, flag: Option<&str>) -> String {
        flag.map(str::to_string)
            .unwrap_or_else(|| self.namespace.clone())
    }

    /// A kube error as the user should see it: the server's status as kubectl prints it, any
    /// other failure (connection, TLS, a broken body) naming the server.
    pub fn error(&self, e: kube::Error) -> anyhow::Error {
        match e {
            kube::Error::Api(status) => ServerError {
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
                details: status
                    .details
                    .as_ref()
                    .map(|d| (d.kind.clone(), d.name.clone())),
            }
            .into(),
            other => anyhow::Error::new(other).context(format!("talking to {}", self.server)),
        }
    }

    async fn json(&self, req: http::Request<Vec<u8>>) -> Result<Value> {
        self.client
            .request::<Value>(req)
            .await
            .map_err(|e| self.error(e))
    }

    /// One object, None when the server says NotFound.
    pub async fn get(&self, r: &Resource, ns: Option<&str>, name: &str) -> Result<Option<Value>> {
        let req = Request::new(collection_path(r, ns)).get(name, &GetParams::default())?;
        match self.json(req).await {
            Ok(v) => Ok(Some(with_type(v, r))),
            Err(e)
                if e.downcast_ref::<ServerError>()
                    .is_some_and(|s| s.is_not_found()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The objects of one resource (in `ns`, or everywhere with None) matching `selector`, each
    /// with its apiVersion and kind, and the list's resourceVersion (where a watch starts).
    pub async fn list(
        &self,
        r: &Resource,
        ns: Option<&str>,
        selector: Option<&str>,
    ) -> Result<(Vec<Value>, String)> {
        let params = ListParams {
            label_selector: selector.map(str::to_string),
            ..ListParams::default()
        };
        let req = Request::new(collection_path(r, ns)).list(&params)?;
        let list = self.json(req).await?;
        let version = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let items = match list.get("items") {
            Some(Value::Array(items)) => items.iter().map(|v| with_type(v.clone(), r)).collect(),
            _ => Vec::new(),
        };
        Ok((items, version))
    }

    /// POST; with `dry_run` the server validates and admits it and stores nothing.
    pub async fn create(
        &self,
        r: &Resource,
        ns: Option<&str>,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let params = PostParams {
            dry_run,
            field_manager: Some("weft".into()),
        };
        let req =
            Request::new(collection_path(r, ns)).create(&params, serde_json::to_vec(body)?)?;
        self.json(req).await
    }

    /// PUT (no resourceVersion in `body`: an unconditional replace).
    pub async fn replace(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let params = PostParams {
            dry_run,
            field_manager: Some("weft".into()),
        };
        let req = Request::new(collection_path(r, ns)).replace(
            name,
            &params,
            serde_json::to_vec(body)?,
        )?;
        self.json(req).await
    }

    /// DELETE in the background (dependents go too, like kubectl); false when it was not there.
    pub async fn delete(&self, r: &Resource, ns: Option<&str>, name: &str) -> Result<bool> {
        let params = DeleteParams::background();
        let req = Request::new(collection_path(r, ns)).delete(name, &params)?;
        match self.client.request_text(req).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Changes to one resource after `version`, as watch events with the objects typed.
    pub async fn watch(
        &self,
        r: &Resource,
        ns: Option<&str>,
        selector: Option<&str>,
        field_selector: Option<&str>,
        version: &str,
    ) -> Result<impl Stream<Item = Result<WatchEvent<Value>>>> {
        let params = WatchParams {
            label_selector: selector.map(str::to_string),
            field_selector: field_selector.map(str::to_string),
            bookmarks: true,
            ..WatchParams::default()
        };
        let req = Request::new(collection_path(r, ns)).watch(&params, version)?;
        let stream = self
            .client
            .request_events::<Value>(req)
            .await
            .map_err(|e| self.error(e))?;
        let r = r.clone();
        Ok(StreamExt::map(
            stream,
            move |item: Result<WatchEvent<Value>, kube::Error>| {
                let event = item.map_err(|e| anyhow!(e).context("reading the watch"))?;
                Ok(match event {
                    WatchEvent::Added(v) => WatchEvent::Added(with_type(v, &r)),
                    WatchEvent::Modified(v) => WatchEvent::Modified(with_type(v, &r)),
                    WatchEvent::Deleted(v) => WatchEvent::Deleted(with_type(v, &r)),
                    other => other,
                })
            },
        ))
    }

    /// The resource a user means by `word` (`po`, `pods`, `deploy`, `deployments.apps`, a
    /// custom resource's names): the built-in table first, then the server's discovery.
    pub async fn resource(&self, word: &str) -> Result<Resource> {
        if let Some(r) = resources::builtin_named(word) {
            return Ok(r);
        }
        let discovered = self.discovered().await?;
        resources::find_named(discovered, word)
            .ok_or_else(|| anyhow!("the server doesn't have a resource type {word:?}"))
    }

    /// The resource storing objects of `api_version`/`kind`, None if the server has none.
    pub async fn resource_for(&self, api_version: &str, kind: &str) -> Result<Option<Resource>> {
        if let Some(r) = resources::builtin_kind(api_version, kind) {
            return Ok(Some(r));
        }
        Ok(self
            .discovered()
            .await?
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
            .cloned())
    }

    /// Discovery again, after CustomResourceDefinitions were created.
    pub async fn rediscover(&mut self) -> Result<()> {
        self.discovered = OnceCell::new();
        self.discovered().await.map(|_| ())
    }

    async fn discovered(&self) -> Result<&Vec<Resource>> {
        self.discovered
            .get_or_try_init(|| async { self.discover().await })
            .await
    }

    /// Every resource the server serves (each group's preferred version), subresources left out.
    async fn discover(&self) -> Result<Vec<Resource>> {
        let mut lists = vec![(
            String::new(),
            self.client
                .list_core_api_resources("v1")
                .await
                .map_err(|e| self.error(e))?,
        )];
        let groups = self
            .client
            .list_api_groups()
            .await
            .map_err(|e| self.error(e))?;
        for group in groups.groups {
            let Some(preferred) = group
                .preferred_version
                .or_else(|| group.versions.first().cloned())
            else {
                continue;
            };
            match self
                .client
                .list_api_group_resources(&preferred.group_version)
                .await
            {
                Ok(list) => lists.push((group.name.clone(), list)),
                // One broken aggregated API must not hide every other resource (kubectl too
                // carries on without it).
                Err(e) => tracing::debug!(group = %group.name, error = %e, "discovery"),
            }
        }
        Ok(lists
            .into_iter()
            .flat_map(|(group, list)| resources::from_discovery(&group, &list))
            .collect())
    }
}

/// `/api/v1/namespaces/NS/pods` or `/apis/GROUP/VERSION/PLURAL` (cluster-scoped, or every
/// namespace when `ns` is None).
pub fn collection_path(r: &Resource, ns: Option<&str>) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    match ns.filter(|_| r.namespaced) {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", r.plural),
        None => format!("{base}/{}", r.plural),
    }
}

/// Items of a list come without apiVersion and kind (as kube-apiserver sends them); put them
/// back so every object read here parses on its own.
fn with_type(mut v: Value, r: &Resource) -> Value {
    if let Value::Object(map) = &mut v {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(r.api_version()));
        map.entry("kind")
            .or_insert_with(|| Value::String(r.kind.clone()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_group_and_scope() {
        let pods = resources::builtin_named("po").unwrap();
        assert_eq!(
            collection_path(&pods, Some("demo")),
            "/api/v1/namespaces/demo/pods"
        );
        assert_eq!(collection_path(&pods, None), "/api/v1/pods");
        let deploy = resources::builtin_named("deploy").unwrap();
        assert_eq!(
            collection_path(&deploy, Some("default")),
            "/apis/apps/v1/namespaces/default/deployments"
        );
        let nodes = resources::builtin_named("nodes").unwrap();
        assert_eq!(collection_path(&nodes, Some("default")), "/api/v1/nodes");
    }

    #[test]
    fn server_errors_read_like_kubectl() {
        let e = ServerError {
            code: 404,
            reason: "NotFound".into(),
            message: "services \"nope\" not found".into(),
            details: None,
        };
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): services \"nope\" not found"
        );
        assert!(e.is_not_found());
        let with_object = ServerError {
            code: 422,
            reason: "Invalid".into(),
            message: "port 0".into(),
            details: None,
        }
        .about("error when creating Service default/bad");
        assert_eq!(
            with_object.to_string(),
            "Error from server (Invalid): error when creating Service default/bad: port 0"
        );
    }
}
