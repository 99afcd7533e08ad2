//! Bearer-token authentication, compared in constant time.
//!
//! Tokens are compared through their SHA-256 digests with `subtle`, so neither the content nor
//! the length of a configured token shows in the time a refusal takes. The `Authorization`
//! header is never logged.

use sha2::{Digest as _, Sha256};
use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};

/// The SHA-256 of a token (the only form in which tokens are kept).
pub fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The token of an `Authorization: Bearer <token>` header value, if it is one.
pub fn bearer_token(header: Option<&[u8]>) -> Option<&[u8]> {
    header.and_then(|h| h.strip_prefix(b"Bearer "))
}

/// Which of `digests` is `got`, comparing every one (no early exit) in constant time, so the
/// time does not tell which one matched or how much of one. The one comparison of the admin
/// tokens and the upload tokens (plain and scoped).
pub fn position(digests: &[[u8; 32]], got: &[u8; 32]) -> Option<usize> {
    // 0: none; 1 + i: digest i.
    let mut found = 0u64;
    for (i, d) in digests.iter().enumerate() {
        found.conditional_assign(&(1 + i as u64), d.ct_eq(got));
    }
    (found as usize).checked_sub(1)
}

/// The accepted tokens, as digests.
#[derive(Clone, Default)]
pub struct Tokens(Vec<[u8; 32]>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    pub fn new(tokens: &[String]) -> Tokens {
        Tokens(tokens.iter().map(|t| digest(t.as_bytes())).collect())
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Checks an `Authorization` header value ([`position`]).
    pub fn check(&self, header: Option<&[u8]>) -> bool {
        if !self.enabled() {
            return true;
        }
        bearer_token(header).is_some_and(|token| position(&self.0, &digest(token)).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_configured_token_and_nothing_else() {
        let t = Tokens::new(&["token-one-0123456789".into(), "token-two-0123456789".into()]);
        assert!(t.check(Some(b"Bearer token-one-0123456789")));
        assert!(t.check(Some(b"Bearer token-two-0123456789")));
        assert!(
            !t.check(Some(b"Bearer token-two-012345678X")),
            "last byte differs"
        );
        assert!(!t.check(Some(b"bearer token-one-0123456789")));
        assert!(!t.check(Some(b"token-one-0123456789")));
        assert!(!t.check(None));
        assert!(!t.check(Some(&[b'A'; 65536])));
        assert!(Tokens::new(&[]).check(None), "no tokens: auth off");
    }
}
