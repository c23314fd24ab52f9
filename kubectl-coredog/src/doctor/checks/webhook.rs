//! The webhook: its configuration, its certificate and the CA the API server trusts, and
//! whether the API server can reach it.

use super::denied;
use crate::doctor::certs::{Facts, facts, pem_certificates, signed_by};
use crate::doctor::{Check, ClusterSnapshot, Lookup};
use crate::install::manifests::{NAMESPACE, TLS_SECRET, WEBHOOK, WEBHOOK_NAME};

/// Certificates closer than this to their end are worth a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

fn restart_webhook() -> String {
    format!("kubectl -n {NAMESPACE} rollout restart deployment/{WEBHOOK}")
}

fn renew_certificate() -> String {
    format!(
        "kubectl -n {NAMESPACE} delete secret {TLS_SECRET} && {} (the webhook makes a new certificate at start)",
        restart_webhook()
    )
}

/// CoreDog installed under other names than the ones the plugin reads (a Helm release not
/// named `coredog`, or another namespace): what it found, and that another install would
/// make a second CoreDog.
pub(super) fn installed_elsewhere(snapshot: &ClusterSnapshot) -> Option<Check> {
    if snapshot.installed_elsewhere.is_empty() {
        return None;
    }
    Some(
        Check::fail(
            format!(
                "CoreDog is installed under other names than the plugin reads (MutatingWebhookConfiguration {WEBHOOK} in namespace {NAMESPACE}): it cannot check it"
            ),
            format!(
                "doctor reads the default names (status, list, info and fetch find the release through its watcher): install the chart as release coredog in namespace {NAMESPACE} to have it checked; do not also run `kubectl coredog install`, which adds a second CoreDog"
            ),
        )
        .details(snapshot.installed_elsewhere.clone()),
    )
}

pub(super) fn webhook_configuration(snapshot: &ClusterSnapshot) -> Check {
    let title = format!("MutatingWebhookConfiguration {WEBHOOK}");
    let configuration = match &snapshot.webhook_configuration {
        Lookup::Found(configuration) => configuration,
        Lookup::Missing => {
            return Check::fail(
                format!("{title} is missing: no pod gets a dump directory"),
                "kubectl coredog install",
            );
        }
        Lookup::Denied(message) => return denied(&title, message),
    };
    let Some(webhook) = configuration
        .webhooks
        .iter()
        .flatten()
        .find(|webhook| webhook.name == WEBHOOK_NAME)
    else {
        return Check::fail(
            format!("{title} has no webhook {WEBHOOK_NAME}"),
            "kubectl coredog install",
        );
    };
    let service = webhook.client_config.service.as_ref();
    if !service.is_some_and(|service| service.name == WEBHOOK && service.namespace == NAMESPACE) {
        return Check::fail(
            format!("{title} does not call Service {NAMESPACE}/{WEBHOOK}"),
            "kubectl coredog install",
        );
    }
    // Kubernetes' default when the field is absent.
    let policy = webhook.failure_policy.as_deref().unwrap_or("Fail");
    if policy == "Fail" {
        return Check::warn(format!(
            "{title} is present with failurePolicy Fail: every pod creation fails while the webhook is down"
        ))
        .with_fix("kubectl coredog install --webhook-failure-policy Ignore");
    }
    Check::ok(format!("{title} is present (failurePolicy {policy})"))
}

pub(super) fn certificate(snapshot: &ClusterSnapshot) -> Vec<Check> {
    let secret_name = format!("Secret {NAMESPACE}/{TLS_SECRET}");
    let secret = match &snapshot.tls_secret {
        Lookup::Found(secret) => secret,
        Lookup::Missing => {
            return vec![Check::fail(
                format!("{secret_name} is missing: the webhook has not made its certificate"),
                format!(
                    "{}; if it stays missing, `kubectl -n {NAMESPACE} logs deployment/{WEBHOOK}` says why",
                    restart_webhook()
                ),
            )];
        }
        Lookup::Denied(message) => return vec![denied(&secret_name, message)],
    };
    let data = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| bytes.0.as_slice())
    };
    let (Some(ca_pem), Some(tls_pem)) = (data("ca.crt"), data("tls.crt")) else {
        return vec![Check::fail(
            format!("{secret_name} lacks ca.crt or tls.crt"),
            renew_certificate(),
        )];
    };
    // ca.crt may hold the previous CA next to the current one while a renewal settles.
    let authorities = match pem_certificates(ca_pem) {
        Ok(certificates) => certificates,
        Err(err) => {
            return vec![Check::fail(
                format!("ca.crt of {secret_name} is unusable: {err}"),
                renew_certificate(),
            )];
        }
    };
    let leaf = match pem_certificates(tls_pem) {
        Ok(mut certificates) => certificates.remove(0),
        Err(err) => {
            return vec![Check::fail(
                format!("tls.crt of {secret_name} is unusable: {err}"),
                renew_certificate(),
            )];
        }
    };
    let mut checks = vec![trust(snapshot, &secret_name, &authorities, &leaf)];
    checks.push(match facts(&leaf) {
        Ok(facts) => expiry(snapshot, &facts),
        Err(err) => Check::fail(
            format!("tls.crt of {secret_name} is unusable: {err}"),
            renew_certificate(),
        ),
    });
    checks
}

/// The API server trusts the serving certificate when the caBundle holds the CA that signed it.
fn trust(
    snapshot: &ClusterSnapshot,
    secret_name: &str,
    authorities: &[Vec<u8>],
    leaf: &[u8],
) -> Check {
    let mut reason = String::from("no CA in it");
    let signer = authorities.iter().find(|ca| match signed_by(leaf, ca) {
        Ok(()) => true,
        Err(err) => {
            reason = err;
            false
        }
    });
    let Some(signer) = signer else {
        return Check::fail(
            format!("tls.crt of {secret_name} is not signed by its ca.crt: {reason}"),
            renew_certificate(),
        );
    };
    if let Some(configuration) = snapshot.webhook_configuration.found() {
        let bundle = configuration
            .webhooks
            .iter()
            .flatten()
            .find(|webhook| webhook.name == WEBHOOK_NAME)
            .and_then(|webhook| webhook.client_config.ca_bundle.as_ref())
            .map(|bundle| bundle.0.as_slice())
            .unwrap_or_default();
        if bundle.is_empty() {
            return Check::fail(
                "the webhook's caBundle is empty: the API server cannot trust the webhook, and pods are admitted without a dump directory",
                format!(
                    "{} (the webhook writes its CA there at start)",
                    restart_webhook()
                ),
            );
        }
        let trusted = pem_certificates(bundle).unwrap_or_default();
        if !trusted.iter().any(|certificate| certificate == signer) {
            return Check::fail(
                format!(
                    "the webhook's caBundle does not hold the CA in {secret_name}: the API server rejects the webhook's certificate, and pods are admitted without a dump directory"
                ),
                format!(
                    "{} (the webhook writes its CA there at start)",
                    restart_webhook()
                ),
            );
        }
    }
    let service_name = format!("{WEBHOOK}.{NAMESPACE}.svc");
    let names = facts(leaf).map(|facts| facts.dns_names).unwrap_or_default();
    if !names.contains(&service_name) {
        return Check::fail(
            format!(
                "the webhook's certificate is not for {service_name} (it names {})",
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            renew_certificate(),
        );
    }
    Check::ok(format!(
        "the caBundle holds the CA that signed the webhook's certificate ({secret_name})"
    ))
}

fn expiry(snapshot: &ClusterSnapshot, facts: &Facts) -> Check {
    let now = snapshot.now;
    let until = facts.not_after.strftime("%Y-%m-%d").to_string();
    if facts.not_after <= now {
        return Check::fail(
            format!("the webhook's certificate expired on {until}: the API server refuses it"),
            renew_certificate(),
        );
    }
    if facts.not_before > now {
        return Check::fail(
            format!(
                "the webhook's certificate is not valid before {}: is a clock wrong?",
                facts.not_before
            ),
            renew_certificate(),
        );
    }
    let days = (facts.not_after - now).get_seconds() / 86_400;
    if days < EXPIRY_WARNING_DAYS {
        return Check::warn(format!(
            "the webhook's certificate expires on {until}, in {days} days"
        ))
        .with_fix(renew_certificate());
    }
    Check::ok(format!(
        "the webhook's certificate is valid until {until} ({days} days)"
    ))
}

pub(super) fn endpoints(snapshot: &ClusterSnapshot) -> Check {
    let slices = match &snapshot.endpoint_slices {
        Lookup::Found(slices) => slices,
        Lookup::Missing => &Vec::new(),
        Lookup::Denied(message) => return denied("the webhook's EndpointSlices", message),
    };
    let ready = slices
        .iter()
        .flat_map(|slice| slice.endpoints.iter())
        .filter(|endpoint| !endpoint.addresses.is_empty())
        .filter(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                != Some(false)
        })
        .count();
    if ready == 0 {
        return Check::fail(
            format!(
                "Service {NAMESPACE}/{WEBHOOK} has no ready endpoint: the API server cannot call the webhook, and pods are admitted without a dump directory"
            ),
            format!(
                "kubectl -n {NAMESPACE} get pods -l app.kubernetes.io/component=webhook, and `kubectl -n {NAMESPACE} logs deployment/{WEBHOOK}`"
            ),
        );
    }
    Check::ok(format!(
        "Service {NAMESPACE}/{WEBHOOK} has {ready} ready endpoint{}",
        if ready == 1 { "" } else { "s" }
    ))
}
