//! Bearer-token authentication, compared in constant time.
//!
//! Tokens are compared through their SHA-256 digests with `subtle`, so neither the content nor
//! the length of a configured token shows in the time a refusal takes. The `Authorization`
//! header is never logged.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The accepted tokens, as digests.
#[derive(Clone, Default)]
pub struct Tokens(Vec<[u8; 32]>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Tokens {
    pub fn new(tokens: &[String]) -> Tokens {
        Tokens(tokens.iter().map(|t| digest(t.as_bytes())).collect())
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Checks an `Authorization` header value. Every configured token is compared (no early
    /// exit), so the time does not tell which one matched.
    pub fn check(&self, header: Option<&[u8]>) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(token) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let got = digest(token);
        let mut ok = subtle::Choice::from(0);
        for t in &self.0 {
            ok |= t.ct_eq(&got);
        }
        ok.into()
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
