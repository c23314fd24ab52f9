//! S3 and S3-compatible object storage (AWS, Tencent COS, Aliyun OSS, MinIO, SeaweedFS).
//!
//! rust-s3 signs and sends each request; the pipeline around it is CoreDog's own. rust-s3's
//! `put_object_stream` sizes its concurrency from the host's free memory, which on a large node
//! means hundreds of MiB of buffers inside a pod with a 256 MiB limit; here at most
//! `parts_in_flight` parts are uploading at any time. rust-s3 copies a part into the request
//! body and the part is kept for a retry, so an uploading part costs up to three times its size.

use std::time::Duration;

use coredog_core::config::StorageConfig;
use jiff::Timestamp;
use s3::bucket::Bucket;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::region::Region;
use s3::serde_types::Part;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::{
    ListPage, ObjectInfo, PartReceiver, RetryPolicy, StoreError, UploadOptions, abandoned,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const PAGE_SIZE: usize = 1000;

pub struct S3Store {
    bucket: Box<Bucket>,
    endpoint: String,
    retry: RetryPolicy,
}

fn s3_error<'a>(operation: &'static str, key: &'a str) -> impl FnOnce(S3Error) -> StoreError + 'a {
    move |source| StoreError::S3 {
        operation,
        key: key.to_owned(),
        source,
    }
}

fn is_not_found(err: &S3Error) -> bool {
    matches!(err, S3Error::HttpFailWithBody(404, _))
}

/// Whether waiting may help: server errors, throttling, timeouts and network failures do;
/// other answers (missing object, refused credentials, bad request) are final.
fn is_transient(err: &S3Error) -> bool {
    match err {
        S3Error::HttpFailWithBody(status, _) => *status >= 500 || *status == 408 || *status == 429,
        _ => true,
    }
}

impl S3Store {
    pub fn from_config(storage: &StorageConfig) -> Result<Self, StoreError> {
        let endpoint = storage
            .endpoint()
            .map_err(|err| StoreError::Config(err.to_string()))?;
        let name = storage
            .bucket()
            .ok_or_else(|| StoreError::Config("StorageConfig.S3Bucket is required".to_owned()))?;
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
                None,
                None,
            ),
            // Web identity (IRSA), the shared profile, instance metadata.
            None => Credentials::default(),
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
        Ok(Self {
            bucket,
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
        let upload_id = self
            .retry
            .run_while("initiate multipart upload", is_transient, || {
                self.bucket.initiate_multipart_upload(key, content_type)
            })
            .await
            .map_err(s3_error("initiate multipart upload", key))?
            .upload_id;
        debug!(key, upload_id, "multipart upload started");
        let uploaded = self
            .upload_parts(
                key,
                &upload_id,
                content_type,
                [first, second],
                parts,
                options,
            )
            .await;
        let (completed_parts, size) = match uploaded {
            Ok(done) => done,
            Err(err) => {
                self.abort(key, &upload_id).await;
                return Err(err);
            }
        };
        let completed = self
            .retry
            .run_while("complete multipart upload", is_transient, || {
                self.bucket
                    .complete_multipart_upload(key, &upload_id, completed_parts.clone())
            })
            .await;
        if let Err(err) = completed {
            self.abort(key, &upload_id).await;
            return Err(s3_error("complete multipart upload", key)(err));
        }
        Ok(size)
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        content_type: &str,
        first_parts: [Vec<u8>; 2],
        mut parts: PartReceiver,
        options: UploadOptions,
    ) -> Result<(Vec<Part>, u64), StoreError> {
        let slots = std::sync::Arc::new(Semaphore::new(options.parts_in_flight.max(1)));
        let mut uploads: JoinSet<Result<(Part, u64), StoreError>> = JoinSet::new();
        let mut done = Vec::new();
        let mut size = 0;
        let mut first_parts = first_parts.into_iter();
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
            let Some(data) = (match first_parts.next() {
                Some(data) => Some(data),
                None => parts.next().await,
            }) else {
                if !parts.completed() {
                    return Err(abandoned(key));
                }
                break;
            };
            number += 1;
            let bucket = self.bucket.clone();
            let retry = options.retry;
            let (key, upload_id, content_type) = (
                key.to_owned(),
                upload_id.to_owned(),
                content_type.to_owned(),
            );
            uploads.spawn(async move {
                let _slot = slot;
                let bytes = data.len() as u64;
                let part = retry
                    .run_while("upload part", is_transient, || {
                        bucket.put_multipart_chunk(
                            data.clone(),
                            &key,
                            number,
                            &upload_id,
                            &content_type,
                        )
                    })
                    .await
                    .map_err(s3_error("upload part", &key))?;
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

    async fn abort(&self, key: &str, upload_id: &str) {
        let aborted = self
            .retry
            .run("abort multipart upload", || {
                self.bucket.abort_upload(key, upload_id)
            })
            .await;
        if let Err(err) = aborted {
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
            .run_while("put object", is_transient, || {
                self.bucket
                    .put_object_with_content_type(key, bytes, content_type)
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
    ) -> Result<ListPage, StoreError> {
        let (result, _status) = self
            .retry
            .run_while("list objects", is_transient, || {
                self.bucket.list_page(
                    prefix.to_owned(),
                    None,
                    continuation.map(str::to_owned),
                    None,
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

    pub async fn presign_get(&self, key: &str, expires_seconds: u32) -> Result<String, StoreError> {
        self.bucket
            .presign_get(key, expires_seconds, None)
            .await
            .map_err(s3_error("presign", key))
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
    #[test]
    fn http_dates() {
        assert_eq!(
            super::parse_http_date("Tue, 15 Nov 1994 08:12:31 GMT").map(|t| t.to_string()),
            Some("1994-11-15T08:12:31Z".to_owned())
        );
        assert_eq!(super::parse_http_date("yesterday"), None);
    }
}
