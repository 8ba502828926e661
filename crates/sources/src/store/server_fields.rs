//! The fields the server owns (uid, creationTimestamp, generation, resourceVersion) and how an
//! incoming object is merged with the stored one, as the API server does on create and update.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::Rng;
use serde_json::Value;
use weft_model::Object;

use super::{EventKind, StoreError};

/// Which status a write stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusMode {
    /// The stored status when the incoming object carries none: what `apply` and a PUT on the main
    /// resource do (users do not write status).
    KeepStored,
    /// The incoming object's, whatever it is: controller writes (`put`, `update`) own the whole
    /// object.
    Replace,
    /// Only `.status` from the incoming object, everything else as stored: a PUT on the `/status`
    /// subresource.
    OnlyStatus,
}

/// The outcome of merging one incoming object.
pub(super) enum Merged {
    /// Nothing but server-set fields differ: the stored object stays as it is.
    Unchanged(Object),
    /// To be written with the next revision; `resourceVersion` is filled in by [`Merged::commit`].
    Changed(Object, EventKind),
}

impl Merged {
    /// Stamps the revision this change will be written as.
    pub fn commit(object: &mut Object, revision: u64) {
        object.metadata_mut().resource_version = Some(revision.to_string());
    }
}

/// A random UUID (version 4 layout), like the API server's object uids.
pub(super) fn new_uid(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn clear_server_fields(meta: &mut ObjectMeta) {
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.generation = None;
    meta.managed_fields = None;
}

fn has_status(value: &Value) -> bool {
    value.get("status").is_some_and(|s| !s.is_null())
}

/// Everything except metadata and status: what a change of bumps `generation`.
fn desired_part(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.remove("metadata");
        map.remove("status");
    }
    value
}

/// `stored` with `incoming`'s status (none if `incoming` has none): what a status write stores.
pub(super) fn with_status_of(stored: &Object, incoming: &Object) -> Result<Object, StoreError> {
    let mut json = stored.to_json();
    if let Value::Object(map) = &mut json {
        match incoming.to_json().get("status").filter(|s| !s.is_null()) {
            Some(status) => map.insert("status".to_string(), status.clone()),
            None => map.remove("status"),
        };
    }
    reparse(json, incoming)
}

fn reparse(value: Value, object: &Object) -> Result<Object, StoreError> {
    Object::from_json(value).map_err(|e| StoreError::Invalid {
        key: object.key(),
        message: e.to_string(),
    })
}

/// Merges `incoming` with what is stored under its key.
pub(super) fn merge(
    mut incoming: Object,
    stored: Option<&Object>,
    status: StatusMode,
) -> Result<Merged, StoreError> {
    if let (StatusMode::OnlyStatus, Some(stored)) = (status, stored) {
        incoming = with_status_of(stored, &incoming)?;
    }
    clear_server_fields(incoming.metadata_mut());
    let Some(stored) = stored else {
        let meta = incoming.metadata_mut();
        meta.uid = Some(new_uid(&mut rand::thread_rng()));
        // Whole seconds (all the stored form keeps), so the returned object equals a later read.
        meta.creation_timestamp = Some(weft_model::time::now());
        meta.generation = Some(1);
        return Ok(Merged::Changed(incoming, EventKind::Added));
    };
    let stored_meta = stored.metadata();
    {
        let meta = incoming.metadata_mut();
        meta.uid.clone_from(&stored_meta.uid);
        meta.creation_timestamp
            .clone_from(&stored_meta.creation_timestamp);
        meta.generation = stored_meta.generation;
        meta.resource_version
            .clone_from(&stored_meta.resource_version);
    }
    let stored_json = stored.to_json();
    let mut incoming_json = incoming.to_json();
    if status == StatusMode::KeepStored && !has_status(&incoming_json) && has_status(&stored_json) {
        if let (Value::Object(map), Some(s)) = (&mut incoming_json, stored_json.get("status")) {
            map.insert("status".to_string(), s.clone());
        }
        incoming = reparse(incoming_json.clone(), &incoming)?;
        incoming_json = incoming.to_json();
    }
    if incoming_json == stored_json {
        return Ok(Merged::Unchanged(stored.clone()));
    }
    if desired_part(&incoming_json) != desired_part(&stored_json) {
        let generation = stored_meta.generation.unwrap_or(0) + 1;
        incoming.metadata_mut().generation = Some(generation);
    }
    Ok(Merged::Changed(incoming, EventKind::Modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_uuids() {
        let uid = new_uid(&mut rand::thread_rng());
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.as_bytes()[14], b'4');
        assert_ne!(uid, new_uid(&mut rand::thread_rng()));
    }
}
