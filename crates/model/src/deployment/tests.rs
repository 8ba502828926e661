use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

fn deployment(replicas: Option<i32>, image: &str) -> Deployment {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": {"note": "x"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }
    });
    if let Some(r) = replicas {
        spec["replicas"] = json!(r);
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid"},
        "spec": spec
    }))
    .unwrap()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn with_times(mut pods: Vec<Pod>) -> Vec<Pod> {
    for (i, pod) in pods.iter_mut().enumerate() {
        let t = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap();
        pod.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t));
    }
    pods
}

#[test]
fn hash_is_stable_and_template_sensitive() {
    let a = deployment(None, "nginx").spec.unwrap().template;
    let b = deployment(None, "nginx:2").spec.unwrap().template;
    let h = pod_template_hash(&a);
    assert_eq!(h, pod_template_hash(&a.clone()));
    assert_ne!(h, pod_template_hash(&b));
    assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)), "{h}");
    // Pinned so an accidental change of the canonical form shows up as a failing test: a changed
    // hash would make every running lab recreate its pods.
    insta::assert_snapshot!(h, @"5cfffcdcd8");
}

#[test]
fn creates_replicas_default_one() {
    let d = deployment(None, "nginx");
    let plan = reconcile(&d, &[], &mut rng());
    assert_eq!(plan.create.len(), 1);
    assert!(plan.delete.is_empty());
    let pod = &plan.create[0];
    let hash = pod_template_hash(&d.spec.as_ref().unwrap().template);
    let name = pod.metadata.name.as_deref().unwrap();
    assert!(name.starts_with(&format!("web-{hash}-")), "{name}");
    assert_eq!(name.len(), format!("web-{hash}-").len() + 5);
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels[POD_TEMPLATE_HASH_LABEL], hash);
    assert_eq!(pod.metadata.annotations.as_ref().unwrap()["note"], "x");
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        ("apps/v1", "Deployment", "web", "d-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("nginx")
    );
    assert!(owns(&d, pod));
}

#[test]
fn deterministic_given_rng_and_converges() {
    let d = deployment(Some(3), "nginx");
    let first = reconcile(&d, &[], &mut rng());
    assert_eq!(first, reconcile(&d, &[], &mut rng()));
    assert_eq!(first.create.len(), 3);
    let names: BTreeSet<_> = first
        .create
        .iter()
        .map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), 3);
    let again = reconcile(&d, &first.create, &mut rng());
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn scales_down_newest_first() {
    let d3 = deployment(Some(3), "nginx");
    let pods = with_times(reconcile(&d3, &[], &mut rng()).create);
    let d1 = deployment(Some(1), "nginx");
    let plan = reconcile(&d1, &pods, &mut rng());
    assert!(plan.create.is_empty());
    let deleted: Vec<_> = plan.delete.iter().map(|k| k.name.clone()).collect();
    let newest: Vec<_> = pods[1..]
        .iter()
        .rev()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(deleted, newest);
    let zero = reconcile(&deployment(Some(0), "nginx"), &pods, &mut rng());
    assert_eq!(zero.delete.len(), 3);
}

#[test]
fn template_change_replaces_pods() {
    let old = reconcile(&deployment(Some(2), "nginx"), &[], &mut rng()).create;
    let d = deployment(Some(2), "nginx:2");
    let plan = reconcile(&d, &old, &mut rng());
    assert_eq!(plan.delete.len(), 2);
    assert_eq!(plan.create.len(), 2);
    let hash = pod_template_hash(&d.spec.as_ref().unwrap().template);
    assert!(plan
        .create
        .iter()
        .all(|p| p.metadata.name.as_ref().unwrap().contains(&hash)));
}

#[test]
fn ignores_pods_it_does_not_own() {
    let d = deployment(Some(1), "nginx");
    let mut pods = reconcile(&d, &[], &mut rng()).create;
    let mut other_ns = pods[0].clone();
    other_ns.metadata.namespace = Some("other".into());
    let mut other_uid = pods[0].clone();
    other_uid.metadata.name = Some("stale".into());
    other_uid.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
    let mut bare = pods[0].clone();
    bare.metadata.name = Some("bare".into());
    bare.metadata.owner_references = None;
    pods.extend([other_ns, other_uid, bare]);
    let plan = reconcile(&d, &pods, &mut rng());
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn new_names_avoid_existing_ones() {
    let d = deployment(Some(2), "nginx");
    let taken = reconcile(&d, &[], &mut rng()).create;
    // Same seed would produce the same names; they must be skipped because they exist (unowned).
    let mut unowned = taken.clone();
    for p in &mut unowned {
        p.metadata.owner_references = None;
    }
    let plan = reconcile(&d, &unowned, &mut rng());
    assert_eq!(plan.create.len(), 2);
    for p in &plan.create {
        assert!(!taken.iter().any(|t| t.metadata.name == p.metadata.name));
    }
}
