use super::*;

const GOOD: &str = r#"
# a namespace, a deployment, a service and something weft does not know
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        ports: [{containerPort: 8080}]
---
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
spec: {size: 3}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: demo}
  data: {a: "1"}
- apiVersion: v1
  kind: Node
  metadata: {name: weft-node1, namespace: ignored}
"#;

fn keys(objects: &[Object]) -> String {
    objects
        .iter()
        .map(|o| {
            format!(
                "{} [{}, handled: {}]",
                o.key(),
                o.api_version(),
                o.is_handled()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn parses_multi_document_yaml() {
    let objects = parse("good.yaml", GOOD).unwrap();
    insta::assert_snapshot!(keys(&objects), @r"
    Namespace demo [v1, handled: true]
    Deployment demo/web [apps/v1, handled: true]
    Service default/web [v1, handled: true]
    Widget default/w1 [example.com/v1, handled: false]
    ConfigMap demo/settings [v1, handled: true]
    Node weft-node1 [v1, handled: true]
    ");
    let deployment = objects[1].as_deployment().unwrap();
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(objects[5].namespace(), None);
}

#[test]
fn parses_json_and_json_lists() {
    let one = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}"#;
    let objects = parse("p.json", one).unwrap();
    assert_eq!(keys(&objects), "Pod default/p [v1, handled: true]");
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}]}"#;
    assert_eq!(parse("l.json", list).unwrap().len(), 2);
    let stream = format!("{one}\n{one}")
        .replace("\"p\"", "\"q\"")
        .replacen("\"q\"", "\"p\"", 1);
    assert_eq!(
        keys(&parse("s.json", &stream).unwrap()),
        "Pod default/p [v1, handled: true]\nPod default/q [v1, handled: true]"
    );
    let flow = "{apiVersion: v1, kind: Namespace, metadata: {name: flow}}";
    assert_eq!(
        keys(&parse("f.yaml", flow).unwrap()),
        "Namespace flow [v1, handled: true]"
    );
    assert!(parse("empty.yaml", "\n---\n# nothing\n---\n")
        .unwrap()
        .is_empty());
}

/// `kubectl get -o json` style: pretty-printed, closing brace at column 0.
fn pretty_json_namespace(name: &str) -> String {
    format!(
        "{{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"Namespace\",\n    \"metadata\": {{\n        \"name\": \"{name}\"\n    }}\n}}\n"
    )
}

#[test]
fn parses_json_documents_separated_like_yaml() {
    // Two JSON documents, as kubectl accepts them: the same objects and numbering as YAML documents.
    let two = format!(
        "{}---\n{}",
        pretty_json_namespace("a"),
        pretty_json_namespace("b")
    );
    assert_eq!(
        keys(&parse("two.json", &two).unwrap()),
        "Namespace a [v1, handled: true]\nNamespace b [v1, handled: true]"
    );
    let err = parse("two.json", &two.replace("\"b\"", "\"a\"")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "two.json: duplicate Namespace a: documents 1 and 2"
    );

    // JSON first, then YAML, then compact JSON, an empty document and a JSON List.
    let mixed = format!(
        "{}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: b}}\n---\n{}\n---\n---\n{}",
        pretty_json_namespace("a"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "b"}}"#,
        r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}}]}"#,
    );
    insta::assert_snapshot!(keys(&parse("mixed.json", &mixed).unwrap()), @r"
    Namespace a [v1, handled: true]
    Namespace b [v1, handled: true]
    ConfigMap b/c [v1, handled: true]
    Namespace d [v1, handled: true]
    ");
    // YAML first, then JSON.
    let yaml_first = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: y}}\n---\n{}",
        pretty_json_namespace("j")
    );
    assert_eq!(
        keys(&parse("mixed.yaml", &yaml_first).unwrap()),
        "Namespace y [v1, handled: true]\nNamespace j [v1, handled: true]"
    );

    // Errors name the document, its syntax, and the line in the whole file.
    let a = pretty_json_namespace("a");
    let b = pretty_json_namespace("b");
    let cases = [
        (
            "missing comma",
            format!("{a}---\n{}", b.replace("\"Namespace\",", "\"Namespace\"")),
        ),
        (
            "unclosed",
            format!("{}\n---\n{b}", a.trim_end().trim_end_matches('}')),
        ),
        ("yaml after json", format!("{a}---\nkind: [Namespace\n")),
        (
            "on the marker line",
            format!("{a}--- {{\"kind\" \"Namespace\"}}\n"),
        ),
        (
            "invalid name",
            format!("{a}---\n{}", pretty_json_namespace("B")),
        ),
    ];
    let report = cases
        .iter()
        .map(|(what, text)| format!("{what}:\n  {}", parse("bad.json", text).expect_err(what)))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(report, @r#"
    missing comma:
      bad.json: document 2: malformed JSON: did not find expected ',' or '}' at line 12 column 5, while parsing a flow mapping at line 9 column 1
    unclosed:
      bad.json: document 1: malformed JSON: did not find expected ',' or '}' at line 8 column 1, while parsing a flow mapping
    yaml after json:
      bad.json: document 2: malformed YAML: did not find expected ',' or ']' at line 10 column 1, while parsing a flow sequence at line 9 column 7
    on the marker line:
      bad.json: document 2: malformed JSON: did not find expected ',' or '}' at line 8 column 13, while parsing a flow mapping at line 8 column 5
    invalid name:
      bad.json: document 2 (Namespace B): metadata.name: "B" must consist of lower case alphanumeric characters or '-' (RFC 1123 label)
    "#);
}

const POD_HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n";

fn deployment(spec: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n{spec}")
}

#[test]
fn bad_inputs_have_precise_errors() {
    let template = "  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: x}]\n";
    let cases: Vec<(&str, String)> = vec![
        ("malformed yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: [p\n".into()),
        ("malformed json", "{\"apiVersion\": \"v1\",\n \"kind\": }".into()),
        ("missing apiVersion", "kind: Pod\nmetadata: {name: p}\n".into()),
        ("missing kind", "apiVersion: v1\nmetadata: {name: p}\n".into()),
        ("missing name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n".into()),
        ("not a mapping", "- a\n- b\n".into()),
        ("wrong apiVersion", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: web}\n".into()),
        ("wrong type", deployment(&format!("  replicas: three\n  selector: {{matchLabels: {{app: web}}}}\n{template}"))),
        ("negative replicas", deployment(&format!("  replicas: -1\n  selector: {{matchLabels: {{app: web}}}}\n{template}"))),
        ("no selector", deployment(template)),
        ("selector mismatch", deployment(&format!("  selector: {{matchLabels: {{app: api}}}}\n{template}"))),
        ("bad operator", deployment(&format!("  selector: {{matchExpressions: [{{key: app, operator: Is, values: [web]}}]}}\n{template}"))),
        ("pod without spec containers", format!("{POD_HEAD}spec: {{}}\n")),
        ("pod with empty containers", format!("{POD_HEAD}spec: {{containers: []}}\n")),
        ("duplicate container names", format!("{POD_HEAD}spec:\n  containers: [{{name: c, image: x}}, {{name: c, image: y}}]\n")),
        ("port out of range", format!("{POD_HEAD}spec:\n  containers: [{{name: c, image: x, ports: [{{containerPort: 70000}}]}}]\n")),
        ("label value type", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {version: 1}}\n".into()),
        ("bad label key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {\"a b\": x}}\n".into()),
        ("invalid name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Web_1}\n".into()),
        ("invalid namespace name", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n".into()),
        ("invalid service name", "apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\n".into()),
        ("invalid namespace", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: Demo}\n".into()),
        ("service port", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 0}]}\n".into()),
        ("other kind with slash", "apiVersion: x/v1\nkind: W\nmetadata: {name: a/b}\n".into()),
        ("duplicate", format!("{POD_HEAD}spec: {{containers: [{{name: c}}]}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n{POD_HEAD}spec: {{containers: [{{name: c}}]}}\n")),
        ("unknown field", format!("{POD_HEAD}spec:\n  containers: [{{name: c, image: x, ports: [{{contianerPort: 80}}]}}]\n")),
        ("unknown top-level field", format!("{POD_HEAD}spec: {{containers: [{{name: c}}]}}\nspce: {{}}\n")),
        ("bad list items", "apiVersion: v1\nkind: List\nitems: 3\n".into()),
    ];
    let report = cases
        .iter()
        .map(|(what, text)| {
            let err = parse("bad.yaml", text).expect_err(what);
            format!("{what}:\n  {err}")
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(report);
}

#[test]
fn error_fields_are_structured() {
    let text = format!(
        "{POD_HEAD}spec: {{containers: [{{name: c}}]}}\n---\n{}",
        deployment("  replicas: three\n")
    );
    let err = parse("examples/bad.yaml", &text).unwrap_err();
    assert_eq!(err.document, 2);
    assert_eq!(err.object.as_deref(), Some("Deployment default/web"));
    assert_eq!(err.field.as_deref(), Some("spec.selector"));
}

#[test]
fn the_documented_example_renders_as_documented() {
    let text = deployment(
        "  replicas: three\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c}]}\n",
    );
    let text = format!("{POD_HEAD}spec: {{containers: [{{name: c}}]}}\n---\n---\n{text}");
    let err = parse("examples/bad.yaml", &text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "examples/bad.yaml: document 3 (Deployment default/web): spec.replicas: invalid type: string \"three\", expected i32"
    );
}

#[test]
fn read_files_walks_directories_and_checks_across_files() {
    let dir = std::env::temp_dir().join(format!("weft-model-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let ns = |name: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
    std::fs::write(dir.join("b.yaml"), ns("b")).unwrap();
    std::fs::write(dir.join("a.yml"), ns("a")).unwrap();
    std::fs::write(
        dir.join("c.json"),
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
    std::fs::write(dir.join("sub").join("d.yaml"), ns("a")).unwrap();
    let objects = read_files(std::slice::from_ref(&dir)).unwrap();
    let names: Vec<_> = objects.iter().map(|o| o.name().to_string()).collect();
    assert_eq!(names, ["a", "b", "c"]);

    let err = read_files(&[dir.clone(), dir.join("sub").join("d.yaml")]).unwrap_err();
    let a = dir.join("a.yml").display().to_string();
    let d = dir.join("sub").join("d.yaml").display().to_string();
    assert_eq!(
        err.to_string(),
        format!("{d}: duplicate Namespace a: {a} document 1 and {d} document 1")
    );
    let missing = dir.join("missing.yaml");
    let err = read_files(std::slice::from_ref(&missing)).unwrap_err();
    assert!(err
        .to_string()
        .starts_with(&format!("{}: cannot read:", missing.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest::proptest! {
    /// Whatever the input, parsing returns (objects or an error) and never panics.
    #[test]
    fn parse_never_panics(text in "\\PC{0,200}") {
        let _ = parse("fuzz.yaml", &text);
    }

    /// Lines of a valid manifest dropped or repeated: still no panic, and a success is consistent.
    #[test]
    fn parse_survives_mangled_manifests(drop in proptest::collection::vec(proptest::bool::ANY, 80)) {
        let text: String = GOOD
            .lines()
            .zip(drop.iter().cycle())
            .filter(|(_, d)| !**d)
            .map(|(l, _)| format!("{l}\n"))
            .collect();
        if let Ok(objects) = parse("mangled.yaml", &text) {
            for object in objects {
                proptest::prop_assert!(!object.name().is_empty());
            }
        }
    }
}
