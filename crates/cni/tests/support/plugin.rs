//! Executes CNI plugins the way a runtime does (environment, config on stdin, result on
//! stdout), so a chain can be driven step by step without podman and each step's result checked.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use weft_testutil::TestNetns;

use super::REFERENCE_PLUGIN_DIR;

/// The CNI operations these tests drive.
#[derive(Clone, Copy, Debug)]
pub enum CniCommand {
    Add,
    Check,
    Del,
}

impl CniCommand {
    fn as_env(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Check => "CHECK",
            Self::Del => "DEL",
        }
    }
}

/// Where a plugin runs (`host`, the namespace the runtime is in) and which attachment it wires.
pub struct Attachment<'a> {
    pub host: &'a TestNetns,
    pub pod: &'a TestNetns,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

/// A plugin exited non-zero; stdout holds the CNI error object, if the plugin wrote one.
pub struct PluginFailure {
    pub plugin: String,
    pub command: CniCommand,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Debug for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.plugin, self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `plugin` for `command` on `attachment` with `config` on stdin, inside the host namespace.
/// Returns the parsed result (ADD), or `Value::Null` when the plugin printed nothing (DEL, CHECK).
pub fn exec_plugin(
    plugin: &Path,
    command: CniCommand,
    attachment: &Attachment<'_>,
    config: &Value,
) -> Result<Value, PluginFailure> {
    let mut child = attachment
        .host
        .command(plugin.to_str().expect("plugin path is UTF-8"))
        .env("CNI_COMMAND", command.as_env())
        .env("CNI_CONTAINERID", attachment.container_id)
        .env("CNI_NETNS", attachment.pod.path())
        .env("CNI_IFNAME", attachment.ifname)
        .env("CNI_ARGS", "")
        .env("CNI_PATH", REFERENCE_PLUGIN_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", plugin.display()));
    let stdin = serde_json::to_vec(config).expect("serialize plugin config");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&stdin)
        .unwrap_or_else(|e| panic!("cannot write config to {}: {e}", plugin.display()));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", plugin.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(PluginFailure {
            plugin: plugin.display().to_string(),
            command,
            status: output.status.to_string(),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    if stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{} {command:?} printed a result that is not JSON ({e}): {stdout}",
            plugin.display()
        )
    }))
}

/// `config` (a conflist entry plus the list's `name` and `cniVersion`) with `prevResult` set,
/// as a runtime builds each plugin's stdin in a chain.
pub fn with_prev_result(config: &Value, prev: &Value) -> Value {
    let mut config = config.clone();
    config["prevResult"] = prev.clone();
    config
}
