//! S3 and S3-compatible object storage (AWS, Tencent COS, Aliyun OSS, MinIO, SeaweedFS).
//!
//! rust-s3 signs every request and sends all but the parts' bodies; the pipeline around it is
//! CoreDog's own. rust-s3's `put_object_stream` sizes its concurrency from the host's free
//! memory, which on a large node means hundreds of MiB of buffers inside a pod with a 256 MiB
//! limit; here at most `parts_in_flight` parts are uploading at any time, and each part's
//! buffer is held once (see [`PartUploader`]).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use coredog_core::config::{PLACEHOLDER_BUCKET, StorageConfig};
use jiff::Timestamp;
use s3::bucket::Bucket;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::region::Region;
use s3::serde_types::Part;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::{
    ListPage, ObjectInfo, PartReceiver, Piece, RetryPolicy, StoreError, UploadOptions, abandoned,
};

/// How long a request without a large body may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A download that receives nothing for this long has stalled (it resumes where it stopped).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest rate an upload is given time for, on top of [`REQUEST_TIMEOUT`]: a part of
/// 512 MiB on a congested link must not be cut off and sent again from its start forever.
const SLOWEST_UPLOAD_BYTES_PER_SECOND: u64 = 256 * 1024;

const PAGE_SIZE: usize = 1000;
/// URLs this store presigns for its own requests are signed just before they are used: they only
/// have to outlast one request.
const REQUEST_URL_EXPIRY_SECONDS: u32 = 3600;

/// The time a request sending `bytes` may take in all.
fn upload_timeout(bytes: u64) -> Duration {
    REQUEST_TIMEOUT + Duration::from_secs(bytes / SLOWEST_UPLOAD_BYTES_PER_SECOND)
}

/// How long a CompleteMultipartUpload may take: S3 assembles the parts before it answers,
/// which for thousands of them takes minutes.
fn complete_timeout(parts: usize) -> Duration {
    REQUEST_TIMEOUT + Duration::from_millis(60 * parts as u64)
}

pub struct S3Store {
    bucket: Box<Bucket>,
    http: reqwest::Client,
    endpoint: String,
    retry: RetryPolicy,
}

fn s3_error<'a>(operation: &'static str, key: &'a str) -> impl FnOnce(S3Error) -> StoreError + 'a {
    move |source| {
        let problem = match &source {
            S3Error::Reqwest(err) => certificate_problem(err).map(|problem| {
                let unknown_issuer = matches!(problem, rustls::CertificateError::UnknownIssuer);
                (problem.to_string(), unknown_issuer)
            }),
            _ => None,
        };
        match problem {
            Some((problem, unknown_issuer)) => StoreError::UntrustedCertificate {
                operation,
                key: key.to_owned(),
                problem,
                unknown_issuer,
            },
            None => StoreError::S3 {
                operation,
                key: key.to_owned(),
                source: without_request_details(source),
            },
        }
    }
}

/// An S3 error document cut down to its `<Code>` and `<Message>`. The rest names the access
/// key, and for a signature mismatch the string signed and the canonical request: an error's
/// text reaches logs and, for a core that keeps failing, chat channels.
fn without_request_details(err: S3Error) -> S3Error {
    match err {
        S3Error::HttpFailWithBody(status, body) => match error_code(&body) {
            Some(code) => {
                let message = body
                    .split_once("<Message>")
                    .and_then(|(_, rest)| rest.split_once("</Message>"))
                    .map(|(message, _)| message);
                let mut kept = format!("<Error><Code>{code}</Code>");
                if let Some(message) = message {
                    kept.push_str(&format!("<Message>{message}</Message>"));
                }
                kept.push_str("</Error>");
                S3Error::HttpFailWithBody(status, kept)
            }
            None => S3Error::HttpFailWithBody(status, body),
        },
        other => other,
    }
}

/// A request error without its URL: the URLs here are presigned, and an error's text reaches
/// logs and (for a core that keeps failing) chat channels, where the signature would let anyone
/// read or write the object for as long as it is valid.
fn without_url(err: reqwest::Error) -> reqwest::Error {
    err.without_url()
}

/// The most of an error answer's body read: an S3 error document is a few hundred bytes, and
/// whatever else answers (a proxy's page, an object sent whole) is not worth holding.
const MAX_ERROR_BODY: usize = 8 * 1024;

/// The start of an error answer's body, as text, read within [`READ_TIMEOUT`].
async fn error_text(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let read = async {
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(bytes)) => body.extend_from_slice(&bytes),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, read).await;
    body.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).into_owned()
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/SIZE` header.
fn range_start(header: &str) -> Option<u64> {
    let (first, _) = header.strip_prefix("bytes ")?.split_once('-')?;
    first.trim().parse().ok()
}

/// The `<Code>` of an S3 error answer.
fn error_code_of(err: &S3Error) -> Option<&str> {
    match err {
        S3Error::HttpFailWithBody(_, body) => error_code(body),
        _ => None,
    }
}

fn is_not_found(err: &S3Error) -> bool {
    matches!(err, S3Error::HttpFailWithBody(404, _))
}

/// Whether waiting may help: server errors, throttling, timeouts and network failures do;
/// other answers (missing object, refused credentials, bad request) are final. S3 also names
/// some transient failures only in its error's code: a CompleteMultipartUpload answered `200
/// OK` with an `InternalError` body, a body that arrived too slowly (`400 RequestTimeout`), a
/// session token that expired between signing and sending (`400 ExpiredToken`; credentials
/// are refreshed before the next try).
pub(crate) fn is_transient(err: &S3Error) -> bool {
    const TRANSIENT_CODES: [&str; 5] = [
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "ExpiredToken",
    ];
    match err {
        S3Error::HttpFailWithBody(status, body) => {
            *status >= 500
                || *status == 408
                || *status == 429
                || error_code(body).is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        // A certificate this machine does not trust stays untrusted however often it is shown.
        S3Error::Reqwest(err) => certificate_problem(err).is_none(),
        _ => true,
    }
}

/// Why the endpoint's certificate was refused (an unknown issuer, an expired certificate,
/// another host's name), when that is what `err` comes from.
fn certificate_problem<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::CertificateError> {
    let mut next = Some(err);
    while let Some(current) = next {
        if let Some(rustls::Error::InvalidCertificate(problem)) = current.downcast_ref() {
            return Some(problem);
        }
        // An io::Error's `source` is the source of the error it wraps, not that error itself,
        // which is where rustls says what it refused.
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => std::error::Error::source(io),
            },
            None => current.source(),
        };
    }
    None
}

/// The `<Code>` of an S3 error document.
fn error_code(body: &str) -> Option<&str> {
    let (_, rest) = body.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    Some(code.trim())
}

impl S3Store {
    pub fn from_config(storage: &StorageConfig) -> Result<Self, StoreError> {
        // rust-s3 would otherwise try a failed GET, HEAD or listing once more after a second's
        // sleep, inside each of this store's own tries: one retry policy, this store's, is
        // enough, and it is the one that knows a refused certificate from a lost connection.
        s3::set_retries(0);
        let endpoint = storage
            .endpoint()
            .map_err(|err| StoreError::Config(err.to_string()))?;
        let name = storage
            .bucket()
            .ok_or_else(|| StoreError::Config("StorageConfig.S3Bucket is required".to_owned()))?;
        if name == PLACEHOLDER_BUCKET {
            return Err(StoreError::Config(format!(
                "StorageConfig.S3Bucket is still the example's {PLACEHOLDER_BUCKET}, a bucket anyone may own: name your own"
            )));
        }
        let region = Region::Custom {
            region: storage.region().unwrap_or("us-east-1").to_owned(),
            endpoint: endpoint.url.clone(),
        };
        let static_credentials = storage
            .static_credentials(
                |name| std::env::var(name).ok(),
                |path| std::fs::read_to_string(path).map_err(|err| err.to_string()),
            )
            .map_err(|err| StoreError::Config(err.to_string()))?;
        let credentials = match static_credentials {
            Some(keys) => Credentials::new(
                Some(&keys.access_key_id),
                Some(&keys.secret_access_key),
                None,
                keys.session_token.as_deref(),
                None,
            ),
            // The shared profile (`AWS_PROFILE`, as the AWS CLI reads it; `default` without
            // it), web identity (IRSA), instance metadata.
            None => Credentials::new(
                None,
                None,
                None,
                None,
                std::env::var("AWS_PROFILE")
                    .ok()
                    .filter(|profile| !profile.is_empty())
                    .as_deref(),
            ),
        }
        .map_err(|err| StoreError::Config(format!("no usable storage credentials: {err}")))?;
        let config_error = |err: S3Error| StoreError::Config(err.to_string());
        let mut bucket = Bucket::new(name, region, credentials)
            .map_err(config_error)?
            .with_request_timeout(REQUEST_TIMEOUT)
            .map_err(config_error)?;
        if endpoint.path_style {
            bucket = bucket.with_path_style();
        }
        // No timeout on the client as a whole: each request sets its own. (reqwest's read
        // timeout would also run from sending a body until the answer's headers, which S3
        // sends only once it has the whole part.)
        // Reading the system's trust store takes a few milliseconds of every command; a
        // plain-HTTP endpoint (a store inside the cluster or on the node) never needs it,
        // unless the way to it is a proxy, which may be reached over TLS.
        let through_proxy = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .any(|variable| std::env::var_os(variable).is_some_and(|value| !value.is_empty()));
        let plain_http = endpoint.url.starts_with("http://") && !through_proxy;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_built_in_root_certs(!plain_http)
            .build()
            .map_err(|err| StoreError::Config(format!("HTTP client: {err}")))?;
        Ok(Self {
            bucket,
            http,
            endpoint: endpoint.url,
            retry: RetryPolicy::default(),
        })
    }

    pub fn describe(&self) -> String {
        format!("s3://{} at {}", self.bucket.name(), self.endpoint)
    }

    pub async fn upload(
        &self,
        key: &str,
        content_type: &str,
        mut parts: PartReceiver,
        options: UploadOptions,
    ) -> Result<u64, StoreError> {
        let mut taken = Vec::new();
        if !options.multipart_at_once {
            let Some(first) = parts.next().await else {
                if !parts.completed() {
                    return Err(abandoned(key));
                }
                self.put_bytes(key, &[], content_type).await?;
                return Ok(0);
            };
            let Some(second) = parts.next().await else {
                if !parts.completed() {
                    return Err(abandoned(key));
                }
                // A dump that fits one part is one PUT: no multipart bookkeeping to leave behind.
                self.put_bytes(key, &first, content_type).await?;
                return Ok(first.len() as u64);
            };
            taken = vec![first, second];
        }
        let upload_id = self
            .retry
            .run_while("initiate multipart upload", is_transient, || {
                self.bucket.initiate_multipart_upload(key, content_type)
            })
            .await
            .map_err(s3_error("initiate multipart upload", key))?
            .upload_id;
        debug!(key, upload_id, "multipart upload started");
        let (uploaded, ()) = tokio::join!(
            self.upload_parts(key, &upload_id, taken, parts, options),
            self.abort_stale_uploads(key, &upload_id)
        );
        let (completed_parts, size) = match uploaded {
            Ok(done) => done,
            Err(err) => {
                self.abort(key, &upload_id).await;
                return Err(err);
            }
        };
        let part_count = completed_parts.len();
        let completed = options
            .retry
            .run_while("complete multipart upload", is_transient, || async {
                self.bucket
                    .with_request_timeout(complete_timeout(part_count))?
                    .complete_multipart_upload(key, &upload_id, completed_parts.clone())
                    .await
            })
            .await;
        match completed {
            Ok(_) => Ok(size),
            // A try whose answer was lost (a timeout, a connection cut) may have completed the
            // upload, which the next try then no longer finds: the object is there if its
            // size is the core's, and storing it all again would not make it more so.
            Err(err) if error_code_of(&err) == Some("NoSuchUpload") => match self.head(key).await {
                Ok(Some(object)) if object.size == size => Ok(size),
                _ => Err(s3_error("complete multipart upload", key)(err)),
            },
            Err(err) => {
                self.abort(key, &upload_id).await;
                Err(s3_error("complete multipart upload", key)(err))
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        taken: Vec<Vec<u8>>,
        mut parts: PartReceiver,
        options: UploadOptions,
    ) -> Result<(Vec<Part>, u64), StoreError> {
        let slots = std::sync::Arc::new(Semaphore::new(options.parts_in_flight.max(1)));
        let spare = parts.spare_buffers();
        let mut uploads: JoinSet<Result<(Part, u64), StoreError>> = JoinSet::new();
        let mut done = Vec::new();
        let mut size = 0;
        let mut taken = taken.into_iter();
        let mut number = 0u32;
        loop {
            // A slot first, then the part: a part is only taken from the producer when it can
            // start uploading, which is what bounds the memory.
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| StoreError::Source {
                    key: key.to_owned(),
                    reason: "upload slots closed".to_owned(),
                })?;
            while let Some(finished) = uploads.try_join_next() {
                let (part, bytes) = joined(finished, key)??;
                size += bytes;
                done.push(part);
            }
            let Some(data) = (match taken.next() {
                Some(data) => Some(data),
                None => parts.next().await,
            }) else {
                if !parts.completed() {
                    return Err(abandoned(key));
                }
                break;
            };
            number += 1;
            let (parts_out, spare) = (self.part_uploader(key, upload_id), spare.clone());
            let retry = options.retry;
            uploads.spawn(async move {
                let _slot = slot;
                let body = Bytes::from(data);
                let bytes = body.len() as u64;
                let part = retry
                    .run_while("upload part", is_transient, || {
                        parts_out.put(number, body.clone())
                    })
                    .await
                    .map_err(s3_error("upload part", &parts_out.key))?;
                spare.put_bytes(body);
                Ok((part, bytes))
            });
        }
        while let Some(finished) = uploads.join_next().await {
            let (part, bytes) = joined(finished, key)??;
            size += bytes;
            done.push(part);
        }
        done.sort_by_key(|part| part.part_number);
        Ok((done, size))
    }

    fn part_uploader(&self, key: &str, upload_id: &str) -> PartUploader {
        PartUploader {
            bucket: self.bucket.clone(),
            http: self.http.clone(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        }
    }

    /// Aborts the multipart uploads of `key` other than `current`: a watcher killed in the
    /// middle of an upload leaves one behind, whose parts the bucket would keep (and bill)
    /// until a lifecycle rule removes them. Best effort: a failure is logged, not returned.
    async fn abort_stale_uploads(&self, key: &str, current: &str) {
        let listed = self
            .retry
            .run_while("list multipart uploads", is_transient, || {
                self.unfinished_uploads(key)
            })
            .await;
        let uploads = match listed {
            Ok(uploads) => uploads,
            Err(err) => {
                let err = without_request_details(err);
                warn!(key, error = %err, "could not look for earlier unfinished uploads of this object");
                return;
            }
        };
        for upload in uploads {
            if upload.key == key && upload.upload_id != current {
                info!(
                    key,
                    upload_id = upload.upload_id,
                    "aborting an earlier unfinished upload of this object"
                );
                self.abort(key, &upload.upload_id).await;
            }
        }
    }

    /// The multipart uploads started and neither completed nor aborted, for keys starting with
    /// `prefix` (the first 1000). rust-s3's own listing requires fields that S3-compatible
    /// servers such as SeaweedFS leave out, so the answer is read here.
    pub async fn unfinished_uploads(&self, prefix: &str) -> Result<Vec<UnfinishedUpload>, S3Error> {
        let query = HashMap::from([
            ("uploads".to_owned(), String::new()),
            ("prefix".to_owned(), prefix.to_owned()),
        ]);
        let url = self
            .bucket
            .presign_get("/", REQUEST_URL_EXPIRY_SECONDS, Some(query))
            .await?;
        let response = self
            .http
            .get(url)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(without_url)?;
        let status = response.status();
        let body = response.text().await.map_err(without_url)?;
        if !status.is_success() {
            return Err(S3Error::HttpFailWithBody(status.as_u16(), body));
        }
        let listing: UnfinishedUploads = quick_xml::de::from_str(&body)
            .map_err(|err| S3Error::HttpFailWithBody(status.as_u16(), format!("{err}: {body}")))?;
        Ok(listing.uploads)
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        let aborted = self
            .retry
            .run("abort multipart upload", || {
                self.bucket.abort_upload(key, upload_id)
            })
            .await;
        if let Err(err) = aborted.map_err(without_request_details) {
            warn!(key, error = %err, "could not abort a failed multipart upload; the bucket's lifecycle rules must remove its parts");
        }
    }

    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.retry
            .run_while("put object", is_transient, || async {
                // Given time for its size, which the bucket's other requests (a HEAD, a
                // listing) must not wait; the HTTP client is shared.
                self.bucket
                    .with_request_timeout(upload_timeout(bytes.len() as u64))?
                    .put_object_with_content_type(key, bytes, content_type)
                    .await
            })
            .await
            .map(drop)
            .map_err(s3_error("put object", key))
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let result = self
            .retry
            .run_while("head object", is_transient, || self.bucket.head_object(key))
            .await;
        match result {
            Ok((head, 200)) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: head.content_length.unwrap_or_default().max(0) as u64,
                last_modified: head.last_modified.as_deref().and_then(parse_http_date),
            })),
            Ok((_, 404)) => Ok(None),
            Ok((_, status)) => Err(s3_error("head object", key)(S3Error::HttpFailWithBody(
                status,
                String::new(),
            ))),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(s3_error("head object", key)(err)),
        }
    }

    pub async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        let (result, _status) = self
            .retry
            .run_while("list objects", is_transient, || {
                self.bucket.list_page(
                    prefix.to_owned(),
                    None,
                    continuation.map(str::to_owned),
                    start_after
                        .filter(|_| continuation.is_none())
                        .map(str::to_owned),
                    Some(PAGE_SIZE),
                )
            })
            .await
            .map_err(s3_error("list objects", prefix))?;
        Ok(ListPage {
            objects: result
                .contents
                .into_iter()
                .map(|object| ObjectInfo {
                    last_modified: object.last_modified.parse().ok(),
                    key: object.key,
                    size: object.size,
                })
                .collect(),
            next: result
                .next_continuation_token
                .filter(|_| result.is_truncated),
        })
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match self
            .retry
            .run_while("get object", is_transient, || self.bucket.get_object(key))
            .await
        {
            Ok(response) => Ok(response.to_vec()),
            Err(err) if is_not_found(&err) => Err(StoreError::NotFound(key.to_owned())),
            Err(err) => Err(s3_error("get object", key)(err)),
        }
    }

    pub async fn get_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
    ) -> Result<bytes::Bytes, StoreError> {
        match self
            .retry
            .run_while("get object range", is_transient, || {
                self.bucket
                    .get_object_range(key, start, Some(end_inclusive))
            })
            .await
        {
            Ok(response) => Ok(response.bytes().clone()),
            Err(err) if is_not_found(&err) => Err(StoreError::NotFound(key.to_owned())),
            Err(err) => Err(s3_error("get object range", key)(err)),
        }
    }

    pub async fn read_range(
        &self,
        key: &str,
        start: u64,
        end_inclusive: u64,
        to: &tokio::sync::mpsc::Sender<Piece>,
    ) -> Result<(), StoreError> {
        let mut at = start;
        let mut attempt = 1;
        loop {
            let before = at;
            let read = self.read_range_once(key, &mut at, end_inclusive, to).await;
            // A try that moved forward before it broke off starts the count again: a long
            // range on a poor link may stall many times and still arrive whole.
            if at > before {
                attempt = 1;
            }
            match read {
                Ok(()) => return Ok(()),
                Err(err) if is_not_found(&err) => return Err(StoreError::NotFound(key.to_owned())),
                Err(err) if is_transient(&err) && attempt < self.retry.attempts => {
                    debug!(key, at, attempt, error = %err, "range read broke off; continuing");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(err) => return Err(s3_error("get object range", key)(err)),
            }
        }
    }

    /// One GET of bytes `*at..=end_inclusive`; `*at` follows what has been handed on.
    async fn read_range_once(
        &self,
        key: &str,
        at: &mut u64,
        end_inclusive: u64,
        to: &tokio::sync::mpsc::Sender<Piece>,
    ) -> Result<(), S3Error> {
        if *at > end_inclusive {
            return Ok(());
        }
        let url = self
            .bucket
            .presign_get(key, REQUEST_URL_EXPIRY_SECONDS, None)
            .await?;
        let sent = self
            .http
            .get(url)
            .header(
                reqwest::header::RANGE,
                format!("bytes={}-{end_inclusive}", *at),
            )
            .send();
        let mut response = tokio::time::timeout(REQUEST_TIMEOUT, sent)
            .await
            .map_err(|_| S3Error::HttpFail)?
            .map_err(without_url)?;
        let status = response.status();
        if status == reqwest::StatusCode::OK {
            // The whole object, from a server or proxy that ignores ranges: not read.
            return Err(S3Error::HttpFailWithBody(
                status.as_u16(),
                "the server sent the whole object where a range was asked for".to_owned(),
            ));
        }
        if status != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(S3Error::HttpFailWithBody(
                status.as_u16(),
                error_text(response).await,
            ));
        }
        let content_range = response.headers().get(reqwest::header::CONTENT_RANGE);
        // A server that leaves out Content-Range is taken at its word when the length fits.
        let as_asked = match content_range {
            Some(range) => range.to_str().ok().and_then(range_start) == Some(*at),
            None => response.content_length() == Some(end_inclusive + 1 - *at),
        };
        if !as_asked {
            return Err(S3Error::HttpFailWithBody(
                status.as_u16(),
                format!("the answer is not the range asked for, from byte {}", *at),
            ));
        }
        // A whole part may take long on a slow link; a stall of READ_TIMEOUT is a failure,
        // resumed from where it stopped.
        while let Some(bytes) = tokio::time::timeout(READ_TIMEOUT, response.chunk())
            .await
            .map_err(|_| S3Error::HttpFail)?
            .map_err(without_url)?
        {
            let len = bytes.len() as u64;
            if *at + len > end_inclusive + 1 {
                return Err(S3Error::HttpFailWithBody(
                    status.as_u16(),
                    "the answer is longer than the range asked for".to_owned(),
                ));
            }
            if to.send(Piece { offset: *at, bytes }).await.is_err() {
                return Ok(());
            }
            *at += len;
        }
        if *at <= end_inclusive {
            // The connection ended early: a transient failure, continued from `*at`.
            return Err(S3Error::HttpFail);
        }
        Ok(())
    }

    pub async fn presign_get(&self, key: &str, expires_seconds: u32) -> Result<String, StoreError> {
        self.bucket
            .presign_get(key, expires_seconds, None)
            .await
            .map_err(s3_error("presign", key))
    }
}

/// One multipart upload in a `ListMultipartUploads` answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnfinishedUpload {
    pub key: String,
    pub upload_id: String,
}

#[derive(serde::Deserialize)]
struct UnfinishedUploads {
    #[serde(rename = "Upload", default)]
    uploads: Vec<UnfinishedUpload>,
}

/// Sends the parts of one multipart upload. Each part is a PUT to a URL rust-s3 presigns
/// (`partNumber` and `uploadId` in the signed query, `UNSIGNED-PAYLOAD`), with the part's
/// buffer as the body: the buffer is shared with the request rather than copied, and no
/// checksum pass is made over it. rust-s3's own `put_multipart_chunk` copies the part into its
/// request and reads it three more times (Content-MD5, and SHA-256 twice), which cost more CPU
/// than the upload itself and tripled the memory a part holds. The dump's integrity is the
/// SHA-256 of its original bytes in its record, which `fetch` verifies.
struct PartUploader {
    bucket: Box<Bucket>,
    http: reqwest::Client,
    key: String,
    upload_id: String,
}

impl PartUploader {
    async fn put(&self, number: u32, body: Bytes) -> Result<Part, S3Error> {
        let query = HashMap::from([
            ("partNumber".to_owned(), number.to_string()),
            ("uploadId".to_owned(), self.upload_id.clone()),
        ]);
        let url = self
            .bucket
            .presign_put(&self.key, REQUEST_URL_EXPIRY_SECONDS, None, Some(query))
            .await?;
        let timeout = upload_timeout(body.len() as u64);
        let response = self
            .http
            .put(url)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(without_url)?;
        let status = response.status();
        if !status.is_success() {
            return Err(S3Error::HttpFailWithBody(
                status.as_u16(),
                error_text(response).await,
            ));
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|etag| etag.to_str().ok())
            .ok_or_else(|| {
                S3Error::HttpFailWithBody(status.as_u16(), "the part's answer has no ETag".into())
            })?;
        Ok(Part {
            etag: etag.to_owned(),
            part_number: number,
        })
    }
}

fn joined<T>(
    finished: Result<Result<T, StoreError>, tokio::task::JoinError>,
    key: &str,
) -> Result<Result<T, StoreError>, StoreError> {
    finished.map_err(|err| StoreError::Source {
        key: key.to_owned(),
        reason: format!("part upload task failed: {err}"),
    })
}

/// `Last-Modified` is an RFC 7231 date (`Tue, 15 Nov 1994 08:12:31 GMT`).
fn parse_http_date(text: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::parse(text)
        .ok()
        .map(|zoned| zoned.timestamp())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Its URLs are presigned: an error that showed one would put a working signature (and the
    /// access key's id) into logs and chat messages.
    #[tokio::test]
    async fn a_failed_request_does_not_show_its_presigned_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let yaml = format!(
            "StorageConfig:\n  protocol: s3\n  s3AccesskeyID: AKIDCOREDOGTEST\n  s3SecretAccessKey: secret\n  s3Region: us-east-1\n  S3Bucket: dumps\n  S3Endpoint: http://127.0.0.1:{closed}\n"
        );
        let config = coredog_core::config::Config::from_yaml(&yaml).unwrap();
        let store = super::S3Store::from_config(&config.storage).unwrap();
        let shown = |err: String| {
            assert!(err.contains("error sending request"), "{err}");
            assert!(
                !err.contains("X-Amz-Signature") && !err.contains("AKIDCOREDOGTEST"),
                "{err}"
            );
        };
        shown(
            store
                .unfinished_uploads("corefiles/")
                .await
                .unwrap_err()
                .to_string(),
        );
        let (to, _from) = tokio::sync::mpsc::channel(4);
        shown(
            store
                .read_range("corefiles/ns/pod/a.core", 0, 9, &to)
                .await
                .unwrap_err()
                .to_string(),
        );
    }

    /// A server on loopback that answers every request with `answer` (its status line and
    /// headers) and then `body_bytes` bytes of `x`; its address.
    async fn answering(answer: &'static str, body_bytes: usize) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = connection.read(&mut request).await;
                    let head = format!("{answer}\r\ncontent-length: {body_bytes}\r\n\r\n");
                    let _ = connection.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = body_bytes;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if connection.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        address
    }

    fn store_at(address: std::net::SocketAddr) -> S3Store {
        let yaml = format!(
            "StorageConfig:\n  s3AccesskeyID: AKIDCOREDOGTEST\n  s3SecretAccessKey: secret\n  s3Region: us-east-1\n  S3Bucket: dumps\n  S3Endpoint: http://{address}\n"
        );
        let config = coredog_core::config::Config::from_yaml(&yaml).unwrap();
        S3Store::from_config(&config.storage).unwrap()
    }

    /// An S3 whose first CompleteMultipartUpload completes the upload but never answers (its
    /// answer lost to a timeout): the try after it finds no such upload, and the object stored.
    async fn completing_silently(
        stored: Arc<std::sync::atomic::AtomicU64>,
    ) -> std::net::SocketAddr {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let (stored, received) = (stored.clone(), received.clone());
                tokio::spawn(async move {
                    let mut connection = tokio::io::BufReader::new(connection);
                    let mut head = String::new();
                    let mut length = 0u64;
                    loop {
                        let mut line = String::new();
                        if connection.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(value) =
                            line.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length as usize];
                    connection.read_exact(&mut body).await.unwrap();
                    let request_line = head.lines().next().unwrap_or_default().to_owned();
                    let (status, headers, body) = if request_line.starts_with("POST")
                        && request_line.contains("uploads")
                    {
                        ("200 OK", String::new(), "<InitiateMultipartUploadResult><Bucket>dumps</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>".to_owned())
                    } else if request_line.starts_with("GET") && request_line.contains("uploads") {
                        (
                            "200 OK",
                            String::new(),
                            "<ListMultipartUploadsResult></ListMultipartUploadsResult>".to_owned(),
                        )
                    } else if request_line.starts_with("PUT") {
                        received.fetch_add(length, Ordering::SeqCst);
                        ("200 OK", "etag: \"e\"\r\n".to_owned(), String::new())
                    } else if request_line.starts_with("POST") {
                        if stored.load(Ordering::SeqCst) == 0 {
                            stored.store(received.load(Ordering::SeqCst), Ordering::SeqCst);
                            return;
                        }
                        ("404 Not Found", String::new(), "<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>".to_owned())
                    } else if request_line.starts_with("HEAD") {
                        let size = stored.load(Ordering::SeqCst);
                        let found = if size == 0 { "404 Not Found" } else { "200 OK" };
                        let _ = connection.get_mut().write_all(format!("HTTP/1.1 {found}\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n").as_bytes()).await;
                        return;
                    } else {
                        ("400 Bad Request", String::new(), String::new())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = connection.get_mut().write_all(answer.as_bytes()).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn an_upload_completed_by_a_try_whose_answer_was_lost_is_stored() {
        let stored = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let store = store_at(completing_silently(stored.clone()).await);
        let (sender, receiver) = crate::part_channel();
        let feed = tokio::spawn(async move {
            for _ in 0..2 {
                sender.send(vec![7; 1024]).await.unwrap();
            }
            sender.finish();
        });
        let options = UploadOptions {
            parts_in_flight: 2,
            retry: RetryPolicy {
                attempts: 3,
                base: Duration::from_millis(10),
                max: Duration::from_millis(10),
            },
            multipart_at_once: false,
        };
        let size = store
            .upload(
                "corefiles/ns/pod/a.core",
                "application/zstd",
                receiver,
                options,
            )
            .await
            .unwrap();
        feed.await.unwrap();
        assert_eq!(size, 2048);
        assert_eq!(stored.load(std::sync::atomic::Ordering::SeqCst), 2048);
    }

    #[test]
    fn the_examples_bucket_is_refused() {
        let yaml = "StorageConfig:\n  s3Region: ap-nanjing\n  S3Bucket: \"my-bucket-1234567890\"\n";
        let config = coredog_core::config::Config::from_yaml(yaml).unwrap();
        let err = S3Store::from_config(&config.storage)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("a bucket anyone may own"), "{err}");
    }

    /// A range read answered with the whole object (a proxy that ignores ranges), a range that
    /// starts elsewhere, or a large error page: a failure that says so, without holding the
    /// answer.
    #[tokio::test]
    async fn a_range_read_takes_only_the_range_asked_for() {
        let (to, _from) = tokio::sync::mpsc::channel(4);
        let key = "corefiles/ns/pod/a.core";
        let whole = store_at(answering("HTTP/1.1 200 OK", 256 << 20).await);
        let err = whole
            .read_range(key, 0, 9, &to)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("sent the whole object"), "{err}");

        let elsewhere = answering(
            "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 5-14/100",
            10,
        );
        let err = store_at(elsewhere.await)
            .read_range(key, 0, 9, &to)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the range asked for"), "{err}");
        let unlabelled = store_at(answering("HTTP/1.1 206 Partial Content", 10).await);
        unlabelled.read_range(key, 0, 9, &to).await.unwrap();

        let page = store_at(answering("HTTP/1.1 403 Forbidden", 1 << 20).await);
        let err = page
            .read_range(key, 0, 9, &to)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("xxxx"), "{err}");
        assert!(err.len() < 2 * MAX_ERROR_BODY, "{} bytes", err.len());
    }

    #[test]
    fn an_error_keeps_its_code_and_message_only() {
        let mismatch = S3Error::HttpFailWithBody(
            403,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match.</Message><AWSAccessKeyId>AKIDCOREDOGTEST</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 ...</StringToSign><CanonicalRequest>PUT /dumps/a.core ...</CanonicalRequest></Error>".to_owned(),
        );
        let err = s3_error("put object", "a.core")(mismatch).to_string();
        assert!(
            err.contains("SignatureDoesNotMatch") && err.contains("does not match"),
            "{err}"
        );
        for hidden in ["AKIDCOREDOGTEST", "StringToSign", "CanonicalRequest"] {
            assert!(!err.contains(hidden), "{err}");
        }
        let plain = S3Error::HttpFailWithBody(502, "Bad Gateway".to_owned());
        assert!(
            s3_error("get", "a")(plain)
                .to_string()
                .contains("Bad Gateway")
        );
    }

    #[test]
    fn s3_error_codes_that_waiting_mends_are_transient() {
        let failure = |status: u16, code: &str| {
            S3Error::HttpFailWithBody(
                status,
                format!(
                    "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>"
                ),
            )
        };
        for (status, code) in [
            (200, "InternalError"),
            (200, "SlowDown"),
            (400, "RequestTimeout"),
            (400, "ExpiredToken"),
            (503, "SlowDown"),
            (500, "Anything"),
            (429, ""),
        ] {
            assert!(is_transient(&failure(status, code)), "{status} {code}");
        }
        for (status, code) in [
            (403, "AccessDenied"),
            (400, "InvalidPart"),
            (404, "NoSuchKey"),
            (400, "EntityTooSmall"),
        ] {
            assert!(!is_transient(&failure(status, code)), "{status} {code}");
        }
        assert!(!is_transient(&S3Error::HttpFailWithBody(
            400,
            "no XML".into()
        )));
        assert_eq!(upload_timeout(0), REQUEST_TIMEOUT);
        assert_eq!(
            upload_timeout(512 * 1024 * 1024),
            REQUEST_TIMEOUT + Duration::from_secs(2048)
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            super::parse_http_date("Tue, 15 Nov 1994 08:12:31 GMT").map(|t| t.to_string()),
            Some("1994-11-15T08:12:31Z".to_owned())
        );
        assert_eq!(super::parse_http_date("yesterday"), None);
    }
}
