//! Keys from the shared credentials file, in the profile `AWS_PROFILE` names, when the
//! configuration and the environment give none (as the AWS CLI reads them), against a server
//! that checks every signature. Its own test binary: it sets the process's environment.

use coredog_core::config::Config;
use coredog_store::Store;
use coredog_tests::SeaweedFs;

#[tokio::test]
async fn the_profile_aws_profile_names_signs_the_requests() {
    let server = SeaweedFs::start("dumps");
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = AKIDNOTKNOWNHERE\naws_secret_access_key = wrong\n\n[coredog]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key, server.secret_key
        ),
    )
    .unwrap();
    // SAFETY: this test binary runs this one test, and no other thread reads the environment
    // while it is changed.
    unsafe {
        for variable in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            std::env::remove_var(variable);
        }
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials);
    }
    let yaml = format!(
        "StorageConfig:\n  s3Region: us-east-1\n  S3Bucket: dumps\n  S3Endpoint: {}\n",
        server.endpoint()
    );
    let storage = Config::from_yaml(&yaml).unwrap().storage;
    let list_with_profile = async |profile: &str| {
        // SAFETY: as above.
        unsafe { std::env::set_var("AWS_PROFILE", profile) };
        Store::from_config(&storage)
            .unwrap()
            .list_page("corefiles/", None)
            .await
    };

    let page = list_with_profile("coredog").await.unwrap();
    assert!(page.objects.is_empty());
    // An empty AWS_PROFILE is the default profile, whose keys this server does not know.
    let refused = list_with_profile("").await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
}
