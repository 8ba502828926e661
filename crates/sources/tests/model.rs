//! Random sequences of the API server's writes, through two handles and dry runs, give the same
//! results, objects and revisions as the same sequence applied to a map; and the change log replayed
//! from revision 0 rebuilds the final objects exactly.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use support::rv;
use weft_model::{Object, ObjectKey};
use weft_sources::{EventKind, StatusMode, Store, StoreError};

const TEAM: &str = "team";

#[derive(Clone, Copy, Debug)]
enum Precondition {
    None,
    Current,
    Stale,
}

#[derive(Clone, Debug)]
enum Action {
    Create {
        key: ObjectKey,
        value: u8,
    },
    Replace {
        key: ObjectKey,
        value: u8,
        pre: Precondition,
    },
    Delete {
        key: ObjectKey,
        pre: Precondition,
    },
    CreateTeam,
    DeleteTeam,
}

#[derive(Clone, Debug)]
struct Op {
    action: Action,
    /// Through the second handle (its own caches) instead of the first.
    other_handle: bool,
    dry_run: bool,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let key = (prop::bool::ANY, 0u8..4).prop_map(|(team, n)| {
        ObjectKey::namespaced(
            "ConfigMap",
            if team { TEAM } else { "default" },
            format!("cm{n}"),
        )
    });
    let pre = prop_oneof![
        Just(Precondition::None),
        Just(Precondition::Current),
        Just(Precondition::Stale)
    ];
    let action = prop_oneof![
        4 => (key.clone(), 0u8..3).prop_map(|(key, value)| Action::Create { key, value }),
        4 => (key.clone(), 0u8..3, pre.clone())
            .prop_map(|(key, value, pre)| Action::Replace { key, value, pre }),
        2 => (key, pre).prop_map(|(key, pre)| Action::Delete { key, pre }),
        1 => Just(Action::CreateTeam),
        1 => Just(Action::DeleteTeam),
    ];
    let op = (action, prop::bool::ANY, prop::bool::weighted(0.2)).prop_map(
        |(action, other_handle, dry_run)| Op {
            action,
            other_handle,
            dry_run,
        },
    );
    prop::collection::vec(op, 0..40)
}

fn config_map(key: &ObjectKey, value: u8) -> Object {
    Object::from_json(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": key.name, "namespace": key.namespace}, "data": {"v": value.to_string()}}))
    .unwrap()
}

fn team_key() -> ObjectKey {
    ObjectKey::cluster_scoped("Namespace", TEAM)
}

/// What the store should hold: per key, the ConfigMap value (None for the Namespace) and revision.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    revision: u64,
    objects: BTreeMap<ObjectKey, (Option<u8>, u64)>,
}

/// The outcome of one write, as comparable text: the error's variant or the revision written.
fn outcome(result: Result<Option<Object>, StoreError>) -> String {
    match result {
        Ok(Some(object)) => format!("ok {}", rv(&object)),
        Ok(None) => "none".to_string(),
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => format!("conflict {expected} {actual}"),
        Err(StoreError::NotFound { .. }) => "not found".to_string(),
        Err(StoreError::AlreadyExists { .. }) => "exists".to_string(),
        Err(StoreError::NamespaceMissing { .. }) => "no namespace".to_string(),
        Err(e) => format!("unexpected: {e}"),
    }
}

impl Model {
    fn expected(&self, key: &ObjectKey, pre: Precondition) -> Option<u64> {
        let current = self.objects.get(key).map_or(0, |(_, rv)| *rv);
        match pre {
            Precondition::None => None,
            Precondition::Current => Some(current),
            Precondition::Stale => Some(current + 1000),
        }
    }

    fn team_exists(&self) -> bool {
        self.objects.contains_key(&team_key())
    }

    fn next(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Applies `action` and returns the outcome the store must report.
    fn apply(&mut self, action: &Action) -> String {
        match action {
            Action::Create { key, value } => {
                let missing = key.namespace.as_deref() == Some(TEAM) && !self.team_exists();
                if missing {
                    return "no namespace".into();
                }
                if self.objects.contains_key(key) {
                    return "exists".into();
                }
                let rv = self.next();
                self.objects.insert(key.clone(), (Some(*value), rv));
                format!("ok {rv}")
            }
            Action::Replace { key, value, pre } => {
                let Some(&(stored, current)) = self.objects.get(key) else {
                    return "not found".into();
                };
                match self.expected(key, *pre) {
                    Some(expected) if expected != current => {
                        return format!("conflict {expected} {current}")
                    }
                    _ => {}
                }
                if stored == Some(*value) {
                    return format!("ok {current}");
                }
                let rv = self.next();
                self.objects.insert(key.clone(), (Some(*value), rv));
                format!("ok {rv}")
            }
            Action::Delete { key, pre } => self.delete(key, *pre),
            Action::CreateTeam => {
                if self.team_exists() {
                    return "exists".into();
                }
                let rv = self.next();
                self.objects.insert(team_key(), (None, rv));
                format!("ok {rv}")
            }
            Action::DeleteTeam => self.delete(&team_key(), Precondition::None),
        }
    }

    fn delete(&mut self, key: &ObjectKey, pre: Precondition) -> String {
        let Some(&(_, current)) = self.objects.get(key) else {
            return "none".into();
        };
        match self.expected(key, pre) {
            Some(expected) if expected != current => {
                return format!("conflict {expected} {current}")
            }
            _ => {}
        }
        if *key == team_key() {
            let inside: Vec<ObjectKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace.as_deref() == Some(TEAM))
                .cloned()
                .collect();
            for inner in inside {
                self.next();
                self.objects.remove(&inner);
            }
        }
        self.objects.remove(key);
        format!("ok {}", self.next())
    }
}

fn run(store: &Store, action: &Action, model: &Model) -> String {
    match action {
        Action::Create { key, value } => outcome(store.create(config_map(key, *value)).map(Some)),
        Action::Replace { key, value, pre } => outcome(
            store
                .replace(
                    config_map(key, *value),
                    model.expected(key, *pre),
                    StatusMode::Replace,
                )
                .map(Some),
        ),
        Action::Delete { key, pre } => outcome(store.delete_object(key, model.expected(key, *pre))),
        Action::CreateTeam => outcome(
            store
                .create(
                    Object::from_json(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": TEAM}}))
                    .unwrap(),
                )
                .map(Some),
        ),
        Action::DeleteTeam => outcome(store.delete_object(&team_key(), None)),
    }
}

fn contents(objects: Vec<Object>) -> BTreeMap<ObjectKey, (Option<u8>, u64)> {
    objects
        .into_iter()
        .map(|o| {
            let value = o
                .as_config_map()
                .map(|cm| cm.data.as_ref().unwrap()["v"].parse().unwrap());
            (o.key(), (value, rv(&o)))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map(ops in ops()) {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path()).unwrap();
        let mut model = Model::default();
        for op in &ops {
            let handle = if op.other_handle { &second } else { &first };
            let store = if op.dry_run { handle.dry_run() } else { handle.clone() };
            // A dry run reports what the write would do and then changes nothing.
            let mut after = model.clone();
            let expected = after.apply(&op.action);
            prop_assert_eq!(run(&store, &op.action, &model), expected, "{:?}", op);
            if !op.dry_run {
                model = after;
            }
            prop_assert_eq!(contents(handle.list("ConfigMap").unwrap()).len(),
                model.objects.keys().filter(|k| k.kind == "ConfigMap").count());
        }
        prop_assert_eq!(first.revision().unwrap(), model.revision);
        prop_assert_eq!(contents(first.list_all().unwrap()), model.objects.clone());
        prop_assert_eq!(contents(second.list_all().unwrap()), model.objects.clone());

        let mut replayed: BTreeMap<ObjectKey, Object> = BTreeMap::new();
        let changes = first.changes(0, usize::MAX).unwrap();
        let revisions: Vec<u64> = changes.iter().map(|c| c.revision).collect();
        prop_assert_eq!(revisions, (1..=model.revision).collect::<Vec<_>>());
        for change in changes {
            match change.kind {
                EventKind::Deleted => replayed.remove(&change.key),
                _ => replayed.insert(change.key, change.object),
            };
        }
        let stored: BTreeMap<ObjectKey, Object> =
            first.list_all().unwrap().into_iter().map(|o| (o.key(), o)).collect();
        prop_assert_eq!(replayed, stored);
    }
}
