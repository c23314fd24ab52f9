//! An S3 endpoint whose certificate a private CA signed (an on-premises MinIO or Ceph, a
//! private cloud's object storage): trusted once the CA is in the system's store or in
//! `SSL_CERT_FILE`. Its own test binary, since it sets `SSL_CERT_FILE` for the whole process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coredog_core::config::Config;
use coredog_store::StoreError;
use coredog_store::s3::S3Store;

/// A ListObjectsV2 answer with nothing in it, for any request.
async fn empty_listing() -> &'static str {
    r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>dumps</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"#
}

#[tokio::test]
async fn an_endpoint_signed_by_a_private_ca_in_ssl_cert_file_is_trusted() {
    let issued = coredog::certs::issue(&["localhost".to_owned()], 1).unwrap();
    let config = issued.server_config().unwrap();
    let app = axum::Router::new().fallback(empty_listing);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(coredog::tls::serve(listener, config, app, async {
        let _ = stopped.await;
    }));
    // The store reaches the server through a relay that counts its connections: each try of
    // a request whose handshake failed comes on a new one.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = relay.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let relaying = tokio::spawn({
        let connections = connections.clone();
        async move {
            while let Ok((mut client, _)) = relay.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(server_address).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }
    });
    let yaml = format!(
        "StorageConfig:\n  s3AccesskeyID: AKIDCOREDOGTEST\n  s3SecretAccessKey: secret\n  s3Region: us-east-1\n  S3Bucket: dumps\n  S3Endpoint: https://localhost:{port}\n"
    );
    let storage = Config::from_yaml(&yaml).unwrap().storage;

    let untrusted = S3Store::from_config(&storage)
        .unwrap()
        .list_page("corefiles/", None, None)
        .await;
    let refused = untrusted.err().unwrap();
    assert!(
        matches!(
            refused,
            StoreError::UntrustedCertificate {
                unknown_issuer: true,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(!refused.is_transient());
    let said = refused.to_string();
    assert!(
        said.contains("certificate is not trusted here") && said.contains("UnknownIssuer"),
        "{said}"
    );
    // Refused at once: an untrusted certificate is not tried again.
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &issued.ca_pem).unwrap();
    // SAFETY: this test binary runs this one test, and no other thread reads the environment
    // while it is set.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca_file) };
    let trusted = S3Store::from_config(&storage)
        .unwrap()
        .list_page("corefiles/", None, None)
        .await;
    let page = trusted.unwrap();
    assert!(page.objects.is_empty());

    relaying.abort();
    let _ = stop.send(());
    server.await.unwrap();
}
