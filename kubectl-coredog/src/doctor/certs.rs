//! The webhook's certificates as doctor checks them: PEM parsing, the CA that signed the
//! serving certificate, validity, and the names it serves.

use jiff::Timestamp;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The DER of every certificate in a PEM bundle.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certificates = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|err| format!("not PEM: {err}"))?;
        if block.label == "CERTIFICATE" {
            certificates.push(block.contents);
        }
    }
    if certificates.is_empty() {
        return Err("no certificate in it".to_owned());
    }
    Ok(certificates)
}

/// What doctor needs to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub dns_names: Vec<String>,
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, certificate)| certificate)
        .map_err(|err| format!("not a certificate: {err}"))
}

pub fn facts(der: &[u8]) -> Result<Facts, String> {
    let certificate = parse(der)?;
    let validity = certificate.validity();
    let time = |seconds: i64| Timestamp::from_second(seconds).unwrap_or(Timestamp::MIN);
    let dns_names = match certificate.subject_alternative_name() {
        Ok(Some(names)) => names
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Facts {
        not_before: time(validity.not_before.timestamp()),
        not_after: time(validity.not_after.timestamp()),
        dns_names,
    })
}

/// Whether `issuer` signed `certificate`.
pub fn signed_by(certificate: &[u8], issuer: &[u8]) -> Result<(), String> {
    let certificate = parse(certificate)?;
    let issuer = parse(issuer)?;
    certificate
        .verify_signature(Some(issuer.public_key()))
        .map_err(|err| format!("the signature does not verify ({err})"))
}
