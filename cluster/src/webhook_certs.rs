//! The webhook's own certificate management: no certificate is committed, templated or mounted.
//!
//! At start ([`ensure`]) the webhook reads its TLS Secret; when the Secret is missing, does not
//! hold a usable pair, or is in the last third of its validity, it issues a new private CA and
//! serving certificate ([`crate::certs::issue`]) and stores them. Then it writes the CA into the
//! `caBundle` of every entry of its MutatingWebhookConfiguration, so the API server trusts it.
//! [`maintain`] repeats this periodically while serving and swaps a changed pair into the
//! running server.
//!
//! Several replicas start at the same time and must end up with one certificate: the Secret is
//! created with a plain create (first writer wins; the loser reads and uses the winner's) and
//! renewed with an update carrying the `resourceVersion` read (a conflict means another replica
//! renewed first, and its pair is used). The Secret names the MutatingWebhookConfiguration as
//! owner, so deleting the chart garbage-collects it.
//!
//! A renewal keeps the previous CA in `ca.crt` (and so in the `caBundle`) next to the new one:
//! the other replicas serve the old certificate until their next check, and the API server must
//! keep trusting them meanwhile. For the same reason a CA issued afresh (the Secret deleted or
//! unusable) keeps the CAs the `caBundle` trusted until then, up to [`MAX_KEPT_CAS`].
//!
//! The `caBundle` patch carries the configuration's `resourceVersion`, so it applies only to the
//! configuration it was computed from: a replica that read the Secret just before another
//! renewed it cannot put the old CA back; its patch conflicts, and it reads both again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::tls::TlsError;

pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
/// Cheap (two GETs), and a caBundle someone cleared (`kubectl replace`, `helm upgrade --force`)
/// leaves pods uninjected until it is written again.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(60);
/// How long a new CA in the caBundle takes to reach every API server (through their watches).
pub const DEFAULT_TRUST_DELAY: Duration = Duration::from_secs(30);
/// After a failed check, try again this soon rather than after a whole `check_every`.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(60);
/// Create/update races between replicas settle in one or two rounds; more means something
/// keeps rewriting the Secret.
const MAX_ATTEMPTS: usize = 5;
/// CAs that a CA issued afresh keeps trusting from the `caBundle` it replaces: enough for the
/// replicas still serving an older pair, and a bound when the Secret is deleted again and again.
pub const MAX_KEPT_CAS: usize = 2;

pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";
pub const CA_CERT_KEY: &str = "ca.crt";
const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
const FIELD_MANAGER: &str = "coredog-webhook";

#[derive(Debug, Error)]
pub enum CertError {
    #[error("cannot {action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        source: kube::Error,
    },
    #[error(
        "MutatingWebhookConfiguration {0} does not exist (the chart installs it); without it the certificate has no owner and no caBundle to go into"
    )]
    WebhookConfigurationMissing(String),
    #[error("MutatingWebhookConfiguration {0} has no uid to own the certificate Secret")]
    NoUid(String),
    #[error("{0:?} is not a DNS name a certificate can be issued for")]
    InvalidServiceName(String),
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("the certificate just issued does not load: {0}")]
    Load(#[from] TlsError),
    #[error("{0} kept changing under {MAX_ATTEMPTS} attempts to settle the webhook certificate")]
    Contended(String),
}

/// What the webhook manages and how often it looks again.
#[derive(Debug, Clone)]
pub struct CertSettings {
    /// The TLS Secret, in `namespace`.
    pub secret: String,
    /// The MutatingWebhookConfiguration whose `caBundle`s get the CA, and which owns the Secret.
    pub webhook_configuration: String,
    /// The webhook's Service, in `namespace`: the certificate's DNS names.
    pub service: String,
    pub namespace: String,
    pub validity_days: u32,
    pub check_every: Duration,
    /// A certificate found new in the Secret is served this long after the check that found
    /// it: until the API servers have its CA, they trust the one serving now (the bundle keeps
    /// the old CA).
    pub trust_delay: Duration,
}

impl CertSettings {
    /// Settings with a year's validity, checked every minute.
    pub fn new(
        secret: impl Into<String>,
        webhook_configuration: impl Into<String>,
        service: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        Self {
            secret: secret.into(),
            webhook_configuration: webhook_configuration.into(),
            service: service.into(),
            namespace: namespace.into(),
            validity_days: DEFAULT_VALIDITY_DAYS,
            check_every: DEFAULT_CHECK_EVERY,
            trust_delay: DEFAULT_TRUST_DELAY,
        }
    }

    fn secret_ref(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.secret)
    }

    fn config_ref(&self) -> String {
        format!(
            "MutatingWebhookConfiguration {}",
            self.webhook_configuration
        )
    }

    /// The name the API server dials, and so the one the certificate must be valid for.
    fn server_name(&self) -> Result<ServerName<'static>, CertError> {
        let name = format!("{}.{}.svc", self.service, self.namespace);
        ServerName::try_from(name.clone()).map_err(|_| CertError::InvalidServiceName(name))
    }
}

/// Ensures a valid serving certificate exists in the Secret and in the caBundle; returns the
/// serving pair to start with.
pub async fn ensure(
    client: &kube::Client,
    settings: &CertSettings,
) -> Result<CertifiedKey, CertError> {
    let server_name = settings.server_name()?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());

    for _ in 0..MAX_ATTEMPTS {
        // The configuration before the Secret: a replica that renews writes the Secret, then
        // the caBundle, so a caBundle read first is never newer than the Secret read after it.
        // A renewal between the two reads and this replica's patch changes the configuration's
        // resourceVersion, and the patch conflicts.
        let config = configs
            .get_opt(&settings.webhook_configuration)
            .await
            .map_err(|source| CertError::Api {
                action: "read",
                object: settings.config_ref(),
                source,
            })?
            .ok_or_else(|| {
                CertError::WebhookConfigurationMissing(settings.webhook_configuration.clone())
            })?;
        let owner = owner_reference(&config, settings)?;
        let trusted = trusted_cas(&config, Timestamp::now());
        let secret = read_secret(&secrets, settings).await?;

        let (material, key) =
            settle(&secrets, settings, &server_name, &owner, &trusted, secret).await?;
        match patch_ca_bundle(&configs, settings, &config, &material.ca_pem).await? {
            Written::Stored => return Ok(key),
            Written::Lost => {
                info!(config = %settings.config_ref(), "the configuration changed while its caBundle was patched; reading it again");
            }
        }
    }
    Err(CertError::Contended(settings.config_ref()))
}

/// The CAs the configuration's first caBundle holds that are still valid at `now`, newest
/// first as they are written, at most [`MAX_KEPT_CAS`].
fn trusted_cas(
    config: &MutatingWebhookConfiguration,
    now: Timestamp,
) -> Vec<CertificateDer<'static>> {
    let Some(bundle) = config
        .webhooks
        .iter()
        .flatten()
        .find_map(|webhook| webhook.client_config.ca_bundle.as_ref())
    else {
        return Vec::new();
    };
    CertificateDer::pem_slice_iter(&bundle.0)
        .filter_map(Result::ok)
        .filter(|ca| validity(ca).is_some_and(|(_, not_after)| now < not_after))
        .take(MAX_KEPT_CAS)
        .collect()
}

/// Runs forever: keeps the Secret, the caBundle and `resolver` current.
pub async fn maintain(
    client: kube::Client,
    settings: CertSettings,
    resolver: Arc<crate::tls::ReloadingCert>,
) {
    let mut wait = settings.check_every;
    loop {
        tokio::time::sleep(wait).await;
        match ensure(&client, &settings).await {
            Ok(key) => {
                wait = settings.check_every;
                let serving = resolver.current();
                if key.cert != serving.cert {
                    // Unless the one serving is no good by then anyway.
                    let good_until = serving
                        .cert
                        .first()
                        .and_then(|cert| validity(cert))
                        .map(|(_, not_after)| not_after);
                    let waited = Timestamp::now()
                        .checked_add(settings.trust_delay)
                        .unwrap_or(Timestamp::MAX);
                    if good_until.is_some_and(|not_after| waited < not_after) {
                        tokio::time::sleep(settings.trust_delay).await;
                    }
                    resolver.replace(key);
                    info!(secret = %settings.secret_ref(), "serving the certificate now in the Secret");
                }
            }
            Err(err) => {
                wait = settings.check_every.min(RETRY_AFTER_ERROR);
                warn!(error = %err, retry_in = ?wait, "cannot check the webhook certificate; the current one keeps serving");
            }
        }
    }
}

/// A serving pair and the CA bundle that vouches for it, as PEM.
#[derive(Clone)]
struct Material {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
}

impl Material {
    fn from_secret(secret: &Secret) -> Result<Self, String> {
        let data = secret.data.as_ref().ok_or("it holds no data")?;
        let field = |key: &str| {
            data.get(key)
                .map(|value| value.0.clone())
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("it has no {key}"))
        };
        Ok(Self {
            cert_pem: field(TLS_CERT_KEY)?,
            key_pem: field(TLS_PRIVATE_KEY_KEY)?,
            ca_pem: field(CA_CERT_KEY)?,
        })
    }

    fn data(&self) -> BTreeMap<String, ByteString> {
        BTreeMap::from([
            (TLS_CERT_KEY.to_owned(), ByteString(self.cert_pem.clone())),
            (
                TLS_PRIVATE_KEY_KEY.to_owned(),
                ByteString(self.key_pem.clone()),
            ),
            (CA_CERT_KEY.to_owned(), ByteString(self.ca_pem.clone())),
        ])
    }
}

/// A pair that loads, chains to a CA in its bundle for the service's name, and is valid now.
struct Checked {
    key: CertifiedKey,
    /// The CA that signed the pair, kept trusted through a renewal.
    signer: CertificateDer<'static>,
    renew_at: Timestamp,
}

/// Why a stored pair cannot be served, or when it should be renewed.
fn check(
    material: &Material,
    server_name: &ServerName<'_>,
    now: Timestamp,
) -> Result<Checked, String> {
    let key = crate::tls::certified_key_from_pem(&material.cert_pem, &material.key_pem, "Secret")
        .map_err(|err| err.to_string())?;
    let leaf = key
        .end_entity_cert()
        .map_err(|err| err.to_string())?
        .clone();
    let bundle: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&material.ca_pem)
        .filter_map(Result::ok)
        .collect();
    if bundle.is_empty() {
        return Err(format!("{CA_CERT_KEY} holds no PEM certificate"));
    }
    let unix_now = UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now.as_second()).unwrap_or(0),
    ));
    let signer = bundle
        .into_iter()
        .find(|ca| signs(ca, &leaf, server_name, unix_now))
        .ok_or_else(|| {
            format!(
                "{TLS_CERT_KEY} is not valid now for {} under a CA of {CA_CERT_KEY}",
                server_name.to_str()
            )
        })?;
    let (not_before, not_after) =
        validity(&leaf).ok_or_else(|| format!("cannot read the validity of {TLS_CERT_KEY}"))?;
    // A trust anchor's own dates are not checked by rustls but are by the API server.
    let (_, ca_not_after) =
        validity(&signer).ok_or_else(|| format!("cannot read the validity of {CA_CERT_KEY}"))?;
    if ca_not_after <= now {
        return Err(format!("the CA expired at {ca_not_after}"));
    }
    let lifetime = not_after.duration_since(not_before);
    let renew_at = not_after.min(ca_not_after) - lifetime / 3;
    Ok(Checked {
        key,
        signer,
        renew_at,
    })
}

fn signs(
    ca: &CertificateDer<'static>,
    leaf: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> bool {
    let mut roots = RootCertStore::empty();
    if roots.add(ca.clone()).is_err() {
        return false;
    }
    match WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
        .build()
    {
        Ok(verifier) => verifier
            .verify_server_cert(leaf, &[], server_name, &[], now)
            .is_ok(),
        Err(_) => false,
    }
}

/// Issues a new pair; the CAs in `keep_trusting` stay in the bundle after the new one.
fn issue(
    settings: &CertSettings,
    keep_trusting: &[CertificateDer<'_>],
) -> Result<(Material, CertifiedKey), CertError> {
    let issued = crate::certs::issue(
        &crate::certs::service_dns_names(&settings.service, &settings.namespace),
        settings.validity_days,
    )?;
    let mut ca_pem = issued.ca_pem.into_bytes();
    for previous in keep_trusting {
        ca_pem.extend_from_slice(pem_certificate(previous).as_bytes());
    }
    let material = Material {
        cert_pem: issued.cert_pem.into_bytes(),
        key_pem: issued.key_pem.into_bytes(),
        ca_pem,
    };
    let key = crate::tls::certified_key_from_pem(&material.cert_pem, &material.key_pem, "new")?;
    Ok((material, key))
}

fn pem_certificate(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

async fn read_secret(
    secrets: &Api<Secret>,
    settings: &CertSettings,
) -> Result<Option<Secret>, CertError> {
    secrets
        .get_opt(&settings.secret)
        .await
        .map_err(|source| CertError::Api {
            action: "read",
            object: settings.secret_ref(),
            source,
        })
}

fn owner_reference(
    config: &MutatingWebhookConfiguration,
    settings: &CertSettings,
) -> Result<OwnerReference, CertError> {
    let uid = config
        .metadata
        .uid
        .clone()
        .ok_or_else(|| CertError::NoUid(settings.webhook_configuration.clone()))?;
    Ok(OwnerReference {
        api_version: "admissionregistration.k8s.io/v1".to_owned(),
        kind: "MutatingWebhookConfiguration".to_owned(),
        name: settings.webhook_configuration.clone(),
        uid,
        // Not a controller and not blocking: the reference exists only for garbage collection,
        // and blockOwnerDeletion would need delete rights on the configuration.
        block_owner_deletion: None,
        controller: None,
    })
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "coredog".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "webhook".to_owned(),
        ),
    ])
}

fn owned_by(secret: &Secret, owner: &OwnerReference) -> bool {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|reference| reference.uid == owner.uid)
}

/// `existing` with `owner` in place of any reference to an earlier configuration of the same
/// name (a reinstall), and our labels; everything else, including the type, is kept because a
/// Secret's type cannot change in an update.
fn updated(existing: &Secret, owner: &OwnerReference, data: Option<&Material>) -> Secret {
    let mut secret = existing.clone();
    secret.metadata.managed_fields = None;
    let references = secret
        .metadata
        .owner_references
        .get_or_insert_with(Vec::new);
    references.retain(|reference| {
        !(reference.kind == owner.kind
            && reference.name == owner.name
            && reference
                .api_version
                .starts_with("admissionregistration.k8s.io/"))
    });
    references.push(owner.clone());
    secret
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels());
    if let Some(material) = data {
        secret.data = Some(material.data());
        secret.string_data = None;
    }
    secret
}

enum Written {
    Stored,
    /// Another writer got there first: re-read and start over.
    Lost,
}

async fn create(
    secrets: &Api<Secret>,
    settings: &CertSettings,
    secret: &Secret,
) -> Result<Written, CertError> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match secrets.create(&params, secret).await {
        Ok(_) => Ok(Written::Stored),
        Err(kube::Error::Api(status)) if is(&status, "AlreadyExists", 409) => Ok(Written::Lost),
        Err(source) => Err(CertError::Api {
            action: "create",
            object: settings.secret_ref(),
            source,
        }),
    }
}

async fn replace(
    secrets: &Api<Secret>,
    settings: &CertSettings,
    secret: &Secret,
) -> Result<Written, CertError> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match secrets.replace(&settings.secret, &params, secret).await {
        Ok(_) => Ok(Written::Stored),
        // NotFound: deleted since it was read; the next round creates it.
        Err(kube::Error::Api(status))
            if is(&status, "Conflict", 409) || is(&status, "NotFound", 404) =>
        {
            Ok(Written::Lost)
        }
        Err(source) => Err(CertError::Api {
            action: "update",
            object: settings.secret_ref(),
            source,
        }),
    }
}

/// Brings the Secret to a usable, current pair owned by the configuration, and returns it.
async fn settle(
    secrets: &Api<Secret>,
    settings: &CertSettings,
    server_name: &ServerName<'_>,
    owner: &OwnerReference,
    trusted: &[CertificateDer<'static>],
    mut secret: Option<Secret>,
) -> Result<(Material, CertifiedKey), CertError> {
    for _ in 0..MAX_ATTEMPTS {
        let now = Timestamp::now();
        match &secret {
            None => {
                let (material, key) = issue(settings, trusted)?;
                let fresh = Secret {
                    metadata: ObjectMeta {
                        name: Some(settings.secret.clone()),
                        namespace: Some(settings.namespace.clone()),
                        labels: Some(labels()),
                        owner_references: Some(vec![owner.clone()]),
                        ..ObjectMeta::default()
                    },
                    type_: Some(SECRET_TYPE_TLS.to_owned()),
                    data: Some(material.data()),
                    ..Secret::default()
                };
                if let Written::Stored = create(secrets, settings, &fresh).await? {
                    info!(secret = %settings.secret_ref(), "issued a new webhook CA and certificate");
                    return Ok((material, key));
                }
                info!(secret = %settings.secret_ref(), "another replica created the certificate first; using it");
            }
            Some(existing) => match Material::from_secret(existing).and_then(|material| {
                check(&material, server_name, now).map(|checked| (material, checked))
            }) {
                Ok((material, checked)) if now < checked.renew_at => {
                    if !owned_by(existing, owner) {
                        adopt(secrets, settings, existing, owner).await;
                    }
                    debug!(secret = %settings.secret_ref(), renew_at = %checked.renew_at, "webhook certificate is current");
                    return Ok((material, checked.key));
                }
                Ok((_, checked)) => {
                    let (material, key) = issue(settings, std::slice::from_ref(&checked.signer))?;
                    let renewed = updated(existing, owner, Some(&material));
                    if let Written::Stored = replace(secrets, settings, &renewed).await? {
                        info!(secret = %settings.secret_ref(), due = %checked.renew_at, "renewed the webhook CA and certificate");
                        return Ok((material, key));
                    }
                    info!(secret = %settings.secret_ref(), "another replica renewed the certificate first; using it");
                }
                Err(why) => {
                    let (material, key) = issue(settings, trusted)?;
                    let replaced = updated(existing, owner, Some(&material));
                    if let Written::Stored = replace(secrets, settings, &replaced).await? {
                        warn!(secret = %settings.secret_ref(), reason = %why, "replaced an unusable webhook certificate");
                        return Ok((material, key));
                    }
                    info!(secret = %settings.secret_ref(), "another replica replaced the certificate first; using it");
                }
            },
        }
        secret = read_secret(secrets, settings).await?;
    }
    Err(CertError::Contended(settings.secret_ref()))
}

/// Points a usable Secret at the current configuration, so that after an uninstall and a quick
/// reinstall the garbage collector does not delete it for its old, gone owner. Serving does not
/// depend on it, so a failure is only logged.
async fn adopt(
    secrets: &Api<Secret>,
    settings: &CertSettings,
    existing: &Secret,
    owner: &OwnerReference,
) {
    match replace(secrets, settings, &updated(existing, owner, None)).await {
        Ok(Written::Stored) => {
            info!(secret = %settings.secret_ref(), owner = %owner.uid, "the certificate Secret now belongs to the current webhook configuration");
        }
        Ok(Written::Lost) => {
            debug!(secret = %settings.secret_ref(), "the Secret changed while being adopted; the next check retries");
        }
        Err(err) => warn!(error = %err, "cannot record the certificate Secret's owner"),
    }
}

async fn patch_ca_bundle(
    configs: &Api<MutatingWebhookConfiguration>,
    settings: &CertSettings,
    config: &MutatingWebhookConfiguration,
    ca_pem: &[u8],
) -> Result<Written, CertError> {
    let webhooks = config.webhooks.as_deref().unwrap_or_default();
    if webhooks.is_empty() {
        warn!(config = %settings.config_ref(), "has no webhooks to give the CA to");
        return Ok(Written::Stored);
    }
    let stale = webhooks
        .iter()
        .filter(|webhook| {
            webhook
                .client_config
                .ca_bundle
                .as_ref()
                .is_none_or(|bundle| bundle.0 != ca_pem)
        })
        .count();
    if stale == 0 {
        return Ok(Written::Stored);
    }
    // A strategic merge patch matches list entries by webhook name, so only the caBundles
    // change and nothing else in the configuration (which Helm owns) is rewritten. The
    // resourceVersion makes it apply only to the configuration read.
    let bundle = ByteString(ca_pem.to_vec());
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": config.metadata.resource_version },
        "webhooks": webhooks
            .iter()
            .map(|webhook| serde_json::json!({
                "name": webhook.name,
                "clientConfig": { "caBundle": bundle },
            }))
            .collect::<Vec<_>>(),
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match configs
        .patch(
            &settings.webhook_configuration,
            &params,
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => {
            info!(config = %settings.config_ref(), webhooks = stale, "wrote the CA into the caBundle");
            Ok(Written::Stored)
        }
        Err(kube::Error::Api(status)) if is(&status, "Conflict", 409) => Ok(Written::Lost),
        Err(source) => Err(CertError::Api {
            action: "patch the caBundle of",
            object: settings.config_ref(),
            source,
        }),
    }
}

/// Matches an API error by its reason, or by its code when the reason is empty.
fn is(status: &kube::core::Status, reason: &str, code: u16) -> bool {
    status.reason == reason || (status.reason.is_empty() && status.code == code)
}

/// A certificate's notBefore and notAfter, read straight from its DER: rustls checks validity
/// but does not expose the dates, and the renewal point depends on them.
fn validity(der: &[u8]) -> Option<(Timestamp, Timestamp)> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    let (SEQUENCE, certificate, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, mut fields, _) = tlv(certificate)? else {
        return None;
    };
    if let (VERSION, _, rest) = tlv(fields)? {
        fields = rest;
    }
    // serialNumber, signature, issuer
    for expected in [INTEGER, SEQUENCE, SEQUENCE] {
        let (tag, _, rest) = tlv(fields)?;
        if tag != expected {
            return None;
        }
        fields = rest;
    }
    let (SEQUENCE, dates, _) = tlv(fields)? else {
        return None;
    };
    let (first_tag, first, rest) = tlv(dates)?;
    let (second_tag, second, _) = tlv(rest)?;
    Some((der_time(first_tag, first)?, der_time(second_tag, second)?))
}

/// One DER tag-length-value: the tag, the contents and what follows.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((tag, contents, rest))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as RFC 5280 requires them.
fn der_time(tag: u8, contents: &[u8]) -> Option<Timestamp> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let digits = contents.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i16> {
        digits.get(range)?.iter().try_fold(0i16, |value, digit| {
            value.checked_mul(10)?.checked_add(i16::from(digit - b'0'))
        })
    };
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let short = number(0..2)?;
            (if short >= 50 { 1900 } else { 2000 } + short, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let part = |index: usize| -> Option<i8> {
        i8::try_from(number(rest + 2 * index..rest + 2 * index + 2)?).ok()
    };
    jiff::civil::DateTime::new(year, part(0)?, part(1)?, part(2)?, part(3)?, part(4)?, 0)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|zoned| zoned.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn settings() -> CertSettings {
        CertSettings::new(
            "coredog-webhook-tls",
            "coredog-webhook",
            "coredog-webhook",
            "coredog-system",
        )
    }

    fn fresh() -> Material {
        issue(&settings(), &[]).unwrap().0
    }

    #[test]
    fn reads_the_validity_of_an_issued_certificate() {
        let material = fresh();
        let der = CertificateDer::from_pem_slice(&material.cert_pem).unwrap();
        let (not_before, not_after) = validity(&der).unwrap();
        let now = Timestamp::now();
        // Backdated an hour, for replicas whose clocks are behind.
        let backdated = now.duration_since(not_before);
        assert!(
            SignedDuration::from_mins(59) < backdated && backdated < SignedDuration::from_mins(61),
            "{backdated:?}"
        );
        let days = not_after.duration_since(now).as_secs() / 86_400;
        assert!((364..=365).contains(&days), "{days}");
    }

    #[test]
    fn der_times() {
        let at = |tag, text: &str| der_time(tag, text.as_bytes()).map(|t| t.to_string());
        assert_eq!(at(0x17, "491231235959Z").unwrap(), "2049-12-31T23:59:59Z");
        assert_eq!(at(0x17, "500101000000Z").unwrap(), "1950-01-01T00:00:00Z");
        assert_eq!(at(0x18, "20510203040506Z").unwrap(), "2051-02-03T04:05:06Z");
        assert_eq!(at(0x17, "491331235959Z"), None);
        assert_eq!(at(0x17, "4912312359+9Z"), None);
        assert_eq!(at(0x17, "4912312359590"), None);
        assert_eq!(at(0x18, "491231235959Z"), None);
        assert_eq!(validity(b"\x30\x82\xff"), None);
        assert_eq!(validity(&[]), None);
    }

    #[test]
    fn a_fresh_pair_is_current_and_renews_in_its_last_third() {
        let settings = settings();
        let material = fresh();
        let name = settings.server_name().unwrap();
        let now = Timestamp::now();
        let checked = check(&material, &name, now).unwrap();
        let until = checked.renew_at.duration_since(now).as_secs() / 86_400;
        assert!((242..=243).contains(&until), "{until}");
        // Past the renewal point it is still served (and so still checks), only due.
        let later = now + SignedDuration::from_hours(24 * 300);
        assert!(check(&material, &name, later).unwrap().renew_at < later);
        let expired = now + SignedDuration::from_hours(24 * 366);
        assert!(check(&material, &name, expired).is_err());
    }

    #[test]
    fn a_pair_for_another_service_or_ca_is_unusable() {
        let material = fresh();
        let other = CertSettings::new("s", "c", "other", "coredog-system");
        let why = check(&material, &other.server_name().unwrap(), Timestamp::now())
            .err()
            .unwrap();
        assert!(why.contains("not valid now"), "{why}");
        let mixed = Material {
            ca_pem: fresh().ca_pem,
            ..material
        };
        assert!(check(&mixed, &settings().server_name().unwrap(), Timestamp::now()).is_err());
    }

    #[test]
    fn a_renewal_keeps_trusting_the_previous_ca() {
        let settings = settings();
        let old = fresh();
        let name = settings.server_name().unwrap();
        let checked = check(&old, &name, Timestamp::now()).unwrap();
        let (renewed, _) = issue(&settings, std::slice::from_ref(&checked.signer)).unwrap();
        let bundle: Vec<_> = CertificateDer::pem_slice_iter(&renewed.ca_pem)
            .map(Result::unwrap)
            .collect();
        assert_eq!(bundle.len(), 2);
        assert_eq!(
            bundle[1],
            CertificateDer::from_pem_slice(&old.ca_pem).unwrap()
        );
        // The old pair verifies under the new bundle, and the new pair too.
        let with_new_bundle = Material {
            ca_pem: renewed.ca_pem.clone(),
            ..old
        };
        check(&with_new_bundle, &name, Timestamp::now()).unwrap();
        check(&renewed, &name, Timestamp::now()).unwrap();
    }
}
