//! Client authentication and authorization: bearer tokens of named principals, each with a set
//! of scopes (`read`, `write`, `admin`), listed in a tokens file by SHA-256 hash.
//!
//! The node never holds a token, only its hash, so a leaked tokens file or config grants
//! nothing (the same reason etcd and Consul store credential hashes). A presented token is
//! hashed and compared with every entry in constant time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use shoal_net::client_api::{ApiError, BearerToken};

/// What a principal may do. Scopes do not imply each other: an operator who should also read
/// gets `["read", "admin"]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `GET /v1/kv/*`, `GET /metrics`, QUIC `Get`.
    Read,
    /// `PUT` and `DELETE /v1/kv/*`, QUIC `Put` and `Delete`.
    Write,
    /// Everything under `/v1/admin/`.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a request: a tokens-file entry, or `anonymous` (with every scope) when auth is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            scopes: Scope::ALL.to_vec(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth.enabled is true but auth.tokens_file is not set")]
    NoTokensFile,
    #[error("reading the tokens file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("tokens file {path}: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("tokens file {path}, [[token]] entry {index} ({name:?}): {reason}")]
    Entry {
        path: PathBuf,
        /// 1-based, in file order.
        index: usize,
        name: String,
        reason: String,
    },
    #[error("the system random source failed")]
    Random,
}

/// One `[[token]]` entry as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    scopes: Vec<String>,
    sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    token: Vec<RawEntry>,
}

struct Entry {
    digest: [u8; 32],
    principal: Arc<Principal>,
}

/// Decides who a request comes from and whether it may do what it asks.
pub struct Authenticator {
    /// `None`: auth is off and everyone is `anonymous` with every scope.
    entries: Option<Vec<Entry>>,
    anonymous: Arc<Principal>,
}

fn hex_digest(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equality whose time does not depend on where the inputs differ (ring's own helper is
/// deprecated as internal). Both sides are SHA-256 digests, so their length is public.
fn constant_time_eq(a: &[u8], b: &[u8; 32]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// SHA-256 of a token, as the hex string the tokens file holds.
pub fn token_sha256_hex(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh random 256-bit token, base64url without padding (43 characters).
pub fn generate_token() -> Result<String, AuthError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The `[[token]]` entry to add to a tokens file for `token`.
pub fn token_entry_toml(name: &str, scopes: &[Scope], token: &str) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| format!("{:?}", s.as_str())).collect();
    format!(
        "[[token]]\nname = {name:?}\nscopes = [{}]\nsha256 = \"{}\"\n",
        scopes.join(", "),
        token_sha256_hex(token)
    )
}

impl Authenticator {
    /// Everyone is `anonymous`, with every scope.
    pub fn disabled() -> Authenticator {
        Authenticator {
            entries: None,
            anonymous: Arc::new(Principal::anonymous()),
        }
    }

    /// The `[auth]` section: off, or on with the principals of `tokens_file`.
    pub fn from_config(enabled: bool, tokens_file: &Path) -> Result<Authenticator, AuthError> {
        if !enabled {
            return Ok(Authenticator::disabled());
        }
        if tokens_file.as_os_str().is_empty() {
            return Err(AuthError::NoTokensFile);
        }
        let text = std::fs::read_to_string(tokens_file).map_err(|e| AuthError::Read {
            path: tokens_file.to_path_buf(),
            reason: e.to_string(),
        })?;
        Authenticator::parse(tokens_file, &text)
    }

    /// Parse and check a tokens file: every entry named, names and hashes unique, every scope
    /// known, every hash 64 hex digits. An empty file is valid and lets nobody in.
    pub fn parse(path: &Path, text: &str) -> Result<Authenticator, AuthError> {
        // toml's message names the line and column of a syntax error.
        let raw: RawFile = toml::from_str(text).map_err(|e| AuthError::Syntax {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.token.len());
        for (i, e) in raw.token.into_iter().enumerate() {
            let bad = |reason: String| AuthError::Entry {
                path: path.to_path_buf(),
                index: i + 1,
                name: e.name.clone(),
                reason,
            };
            if e.name.trim().is_empty() {
                return Err(bad("name must not be empty".into()));
            }
            if entries.iter().any(|x| x.principal.name == e.name) {
                return Err(bad("another entry has the same name".into()));
            }
            let mut scopes = Vec::new();
            for s in &e.scopes {
                let scope = Scope::parse(s)
                    .ok_or_else(|| bad(format!("unknown scope {s:?}; scopes are read, write and admin")))?;
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
            if scopes.is_empty() {
                return Err(bad("scopes must name at least one of read, write, admin".into()));
            }
            let digest = hex_digest(&e.sha256.to_ascii_lowercase()).ok_or_else(|| {
                bad("sha256 must be the 64 hex digits of the token's SHA-256 (`shoal auth token` prints it)".into())
            })?;
            if entries.iter().any(|x| x.digest == digest) {
                return Err(bad("another entry has the same sha256: one token, one principal".into()));
            }
            entries.push(Entry {
                digest,
                principal: Arc::new(Principal { name: e.name, scopes }),
            });
        }
        Ok(Authenticator {
            entries: Some(entries),
            anonymous: Arc::new(Principal::anonymous()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// Who presents `token`. `401 unauthenticated` when auth is on and the token is missing
    /// or unknown.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Arc<Principal>, ApiError> {
        let Some(entries) = &self.entries else {
            return Ok(self.anonymous.clone());
        };
        let Some(token) = token else {
            return Err(ApiError::new(
                401,
                "unauthenticated",
                "this node requires a bearer token (Authorization: Bearer <token>)",
            ));
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        // Compare with every entry, without stopping at a match, so the time taken says
        // nothing about which entry (or how much of a hash) matched.
        let mut found = None;
        for e in entries {
            if constant_time_eq(digest.as_ref(), &e.digest) {
                found = Some(e.principal.clone());
            }
        }
        found.ok_or_else(|| ApiError::new(401, "unauthenticated", "the bearer token is not known to this node"))
    }

    /// `403 forbidden` unless `principal` holds `scope`.
    pub fn authorize(principal: &Principal, scope: Scope) -> Result<(), ApiError> {
        if principal.has(scope) {
            return Ok(());
        }
        Err(ApiError {
            required_scope: Some(scope.as_str().into()),
            ..ApiError::new(
                403,
                "forbidden",
                format!("principal {:?} may not do this: it needs scope {scope}", principal.name),
            )
        })
    }

    /// Authenticate `token`, then authorize it for `scope`.
    pub fn check(&self, token: Option<&BearerToken>, scope: Scope) -> Result<Arc<Principal>, ApiError> {
        let principal = self.authenticate(token.map(|t| t.0.as_str()))?;
        Authenticator::authorize(&principal, scope)?;
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Authenticator, AuthError> {
        Authenticator::parse(Path::new("tokens.toml"), text)
    }

    #[test]
    fn generated_tokens_authenticate_to_their_principal() {
        let alice = generate_token().unwrap();
        let bob = generate_token().unwrap();
        assert_eq!(alice.len(), 43, "256 bits in unpadded base64url");
        assert_ne!(alice, bob);
        let file = format!(
            "{}\n{}",
            token_entry_toml("alice", &[Scope::Read, Scope::Write], &alice),
            token_entry_toml("bob", &[Scope::Admin], &bob)
        );
        let auth = parse(&file).unwrap();
        let a = auth.authenticate(Some(&alice)).unwrap();
        assert_eq!(
            (a.name.as_str(), a.has(Scope::Write), a.has(Scope::Admin)),
            ("alice", true, false)
        );
        assert_eq!(auth.authenticate(Some(&bob)).unwrap().name, "bob");
        assert_eq!(auth.authenticate(None).unwrap_err().status, 401);
        assert_eq!(auth.authenticate(Some("nope")).unwrap_err().status, 401);
        let mut near = alice.clone();
        near.pop();
        assert_eq!(auth.authenticate(Some(&near)).unwrap_err().error, "unauthenticated");
        let e = Authenticator::authorize(&a, Scope::Admin).unwrap_err();
        assert_eq!((e.status, e.error.as_str()), (403, "forbidden"));
        assert_eq!(e.required_scope.as_deref(), Some("admin"));
        assert!(e.message.contains("needs scope admin"), "{}", e.message);
    }

    #[test]
    fn disabled_lets_everyone_in_as_anonymous() {
        let auth = Authenticator::from_config(false, Path::new("")).unwrap();
        let p = auth.check(None, Scope::Admin).unwrap();
        assert_eq!(p.name, "anonymous");
    }

    #[test]
    fn bad_files_are_refused_naming_the_entry() {
        let h = token_sha256_hex("x");
        let err = |text: &str| parse(text).err().expect("refused").to_string();
        let e = err(&format!(
            "[[token]]\nname = \"a\"\nscopes = [\"read\"]\nsha256 = \"{h}\"\n[[token]]\nname = \"b\"\nscopes = [\"read\", \"superuser\"]\nsha256 = \"{}\"\n",
            token_sha256_hex("y")
        ));
        assert!(
            e.contains("entry 2 (\"b\")") && e.contains("unknown scope \"superuser\""),
            "{e}"
        );
        let e = err("[[token]]\nname = \"a\"\nscopes = [\"read\"]\nsha256 = \"abc\"\n");
        assert!(e.contains("entry 1 (\"a\")") && e.contains("64 hex digits"), "{e}");
        let e = err(&format!("[[token]]\nname = \"a\"\nscopes = []\nsha256 = \"{h}\"\n"));
        assert!(e.contains("at least one"), "{e}");
        let e = err(&format!(
            "[[token]]\nname = \"a\"\nscopes = [\"read\"]\nsha256 = \"{h}\"\n[[token]]\nname = \"a\"\nscopes = [\"read\"]\nsha256 = \"{}\"\n",
            token_sha256_hex("y")
        ));
        assert!(e.contains("same name"), "{e}");
        let e = err(&format!(
            "[[token]]\nname = \"a\"\nscopes = [\"read\"]\nsha256 = \"{h}\"\n[[token]]\nname = \"b\"\nscopes = [\"read\"]\nsha256 = \"{h}\"\n"
        ));
        assert!(e.contains("same sha256"), "{e}");
        let e = err("[[token]]\nname = \"a\"\nscopes = [\"read\"]\nsha256 = \n");
        assert!(e.contains("line 4"), "syntax errors name the line: {e}");
        let e = err(&format!(
            "[[token]]\nname = \"a\"\nscopes = [\"read\"]\nsha256 = \"{h}\"\ntoken = \"plaintext\"\n"
        ));
        assert!(e.contains("unknown field"), "{e}");
        assert!(matches!(
            Authenticator::from_config(true, Path::new("")),
            Err(AuthError::NoTokensFile)
        ));
        assert!(matches!(
            Authenticator::from_config(true, Path::new("/nonexistent/tokens.toml")),
            Err(AuthError::Read { .. })
        ));
    }
}
