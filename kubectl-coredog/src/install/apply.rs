//! Server-side apply and delete of the install's objects.
//!
//! Apply forces conflicts: the objects are CoreDog's, and re-running install is how they are
//! upgraded, even after someone edited them by hand. Fields the apply does not name (the
//! caBundle the webhook writes) stay with whoever set them.

use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::cli::DryRun;
use crate::enable::FIELD_MANAGER;
use crate::install::manifests::Manifest;

fn api(client: &Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Applies one object; returns it as the API server stored it (or would, in a server dry run).
pub async fn apply(
    client: &Client,
    manifest: &Manifest,
    dry_run: DryRun,
) -> Result<Value, kube::Error> {
    let api = api(client, &manifest.resource, manifest.namespace.as_deref());
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    let applied = api
        .patch(&manifest.name, &params, &Patch::Apply(&manifest.object))
        .await?;
    let mut value = serde_json::to_value(applied).map_err(kube::Error::SerdeError)?;
    // Bookkeeping of the API server, not something anyone reading the output wants.
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    Ok(value)
}

/// Whether the object exists.
pub async fn exists(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    name: &str,
) -> Result<bool, kube::Error> {
    Ok(api(client, resource, namespace)
        .get_opt(name)
        .await?
        .is_some())
}

/// Deletes one object; `false` when it was already gone.
pub async fn delete(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    dry_run: DryRun,
) -> Result<bool, kube::Error> {
    let mut params = DeleteParams::background();
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    match api(client, resource, namespace).delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(err) if crate::error::is_not_found(&err) => Ok(false),
        Err(err) => Err(err),
    }
}
