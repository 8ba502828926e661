//! Watches. One [`Hub`] follows the store's change log (woken at once by this server's own
//! writes, polling every few milliseconds for writes of other processes) and broadcasts each
//! change; every watch request filters that stream for its resource, namespace and selectors.
//! A watch starting from an older revision, or one that fell behind the broadcast, catches up
//! from the store's log, so no event is skipped; a revision compaction has dropped is 410 Gone.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, Notify};
use weft_sources::{Change, EventKind, Store, StoreError};

use crate::api::Api;
use crate::crud::{blocking, snapshot, store_error, wants_table};
use crate::request::Query;
use crate::resources::Resource;
use crate::select::Filter;
use crate::status::ApiError;
use crate::table::IncludeObject;
use crate::Body;

/// How often the hub looks for other processes' writes when nothing woke it. Writes are
/// noticed at once through inotify on the database's directory (every commit writes the WAL
/// file); the poll is the fallback should an event be missed or inotify be unavailable.
const POLL: Duration = Duration::from_millis(100);
/// How many changes the hub reads per query.
const BATCH: usize = 1000;

/// The one follower of the store's change log in this server.
pub struct Hub {
    tx: broadcast::Sender<Arc<Change>>,
    /// The revision of the last change broadcast.
    position: AtomicU64,
    wake: Notify,
}

impl Hub {
    pub fn start(store: Store) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(8192);
        let start = store.revision().unwrap_or(0);
        let hub = Arc::new(Hub {
            tx,
            position: AtomicU64::new(start),
            wake: Notify::new(),
        });
        watch_files(store.dir(), hub.clone());
        let pump = hub.clone();
        tokio::spawn(async move { pump.run(store).await });
        hub
    }

    /// Something was written: look now rather than at the next poll.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    async fn run(self: Arc<Hub>, store: Store) {
        loop {
            let after = self.position();
            let s = store.clone();
            match blocking(move || s.changes(after, BATCH)).await {
                Ok(changes) if !changes.is_empty() => {
                    for change in changes {
                        self.position.store(change.revision, Ordering::Release);
                        // No receivers is fine: nobody is watching.
                        let _ = self.tx.send(Arc::new(change));
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(StoreError::Compacted { oldest, .. }) => {
                    // Fell behind compaction: watchers catch up (or get 410) on their own.
                    tracing::warn!("watch hub fell behind compaction; continuing at {oldest}");
                    self.position
                        .store(oldest.saturating_sub(1), Ordering::Release);
                }
                Err(e) => {
                    tracing::warn!("reading the change log: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Wakes the hub whenever a file in the store's directory changes: the lab's other processes
/// (controller, kubelets) write the same database, and their commits show up as writes to its
/// WAL file. A thread of its own, since reading inotify events blocks.
fn watch_files(dir: &std::path::Path, hub: Arc<Hub>) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inotify = match Inotify::init(InitFlags::IN_CLOEXEC) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("inotify unavailable ({e}); watches follow other writers by polling");
            return;
        }
    };
    if let Err(e) = inotify.add_watch(dir, AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE) {
        tracing::warn!(
            "watching {}: {e}; watches follow other writers by polling",
            dir.display()
        );
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("store-inotify".into())
        .spawn(move || loop {
            match inotify.read_events() {
                Ok(_) => hub.poke(),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!("reading inotify events: {e}; falling back to polling");
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("starting the inotify thread: {e}");
    }
}

/// What one watch request wants.
struct Watcher {
    resource: Resource,
    /// The kind whose changes concern it (EndpointSlice for the Endpoints view).
    store_kind: String,
    namespace: Option<String>,
    filter: Filter,
    table: Option<IncludeObject>,
    /// Keys that matched the filter when last seen, so a change out of the selection is a DELETED.
    known: BTreeSet<String>,
    /// The last revision processed (delivered or filtered out).
    sent: u64,
    first: bool,
}

pub(crate) async fn serve(
    api: &Api,
    req: &Request<Body>,
    resource: &Resource,
    namespace: Option<String>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(query)?;
    filter.check_fields(&resource.group, &resource.kind)?;
    let rv = query.get("resourceVersion").unwrap_or_default().to_string();
    let initial_events = query.flag("sendInitialEvents");
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .number("timeoutSeconds")
        .map_err(ApiError::bad_request)?
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let mut watcher = Watcher {
        resource: resource.clone(),
        store_kind: if resource.kind == "Endpoints" {
            "EndpointSlice".into()
        } else {
            resource.kind.clone()
        },
        namespace: namespace.clone(),
        filter,
        table: wants_table(req),
        known: BTreeSet::new(),
        sent: 0,
        first: true,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut rx_changes = api.hub.tx.subscribe();
    let mut initial = Vec::new();
    if rv.is_empty() || rv == "0" || initial_events {
        let (revision, items) =
            snapshot(api, resource, namespace.as_deref(), &watcher.filter).await?;
        watcher.sent = revision;
        for item in items {
            watcher.known.insert(item_key(&item));
            initial.push(watcher.event("ADDED", item));
        }
        if initial_events {
            initial.push(watcher.bookmark(true));
        }
    } else {
        let from: u64 = rv.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {rv:?}: must be a number"
            ))
        })?;
        watcher.sent = from;
        // The selection as it is now stands for what the client had: enough to tell a change
        // out of the selection (DELETED) from one the client never saw.
        if !watcher.filter.is_empty() {
            let (_, items) = snapshot(api, resource, namespace.as_deref(), &watcher.filter).await?;
            watcher.known = items.iter().map(item_key).collect();
        }
        // A revision compaction dropped: the client must list again.
        let store = api.store.clone();
        if let Err(StoreError::Compacted { requested, oldest }) =
            blocking(move || store.changes(from, 1)).await
        {
            return Err(ApiError::expired(requested, oldest));
        }
    }
    let store = api.store.clone();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            // Catch up from the store: changes before the broadcast reached us, or that we missed.
            if let Err(status) = watcher.catch_up(&store, &tx).await {
                let _ = tx.send(status).await;
                return;
            }
            loop {
                tokio::select! {
                    change = rx_changes.recv() => match change {
                        Ok(change) => {
                            if change.revision <= watcher.sent {
                                continue;
                            }
                            if change.revision > watcher.sent + 1 {
                                // A gap (a change another watcher's catch-up saw first): read it.
                                break;
                            }
                            if !watcher.deliver(&store, &change, &tx).await {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick(), if bookmarks => {
                        if tx.send(watcher.bookmark(false)).await.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tx.closed() => return,
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::io::Error>(Frame::data(bytes)), rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn item_key(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

impl Watcher {
    fn event(&mut self, kind: &str, object: Value) -> Bytes {
        let object = match self.table {
            Some(include) => {
                let rv = object["metadata"]["resourceVersion"].clone();
                let mut table = crate::table::table(
                    &self.resource.plural,
                    &[object],
                    include,
                    &weft_model::time::now(),
                    json!({"resourceVersion": rv}),
                );
                // kubectl prints the header once: only the first event carries the columns.
                if !self.first {
                    if let Some(map) = table.as_object_mut() {
                        map.remove("columnDefinitions");
                    }
                }
                table
            }
            None => object,
        };
        self.first = false;
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&mut self, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": self.sent.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata});
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// Delivers every change after `sent` that the store still has; an ERROR line if it lost them.
    async fn catch_up(&mut self, store: &Store, tx: &mpsc::Sender<Bytes>) -> Result<(), Bytes> {
        loop {
            let after = self.sent;
            let s = store.clone();
            let changes = match blocking(move || s.changes(after, BATCH)).await {
                Ok(changes) => changes,
                Err(e) => {
                    let status = store_error(e, &self.resource, "").to_status();
                    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": status}))
                        .unwrap_or_default();
                    line.push(b'\n');
                    return Err(Bytes::from(line));
                }
            };
            let done = changes.len() < BATCH;
            for change in changes {
                if !self.deliver(store, &change, tx).await {
                    return Ok(());
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Sends the change if it concerns this watch; false once the client is gone.
    async fn deliver(&mut self, store: &Store, change: &Change, tx: &mpsc::Sender<Bytes>) -> bool {
        self.sent = self.sent.max(change.revision);
        if change.key.kind != self.store_kind {
            return true;
        }
        if self.resource.namespaced
            && self.namespace.is_some()
            && change.key.namespace != self.namespace
        {
            return true;
        }
        let (object, gone) = if self.store_kind != self.resource.kind {
            // The Endpoints view: recompute the Service's endpoints from its slices now.
            let Some(service) = change
                .object
                .metadata()
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .cloned()
            else {
                return true;
            };
            let s = store.clone();
            let slices = blocking(move || s.list("EndpointSlice"))
                .await
                .unwrap_or_default();
            let ns = change.key.namespace.clone();
            match crate::endpoints::endpoints(&slices, ns.as_deref(), Some(&service)).pop() {
                Some(view) => (view, false),
                None => (
                    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": service, "namespace": ns, "resourceVersion": change.revision.to_string()}}),
                    true,
                ),
            }
        } else {
            (change.object.to_json(), change.kind == EventKind::Deleted)
        };
        let key = item_key(&object);
        let selected = self.filter.matches(&object);
        let was_known = self.known.contains(&key);
        let kind = match (gone, selected, was_known) {
            (true, _, true) | (false, false, true) => {
                self.known.remove(&key);
                "DELETED"
            }
            (true, _, false) if self.filter.is_empty() && self.store_kind == self.resource.kind => {
                "DELETED"
            }
            (true, _, false) | (false, false, false) => return true,
            (false, true, true) => "MODIFIED",
            (false, true, false) => {
                self.known.insert(key);
                if self.filter.is_empty()
                    && self.store_kind == self.resource.kind
                    && change.kind == EventKind::Modified
                {
                    "MODIFIED"
                } else {
                    "ADDED"
                }
            }
        };
        let line = self.event(kind, object);
        tx.send(line).await.is_ok()
    }
}
