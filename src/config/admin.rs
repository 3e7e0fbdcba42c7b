//! `[admin]`: the admin endpoint (see `admin`). Present: on; absent: off.
//!
//! Owns: the endpoint's keys, their `DEFAULT_*` constants and their validation.

use super::validator::Validator;
use serde::{Deserialize, Serialize};

/// Loopback by default: metrics and histograms say a lot about the traffic, so exposing them
/// is a choice (a Prometheus agent on the same host reads them as they are).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Name of the environment variable holding a bearer token; unset: no auth.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Serve HTTPS with this certificate and key (reloaded on SIGHUP); absent: plain HTTP.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: d_listen(),
            token_env: None,
            tls: None,
        }
    }
}

fn d_listen() -> String {
    DEFAULT_ADMIN_LISTEN.into()
}

pub(super) fn validate(a: &AdminConfig, v: &mut Validator) {
    if a.listen.parse::<std::net::SocketAddr>().is_err() {
        v.error(
            "admin.listen",
            format!(
                "must be an IP address and port, e.g. \"127.0.0.1:9464\", got {:?}",
                a.listen
            ),
        );
    }
    if a.token_env.as_deref() == Some("") {
        v.error(
            "admin.token_env",
            "must name an environment variable (or be left out: no auth)",
        );
    }
}
