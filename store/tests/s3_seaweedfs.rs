//! The S3 store against a real S3 server (SeaweedFS) with SigV4 authentication enforced.

use coredog_core::config::Config;
use coredog_store::{Store, StoreError, UploadOptions, part_channel};
use coredog_tests::{SeaweedFs, http_status};

fn store_for(server: &SeaweedFs) -> Store {
    let config = Config::from_yaml(&server.storage_config_yaml("corefiles")).unwrap();
    Store::from_config(&config.storage).unwrap()
}

/// Bytes that do not repeat, so a misplaced part cannot go unnoticed.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_list_and_read_back() {
    let server = SeaweedFs::start("dumps");
    let store = store_for(&server);
    let data = pattern(17 * 1024 * 1024 + 123);
    let part_size = 5 * 1024 * 1024;

    let (sender, receiver) = part_channel();
    let chunks: Vec<Vec<u8>> = data.chunks(part_size).map(<[u8]>::to_vec).collect();
    let producer = tokio::task::spawn_blocking(move || {
        for chunk in chunks {
            sender.send_blocking(chunk).unwrap();
        }
        sender.finish();
    });
    let options = UploadOptions {
        parts_in_flight: 2,
        ..UploadOptions::from_config(&Default::default())
    };
    let key = "corefiles/shop/web-1/20261127T100012Z_app_server_42_0123456789abcdef.core";
    let stored = store
        .upload(key, "application/octet-stream", receiver, options)
        .await
        .unwrap();
    producer.await.unwrap();
    assert_eq!(stored, data.len() as u64);

    let head = store.head(key).await.unwrap().unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert!(head.last_modified.is_some());
    let middle = store
        .get_range(key, 5 * 1024 * 1024 - 10, 5 * 1024 * 1024 + 9)
        .await
        .unwrap();
    assert_eq!(
        &middle[..],
        &data[5 * 1024 * 1024 - 10..5 * 1024 * 1024 + 10]
    );

    // Streamed: every piece where it belongs, nothing outside the range.
    let (to, mut pieces) = tokio::sync::mpsc::channel(16);
    let (start, end) = (3 * 1024 * 1024 + 5, 12 * 1024 * 1024 + 6);
    let reader = async {
        store.read_range(key, start, end, &to).await.unwrap();
        drop(to);
    };
    let collector = async {
        let mut got = Vec::new();
        while let Some(piece) = pieces.recv().await {
            assert_eq!(piece.offset, start + got.len() as u64);
            got.extend_from_slice(&piece.bytes);
        }
        got
    };
    let ((), got) = tokio::join!(reader, collector);
    assert_eq!(got, &data[start as usize..=end as usize]);

    store
        .put_bytes(&format!("{key}.json"), b"{\"id\":1}", "application/json")
        .await
        .unwrap();
    assert_eq!(
        store.get_bytes(&format!("{key}.json")).await.unwrap(),
        b"{\"id\":1}"
    );

    let page = store.list_page("corefiles/shop/", None).await.unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(keys, [key.to_owned(), format!("{key}.json")]);
    assert_eq!(page.objects[0].size, data.len() as u64);
    assert!(store.head("corefiles/missing").await.unwrap().is_none());
    assert!(matches!(
        store.get_bytes("corefiles/missing").await,
        Err(StoreError::NotFound(_))
    ));

    // A presigned link works without credentials; the bare object does not.
    let url = store
        .download_url(&format!("{key}.json"), 600)
        .await
        .unwrap();
    let path_and_query = url
        .splitn(4, '/')
        .nth(3)
        .map(|rest| format!("/{rest}"))
        .unwrap();
    assert_eq!(
        http_status(server.s3_port(), &path_and_query),
        Some(200),
        "{url}"
    );
    assert_eq!(
        http_status(server.s3_port(), &format!("/dumps/{key}.json")),
        Some(403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_dumps_are_one_put_and_listing_pages() {
    let server = SeaweedFs::start("dumps");
    let store = store_for(&server);
    for index in 0..1005 {
        store
            .put_bytes(
                &format!("corefiles/many/p/{index:05}.core.json"),
                b"{}",
                "application/json",
            )
            .await
            .unwrap();
    }
    let first = store.list_page("corefiles/many/", None).await.unwrap();
    assert_eq!(first.objects.len(), 1000);
    let second = store
        .list_page("corefiles/many/", first.next.as_deref())
        .await
        .unwrap();
    assert_eq!(second.objects.len(), 5);
    assert!(second.next.is_none());

    let (sender, receiver) = part_channel();
    sender.send(b"tiny core".to_vec()).await.unwrap();
    sender.finish();
    let options = UploadOptions::from_config(&Default::default());
    assert_eq!(
        store
            .upload(
                "corefiles/tiny.core",
                "application/octet-stream",
                receiver,
                options
            )
            .await
            .unwrap(),
        9
    );
    assert_eq!(
        store.get_bytes("corefiles/tiny.core").await.unwrap(),
        b"tiny core"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused() {
    let server = SeaweedFs::start("dumps");
    let yaml = server
        .storage_config_yaml("corefiles")
        .replace(&server.secret_key, "not-the-secret");
    let config = Config::from_yaml(&yaml).unwrap();
    let store = Store::from_config(&config.storage).unwrap();
    let err = store
        .put_bytes("corefiles/x", b"x", "text/plain")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::S3 { .. }), "{err}");
    assert!(!err.to_string().contains("not-the-secret"));
}

/// The bucket as a second client sees it, to leave an unfinished upload behind the way a
/// watcher killed mid-upload does, and to look for leftovers afterwards.
fn raw_bucket(server: &SeaweedFs) -> Box<s3::Bucket> {
    let region = s3::Region::Custom {
        region: "us-east-1".to_owned(),
        endpoint: server.endpoint(),
    };
    let credentials = s3::creds::Credentials::new(
        Some(&server.access_key),
        Some(&server.secret_key),
        None,
        None,
        None,
    )
    .unwrap();
    s3::Bucket::new(&server.bucket, region, credentials)
        .unwrap()
        .with_path_style()
}

async fn unfinished_uploads(store: &Store, key: &str) -> Vec<String> {
    let Store::S3(store) = store else {
        panic!("an S3 store")
    };
    store
        .unfinished_uploads(key)
        .await
        .unwrap()
        .into_iter()
        .map(|upload| upload.upload_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_started_at_once_replaces_an_earlier_unfinished_one() {
    let server = SeaweedFs::start("dumps");
    let store = store_for(&server);
    let bucket = raw_bucket(&server);
    let key = "corefiles/shop/web-1/20261127T100012Z_app_server_42_fedcba9876543210.core.zst";
    let earlier = bucket
        .initiate_multipart_upload(key, "application/zstd")
        .await
        .unwrap();
    bucket
        .put_multipart_chunk(
            pattern(5 * 1024 * 1024),
            key,
            1,
            &earlier.upload_id,
            "application/zstd",
        )
        .await
        .unwrap();
    assert_eq!(unfinished_uploads(&store, key).await, [earlier.upload_id]);

    // One part shorter than a part size: started at once, it is still a valid multipart upload.
    let data = pattern(3 * 1024 * 1024 + 7);
    let (sender, receiver) = part_channel();
    let options = UploadOptions {
        multipart_at_once: true,
        ..UploadOptions::from_config(&Default::default())
    };
    let upload = store.upload(key, "application/zstd", receiver, options);
    let feed = async {
        sender.send(data.clone()).await.unwrap();
        sender.finish();
    };
    let (stored, ()) = tokio::join!(upload, feed);
    assert_eq!(stored.unwrap(), data.len() as u64);
    assert_eq!(store.get_bytes(key).await.unwrap(), data);
    assert_eq!(unfinished_uploads(&store, key).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_leaves_nothing_behind() {
    let server = SeaweedFs::start("dumps");
    let store = store_for(&server);
    let key = "corefiles/shop/web-1/20261127T100012Z_app_server_42_0000000000000001.core";
    let (sender, receiver) = part_channel();
    let options = UploadOptions {
        multipart_at_once: true,
        ..UploadOptions::from_config(&Default::default())
    };
    let upload = store.upload(key, "application/octet-stream", receiver, options);
    let feed = async move {
        sender.send(pattern(5 * 1024 * 1024)).await.unwrap();
        // Dropped without finish: the source went away mid-dump.
    };
    let (stored, ()) = tokio::join!(upload, feed);
    assert!(
        matches!(stored, Err(StoreError::Source { .. })),
        "{stored:?}"
    );
    assert!(store.head(key).await.unwrap().is_none());
    assert_eq!(unfinished_uploads(&store, key).await, Vec::<String>::new());
}
