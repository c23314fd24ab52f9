//! `info ID`: everything recorded about one dump.

use coredog_core::template::human_bytes;

use super::list::Dump;
use crate::cli::InfoFormat;
use crate::output::{to_json, to_yaml};

pub fn render(dump: &Dump, format: InfoFormat) -> anyhow::Result<String> {
    match format {
        InfoFormat::Json => to_json(&dump.to_json()),
        InfoFormat::Yaml => to_yaml(&dump.to_json()),
        InfoFormat::Text => Ok(text(dump)),
    }
}

/// `Field: value` lines, right-aligned field names, as `coredumpctl info` prints them.
pub fn text(dump: &Dump) -> String {
    let key = &dump.listed.key;
    let mut fields: Vec<(&str, String)> = vec![("ID", key.id.to_string())];
    match &dump.record {
        Some(record) => {
            fields.push(("Time", record.time.to_string()));
            fields.push(("Uploaded", record.uploaded_at.to_string()));
            fields.push(("Pod", record.pod_ref()));
            fields.push(("Container", record.container.clone()));
            if let Some(uid) = &record.pod_uid {
                fields.push(("Pod UID", uid.clone()));
            }
            fields.push(("Node", record.node.clone()));
            if let Some(ip) = &record.host_ip {
                fields.push(("Host IP", ip.clone()));
            }
            if let Some(image) = &record.image {
                fields.push(("Image", image.clone()));
            }
            if !record.labels.is_empty() {
                let labels: Vec<String> = record
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                fields.push(("Labels", labels.join(", ")));
            }
            fields.push(("Executable", record.exe.clone()));
            if let Some(cmdline) = &record.cmdline {
                fields.push(("Command line", cmdline.clone()));
            }
            if let Some(pid) = record.pid {
                fields.push(("PID", pid.to_string()));
            }
            if let Some(uid) = record.uid {
                fields.push(("UID", uid.to_string()));
            }
            if let Some(hostname) = &record.hostname {
                fields.push(("Hostname", hostname.clone()));
            }
            let signal = match (record.signal, &record.signal_name) {
                (Some(number), Some(name)) => Some(format!("{number} ({name})")),
                (Some(number), None) => Some(number.to_string()),
                (None, Some(name)) => Some(name.clone()),
                (None, None) => None,
            };
            if let Some(signal) = signal {
                fields.push(("Signal", signal));
            }
            fields.push((
                "Size",
                format!("{} ({} bytes)", human_bytes(record.size), record.size),
            ));
            let compression = match record.compression {
                coredog_core::object_key::Compression::Zstd => "zstd",
                coredog_core::object_key::Compression::None => "none",
            };
            fields.push((
                "Stored",
                format!(
                    "{} ({} bytes, compression {compression})",
                    human_bytes(record.stored_size),
                    record.stored_size
                ),
            ));
            fields.push(("SHA256", record.sha256.clone()));
            fields.push(("Key", record.key.clone()));
            fields.push(("Host path", record.host_path.clone()));
        }
        None => {
            fields.push(("Time", key.time.to_string()));
            fields.push(("Pod", format!("{}/{}", key.namespace, key.pod)));
            fields.push(("Container", key.container.clone()));
            fields.push(("Executable", key.exe.clone()));
            fields.push(("PID", key.pid.to_string()));
            fields.push((
                "Stored",
                format!(
                    "{} ({} bytes)",
                    human_bytes(dump.listed.object.size),
                    dump.listed.object.size
                ),
            ));
            fields.push(("Key", dump.listed.object.key.clone()));
            fields.push((
                "Record",
                "missing: the dump is incomplete (the watcher writes the record last; it may still be uploading)".to_owned(),
            ));
        }
    }
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|(name, value)| format!("{name:>width$}: {value}\n"))
        .collect()
}
