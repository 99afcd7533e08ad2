//! Scoped tokens: the `--scoped-tokens` file, and who a request is.
//!
//! The file holds one token per line, hashed, so it is not a secret:
//!
//! ```text
//! # id      hash                  prefix and optional limits
//! tenant-a  sha256:<64 hex digits> prefix=tenant-a/ max_file_size=100MiB requests_per_minute=60
//! ```
//!
//! Every token is confined to its `prefix` (under the daemon's root prefix): the client's own
//! `prefix` goes below it, and keys are derived under that, so no field or filename reaches
//! outside. The file is parsed strictly (an unknown option, a duplicate id or hash, a bad
//! prefix or limit is an error naming the line) and re-read on SIGHUP or when it changes
//! ([`Auth::reload`]); a bad file then keeps the tokens in force.
//!
//! [`Auth`] also holds the plain tokens (`--tokens`, `--token-file`), which have the id
//! [`PLAIN_ID`], the daemon's whole root and no quotas; without any token, every request is
//! [`ANONYMOUS_ID`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use uploader_core::KeyPrefix;
use uploader_core::config::parse_size;

use crate::config::Limits;
use crate::problem::ApiError;
use crate::quota::{OverQuota, Quota, Rates};

/// The id of the plain tokens (`--tokens`, `--token-file`) in logs and metrics.
pub const PLAIN_ID: &str = "plain";
/// The id of requests to a daemon without authentication.
pub const ANONYMOUS_ID: &str = "anonymous";
/// Longest token id.
pub const MAX_ID_LEN: usize = 64;
/// Start of the hash field.
const HASH_SCHEME: &str = "sha256:";

/// The limits of one token (`None`: the daemon's own, or unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenLimits {
    /// Largest file (within the daemon's `--max-file-size`).
    pub max_file_size: Option<u64>,
    /// Largest request body (within the daemon's `--max-request-size`).
    pub max_request_size: Option<u64>,
    /// Requests and bytes per minute.
    pub rates: Rates,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The name in logs and metrics.
    pub id: String,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    /// Where its keys go, below the daemon's root prefix (root: the whole root).
    pub prefix: KeyPrefix,
    pub limits: TokenLimits,
    /// Its 1-based line in the file.
    pub line: usize,
}

/// A tokens file that cannot be used: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if *line == 0 { String::new() } else { format!("line {line}: ") })]
pub struct TokensFileError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    pub message: String,
}

pub use crate::auth::digest;

/// The line of the tokens file for `token`.
pub fn line_for(id: &str, token: &str, prefix: &KeyPrefix) -> String {
    let prefix = match prefix.as_str() {
        "" => "/",
        p => p,
    };
    format!(
        "{id} {HASH_SCHEME}{} prefix={prefix}",
        hex::encode(digest(token.as_bytes()))
    )
}

/// Checks a token id: 1 to 64 letters, digits, `-`, `_`, `.`, starting with a letter or
/// digit, and not one of the reserved ids.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok_chars = id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !ok_chars
        || !id.as_bytes()[0].is_ascii_alphanumeric()
    {
        return Err(format!(
            "invalid id {id:?}: 1 to {MAX_ID_LEN} letters, digits, '-', '_' or '.', starting \
             with a letter or digit"
        ));
    }
    if id == PLAIN_ID || id == ANONYMOUS_ID {
        return Err(format!(
            "the id {id:?} is reserved (it names the plain tokens or no authentication)"
        ));
    }
    Ok(())
}

/// Parses a `prefix=` value: `/` is the daemon's whole root, anything else a key prefix; one
/// in the daemon's reserved directory (`.uploader/`, any case) is refused, since its tokens
/// could write the daemon's own records.
pub fn parse_prefix(value: &str) -> Result<KeyPrefix, String> {
    if value == "/" {
        return Ok(KeyPrefix::root());
    }
    if value.is_empty() {
        return Err("empty prefix: write prefix=/ for the whole root".into());
    }
    let prefix = KeyPrefix::new(value)
        .map_err(|e| format!("invalid prefix {value:?}: {e} [{}]", e.rule()))?;
    if crate::reserved::is_reserved(&KeyPrefix::root(), prefix.as_str()) {
        return Err(format!(
            "invalid prefix {value:?}: {}",
            crate::reserved::reserved_message(&KeyPrefix::root())
        ));
    }
    Ok(prefix)
}

/// Parses the text of a tokens file.
pub fn parse(text: &str) -> Result<Vec<TokenEntry>, TokensFileError> {
    let mut entries: Vec<TokenEntry> = Vec::new();
    let mut ids = HashMap::new();
    let mut digests = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let fail = |message: String| TokensFileError { line, message };
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let mut entry = parse_line(content).map_err(fail)?;
        entry.line = line;
        if let Some(first) = ids.insert(entry.id.clone(), line) {
            return Err(fail(format!(
                "duplicate id {:?} (first on line {first})",
                entry.id
            )));
        }
        if let Some(first) = digests.insert(entry.digest, line) {
            return Err(fail(format!(
                "the same token hash as line {first}: one token, one id"
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn parse_line(line: &str) -> Result<TokenEntry, String> {
    let mut fields = line.split_ascii_whitespace();
    let id = fields.next().expect("a non-empty line has a field");
    check_id(id)?;
    let hash = fields
        .next()
        .ok_or("expected `ID sha256:<64 hex digits> prefix=P [LIMIT=VALUE ...]`")?;
    let digest = parse_hash(hash)?;
    let mut prefix = None;
    let mut limits = TokenLimits::default();
    let mut seen = HashSet::new();
    for field in fields {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=VALUE, got {field:?}"))?;
        if !seen.insert(name) {
            return Err(format!("{name} is given twice"));
        }
        let size = || {
            parse_size(value)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name}={value}: expected a size above 0, e.g. 100MiB"))
        };
        match name {
            "prefix" => prefix = Some(parse_prefix(value)?),
            "max_file_size" => limits.max_file_size = Some(size()?),
            "max_request_size" => limits.max_request_size = Some(size()?),
            "bytes_per_minute" => limits.rates.bytes = Some(size()?),
            "requests_per_minute" => {
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("{name}={value}: expected a whole number of requests above 0")
                    })?;
                limits.rates.requests = Some(n);
            }
            other => {
                return Err(format!(
                    "unknown field {other:?}: expected prefix, max_file_size, \
                     max_request_size, requests_per_minute or bytes_per_minute"
                ));
            }
        }
    }
    let prefix = prefix
        .ok_or("no prefix=: every token is confined to a prefix (prefix=/ for the whole root)")?;
    Ok(TokenEntry {
        id: id.to_owned(),
        digest,
        prefix,
        limits,
        line: 0,
    })
}

fn parse_hash(field: &str) -> Result<[u8; 32], String> {
    let hex_digits = field.strip_prefix(HASH_SCHEME).ok_or_else(|| {
        format!("expected the token's hash as sha256:<64 hex digits>, got {field:?} (the file holds hashes, never tokens: see `uploader token new`)")
    })?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out)
        .map_err(|e| format!("the hash is not 64 hex digits: {e}"))?;
    Ok(out)
}

/// A caller the daemon knows: its id, where its keys go, its limits and its quota counters.
#[derive(Debug)]
pub struct Tenant {
    id: String,
    /// Below the daemon's root prefix.
    prefix: KeyPrefix,
    limits: TokenLimits,
    quota: Arc<Quota>,
}

impl Tenant {
    fn unconfined(id: &str) -> Arc<Tenant> {
        Arc::new(Tenant {
            id: id.to_owned(),
            prefix: KeyPrefix::root(),
            limits: TokenLimits::default(),
            quota: Arc::default(),
        })
    }

    /// The id (never the token).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The prefix every key of this caller lies under: `root` + its prefix (`None` when the
    /// two together are too long for a key; never a shorter prefix).
    pub fn root(&self, root: &KeyPrefix) -> Option<KeyPrefix> {
        root.join(self.prefix.as_str()).ok()
    }

    pub fn limits(&self) -> &TokenLimits {
        &self.limits
    }

    pub fn quota(&self) -> &Arc<Quota> {
        &self.quota
    }

    /// The daemon's request limits, lowered to this token's.
    pub fn limits_within(&self, daemon: &Limits) -> Limits {
        let min = |own: Option<u64>, d: u64| own.map_or(d, |o| o.min(d));
        Limits {
            max_file_size: min(self.limits.max_file_size, daemon.max_file_size),
            max_request_size: min(self.limits.max_request_size, daemon.max_request_size),
            ..daemon.clone()
        }
    }

    /// Admits one upload request whose body declares `declared` bytes (before it is read):
    /// 429 when over the request quota or when the declared body is more than what is left of
    /// the byte quota.
    pub(crate) fn admit(&self, declared: Option<u64>) -> Result<(), ApiError> {
        self.quota
            .admit(self.limits.rates, declared)
            .map_err(|over| self.refused(over))?;
        crate::metrics::token_request(&self.id);
        Ok(())
    }

    /// The problem for `over`, counted in the metrics.
    pub(crate) fn refused(&self, over: OverQuota) -> ApiError {
        crate::metrics::token_refused(&self.id);
        over.problem(&self.id)
    }
}

/// Who made a request (a request extension, put there by the upload guard).
pub type Identity = Arc<Tenant>;

/// The scoped tokens in force.
#[derive(Default)]
struct Scoped {
    digests: Vec<[u8; 32]>,
    tenants: Vec<Arc<Tenant>>,
}

/// The upload tokens: plain and scoped.
pub struct Auth {
    plain: Vec<[u8; 32]>,
    /// The admin tokens' digests: no scoped token may be one (checked on every reload).
    admin: Vec<[u8; 32]>,
    plain_tenant: Arc<Tenant>,
    anonymous: Arc<Tenant>,
    file: Option<PathBuf>,
    scoped: RwLock<Arc<Scoped>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scoped = self.scoped.read().expect("never poisoned").digests.len();
        write!(f, "Auth({} plain, {scoped} scoped)", self.plain.len())
    }
}

impl Auth {
    /// The upload tokens of `config`: the plain ones and those of the scoped tokens file (read
    /// now); none with `no_auth`. A scoped token that is also a plain or an admin token is
    /// refused (naming its line; on reloads too).
    pub fn from_config(config: &crate::config::ServerConfig) -> anyhow::Result<Auth> {
        use anyhow::Context as _;
        let plain = config.auth_tokens();
        let Some(file) = config.scoped_tokens.as_ref().filter(|_| !config.no_auth) else {
            return Ok(Auth::new(plain));
        };
        Auth::with_file(plain, &config.admin_tokens, file)
            .with_context(|| format!("--scoped-tokens {}", file.display()))
    }

    /// Plain tokens only (none: no authentication).
    pub fn new(plain: &[String]) -> Auth {
        Auth {
            plain: plain.iter().map(|t| digest(t.as_bytes())).collect(),
            admin: Vec::new(),
            plain_tenant: Tenant::unconfined(PLAIN_ID),
            anonymous: Tenant::unconfined(ANONYMOUS_ID),
            file: None,
            scoped: RwLock::default(),
        }
    }

    /// Plain tokens and the scoped tokens of `file`, read now. With a file, authentication is
    /// on even if it lists no token. A scoped token that is also a plain token or one of
    /// `admin` is an error, now and on every reload.
    pub fn with_file(
        plain: &[String],
        admin: &[String],
        file: &Path,
    ) -> Result<Auth, TokensFileError> {
        let mut auth = Auth::new(plain);
        auth.admin = admin.iter().map(|t| digest(t.as_bytes())).collect();
        auth.file = Some(file.to_owned());
        auth.reload()?;
        Ok(auth)
    }

    /// Whether requests need a token.
    pub fn enabled(&self) -> bool {
        !self.plain.is_empty() || self.file.is_some()
    }

    /// The configured ids (the label values of the per-token metrics, besides the reserved ones).
    pub fn ids(&self) -> Vec<String> {
        let scoped = self.scoped.read().expect("never poisoned");
        scoped.tenants.iter().map(|t| t.id.clone()).collect()
    }

    /// Re-reads the file; on error the tokens in force stay. Quota counters are kept for the
    /// ids that stay. Returns how many scoped tokens are now in force.
    pub fn reload(&self) -> Result<usize, TokensFileError> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let text = std::fs::read_to_string(path).map_err(|e| TokensFileError {
            line: 0,
            message: format!("cannot read it: {e}"),
        })?;
        let entries = parse(&text)?;
        for e in &entries {
            let clash = |what: &str| TokensFileError {
                line: e.line,
                message: format!("this token is also {what}: one token, one role"),
            };
            if self.plain.contains(&e.digest) {
                return Err(clash("a plain upload token (--tokens, --token-file)"));
            }
            if self.admin.contains(&e.digest) {
                return Err(clash("an admin token (--admin-tokens)"));
            }
        }
        let mut scoped = self.scoped.write().expect("never poisoned");
        let old: HashMap<&str, &Arc<Quota>> = scoped
            .tenants
            .iter()
            .map(|t| (t.id.as_str(), &t.quota))
            .collect();
        let tenants: Vec<Arc<Tenant>> = entries
            .iter()
            .map(|e| {
                Arc::new(Tenant {
                    id: e.id.clone(),
                    prefix: e.prefix.clone(),
                    limits: e.limits,
                    quota: old
                        .get(e.id.as_str())
                        .map_or_else(Arc::default, |q| Arc::clone(q)),
                })
            })
            .collect();
        let next = Scoped {
            digests: entries.iter().map(|e| e.digest).collect(),
            tenants,
        };
        let n = next.digests.len();
        *scoped = Arc::new(next);
        Ok(n)
    }

    /// Who presents this `Authorization` header: `None` for no valid token. Every configured
    /// token is compared (no early exit), in constant time, so the time does not tell which one
    /// matched or how much of one.
    pub fn identify(&self, header: Option<&[u8]>) -> Option<Identity> {
        if !self.enabled() {
            return Some(Arc::clone(&self.anonymous));
        }
        let got = digest(crate::auth::bearer_token(header)?);
        let scoped = Arc::clone(&self.scoped.read().expect("never poisoned"));
        // Both lists are scanned whole, whatever matched.
        let plain = crate::auth::position(&self.plain, &got);
        let scoped_at = crate::auth::position(&scoped.digests, &got);
        match (plain, scoped_at) {
            (Some(_), _) => Some(Arc::clone(&self.plain_tenant)),
            (None, Some(i)) => Some(Arc::clone(&scoped.tenants[i])),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn a_well_formed_file_is_parsed() {
        let text = format!(
            "# tenants\n\n  tenant-a {H1} prefix=tenant-a/ max_file_size=100MiB \
             max_request_size=1G requests_per_minute=60 bytes_per_minute=1K\n\
             all.of-it_2 {H2} prefix=/\n"
        );
        let e = parse(&text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].id, "tenant-a");
        assert_eq!(e[0].digest, [0x11; 32]);
        assert_eq!(e[0].prefix.as_str(), "tenant-a/");
        assert_eq!(
            e[0].limits,
            TokenLimits {
                max_file_size: Some(100 << 20),
                max_request_size: Some(1 << 30),
                rates: Rates {
                    requests: Some(60),
                    bytes: Some(1024)
                },
            }
        );
        assert_eq!(e[1].prefix, KeyPrefix::root());
        assert_eq!(e[1].limits, TokenLimits::default());
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_line() {
        let ok = format!("a {H1} prefix=a/");
        for (second, why) in [
            ("b sha256:12zz prefix=b/".to_owned(), "not 64 hex digits"),
            (
                format!("b sha256:{} prefix=b/", "1".repeat(63)),
                "not 64 hex digits",
            ),
            (
                format!("b {} prefix=b/", &H2[7..]),
                "sha256:<64 hex digits>",
            ),
            (
                format!("a {H2} prefix=b/"),
                "duplicate id \"a\" (first on line 1)",
            ),
            (format!("b {H1} prefix=b/"), "the same token hash as line 1"),
            (format!("b {H2} prefix=../x"), "invalid prefix \"../x\""),
            (format!("b {H2} prefix=/x"), "invalid prefix \"/x\""),
            (format!("b {H2} prefix=a\\b"), "invalid prefix"),
            (format!("b {H2} prefix="), "empty prefix"),
            (format!("b {H2}"), "no prefix="),
            (
                format!("b {H2} prefix=b/ colour=red"),
                "unknown field \"colour\"",
            ),
            (
                format!("b {H2} prefix=b/ max_file_size=lots"),
                "max_file_size=lots",
            ),
            (format!("b {H2} prefix=b/ max_file_size=0"), "above 0"),
            (
                format!("b {H2} prefix=b/ requests_per_minute=1.5"),
                "whole number",
            ),
            (format!("b {H2} prefix=b/ requests_per_minute=0"), "above 0"),
            (
                format!("b {H2} prefix=b/ bytes_per_minute=-1"),
                "bytes_per_minute=-1",
            ),
            (
                format!("b {H2} prefix=b/ prefix=c/"),
                "prefix is given twice",
            ),
            (format!("b {H2} prefix=b/ max_request_size"), "NAME=VALUE"),
            (format!("plain {H2} prefix=b/"), "reserved"),
            (
                format!("b {H2} prefix=.uploader/"),
                ".uploader/ is reserved",
            ),
            (
                format!("b {H2} prefix=.UPLOADER/idempotency/"),
                ".uploader/ is reserved",
            ),
            (format!("anonymous {H2} prefix=b/"), "reserved"),
            (format!("-b {H2} prefix=b/"), "invalid id"),
            (format!("b/c {H2} prefix=b/"), "invalid id"),
            ("b".to_owned(), "expected `ID sha256:"),
        ] {
            let err = parse(&format!("{ok}\n# comment\n{second}\n")).unwrap_err();
            assert_eq!(err.line, 3, "{second}: {err}");
            assert!(err.to_string().starts_with("line 3: "), "{err}");
            assert!(err.message.contains(why), "{second}: {err}");
        }
    }

    #[test]
    fn tokens_are_identified_by_their_hash_and_reload_keeps_or_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let (t1, t2) = ("first-token-0123456789", "second-token-0123456789");
        std::fs::write(&file, line_for("one", t1, &KeyPrefix::new("one").unwrap())).unwrap();
        let auth = Auth::with_file(&["plain-token-0123456789".into()], &[], &file).unwrap();
        let id = |t: &str| {
            auth.identify(Some(format!("Bearer {t}").as_bytes()))
                .map(|i| i.id().to_owned())
        };
        assert_eq!(id(t1).as_deref(), Some("one"));
        assert_eq!(id("plain-token-0123456789").as_deref(), Some(PLAIN_ID));
        assert_eq!(id(t2), None);
        assert!(auth.identify(None).is_none());
        let one = auth
            .identify(Some(format!("Bearer {t1}").as_bytes()))
            .unwrap();
        assert_eq!(
            one.root(&KeyPrefix::new("r").unwrap()).unwrap().as_str(),
            "r/one/"
        );

        // A bad file keeps the tokens in force; so does one that cannot be read.
        let gone = Auth::with_file(&[], &[], &dir.path().join("missing")).unwrap_err();
        assert!(gone.to_string().starts_with("cannot read it: "), "{gone}");
        std::fs::write(&file, "one sha256:nothex prefix=one/\n").unwrap();
        assert_eq!(auth.reload().unwrap_err().line, 1);
        assert_eq!(id(t1).as_deref(), Some("one"));

        // A good one replaces them; the quota counters of an id that stays are kept.
        let quota = Arc::clone(one.quota());
        let text = format!(
            "{}\n{}\n",
            line_for("one", t2, &KeyPrefix::new("one").unwrap()),
            line_for("two", t1, &KeyPrefix::root())
        );
        std::fs::write(&file, text).unwrap();
        assert_eq!(auth.reload(), Ok(2));
        assert_eq!(id(t2).as_deref(), Some("one"));
        assert_eq!(id(t1).as_deref(), Some("two"));
        let again = auth
            .identify(Some(format!("Bearer {t2}").as_bytes()))
            .unwrap();
        assert!(Arc::ptr_eq(&quota, again.quota()));
        assert_eq!(auth.ids(), ["one", "two"]);

        // A scoped token that is also a plain or an admin token is refused on reload (the
        // tokens in force stay) and at start-up, naming its line.
        let clash = format!(
            "# roles\n{}\n",
            line_for("p", "plain-token-0123456789", &KeyPrefix::root())
        );
        std::fs::write(&file, &clash).unwrap();
        let err = auth.reload().unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("also a plain upload token"), "{err}");
        assert_eq!(id(t2).as_deref(), Some("one"), "the tokens in force stay");
        let admin = ["plain-token-0123456789".to_owned()];
        let err = Auth::with_file(&[], &admin, &file).unwrap_err();
        assert!(err.message.contains("also an admin token"), "{err}");

        // A file with no token: authentication stays on.
        std::fs::write(&file, "# nobody\n").unwrap();
        let empty = Auth::with_file(&[], &[], &file).unwrap();
        assert!(empty.enabled());
        assert!(empty.identify(None).is_none());
        assert_eq!(Auth::new(&[]).identify(None).unwrap().id(), ANONYMOUS_ID);
    }
}
