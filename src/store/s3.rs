//! The S3 object store (`[lake.s3]`): any S3-compatible endpoint through `aws-sdk-s3`.
//!
//! Owns: the SDK client and the small tokio runtime it runs on ([`S3_RUNTIME_THREADS`]
//! threads, its own: the cores never run tokio). The I/O edge's worker threads call the
//! synchronous [`ObjectStore`] methods, each of which blocks its worker on one future of that
//! runtime — so uploads in flight are bounded by `lake.uploads_max` (the workers) and, within one
//! file, by `lake.s3.parts_in_flight_max`.
//!
//! Uploads: below `multipart_threshold_bytes` one PUT; above, a multipart upload of
//! `part_bytes` parts (the body is shared, each part a zero-copy slice), aborted if any part
//! fails. Both are atomic for readers: an object appears complete or not at all, which the
//! delivery contract relies on. Every request carries a CRC32C checksum the server verifies
//! (multipart: per part, and the completed object's composite).
//! Payload signing (`payload_signing`): by default an upload's SigV4 signature covers its
//! body's SHA-256 over plain HTTP only; over HTTPS the body is sent `UNSIGNED-PAYLOAD` (TLS and
//! the CRC32C protect it), as the AWS CLI and boto3 do — the Rust SDK signs every payload unless
//! told not to, and that SHA-256 was a sixth of all CPU of an upload-heavy run on a machine
//! without SHA instructions, and as much again on a server that verifies it.
//!
//! Retries: the SDK's standard mode retries each request `attempts_max` times with exponential
//! backoff and jitter on throttling (503 SlowDown), 5xx, timeouts and dropped connections; after
//! that the error reaches the edge, which retries the whole file within `lake.retry_for_ms`.
//! An interceptor counts the SDK's attempts and requests, so its own retries are reported
//! ([`ObjectStore::sdk_retries`]) beside the edge's.
//! [`StoreError::retryable`] says which errors are worth that: transport failures, timeouts,
//! 5xx, 429 and throttling codes — not 4xx like AccessDenied or NoSuchBucket.

use super::{ObjectStore, StoreError};
use crate::aws::{error_chain, is_transport, status};
use crate::config::{PayloadSigning, S3Config, Sse};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_sdk_s3::Client;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Worker threads of the SDK's runtime: it only moves bytes between sockets and the TLS layer;
/// the edge's workers do the waiting.
pub const S3_RUNTIME_THREADS: usize = 2;
/// Connect timeout per attempt.
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Counts what the SDK does per request: one execution per call, one attempt per try.
#[derive(Debug, Default)]
struct Attempts {
    executions: AtomicU64,
    attempts: AtomicU64,
}

#[derive(Debug)]
struct CountAttempts(Arc<Attempts>);

impl aws_sdk_s3::config::Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "sluicegate-count-attempts"
    }

    fn read_before_execution(
        &self,
        _: &aws_sdk_s3::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0.executions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

pub struct S3Store {
    rt: tokio::runtime::Runtime,
    client: Client,
    attempts: Arc<Attempts>,
    cfg: S3Config,
    /// `lake.s3.payload_signing`, resolved against the endpoint's scheme.
    sign_payload: bool,
}

impl S3Store {
    /// A store with credentials from the standard AWS provider chain.
    pub fn new(cfg: &S3Config) -> Result<S3Store, StoreError> {
        S3Store::with_credentials(cfg, None)
    }

    /// A store with the given static credentials instead of the provider chain (embedders and
    /// tests that must not read the process environment).
    pub fn with_credentials(cfg: &S3Config, credentials: Option<(&str, &str)>) -> Result<S3Store, StoreError> {
        let rt = crate::aws::runtime("sluicegate-s3", S3_RUNTIME_THREADS)
            .map_err(|e| fatal("start", &cfg.bucket, format!("cannot start the S3 runtime: {e}")))?;
        let sdk = crate::aws::sdk_config(&rt, &cfg.region, credentials);
        let attempts = Arc::new(Attempts::default());
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .interceptor(CountAttempts(attempts.clone()))
            .force_path_style(cfg.path_style)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(cfg.attempts_max))
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(S3_CONNECT_TIMEOUT)
                    .operation_attempt_timeout(Duration::from_millis(cfg.attempt_timeout_ms))
                    .build(),
            );
        if let Some(e) = &cfg.endpoint {
            b = b.endpoint_url(e);
        }
        let sign_payload = match cfg.payload_signing {
            PayloadSigning::Always => true,
            PayloadSigning::Never => false,
            // No endpoint: AWS's own, over HTTPS.
            PayloadSigning::Auto => cfg.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")),
        };
        Ok(S3Store {
            client: Client::from_conf(b.build()),
            attempts,
            rt,
            cfg: cfg.clone(),
            sign_payload,
        })
    }

    /// Whether uploads sign their payload (`lake.s3.payload_signing`, resolved).
    pub fn signs_payload(&self) -> bool {
        self.sign_payload
    }

    /// The server-side encryption headers of a new object: (algorithm, KMS key id).
    fn sse(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match self.cfg.sse {
            Sse::None => (None, None),
            Sse::S3 => (Some(ServerSideEncryption::Aes256), None),
            Sse::Kms => (
                Some(ServerSideEncryption::AwsKms),
                (!self.cfg.kms_key_id.is_empty()).then(|| self.cfg.kms_key_id.clone()),
            ),
        }
    }

    async fn put_single(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let (sse, kms_key) = self.sse();
        let op = self
            .client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .body(ByteStream::from(bytes))
            .customize();
        let op = if self.sign_payload {
            op
        } else {
            op.disable_payload_signing()
        };
        op.send().await.map_err(|e| classify("put", key, e))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let (sse, kms_key) = self.sse();
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .send()
            .await
            .map_err(|e| classify("create multipart", key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| retryable("create multipart", key, "no upload id in the response".into()))?
            .to_string();
        match self.upload_parts(key, &upload_id, bytes).await {
            Ok(parts) => {
                let done = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.cfg.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await;
                if let Err(e) = done {
                    self.abort(key, &upload_id).await;
                    return Err(classify("complete multipart", key, e));
                }
                Ok(())
            }
            Err(e) => {
                self.abort(key, &upload_id).await;
                Err(e)
            }
        }
    }

    /// Upload every part, at most `parts_in_flight_max` at once; returns them in order.
    async fn upload_parts(&self, key: &str, upload_id: &str, bytes: Bytes) -> Result<Vec<CompletedPart>, StoreError> {
        let part = self.cfg.part_bytes as usize;
        let count = bytes.len().div_ceil(part);
        let mut parts: Vec<Option<CompletedPart>> = vec![None; count];
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        while next < count || !tasks.is_empty() {
            while next < count && tasks.len() < self.cfg.parts_in_flight_max as usize {
                let (client, bucket, sign) = (self.client.clone(), self.cfg.bucket.clone(), self.sign_payload);
                let (key, upload_id) = (key.to_string(), upload_id.to_string());
                let body = bytes.slice(next * part..((next + 1) * part).min(bytes.len()));
                let number = next as i32 + 1;
                tasks.spawn(async move {
                    let op = client
                        .upload_part()
                        .bucket(&bucket)
                        .key(&key)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                        .body(ByteStream::from(body))
                        .customize();
                    let op = if sign { op } else { op.disable_payload_signing() };
                    let r = op.send().await.map_err(|e| classify("upload part", &key, e))?;
                    Ok::<_, StoreError>(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(r.e_tag().map(str::to_string))
                            .set_checksum_crc32_c(r.checksum_crc32_c().map(str::to_string))
                            .build(),
                    )
                });
                next += 1;
            }
            if let Some(joined) = tasks.join_next().await {
                let done = joined.map_err(|e| retryable("upload part", key, format!("part task failed: {e}")))??;
                let i = done.part_number().expect("set above") as usize - 1;
                parts[i] = Some(done);
            }
        }
        Ok(parts.into_iter().map(|p| p.expect("every part completed")).collect())
    }

    /// Best effort: an upload left open is found and aborted by recovery (`abort_partial`).
    async fn abort(&self, key: &str, upload_id: &str) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_shared(key, &Bytes::copy_from_slice(bytes))
    }

    fn put_shared(&self, key: &str, bytes: &Bytes) -> Result<(), StoreError> {
        let s = self;
        if bytes.len() as u64 >= s.cfg.multipart_threshold_bytes {
            s.rt.block_on(s.put_multipart(key, bytes.clone()))
        } else {
            s.rt.block_on(s.put_single(key, bytes.clone()))
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let s = self;
        s.rt.block_on(async {
            let r = s.client.get_object().bucket(&s.cfg.bucket).key(key).send().await;
            match r {
                Ok(o) => {
                    let body = o
                        .body
                        .collect()
                        .await
                        .map_err(|e| retryable("get", key, e.to_string()))?;
                    Ok(Some(body.into_bytes().to_vec()))
                }
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(classify("get", key, e)),
            }
        })
    }

    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let s = self;
        s.rt.block_on(async {
            match s.client.head_object().bucket(&s.cfg.bucket).key(key).send().await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(classify("head", key, e)),
            }
        })
    }

    /// Abort the open multipart uploads of `key`. A server without ListMultipartUploads (some
    /// S3-compatible ones; s3s-fs 0.14) is told nothing: its open uploads are invisible to
    /// readers and cost only space, which a lifecycle rule (`AbortIncompleteMultipartUpload`,
    /// see the README) reclaims on real S3 anyway.
    fn abort_partial(&self, key: &str) -> Result<(), StoreError> {
        let s = self;
        s.rt.block_on(async {
            let listed = s
                .client
                .list_multipart_uploads()
                .bucket(&s.cfg.bucket)
                .prefix(key)
                .send()
                .await;
            let listed = match listed {
                Ok(l) => l,
                Err(e) if status(&e) == Some(501) => return Ok(()),
                Err(e) => return Err(classify("list multipart", key, e)),
            };
            for u in listed.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    if k == key {
                        s.client
                            .abort_multipart_upload()
                            .bucket(&s.cfg.bucket)
                            .key(key)
                            .upload_id(id)
                            .send()
                            .await
                            .map_err(|e| classify("abort multipart", key, e))?;
                    }
                }
            }
            Ok(())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let s = self;
        s.rt.block_on(async {
            let mut out = Vec::new();
            let mut pages = s
                .client
                .list_objects_v2()
                .bucket(&s.cfg.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("list", prefix, e))?;
                out.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            }
            out.sort();
            Ok(out)
        })
    }

    fn sdk_retries(&self) -> u64 {
        let a = &self.attempts;
        // An execution stopped before its first attempt (a signing failure) makes no attempt.
        a.attempts
            .load(Ordering::Relaxed)
            .saturating_sub(a.executions.load(Ordering::Relaxed))
    }

    fn describe(&self) -> String {
        let s = self;
        match &s.cfg.endpoint {
            Some(e) => format!("s3://{} at {e}", s.cfg.bucket),
            None => format!("s3://{}", s.cfg.bucket),
        }
    }
}

fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(se) => {
            matches!(se.err().code(), Some("NoSuchKey" | "NotFound")) || status(e) == Some(404)
        }
        _ => false,
    }
}

/// Turn an SDK error into a [`StoreError`], deciding whether retrying the file may help.
fn classify<E>(op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = status(&e);
    let retry = match &e {
        SdkError::ConstructionFailure(_) => false,
        e if is_transport(e) => true,
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            status.is_some_and(|s| s >= 500 || s == 429)
                || matches!(code, "SlowDown" | "Throttling" | "RequestTimeout" | "InternalError")
        }
        _ => true,
    };
    let message = match &e {
        SdkError::ServiceError(se) => format!(
            "HTTP {} {}: {}",
            status.map_or("-".into(), |s| s.to_string()),
            se.err().code().unwrap_or("?"),
            se.err().message().unwrap_or("")
        ),
        other => error_chain(other),
    };
    StoreError {
        op,
        key: key.into(),
        message,
        retryable: retry,
    }
}

fn retryable(op: &'static str, key: &str, message: String) -> StoreError {
    StoreError {
        op,
        key: key.into(),
        message,
        retryable: true,
    }
}

fn fatal(op: &'static str, key: &str, message: String) -> StoreError {
    StoreError {
        op,
        key: key.into(),
        message,
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_signing_auto_signs_over_plain_http_only() {
        let signs = |endpoint: Option<&str>, payload_signing| {
            let cfg = S3Config {
                bucket: "b".into(),
                region: "us-east-1".into(),
                endpoint: endpoint.map(str::to_string),
                payload_signing,
                ..S3Config::default()
            };
            S3Store::with_credentials(&cfg, Some(("k", "s")))
                .unwrap()
                .signs_payload()
        };
        assert!(signs(Some("http://127.0.0.1:9000"), PayloadSigning::Auto));
        assert!(!signs(Some("https://minio.internal:9000"), PayloadSigning::Auto));
        assert!(!signs(None, PayloadSigning::Auto), "AWS's own endpoints are HTTPS");
        assert!(signs(None, PayloadSigning::Always));
        assert!(!signs(Some("http://127.0.0.1:9000"), PayloadSigning::Never));
    }
}
