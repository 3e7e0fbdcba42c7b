//! What the AWS clients share: the small tokio runtime each runs on, the SDK configuration
//! (HTTP client, region, credentials) and how an SDK error is told.
//!
//! Owns no state. Each client (the S3 store, the Kinesis source) keeps a runtime of its own:
//! the cores never run tokio, and one client's stall cannot hold another's threads.

use aws_config::SdkConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;

/// A multi-thread tokio runtime of `threads` threads named `name`.
pub fn runtime(name: &str, threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
}

/// The SDK configuration: rustls on `ring`, `region` (empty: the provider chain, else
/// us-east-1), credentials from the standard provider chain unless `credentials` are given.
pub fn sdk_config(rt: &tokio::runtime::Runtime, region: &str, credentials: Option<(&str, &str)>) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if !region.is_empty() {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some((id, secret)) = credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(id, secret, None, None, "static"));
    }
    let sdk = rt.block_on(loader.load());
    if sdk.region().is_none() {
        return sdk.into_builder().region(aws_config::Region::new("us-east-1")).build();
    }
    sdk
}

/// The HTTP status of a failed request, if a response arrived.
pub fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Whether the request never got a service answer (connect, timeout, dropped connection):
/// worth retrying.
pub fn is_transport<E>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(
        e,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    )
}

/// An error and its sources on one line, each message once ("dispatch failure: io error:
/// client error (Connect): tcp connect error: Connection refused (os error 111)").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = c.source();
    }
    out
}
