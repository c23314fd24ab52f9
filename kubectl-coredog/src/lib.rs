//! `kubectl coredog`: installs CoreDog, opts workloads in, checks a cluster end to end, and lists
//! and fetches the dumps CoreDog collected.
//!
//! `main.rs` only parses the command line; [`app::run`] connects what a command needs (a
//! Kubernetes client, storage) and hands it to the command's module. Commands write through an
//! [`output::Console`] and take their clients as arguments, so tests drive them against a mock
//! API server and an in-memory store.

pub mod app;
pub mod cli;
pub mod completion;
pub mod doctor;
pub mod dumps;
pub mod enable;
pub mod error;
pub mod fetch;
pub mod install;
pub mod kube_client;
pub mod no_proxy;
pub mod output;
pub mod status;
pub mod storage;
pub mod when;
pub mod workload;
