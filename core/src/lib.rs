//! The CoreDog contract.
//!
//! Everything the webhook, the watcher and the `kubectl coredog` plugin must agree on lives here,
//! as types with no I/O of their own:
//!
//! - [`annotations`]: how a pod opts in (`coredog.io/inject`, `coredog.io/path`,
//!   `coredog.io/container`) and how the webhook records what it did;
//! - [`mount_path`]: which in-container paths may receive the dump directory;
//! - [`layout`]: where dumps live on the node (`<hostDir>/<namespace>/<pod>/<container>/<file>`),
//!   and how a path found by the watcher maps back to a pod;
//! - [`object_key`]: where dumps and their records live in storage, and the dump id;
//! - [`record`]: the JSON document that describes one stored dump;
//! - [`config`]: the configuration file shared by the watcher and the plugin;
//! - [`template`]: the notification message template and its variables;
//! - [`signal`]: signal numbers and names as Linux defines them;
//! - [`node_status`]: what a node's watcher reports about its node, and the flag of node setup.
//!
//! Nothing in the rest of the workspace builds a host path, an object key or a record by hand:
//! it goes through these types, so that a change of layout is a change in one place.

pub mod annotations;
pub mod config;
pub mod layout;
pub mod mount_path;
pub mod node_status;
pub mod object_key;
pub mod record;
pub mod signal;
pub mod template;
