//! Certificates for the webhook's HTTPS endpoint: a private CA per install and a serving
//! certificate it signs. Nothing here is ever committed or shared between installs.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A freshly issued CA and serving certificate, all PEM.
pub struct IssuedCertificates {
    /// The CA certificate: what the API server trusts (the webhook's `caBundle`).
    pub ca_pem: String,
    /// The serving certificate, signed by the CA.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
    /// When the serving certificate (and the CA) stop being valid.
    pub not_after: jiff::Timestamp,
}

impl IssuedCertificates {
    /// A TLS server configuration serving this certificate as it is (no reloading).
    pub fn server_config(
        &self,
    ) -> Result<std::sync::Arc<rustls::ServerConfig>, crate::tls::TlsError> {
        let key = crate::tls::certified_key_from_pem(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            "issued",
        )?;
        crate::tls::ReloadingCert::new(key).server_config()
    }
}

impl std::fmt::Debug for IssuedCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificates")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Issues a new CA and a serving certificate for `dns_names` (for a webhook:
/// `<service>.<namespace>.svc` and its shorter forms), valid for `valid_days`.
pub fn issue(dns_names: &[String], valid_days: u32) -> Result<IssuedCertificates, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    // Backdated, so that a replica whose clock is behind the issuer's (by up to an hour) does
    // not find the pair "not valid yet" and replace the CA the other replicas serve under.
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(valid_days));

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "coredog-webhook-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(dns_names.to_vec())?;
    if let Some(first) = dns_names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    Ok(IssuedCertificates {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: jiff::Timestamp::from_second(not_after.unix_timestamp())
            .unwrap_or(jiff::Timestamp::MAX),
    })
}

/// The DNS names a webhook Service is reached by.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_load_as_a_serving_pair() {
        let issued = issue(&service_dns_names("coredog-webhook", "coredog-system"), 365).unwrap();
        assert!(issued.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(issued.ca_pem, issued.cert_pem);
        issued.server_config().unwrap();
        let days = (issued.not_after - jiff::Timestamp::now()).get_seconds() / 86_400;
        assert!((363..=365).contains(&days), "{days}");
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }
}
