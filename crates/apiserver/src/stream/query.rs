//! Query parameters of the streaming subresources, decoded the way the API's parameter codec
//! decodes them: repeated `command` values make the argument vector, booleans are true unless
//! "0", "f" or "false", unknown names are ignored.

use super::StreamError;

/// `PodExecOptions` / `PodAttachOptions` from a `pods/exec` or `pods/attach` query, e.g.
/// kubectl's `command=sh&command=-c&command=date&container=app&stdin=true&stdout=true&tty=true`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteCommandOptions {
    /// The argument vector (exec only; attach has none).
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl RemoteCommandOptions {
    /// Parses and validates as kube-apiserver does: at least one stream, and for exec
    /// (`needs_command`) a command.
    pub fn from_query(query: &str, needs_command: bool) -> Result<Self, StreamError> {
        let mut opts = RemoteCommandOptions::default();
        for (name, value) in pairs(query)? {
            match name.as_str() {
                "command" => opts.command.push(value),
                "container" => opts.container = Some(value).filter(|c| !c.is_empty()),
                "stdin" => opts.stdin = flag(&value),
                "stdout" => opts.stdout = flag(&value),
                "stderr" => opts.stderr = flag(&value),
                "tty" => opts.tty = flag(&value),
                _ => {}
            }
        }
        if !(opts.stdin || opts.stdout || opts.stderr) {
            return Err(StreamError::Query {
                name: "stdin, stdout, stderr".into(),
                value: String::new(),
                reason: "you must specify at least 1 of stdin, stdout, stderr",
            });
        }
        if needs_command && opts.command.is_empty() {
            return Err(StreamError::Query {
                name: "command".into(),
                value: String::new(),
                reason: "you must specify at least one command for the container",
            });
        }
        Ok(opts)
    }
}

/// The decoded `name=value` pairs of a query string (without `?`).
pub(crate) fn pairs(query: &str) -> Result<Vec<(String, String)>, StreamError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Kubernetes' query booleans: absent is false, and so are "0", "f" and "false" in any case;
/// anything else, even an empty value, is true.
pub(crate) fn flag(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("f") || value.eq_ignore_ascii_case("false"))
}

/// A non-negative integer parameter of at least `min`.
pub(crate) fn number(name: &str, value: &str, min: i64) -> Result<u64, StreamError> {
    let invalid = |reason| StreamError::Query {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    };
    let n: i64 = value.parse().map_err(|_| invalid("not an integer"))?;
    if n < min {
        return Err(invalid(if min == 0 {
            "must be greater than or equal to 0"
        } else {
            "must be greater than 0"
        }));
    }
    u64::try_from(n).map_err(|_| invalid("out of range"))
}

/// Percent-decoding of one query component (`+` is a space in form encoding).
fn decode(raw: &str) -> Result<String, StreamError> {
    let bad = || StreamError::Query {
        name: raw.to_string(),
        value: String::new(),
        reason: "bad percent-encoding",
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_exec() {
        let opts = RemoteCommandOptions::from_query(
            "command=sh&command=-c&command=echo+a%20b%26c&container=app&stdin=true&stdout=true&tty=true",
            true,
        )
        .expect("ok");
        assert_eq!(opts.command, ["sh", "-c", "echo a b&c"]);
        assert_eq!(opts.container.as_deref(), Some("app"));
        assert!(opts.stdin && opts.stdout && opts.tty && !opts.stderr);
    }

    #[test]
    fn refuses_what_the_api_refuses() {
        assert!(RemoteCommandOptions::from_query("command=ls", true).is_err());
        assert!(RemoteCommandOptions::from_query("stdout=true", true).is_err());
        assert!(RemoteCommandOptions::from_query("stdout=true", false).is_ok());
        assert!(RemoteCommandOptions::from_query("stdout=true&command=%4", true).is_err());
    }
}
