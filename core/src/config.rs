//! The configuration file read by the watcher and by `kubectl coredog list/info/fetch`.
//!
//! The keys are those users of the system this replaces already have in their values files, so
//! those files keep working unchanged:
//!
//! ```yaml
//! StorageConfig:
//!   protocol: s3            # s3 | cos | oss | cfs
//!   s3AccesskeyID: "your_ak"
//!   s3SecretAccessKey: "your_sk"
//!   s3Region: "ap-nanjing"
//!   S3Bucket: "my-bucket-1234567890"
//!   S3Endpoint: "cos.ap-nanjing.myqcloud.com"
//!   CFSMountPath: "/mnt/cfs"
//!   StoreDir: corefiles
//!   DeleteLocalCorefile: true
//! NoticeChannel:
//!   - chan: wechat
//!     webhookurl: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY"
//!     keyword: ""
//! messageTemplate: |
//!   Pod: {pod.namespace}/{pod.name}
//! CoreSight:
//!   enabled: false
//!   apiUrl: "http://coresight-api:8000"
//!   token: "agent-token"
//! ```
//!
//! Unknown or misspelt keys are errors that name the key and its line: the system this
//! replaces silently ignored a misspelt `DeleteLocalCorefile` and never deleted a file. Keys
//! added here follow the same style (`s3ForcePathStyle`, `compressionLevel`, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::object_key::Compression;
use crate::template::{MessageTemplate, UnknownVariable};

/// Where the watcher looks for dumps when the config does not say (`CorefileDir`).
pub const DEFAULT_COREFILE_DIR: &str = "/corefile";
/// Presigned download links live this long by default: SigV4's maximum, 7 days.
pub const DEFAULT_PRESIGN_SECONDS: u32 = 7 * 24 * 3600;
pub const MAX_PRESIGN_SECONDS: u32 = 7 * 24 * 3600;

#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not YAML, a misspelt or unknown key, or a value of the wrong type; the message names the
    /// key and its line.
    #[error("{0}")]
    Syntax(#[from] serde_yaml::Error),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    Template(#[from] UnknownVariable),
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(rename = "StorageConfig", default)]
    pub storage: StorageConfig,
    #[serde(rename = "NoticeChannel", default)]
    pub notice_channels: Vec<NoticeChannel>,
    #[serde(
        rename = "messageTemplate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_template: Option<String>,
    /// Static `key: value` lines added to every message (for example the cluster's name).
    #[serde(
        rename = "messageLabels",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub message_labels: BTreeMap<String, String>,
    #[serde(rename = "CoreSight", default)]
    pub core_sight: CoreSight,
    /// The directory the watcher watches: the node's `<hostDir>` as mounted in its pod.
    #[serde(rename = "CorefileDir", default = "default_corefile_dir")]
    pub corefile_dir: String,
    /// Kept for old values files: `gc: true` together with `DeleteLocalCorefile: true` was the
    /// old way to clean up; `DeleteLocalCorefile` alone decides now.
    #[serde(rename = "gc", default)]
    pub gc: bool,
    /// `rm` (delete) or `truncate` (empty the file but keep its name) once a dump is stored.
    #[serde(rename = "gc_type", default)]
    pub gc_type: GcType,
    #[serde(rename = "Watcher", default)]
    pub watcher: WatcherTuning,
}

fn default_corefile_dir() -> String {
    DEFAULT_COREFILE_DIR.to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            storage: StorageConfig::default(),
            notice_channels: Vec::new(),
            message_template: None,
            message_labels: BTreeMap::new(),
            core_sight: CoreSight::default(),
            corefile_dir: default_corefile_dir(),
            gc: false,
            gc_type: GcType::Rm,
            watcher: WatcherTuning::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcType {
    #[default]
    Rm,
    Truncate,
}

/// Read as the system CoreDog replaces read it: case and surrounding spaces aside, and empty
/// (a Helm value left blank) meaning s3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    S3,
    Cos,
    Oss,
    Cfs,
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "s3" => Ok(Self::S3),
            "cos" => Ok(Self::Cos),
            "oss" => Ok(Self::Oss),
            "cfs" => Ok(Self::Cfs),
            _ => Err(serde::de::Error::custom(format!(
                "unknown protocol {text:?}: expected s3, cos, oss or cfs"
            ))),
        }
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Cos => "cos",
            Self::Oss => "oss",
            Self::Cfs => "cfs",
        }
    }
}

/// `compression: zstd` (default) or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionSetting {
    #[default]
    Zstd,
    #[serde(alias = "none", alias = "false")]
    Off,
}

impl CompressionSetting {
    pub fn compression(self) -> Compression {
        match self {
            Self::Zstd => Compression::Zstd,
            Self::Off => Compression::None,
        }
    }
}

/// The highest zstd level the watcher compresses at.
pub const MAX_COMPRESSION_LEVEL_IN_USE: i32 = 19;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Kept for old values files; storage cannot be turned off.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(
        rename = "s3AccesskeyID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id: Option<String>,
    #[serde(
        rename = "s3SecretAccessKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_access_key: Option<String>,
    /// A file holding the access key id (a mounted Secret), instead of the value itself.
    #[serde(
        rename = "s3AccesskeyIDFile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id_file: Option<String>,
    #[serde(
        rename = "s3SecretAccessKeyFile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_access_key_file: Option<String>,
    #[serde(rename = "s3Region", default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(rename = "S3Bucket", default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(
        rename = "S3Endpoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint: Option<String>,
    /// Path-style addressing (`https://host/bucket/key`). Automatic for IP-address and
    /// `localhost` endpoints, and for bucket names with dots over https, when unset.
    #[serde(
        rename = "s3ForcePathStyle",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub force_path_style: Option<bool>,
    #[serde(
        rename = "CFSMountPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cfs_mount_path: Option<String>,
    /// Store onto `CFSMountPath` even when it is on a local disk (a demo, a single node):
    /// otherwise a share the node failed to mount is refused, rather than filled in its place
    /// with dumps that vanish with the node.
    #[serde(
        rename = "CFSAllowLocalDisk",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub cfs_allow_local_disk: bool,
    #[serde(rename = "StoreDir", default)]
    pub store_dir: String,
    #[serde(rename = "DeleteLocalCorefile", alias = "deleteLocalCorefile", default)]
    pub delete_local_corefile: bool,
    #[serde(rename = "PresignedURLExpireSeconds", default = "default_presign")]
    pub presigned_url_expire_seconds: u32,
    #[serde(default)]
    pub compression: CompressionSetting,
    /// zstd level: 1 (fastest) to 19; negative levels are faster still. Above 9 each level
    /// needs tens of MiB more per dump being compressed (its match tables), and the watcher
    /// compresses on one thread instead of up to four. 20 to 22 are taken as 19 (see
    /// [`StorageConfig::compression_level_in_use`]).
    #[serde(rename = "compressionLevel", default = "default_compression_level")]
    pub compression_level: i32,
    /// Size of each multipart part.
    #[serde(rename = "partSizeMiB", default = "default_part_size_mib")]
    pub part_size_mib: u32,
    /// Parts uploaded at once for one dump. Each uploading part's buffer is held once (the
    /// request body shares it, a retry sends it again), plus one part queued and one being
    /// filled: one upload holds at most `partSizeMiB × (partsInFlight + 2)`.
    #[serde(rename = "partsInFlight", default = "default_parts_in_flight")]
    pub parts_in_flight: u32,
}

fn yes() -> bool {
    true
}
fn default_presign() -> u32 {
    DEFAULT_PRESIGN_SECONDS
}
fn default_compression_level() -> i32 {
    1
}
fn default_part_size_mib() -> u32 {
    // With 3 parts in flight: 5 MiB × (3 + 2) = 25 MiB of part buffers at most per upload.
    5
}
fn default_parts_in_flight() -> u32 {
    3
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            protocol: Protocol::S3,
            access_key_id: None,
            secret_access_key: None,
            access_key_id_file: None,
            secret_access_key_file: None,
            region: None,
            bucket: None,
            endpoint: None,
            force_path_style: None,
            cfs_mount_path: None,
            cfs_allow_local_disk: false,
            store_dir: String::new(),
            delete_local_corefile: false,
            presigned_url_expire_seconds: DEFAULT_PRESIGN_SECONDS,
            compression: CompressionSetting::Zstd,
            compression_level: default_compression_level(),
            part_size_mib: default_part_size_mib(),
            parts_in_flight: default_parts_in_flight(),
        }
    }
}

/// An S3 endpoint as the config gives it, with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port]` or `http://host[:port]`, no trailing '/'.
    pub url: String,
    pub host: String,
    pub path_style: bool,
}

// The three holding secrets show what they are without them: a `?config` in a log line, or a
// failed assertion, must not print a storage key, a chat robot's key (in its URL) or a token.

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |value: &Option<String>| non_empty(value).map(|_| "<set>");
        f.debug_struct("StorageConfig")
            .field("protocol", &self.protocol)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("store_dir", &self.store_dir)
            .field("cfs_mount_path", &self.cfs_mount_path)
            .field("access_key_id", &set(&self.access_key_id))
            .field("secret_access_key", &set(&self.secret_access_key))
            .field("access_key_id_file", &self.access_key_id_file)
            .field("secret_access_key_file", &self.secret_access_key_file)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NoticeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeChannel")
            .field("chan", &self.chan)
            .field("keyword", &self.keyword)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CoreSight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreSight")
            .field("enabled", &self.enabled)
            .field("api_url", &self.api_url)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// Access keys given in the config, in files or in the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, with keys from the environment: temporary keys (STS, SSO,
    /// aws-vault) are refused without it.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticCredentials { .. }")
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The bucket the documented example (and the chart's default values) name. Bucket names are
/// global: whoever owns this one would receive the cores of every cluster that kept it, so the
/// stores refuse it (it still parses, as the example must).
pub const PLACEHOLDER_BUCKET: &str = "my-bucket-1234567890";

impl StorageConfig {
    pub fn bucket(&self) -> Option<&str> {
        non_empty(&self.bucket)
    }

    pub fn region(&self) -> Option<&str> {
        non_empty(&self.region)
    }

    /// The endpoint to talk to: the configured one (`https://` when it names no scheme), or the
    /// provider's regional endpoint.
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        let configured = non_empty(&self.endpoint).map(str::to_owned);
        let raw = match (configured, self.protocol, self.region()) {
            (Some(endpoint), _, _) => endpoint,
            // AWS's China regions are a partition of their own, with their own domain.
            (None, Protocol::S3, Some(region)) if region.starts_with("cn-") => {
                format!("s3.{region}.amazonaws.com.cn")
            }
            (None, Protocol::S3, Some(region)) => format!("s3.{region}.amazonaws.com"),
            (None, Protocol::Cos, Some(region)) => format!("cos.{region}.myqcloud.com"),
            (None, Protocol::Oss, Some(region)) => format!("oss-{region}.aliyuncs.com"),
            (None, Protocol::S3, None) => "s3.amazonaws.com".to_owned(),
            (None, Protocol::Cfs, _) => {
                return Err(invalid(
                    "StorageConfig.S3Endpoint",
                    "cfs storage has no endpoint",
                ));
            }
            (None, _, None) => {
                return Err(invalid(
                    "StorageConfig.S3Endpoint",
                    "set S3Endpoint or s3Region for cos and oss",
                ));
            }
        };
        let (scheme, rest) = match raw.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
            Some((scheme, _)) => {
                return Err(invalid(
                    "StorageConfig.S3Endpoint",
                    format!("scheme {scheme:?} is not http or https"),
                ));
            }
            None => ("https", raw.as_str()),
        };
        let authority = rest.trim_end_matches('/');
        // A user and password (`user:pass@host`) have no place here: they would be logged with
        // the endpoint (and are not repeated in this error), and the keys are the credentials.
        if authority.contains('@') {
            return Err(invalid(
                "StorageConfig.S3Endpoint",
                "holds a user and password; give the host[:port] alone (keys go in s3AccesskeyID and s3SecretAccessKey)",
            ));
        }
        if authority.is_empty() || authority.contains(['/', '?', '#', ' ']) {
            return Err(invalid(
                "StorageConfig.S3Endpoint",
                format!("{raw:?} is not a host[:port]"),
            ));
        }
        // A scheme's own port, spelt out, is dropped: HTTP clients send `Host: host` for it, and
        // a server that checks the signed host literally would refuse every presigned request
        // signed for `host:443`.
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let authority = authority.strip_suffix(default_port).unwrap_or(authority);
        let host = host_of(authority).to_owned();
        // A bucket name with dots is no DNS label of the endpoint's certificate
        // (`my.bucket.s3.amazonaws.com` is not covered by `*.s3.amazonaws.com`): over https it is
        // addressed by path, as the AWS SDKs (and the system this replaces) do.
        let dotted_bucket = scheme == "https" && self.bucket().is_some_and(|b| b.contains('.'));
        let automatic_path_style =
            host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() || dotted_bucket;
        Ok(Endpoint {
            url: format!("{scheme}://{authority}"),
            path_style: self.force_path_style.unwrap_or(automatic_path_style),
            host,
        })
    }

    /// Static access keys, looked up in this order: the config's own values, the files it
    /// names, then `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`. `None` leaves the choice to the
    /// provider chain (web identity, instance metadata).
    pub fn static_credentials(
        &self,
        env: impl Fn(&str) -> Option<String>,
        read_file: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Option<StaticCredentials>, ConfigError> {
        let from_file =
            |key: &'static str, path: &Option<String>| -> Result<Option<String>, ConfigError> {
                let Some(path) = non_empty(path) else {
                    return Ok(None);
                };
                let text = read_file(path)
                    .map_err(|err| invalid(key, format!("cannot read {path}: {err}")))?;
                // An empty key would fail as a signature mismatch, far from its cause.
                match text.trim() {
                    "" => Err(invalid(key, format!("{path} is empty"))),
                    key_text => Ok(Some(key_text.to_owned())),
                }
            };
        let access = match non_empty(&self.access_key_id) {
            Some(value) => Some(value.to_owned()),
            None => from_file("StorageConfig.s3AccesskeyIDFile", &self.access_key_id_file)?,
        };
        let secret = match non_empty(&self.secret_access_key) {
            Some(value) => Some(value.to_owned()),
            None => from_file(
                "StorageConfig.s3SecretAccessKeyFile",
                &self.secret_access_key_file,
            )?,
        };
        let from_environment = access.is_none() && secret.is_none();
        let access = access.or_else(|| env("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty()));
        let secret = secret.or_else(|| env("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty()));
        let session_token = from_environment
            .then(|| env("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()))
            .flatten();
        match (access, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Some(StaticCredentials {
                access_key_id,
                secret_access_key,
                session_token,
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid(
                "StorageConfig.s3SecretAccessKey",
                "an access key id is set but no secret access key",
            )),
            (None, Some(_)) => Err(invalid(
                "StorageConfig.s3AccesskeyID",
                "a secret access key is set but no access key id",
            )),
        }
    }

    /// The zstd level the watcher compresses at: the configured one, but at most 19. zstd's
    /// levels 20 to 22 need windows of 32 to 128 MiB per worker, beyond what a node agent
    /// should take; configurations that name them still load.
    pub fn compression_level_in_use(&self) -> i32 {
        self.compression_level.min(MAX_COMPRESSION_LEVEL_IN_USE)
    }

    /// Bytes in one multipart part.
    pub fn part_size(&self) -> usize {
        self.part_size_mib as usize * 1024 * 1024
    }
}

fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// WeCom (WeChat Work) group robot.
    #[serde(alias = "wecom")]
    Wechat,
    /// Slack incoming webhook.
    Slack,
    /// Generic JSON POST of the dump record.
    Webhook,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeChannel {
    pub chan: ChannelKind,
    pub webhookurl: String,
    /// Only crashes matching this keyword are announced; empty matches all.
    #[serde(default)]
    pub keyword: String,
    /// At most this many messages a minute (WeCom robots accept 20).
    #[serde(rename = "rateLimitPerMinute", default = "default_rate_limit")]
    pub rate_limit_per_minute: u32,
    /// The same workload crashing again within this window is one follow-up message with a count.
    #[serde(
        rename = "aggregateWindowSeconds",
        default = "default_aggregate_window"
    )]
    pub aggregate_window_seconds: u32,
}

fn default_rate_limit() -> u32 {
    20
}
fn default_aggregate_window() -> u32 {
    300
}

#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreSight {
    #[serde(default)]
    pub enabled: bool,
    #[serde(rename = "apiUrl", default)]
    pub api_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Accepted so old values files load; CoreSight is reached over HTTP (`apiUrl`) now.
    #[serde(rename = "natsUrl", default, skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
}

/// How the watcher paces itself; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatcherTuning {
    /// Dumps uploaded at once.
    #[serde(rename = "uploadConcurrency", default = "default_upload_concurrency")]
    pub upload_concurrency: u32,
    /// Full rescan of the tree, in case an event was missed.
    #[serde(rename = "rescanIntervalSeconds", default = "default_rescan")]
    pub rescan_interval_seconds: u32,
    /// An upload failing this long is announced, once.
    #[serde(
        rename = "failureNoticeAfterSeconds",
        default = "default_failure_notice"
    )]
    pub failure_notice_after_seconds: u32,
    /// Empty directories of pods that are gone are removed after this long.
    #[serde(rename = "podDirGraceSeconds", default = "default_pod_dir_grace")]
    pub pod_dir_grace_seconds: u32,
}

fn default_upload_concurrency() -> u32 {
    2
}
fn default_rescan() -> u32 {
    60
}
fn default_failure_notice() -> u32 {
    300
}
fn default_pod_dir_grace() -> u32 {
    3600
}

impl Default for WatcherTuning {
    fn default() -> Self {
        Self {
            upload_concurrency: default_upload_concurrency(),
            rescan_interval_seconds: default_rescan(),
            failure_notice_after_seconds: default_failure_notice(),
            pod_dir_grace_seconds: default_pod_dir_grace(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration file's text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_yaml::from_str(text)?
        };
        config.validate()?;
        Ok(config)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// The message template in force: the configured one or the default.
    pub fn message_template(&self) -> Result<MessageTemplate, UnknownVariable> {
        match self.message_template.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => MessageTemplate::parse(text, &self.message_labels),
            _ => Ok(MessageTemplate::standard()),
        }
    }

    /// Whether a stored dump's local file is removed (or truncated, with `gc_type: truncate`).
    pub fn deletes_local_corefile(&self) -> bool {
        self.storage.delete_local_corefile
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        if !storage.enabled {
            return Err(invalid(
                "StorageConfig.enabled",
                "storage cannot be turned off; remove the key or set it to true",
            ));
        }
        match storage.protocol {
            Protocol::Cfs => {
                let path = non_empty(&storage.cfs_mount_path).ok_or_else(|| {
                    invalid("StorageConfig.CFSMountPath", "required for protocol cfs")
                })?;
                if !path.starts_with('/') {
                    return Err(invalid(
                        "StorageConfig.CFSMountPath",
                        "must be an absolute path",
                    ));
                }
            }
            Protocol::S3 | Protocol::Cos | Protocol::Oss => {
                if storage.bucket().is_none() {
                    return Err(invalid(
                        "StorageConfig.S3Bucket",
                        format!("required for protocol {}", storage.protocol.as_str()),
                    ));
                }
                storage.endpoint()?;
            }
        }
        // On a share the parts are directories, whose names the walk compares with the prefix
        // as written: `a//b` or ` a` would never be found again. Object stores keep keys as
        // they are, so only what no key should hold is refused there.
        let inner = storage.store_dir.trim_matches('/');
        let on_share = storage.protocol == Protocol::Cfs;
        if !inner.is_empty()
            && inner.split('/').any(|part| {
                part == "."
                    || part == ".."
                    || part.contains(char::is_control)
                    || (on_share && (part.is_empty() || part.trim() != part || part.contains('\\')))
            })
        {
            return Err(invalid(
                "StorageConfig.StoreDir",
                "must be names joined by '/', without '.', '..' or control characters (and, on a share, without empty parts, backslashes or surrounding spaces)",
            ));
        }
        if storage.presigned_url_expire_seconds == 0
            || storage.presigned_url_expire_seconds > MAX_PRESIGN_SECONDS
        {
            return Err(invalid(
                "StorageConfig.PresignedURLExpireSeconds",
                format!("must be between 1 and {MAX_PRESIGN_SECONDS} (7 days)"),
            ));
        }
        if !(-7..=22).contains(&storage.compression_level) {
            return Err(invalid(
                "StorageConfig.compressionLevel",
                "must be between -7 and 22",
            ));
        }
        // S3 parts are at least 5 MiB (but the last) and at most 5 GiB.
        if !(5..=5120).contains(&storage.part_size_mib) {
            return Err(invalid(
                "StorageConfig.partSizeMiB",
                "must be between 5 and 5120",
            ));
        }
        if !(1..=64).contains(&storage.parts_in_flight) {
            return Err(invalid(
                "StorageConfig.partsInFlight",
                "must be between 1 and 64",
            ));
        }
        for (index, channel) in self.notice_channels.iter().enumerate() {
            let url = channel.webhookurl.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                // Not the URL itself: a webhook's key is in it, and this error is logged.
                return Err(invalid(
                    "NoticeChannel.webhookurl",
                    format!(
                        "of channel {} is not an http(s) URL: it must start with https:// or http://",
                        index + 1
                    ),
                ));
            }
            if channel.rate_limit_per_minute == 0 {
                return Err(invalid(
                    "NoticeChannel.rateLimitPerMinute",
                    format!("of channel {} must be at least 1", index + 1),
                ));
            }
        }
        if self.core_sight.enabled && self.core_sight.api_url.trim().is_empty() {
            return Err(invalid(
                "CoreSight.apiUrl",
                "required when CoreSight is enabled (natsUrl is no longer used)",
            ));
        }
        if !self.corefile_dir.starts_with('/') {
            return Err(invalid("CorefileDir", "must be an absolute path"));
        }
        let tuning = &self.watcher;
        if tuning.upload_concurrency == 0 || tuning.rescan_interval_seconds == 0 {
            return Err(invalid(
                "Watcher",
                "uploadConcurrency and rescanIntervalSeconds must be at least 1",
            ));
        }
        self.message_template()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration as users of the system this replaces write it, unchanged.
    const SEED: &str = r#"
StorageConfig:
  protocol: s3            # s3 | cos | oss | cfs (default s3)
  s3AccesskeyID: "your_ak"
  s3SecretAccessKey: "your_sk"
  s3Region: "ap-nanjing"
  S3Bucket: "my-bucket-1234567890"
  S3Endpoint: "cos.ap-nanjing.myqcloud.com"
  CFSMountPath: "/mnt/cfs"  # cfs only
  StoreDir: corefiles
  DeleteLocalCorefile: true
NoticeChannel:
  - chan: wechat          # wechat | slack (and more later)
    webhookurl: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY"
    keyword: ""           # only notify when the crash matches this keyword ("" = always)
messageTemplate: |
  Pod: {pod.namespace}/{pod.name}
  Node: {pod.node}
  File: {corefile.filename}
  Download: {corefile.url}
CoreSight:
  enabled: false
  apiUrl: "http://coresight-api:8000"
  token: "agent-token"
"#;

    #[test]
    fn the_seed_configuration_parses_unchanged() {
        let config = Config::from_yaml(SEED).unwrap();
        assert_eq!(config.storage.protocol, Protocol::S3);
        assert_eq!(config.storage.bucket(), Some("my-bucket-1234567890"));
        assert!(config.deletes_local_corefile());
        assert_eq!(config.storage.store_dir, "corefiles");
        assert_eq!(config.notice_channels.len(), 1);
        assert_eq!(config.notice_channels[0].chan, ChannelKind::Wechat);
        assert_eq!(config.notice_channels[0].rate_limit_per_minute, 20);
        assert_eq!(config.corefile_dir, "/corefile");
        assert_eq!(
            config.storage.presigned_url_expire_seconds,
            DEFAULT_PRESIGN_SECONDS
        );
        let endpoint = config.storage.endpoint().unwrap();
        assert_eq!(endpoint.url, "https://cos.ap-nanjing.myqcloud.com");
        assert!(!endpoint.path_style);
    }

    #[test]
    fn old_keys_and_both_spellings_are_accepted() {
        let text = "StorageConfig:\n  S3Bucket: b\n  deleteLocalCorefile: true\n  PresignedURLExpireSeconds: 600\n  enabled: true\ngc: true\ngc_type: truncate\nCorefileDir: /data/cores\nmessageLabels:\n  cluster: prod\nCoreSight:\n  natsUrl: nats://x\n";
        let config = Config::from_yaml(text).unwrap();
        assert!(config.deletes_local_corefile());
        assert_eq!(config.gc_type, GcType::Truncate);
        assert_eq!(config.storage.presigned_url_expire_seconds, 600);
        assert_eq!(config.corefile_dir, "/data/cores");
        assert_eq!(config.message_labels["cluster"], "prod");
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_the_key_and_line() {
        let text = SEED.replace("DeleteLocalCorefile", "DeleteLocalCorefil");
        let message = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(message.contains("DeleteLocalCorefil"), "{message}");
        assert!(message.contains("line 11"), "{message}");

        let message =
            Config::from_yaml("NoticeChannel:\n  - chan: slack\n    webhookUrl: https://x\n")
                .unwrap_err()
                .to_string();
        assert!(
            message.contains("webhookUrl") && message.contains("line 3"),
            "{message}"
        );
    }

    #[test]
    fn wrong_values_are_errors() {
        for (text, key) in [
            ("StorageConfig:\n  protocol: ftp\n", "protocol"),
            ("StorageConfig:\n  protocol: s3\n", "S3Bucket"),
            ("StorageConfig:\n  protocol: cfs\n", "CFSMountPath"),
            (
                "StorageConfig:\n  protocol: cos\n  S3Bucket: b\n",
                "S3Endpoint",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\n  S3Endpoint: ftp://x\n",
                "S3Endpoint",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\n  partSizeMiB: 1\n",
                "partSizeMiB",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\n  PresignedURLExpireSeconds: 0\n",
                "PresignedURLExpireSeconds",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\n  PresignedURLExpireSeconds: 604801\n",
                "PresignedURLExpireSeconds",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\nCorefileDir: corefile\n",
                "CorefileDir",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\n  enabled: false\n",
                "enabled",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\nmessageTemplate: '{pod.nam}'\n",
                "pod.nam",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\nCoreSight:\n  enabled: true\n",
                "apiUrl",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\nNoticeChannel:\n  - chan: wechat\n    webhookurl: qyapi\n",
                "webhookurl",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\nNoticeChannel:\n  - chan: teams\n    webhookurl: https://x\n",
                "teams",
            ),
            (
                "StorageConfig:\n  S3Bucket: b\nNoticeChannel:\n  - chan: slack\n    webhookurl: https://x\n  - chan: slack\n    webhookurl: https://y\n    rateLimitPerMinute: 0\n",
                "rateLimitPerMinute: of channel 2",
            ),
        ] {
            let message = Config::from_yaml(text).unwrap_err().to_string();
            assert!(message.contains(key), "{text}: {message}");
        }
        // The error is logged: a webhook's key, in its URL, is not repeated there.
        let message = Config::from_yaml(
            "StorageConfig:\n  S3Bucket: b\nNoticeChannel:\n  - chan: wechat\n    webhookurl: qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("webhookurl") && !message.contains("SECRET"),
            "{message}"
        );
    }

    #[test]
    fn endpoints() {
        let storage = |endpoint: &str, protocol| StorageConfig {
            endpoint: Some(endpoint.to_owned()),
            protocol,
            region: Some("eu-west-1".to_owned()),
            ..StorageConfig::default()
        };
        let e = storage("http://127.0.0.1:8333/", Protocol::S3)
            .endpoint()
            .unwrap();
        assert_eq!(
            (e.url.as_str(), e.host.as_str(), e.path_style),
            ("http://127.0.0.1:8333", "127.0.0.1", true)
        );
        let e = storage("localhost:9000", Protocol::S3).endpoint().unwrap();
        assert_eq!(
            (e.url.as_str(), e.path_style),
            ("https://localhost:9000", true)
        );
        let e = storage("[::1]:9000", Protocol::S3).endpoint().unwrap();
        assert!(e.path_style);
        let e = storage("", Protocol::Oss).endpoint().unwrap();
        assert_eq!(
            (e.url.as_str(), e.path_style),
            ("https://oss-eu-west-1.aliyuncs.com", false)
        );
        let e = storage("", Protocol::S3).endpoint().unwrap();
        assert_eq!(e.url, "https://s3.eu-west-1.amazonaws.com");
        let mut forced = storage("minio.local", Protocol::S3);
        forced.force_path_style = Some(true);
        assert!(forced.endpoint().unwrap().path_style);
        let mut virtual_hosted = storage("10.0.0.5:9000", Protocol::S3);
        virtual_hosted.force_path_style = Some(false);
        assert!(!virtual_hosted.endpoint().unwrap().path_style);
        let from_yaml = Config::from_yaml(
            "StorageConfig:\n  S3Bucket: b\n  S3Endpoint: minio.local\n  s3ForcePathStyle: true\n",
        )
        .unwrap();
        assert!(from_yaml.storage.endpoint().unwrap().path_style);

        // A scheme's own port is dropped; another is kept.
        let e = storage("https://s3.example:443", Protocol::S3)
            .endpoint()
            .unwrap();
        assert_eq!(
            (e.url.as_str(), e.host.as_str()),
            ("https://s3.example", "s3.example")
        );
        let e = storage("http://[fd00::1]:80/", Protocol::S3)
            .endpoint()
            .unwrap();
        assert_eq!(e.url, "http://[fd00::1]");
        let e = storage("http://s3.example:443", Protocol::S3)
            .endpoint()
            .unwrap();
        assert_eq!(e.url, "http://s3.example:443");

        // A dotted bucket over https goes by path; over http, or when set, as configured.
        let mut dotted = storage("s3.eu-west-1.amazonaws.com", Protocol::S3);
        dotted.bucket = Some("dumps.example.com".to_owned());
        assert!(dotted.endpoint().unwrap().path_style);
        dotted.force_path_style = Some(false);
        assert!(!dotted.endpoint().unwrap().path_style);
        let mut plain_http = storage("http://minio.local:9000", Protocol::S3);
        plain_http.bucket = Some("dumps.example.com".to_owned());
        assert!(!plain_http.endpoint().unwrap().path_style);

        // China's regions have their own domain.
        let mut china = storage("", Protocol::S3);
        china.region = Some("cn-northwest-1".to_owned());
        assert_eq!(
            china.endpoint().unwrap().url,
            "https://s3.cn-northwest-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn credentials_come_from_config_files_or_environment() {
        let none_env = |_: &str| None;
        let no_files = |path: &str| Err(format!("no file {path}"));
        let mut storage = StorageConfig::default();
        assert_eq!(
            storage.static_credentials(none_env, no_files).unwrap(),
            None
        );

        let env = |name: &str| Some(format!("env-{name}"));
        let creds = storage.static_credentials(env, no_files).unwrap().unwrap();
        assert_eq!(creds.access_key_id, "env-AWS_ACCESS_KEY_ID");
        // Temporary keys from the environment carry their session token.
        assert_eq!(
            creds.session_token.as_deref(),
            Some("env-AWS_SESSION_TOKEN")
        );
        assert_eq!(format!("{creds:?}"), "StaticCredentials { .. }");

        storage.access_key_id_file = Some("/secret/ak".to_owned());
        storage.secret_access_key = Some("inline-sk".to_owned());
        let files = |path: &str| Ok(format!("file:{path}\n"));
        let creds = storage
            .static_credentials(none_env, files)
            .unwrap()
            .unwrap();
        assert_eq!(creds.access_key_id, "file:/secret/ak");
        assert_eq!(creds.secret_access_key, "inline-sk");
        // The environment's token belongs to the environment's keys only.
        let creds = storage.static_credentials(env, files).unwrap().unwrap();
        assert_eq!(creds.session_token, None);

        let message = storage
            .static_credentials(none_env, no_files)
            .unwrap_err()
            .to_string();
        assert!(message.contains("s3AccesskeyIDFile"), "{message}");

        let empty = |_: &str| Ok(" \n".to_owned());
        let message = storage
            .static_credentials(none_env, empty)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("s3AccesskeyIDFile") && message.contains("/secret/ak is empty"),
            "{message}"
        );

        storage.access_key_id_file = None;
        assert!(storage.static_credentials(none_env, no_files).is_err());
    }

    #[test]
    fn an_empty_file_is_the_default_config() {
        let err = Config::from_yaml("").unwrap_err().to_string();
        assert!(err.contains("S3Bucket"), "{err}");
    }

    #[test]
    fn store_dirs_and_endpoints_are_plain() {
        let config =
            |storage: &str| Config::from_yaml(&format!("StorageConfig:\n  S3Bucket: b\n{storage}"));
        for fine in ["StoreDir: corefiles", "StoreDir: /a/b/", "StoreDir: \"\""] {
            assert!(config(&format!("  {fine}\n")).is_ok(), "{fine}");
        }
        for refused in ["StoreDir: a/../b", "StoreDir: \"a/\\tb\""] {
            let err = config(&format!("  {refused}\n")).unwrap_err().to_string();
            assert!(err.contains("StoreDir"), "{refused}: {err}");
        }
        // Keys as written on object storage, as before; directories on a share must be found
        // again.
        assert!(config("  StoreDir: a//b\n").is_ok());
        let share = |store_dir: &str| {
            Config::from_yaml(&format!(
                "StorageConfig:\n  protocol: cfs\n  CFSMountPath: /mnt/cfs\n  StoreDir: {store_dir}\n"
            ))
        };
        for refused in ["a//b", "\"a\\\\b\"", "\"a/ b\""] {
            assert!(share(refused).is_err(), "{refused}");
        }
        assert!(share("a/b").is_ok());
        let err = config("  S3Endpoint: http://user:secret@minio:9000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user and password") && !err.contains("secret@"),
            "{err}"
        );
    }

    #[test]
    fn protocols_are_read_as_the_go_system_read_them() {
        let protocol = |value: &str| {
            Config::from_yaml(&format!(
                "StorageConfig:\n  S3Bucket: b\n  s3Region: r\n  protocol: {value}\n"
            ))
            .map(|config| config.storage.protocol)
        };
        assert_eq!(protocol("\"\"").unwrap(), Protocol::S3);
        assert_eq!(protocol("\" S3 \"").unwrap(), Protocol::S3);
        assert_eq!(protocol("Cos").unwrap(), Protocol::Cos);
        assert_eq!(protocol("OSS").unwrap(), Protocol::Oss);
        let err = protocol("gcs").unwrap_err().to_string();
        assert!(
            err.contains("unknown protocol") && err.contains("line"),
            "{err}"
        );
    }

    #[test]
    fn compression_levels_stop_where_memory_would_not() {
        let with_level = |level: i32| {
            Config::from_yaml(&format!(
                "StorageConfig:\n  S3Bucket: b\n  compressionLevel: {level}\n"
            ))
        };
        let in_use = |level: i32| {
            with_level(level)
                .unwrap()
                .storage
                .compression_level_in_use()
        };
        assert_eq!(in_use(19), 19);
        assert_eq!(in_use(-7), -7);
        // Still loads, as it did before the cap.
        assert_eq!(in_use(22), 19);
        let err = with_level(23).unwrap_err().to_string();
        assert!(err.contains("StorageConfig.compressionLevel"), "{err}");
    }

    #[test]
    fn a_config_shown_for_debugging_shows_no_secret() {
        let config = Config::from_yaml(
            "StorageConfig:\n  S3Bucket: b\n  s3AccesskeyID: AKIDSHOWN\n  s3SecretAccessKey: storage-secret\nNoticeChannel:\n  - chan: wechat\n    webhookurl: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=robot-secret\nCoreSight:\n  enabled: true\n  apiUrl: http://coresight:8000\n  token: token-secret\n",
        )
        .unwrap();
        let shown = format!("{config:?}");
        for secret in [
            "AKIDSHOWN",
            "storage-secret",
            "robot-secret",
            "token-secret",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("bucket: Some(\"b\")"), "{shown}");
    }

    #[test]
    fn configs_round_trip() {
        let config = Config::from_yaml(SEED).unwrap();
        assert_eq!(Config::from_yaml(&config.to_yaml()).unwrap(), config);
    }
}
