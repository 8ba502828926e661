//! Reading a metrics exposition the way Prometheus's own client library reads it (Debian's
//! python3-prometheus-client, run with Debian's python3), so a test checks the text format
//! against a real parser rather than against its own idea of it.

use std::io::Write;
use std::process::{Command, Stdio};

/// Each sample of `text` as `type name [labels] value`, one per line, as the Python Prometheus
/// client's parser reads it; a malformed exposition fails the test with the parser's error.
pub fn parsed_by_prometheus(text: &str) -> String {
    const SCRIPT: &str = "import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        print(f.type, s.name, sorted(s.labels.items()), s.value)
";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Debian's python3 (scripts/deps.sh installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
