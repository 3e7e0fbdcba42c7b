//! Bearer tokens, checked the same way by both servers (the HTTP receiver and the admin
//! endpoint): read from an environment variable at the start, kept only as a SHA-256 digest,
//! and compared digest to digest without an early exit.
//!
//! Bound: a token shorter than [`TOKEN_CHARS_MIN`] is refused at the start (a guessable token
//! is no auth).

/// A bearer token shorter than this is refused at the start.
pub const TOKEN_CHARS_MIN: usize = 16;

/// The digest of the token a server expects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<digest>)")
    }
}

/// Why a request's credentials were refused (the text is safe to send back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Invalid,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Missing => "a bearer token is required (Authorization: Bearer …)",
            Refused::Invalid => "the bearer token is not valid",
        }
    }
}

impl Token {
    /// The token in environment variable `var`; `key` names the setting in errors
    /// (`admin.token_env`). The token itself is never in a message.
    pub fn from_env(var: &str, key: &str) -> Result<Token, String> {
        let t = std::env::var(var).map_err(|_| format!("{key}: ${var} is not set"))?;
        Token::new(&t).map_err(|e| format!("{key}: the token in ${var} {e}"))
    }

    /// A token from its text, refused when shorter than [`TOKEN_CHARS_MIN`].
    pub fn new(token: &str) -> Result<Token, String> {
        if token.chars().count() < TOKEN_CHARS_MIN {
            return Err(format!("must be at least {TOKEN_CHARS_MIN} characters"));
        }
        Ok(Token(digest(token)))
    }

    /// Check a request's `Authorization: Bearer <token>` header (the scheme in any case,
    /// RFC 9110).
    pub fn check(&self, headers: &hyper::HeaderMap) -> Result<(), Refused> {
        let presented = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(Refused::Missing)?;
        let got = digest(presented);
        // Digests of equal length, compared without an early exit: the time says nothing.
        let differ = self.0.iter().zip(got.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ == 0 {
            Ok(())
        } else {
            Err(Refused::Invalid)
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn a_token_is_checked_by_scheme_in_any_case_and_by_value() {
        let t = Token::new("0123456789abcdef").unwrap();
        assert_eq!(t.check(&headers("Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(t.check(&headers("bearer  0123456789abcdef ")), Ok(()));
        assert_eq!(t.check(&headers("Bearer 0123456789abcdeX")), Err(Refused::Invalid));
        assert_eq!(t.check(&headers("Basic 0123456789abcdef")), Err(Refused::Missing));
        assert_eq!(t.check(&hyper::HeaderMap::new()), Err(Refused::Missing));
    }

    #[test]
    fn a_short_token_is_refused_and_no_message_holds_a_token() {
        assert!(Token::new("short").unwrap_err().contains("at least 16 characters"));
        std::env::set_var("SLUICEGATE_BEARER_TEST", "tiny-secret");
        let e = Token::from_env("SLUICEGATE_BEARER_TEST", "admin.token_env").unwrap_err();
        assert_eq!(
            e,
            "admin.token_env: the token in $SLUICEGATE_BEARER_TEST must be at least 16 characters"
        );
        assert!(!format!("{:?}", Token::new("0123456789abcdef").unwrap()).contains("0123"));
        let e = Token::from_env("SLUICEGATE_BEARER_UNSET", "sources[0].http.token_env").unwrap_err();
        assert_eq!(e, "sources[0].http.token_env: $SLUICEGATE_BEARER_UNSET is not set");
    }
}
