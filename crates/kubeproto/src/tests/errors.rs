//! Bad bodies: each error names what was wrong and where.

use super::{body, Msg};
use crate::error::{DecodeError, Problem};
use crate::{decode, MAGIC};

fn deployment_with_container(container: Msg) -> Vec<u8> {
    let template = Msg::new().msg(
        2,
        Msg::new()
            .msg(2, Msg::new().string(1, "ok"))
            .msg(2, container),
    );
    let spec = Msg::new().msg(3, template);
    body("apps/v1", "Deployment", &Msg::new().msg(2, spec))
}

type Located = (String, &'static str, Option<u32>, Problem);

/// The path, message, field number and problem of an error inside the object.
fn object_problem(result: Result<serde_json::Value, DecodeError>) -> Located {
    match result {
        Err(DecodeError::Object(e)) => (e.path, e.message, e.field, e.problem),
        other => panic!("expected an object error, got {other:?}"),
    }
}

#[test]
fn unknown_field_names_message_number_and_path() {
    let result = decode(&deployment_with_container(
        Msg::new().string(1, "web").string(99, "x"),
    ));
    let err = result.clone().err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "apps/v1 Deployment: k8s.io.api.core.v1.Container field 99 at \
             spec.template.spec.containers[1]: unknown field"
        )
    );
    let (path, message, field, problem) = object_problem(result);
    assert_eq!(path, "spec.template.spec.containers[1]");
    assert_eq!(message, "k8s.io.api.core.v1.Container");
    assert_eq!(field, Some(99));
    assert_eq!(problem, Problem::UnknownField);
}

#[test]
fn unknown_field_at_the_root_and_in_a_map_value() {
    let (path, message, field, _) =
        object_problem(decode(&body("v1", "ConfigMap", &Msg::new().int(15, 1))));
    assert_eq!(
        (path.as_str(), message, field),
        (".", "k8s.io.api.core.v1.ConfigMap", Some(15))
    );

    let limits = Msg::new().entry_msg(1, "cpu", Msg::new().string(1, "1").int(2, 5));
    let container = Msg::new().msg(8, limits);
    let (path, message, field, _) = object_problem(decode(&deployment_with_container(container)));
    assert_eq!(
        path,
        "spec.template.spec.containers[1].resources.limits[\"cpu\"]"
    );
    assert_eq!(
        (message, field),
        ("k8s.io.apimachinery.pkg.api.resource.Quantity", Some(2))
    );
}

#[test]
fn wrong_wire_type() {
    // spec.replicas sent as a string.
    let d = Msg::new().msg(2, Msg::new().string(1, "3"));
    let (path, message, field, problem) =
        object_problem(decode(&body("apps/v1", "Deployment", &d)));
    assert_eq!(
        (path.as_str(), message, field),
        ("spec", "k8s.io.api.apps.v1.DeploymentSpec", Some(1))
    );
    assert_eq!(
        problem,
        Problem::WrongWireType {
            expected: "varint",
            found: "length-delimited"
        }
    );
}

#[test]
fn truncated_and_malformed_bytes() {
    let raw = Msg::new().msg(1, Msg::new().string(1, "name"));
    let mut cut = MAGIC.to_vec();
    cut.extend_from_slice(
        Msg::new()
            .msg(1, Msg::new().string(1, "v1").string(2, "ConfigMap"))
            .bytes(2, raw.as_bytes())
            .as_bytes(),
    );
    cut.truncate(cut.len() - 2);
    // The envelope's raw field is cut, so the envelope is what fails.
    assert!(matches!(
        decode(&cut),
        Err(DecodeError::Envelope {
            field: Some(2),
            problem: Problem::Truncated
        })
    ));

    let bad_utf8 = Msg::new().msg(1, Msg::new().bytes(1, &[0xff, 0xfe]));
    let (_, _, field, problem) = object_problem(decode(&body("v1", "ConfigMap", &bad_utf8)));
    assert_eq!((field, problem), (Some(1), Problem::InvalidUtf8));

    let group = Msg::new().raw(&[0x0b]); // field 1, wire type 3 (start group)
    let (_, _, field, problem) = object_problem(decode(&body("v1", "ConfigMap", &group)));
    assert_eq!((field, problem), (Some(1), Problem::UnsupportedWireType(3)));

    let long_varint = Msg::new().raw(&[
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    let spec = Msg::new().msg(2, long_varint);
    let (_, _, _, problem) = object_problem(decode(&body("apps/v1", "Deployment", &spec)));
    assert_eq!(problem, Problem::VarintTooLong);
}

#[test]
fn envelope_errors() {
    assert_eq!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(DecodeError::MissingMagic)
    );
    assert_eq!(decode(b""), Err(DecodeError::MissingMagic));
    let mut unknown_field = MAGIC.to_vec();
    unknown_field.extend_from_slice(Msg::new().string(5, "x").as_bytes());
    assert_eq!(
        decode(&unknown_field),
        Err(DecodeError::Envelope {
            field: Some(5),
            problem: Problem::UnknownField
        })
    );
    let mut gzip = MAGIC.to_vec();
    gzip.extend_from_slice(
        Msg::new()
            .msg(1, Msg::new().string(1, "v1").string(2, "Pod"))
            .string(3, "gzip")
            .as_bytes(),
    );
    assert!(matches!(
        decode(&gzip),
        Err(DecodeError::UnsupportedEncoding {
            what: "contentEncoding",
            ..
        })
    ));
    let mut no_kind = MAGIC.to_vec();
    no_kind.extend_from_slice(Msg::new().msg(1, Msg::new().string(1, "v1")).as_bytes());
    assert_eq!(
        decode(&no_kind),
        Err(DecodeError::MissingTypeMeta { missing: "kind" })
    );
    assert_eq!(
        decode(&body("example.com/v1", "Widget", &Msg::new())),
        Err(DecodeError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
}

#[test]
fn bad_special_values() {
    let port = Msg::new().msg(4, Msg::new().int(1, 2));
    let svc = Msg::new().msg(2, Msg::new().msg(1, port));
    let (path, message, field, problem) = object_problem(decode(&body("v1", "Service", &svc)));
    assert_eq!(path, "spec.ports[0].targetPort");
    assert_eq!(
        (message, field),
        ("k8s.io.apimachinery.pkg.util.intstr.IntOrString", Some(1))
    );
    assert_eq!(problem, Problem::IntOrStringType(2));

    let far_future = Msg::new().msg(1, Msg::new().msg(8, Msg::new().int(1, i64::MAX)));
    let (path, _, _, problem) = object_problem(decode(&body("v1", "ConfigMap", &far_future)));
    assert_eq!(path, "metadata.creationTimestamp");
    assert!(matches!(problem, Problem::TimeOutOfRange { .. }));

    let bad_json = Msg::new().msg(2, Msg::new().bytes(1, b"{not json"));
    let (path, _, _, problem) = object_problem(decode(&body("v1", "List", &bad_json)));
    assert_eq!(path, "items[0]");
    assert!(matches!(problem, Problem::InvalidJson(_)));
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    // A RawExtension holding a protobuf List whose RawExtension holds another, and so on.
    let mut inner = body("v1", "List", &Msg::new());
    for _ in 0..200 {
        inner = body(
            "v1",
            "List",
            &Msg::new().msg(2, Msg::new().bytes(1, &inner)),
        );
    }
    let err = decode(&inner).err();
    let mut problem = match err {
        Some(DecodeError::Object(e)) => e.problem,
        other => panic!("expected an object error, got {other:?}"),
    };
    while let Problem::Embedded(inner) = problem {
        problem = match *inner {
            DecodeError::Object(e) => e.problem,
            other => panic!("expected an object error, got {other:?}"),
        };
    }
    assert_eq!(problem, Problem::TooDeep(crate::object::MAX_DEPTH));
}
