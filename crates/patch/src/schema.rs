//! Where a kind's lists merge instead of being replaced: the `patchStrategy` and
//! `patchMergeKey` struct tags of k8s.io/api, as a tree of field paths.

use std::collections::BTreeMap;
use std::sync::Arc;

/// How a strategic merge patch treats one field. Fields without one follow the defaults:
/// objects merge member by member, lists are replaced whole. Applying a patch acts on a
/// `$retainKeys` directive wherever it appears, as apimachinery does; the `retainKeys`
/// strategies are recorded because they say where clients compute one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldStrategy {
    /// `patchStrategy:"merge"` with `patchMergeKey` on a list of objects: elements with the
    /// same key merge, new ones are added. `retain_keys` records a `retainKeys` strategy too
    /// (clients then send `$retainKeys` in each element).
    MergeByKey { key: String, retain_keys: bool },
    /// `patchStrategy:"merge"` on a list of primitive values: the lists merge as sets.
    MergeSet,
    /// `patchStrategy:"replace"` on an object: the patch's object replaces the stored one.
    Replace,
    /// `patchStrategy:"retainKeys"` on an object: it merges, and clients send `$retainKeys`
    /// to clear the members they no longer set (a Deployment's `strategy`).
    RetainKeys,
}

impl FieldStrategy {
    pub fn merge_by(key: &str) -> FieldStrategy {
        FieldStrategy::MergeByKey {
            key: key.to_string(),
            retain_keys: false,
        }
    }

    pub(crate) fn merges_lists(&self) -> bool {
        matches!(
            self,
            FieldStrategy::MergeByKey { .. } | FieldStrategy::MergeSet
        )
    }

    pub(crate) fn merge_key(&self) -> Option<&str> {
        match self {
            FieldStrategy::MergeByKey { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The patch strategies of one kind, by field path. Paths are the JSON field names joined
/// with `.`; list elements add no segment (`spec.containers.ports` is the `ports` list of
/// every container).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schema {
    root: Arc<Node>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Node {
    fields: BTreeMap<String, Field>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Field {
    pub(crate) strategy: Option<FieldStrategy>,
    pub(crate) node: Node,
}

impl Node {
    pub(crate) fn field(&self, name: &str) -> Option<&Field> {
        self.fields.get(name)
    }
}

impl Schema {
    /// No strategies anywhere: a strategic merge patch then acts as a merge patch that also
    /// understands the directives.
    pub fn empty() -> Schema {
        Schema::default()
    }

    /// The strategies of a built-in kind, as k8s.io/api v1.34 tags them; `None` for kinds
    /// without that metadata (custom resources, unknown kinds), for which kube-apiserver
    /// answers a strategic merge patch with 415 Unsupported Media Type.
    pub fn for_kind(api_version: &str, kind: &str) -> Option<Schema> {
        crate::kinds::schema(api_version, kind)
    }

    /// This schema with `strategy` at `path` (replacing what was there).
    pub fn with(mut self, path: &str, strategy: FieldStrategy) -> Schema {
        let mut node = Arc::make_mut(&mut self.root);
        let mut segments = path.split('.').peekable();
        while let Some(segment) = segments.next() {
            let field = node.fields.entry(segment.to_string()).or_default();
            if segments.peek().is_none() {
                field.strategy = Some(strategy);
                break;
            }
            node = &mut field.node;
        }
        self
    }

    /// The strategy at `path`, if it has one.
    pub fn strategy(&self, path: &str) -> Option<&FieldStrategy> {
        let mut node = &*self.root;
        let mut found = None;
        for segment in path.split('.') {
            let field = node.field(segment)?;
            found = field.strategy.as_ref();
            node = &field.node;
        }
        found
    }

    pub(crate) fn root(&self) -> &Node {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_are_found_by_path_and_only_there() {
        let schema = Schema::empty()
            .with("spec.containers", FieldStrategy::merge_by("name"))
            .with(
                "spec.containers.ports",
                FieldStrategy::merge_by("containerPort"),
            )
            .with("metadata.finalizers", FieldStrategy::MergeSet);
        assert_eq!(
            schema.strategy("spec.containers"),
            Some(&FieldStrategy::merge_by("name"))
        );
        assert_eq!(
            schema.strategy("spec.containers.ports"),
            Some(&FieldStrategy::merge_by("containerPort"))
        );
        assert_eq!(
            schema.strategy("metadata.finalizers"),
            Some(&FieldStrategy::MergeSet)
        );
        assert_eq!(schema.strategy("spec"), None);
        assert_eq!(schema.strategy("spec.ports"), None);
        assert_eq!(schema.strategy("spec.containers.env"), None);
    }

    #[test]
    fn with_replaces_and_leaves_clones_alone() {
        let before = Schema::empty().with("spec.x", FieldStrategy::MergeSet);
        let after = before.clone().with("spec.x", FieldStrategy::Replace);
        assert_eq!(before.strategy("spec.x"), Some(&FieldStrategy::MergeSet));
        assert_eq!(after.strategy("spec.x"), Some(&FieldStrategy::Replace));
    }
}
