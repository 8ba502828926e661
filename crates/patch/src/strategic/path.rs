//! The field path of the patch being merged, kept as a chain on the stack and rendered only
//! when an error needs it.

use crate::error::{PatchError, StrategicProblem};

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: Option<Step<'a>>,
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        step: None,
    };

    pub(crate) fn key<'b>(&'b self, key: &'b str) -> Path<'b> {
        Path {
            parent: Some(self),
            step: Some(Step::Key(key)),
        }
    }

    pub(crate) fn index(&self, index: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            step: Some(Step::Index(index)),
        }
    }

    pub(crate) fn error(&self, problem: StrategicProblem) -> PatchError {
        PatchError::Strategic {
            path: self.render(),
            problem,
        }
    }

    /// `spec.containers[0].env`, with keys that would read ambiguously quoted:
    /// `metadata.labels["app.kubernetes.io/name"]`.
    pub(crate) fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut at = Some(self);
        while let Some(path) = at {
            steps.extend(path.step);
            at = path.parent;
        }
        let mut out = String::new();
        for step in steps.into_iter().rev() {
            match step {
                Step::Index(index) => out.push_str(&format!("[{index}]")),
                Step::Key(key) if key.is_empty() || key.contains(['.', '[', ']', '"']) => {
                    out.push_str(&format!("[{}]", serde_json::Value::from(key)));
                }
                Step::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_kubernetes_field_path() {
        let root = Path::ROOT;
        let spec = root.key("spec");
        let containers = spec.key("containers");
        let first = containers.index(0);
        assert_eq!(first.key("env").render(), "spec.containers[0].env");
        let labels = root.key("metadata");
        let labels = labels.key("labels");
        assert_eq!(
            labels.key("app.kubernetes.io/name").render(),
            "metadata.labels[\"app.kubernetes.io/name\"]"
        );
        assert_eq!(root.render(), "");
        assert_eq!(root.index(2).render(), "[2]");
    }
}
