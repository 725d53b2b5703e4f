//! The causal-context token clients carry between a read and the next write.
//!
//! Token = base64url-no-pad(`version ++ payload ++ tag`), where `version` is
//! [`TOKEN_FORMAT_VERSION`], `payload` is the named msgpack encoding of the
//! [`VersionVector`], and `tag` is the first [`TAG_LEN`] bytes of
//! HMAC-SHA256(secret, version ++ payload).
//!
//! The token is opaque to clients but not secret: it is authenticated, not
//! encrypted. Authentication matters because a context is a licence to
//! delete: a write supersedes every sibling its context covers, so a forged
//! context could silently wipe values the client never saw, and an inflated
//! counter could exhaust an actor's dots.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

use crate::VersionVector;

/// Longest token [`ContextCodec::decode`] will look at, in bytes (equal to
/// characters for any well-formed token). Checked before anything else so
/// that an oversized header costs nothing.
pub const MAX_CONTEXT_TOKEN_BYTES: usize = 8192;

/// Most actors a decoded context may name. Real clusters have one actor per
/// node that ever coordinated a write, far fewer than this.
pub const MAX_CONTEXT_ACTORS: usize = 1024;

/// The first byte of every token, so the format can change without old
/// tokens being misread.
pub const TOKEN_FORMAT_VERSION: u8 = 1;

/// Bytes of HMAC-SHA256 kept in a token. 128 bits is ample against forgery
/// and keeps tokens short.
pub const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ContextError {
    #[error("causal context token is {len} bytes long, over the limit of {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("causal context token is not URL-safe base64 without padding")]
    NotBase64,
    #[error("causal context token has format version {0}, expected {TOKEN_FORMAT_VERSION}")]
    BadVersion(u8),
    #[error("causal context token was not issued by this cluster or was altered")]
    BadSignature,
    #[error("malformed causal context token: {0}")]
    Malformed(String),
}

/// Encodes a VersionVector into an opaque, URL-safe token and back. Tokens are authenticated with
/// HMAC-SHA256 (ring::hmac) under a cluster-wide secret, so a forged or garbled token is refused.
///
/// Every node must share the secret, since a client may read from one
/// coordinator and write through another.
#[derive(Clone)]
pub struct ContextCodec {
    key: hmac::Key,
}

impl std::fmt::Debug for ContextCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print anything derived from the secret.
        f.write_str("ContextCodec { .. }")
    }
}

impl ContextCodec {
    pub fn new(secret: &[u8]) -> Self {
        ContextCodec {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Never fails; note that a vector naming very many actors may encode to
    /// a token longer than [`MAX_CONTEXT_TOKEN_BYTES`], which `decode` refuses.
    pub fn encode(&self, ctx: &VersionVector) -> String {
        // Serializing a map of strings to integers into a Vec cannot fail.
        self.seal_payload(&rmp_serde::to_vec_named(ctx).unwrap_or_default())
    }

    /// A correctly signed token around arbitrary payload bytes, which [`Self::encode`] would
    /// never produce: for tests and the fuzz target that must reach the checks behind the
    /// signature. Signs only with this codec's own secret, so it forges nothing.
    pub fn seal_payload(&self, payload: &[u8]) -> String {
        let mut bytes = vec![TOKEN_FORMAT_VERSION];
        bytes.extend_from_slice(payload);
        let tag = hmac::sign(&self.key, &bytes);
        bytes.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks, in order: length, base64, format version, signature, and only
    /// then parses the payload (so unauthenticated bytes never reach the
    /// msgpack decoder) and checks its contents.
    pub fn decode(&self, token: &str) -> Result<VersionVector, ContextError> {
        if token.len() > MAX_CONTEXT_TOKEN_BYTES {
            return Err(ContextError::TooLong {
                len: token.len(),
                limit: MAX_CONTEXT_TOKEN_BYTES,
            });
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| ContextError::NotBase64)?;
        let Some(&version) = bytes.first() else {
            return Err(ContextError::Malformed("the token is empty".to_owned()));
        };
        if version != TOKEN_FORMAT_VERSION {
            return Err(ContextError::BadVersion(version));
        }
        if bytes.len() < 1 + TAG_LEN {
            return Err(ContextError::Malformed(
                "the token is too short to carry a signature".to_owned(),
            ));
        }
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let expected = hmac::sign(&self.key, signed);
        // ring offers no truncated-tag verify; this is its constant-time
        // comparison, deprecated only as "not intended for external use".
        #[allow(deprecated)]
        let genuine = ring::constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG_LEN], tag);
        genuine.map_err(|_| ContextError::BadSignature)?;

        let payload = &signed[1..];
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(payload));
        let ctx: VersionVector = serde::Deserialize::deserialize(&mut de)
            .map_err(|e| ContextError::Malformed(format!("undecodable payload: {e}")))?;
        if de.position() != payload.len() as u64 {
            return Err(ContextError::Malformed("trailing bytes after the context".to_owned()));
        }
        if ctx.len() > MAX_CONTEXT_ACTORS {
            return Err(ContextError::Malformed(format!(
                "the context names {} actors, over the limit of {MAX_CONTEXT_ACTORS}",
                ctx.len()
            )));
        }
        if let Some((actor, _)) = ctx.iter().find(|&(_, c)| c == 0) {
            return Err(ContextError::Malformed(format!(
                "the context has counter 0 for actor {actor}"
            )));
        }
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries.iter().map(|&(a, c)| (a, c)).collect()
    }

    fn codec() -> ContextCodec {
        ContextCodec::new(b"cluster secret")
    }

    /// Builds a correctly signed token around an arbitrary payload, to reach
    /// the checks that run after the signature.
    fn signed(codec: &ContextCodec, version: u8, payload: &[u8]) -> String {
        let mut bytes = vec![version];
        bytes.extend_from_slice(payload);
        let tag = hmac::sign(&codec.key, &bytes);
        bytes.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn round_trips() {
        let c = codec();
        for ctx in [VersionVector::new(), vv(&[("n1", 3), ("n2", u64::MAX)])] {
            let token = c.encode(&ctx);
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(c.decode(&token), Ok(ctx));
        }
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = codec().encode(&vv(&[("n1", 1)]));
        assert_eq!(
            ContextCodec::new(b"other secret").decode(&token),
            Err(ContextError::BadSignature)
        );
    }

    #[test]
    fn length_is_checked_first() {
        let token = "!".repeat(MAX_CONTEXT_TOKEN_BYTES + 1);
        assert_eq!(
            codec().decode(&token),
            Err(ContextError::TooLong {
                len: MAX_CONTEXT_TOKEN_BYTES + 1,
                limit: MAX_CONTEXT_TOKEN_BYTES
            })
        );
    }

    #[test]
    fn garbage_is_refused() {
        let c = codec();
        assert_eq!(c.decode("not base64!"), Err(ContextError::NotBase64));
        assert_eq!(c.decode("AQ=="), Err(ContextError::NotBase64));
        assert!(matches!(c.decode(""), Err(ContextError::Malformed(_))));
        assert!(matches!(c.decode("AQ"), Err(ContextError::Malformed(_))));
        assert_eq!(c.decode("Ag"), Err(ContextError::BadVersion(2)));
    }

    #[test]
    fn tampering_is_refused() {
        let c = codec();
        let token = c.encode(&vv(&[("n1", 3)]));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            c.decode(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(ContextError::BadSignature)
        );
        bytes[last] ^= 1;
        bytes[0] = 9;
        assert_eq!(
            c.decode(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(ContextError::BadVersion(9))
        );
    }

    #[test]
    fn signed_but_bad_payloads_are_refused() {
        let c = codec();
        let mut zero = BTreeMap::new();
        zero.insert("n1".to_owned(), 0u64);
        let mut huge = BTreeMap::new();
        // Two-letter actors keep the token under the length limit, so the
        // actor limit is what refuses it.
        let letters: Vec<char> = ('a'..='z').chain('A'..='Z').collect();
        for i in 0..=MAX_CONTEXT_ACTORS {
            let name: String = [letters[i / letters.len()], letters[i % letters.len()]]
                .iter()
                .collect();
            huge.insert(name, 1u64);
        }
        let mut trailing = rmp_serde::to_vec_named(&vv(&[("n1", 1)])).unwrap();
        trailing.push(0);
        for payload in [
            rmp_serde::to_vec_named(&zero).unwrap(),
            rmp_serde::to_vec_named(&huge).unwrap(),
            trailing,
            b"\xc1".to_vec(),
            vec![],
            rmp_serde::to_vec_named(&vec![1u8, 2]).unwrap(),
        ] {
            let token = signed(&c, TOKEN_FORMAT_VERSION, &payload);
            assert!(
                matches!(c.decode(&token), Err(ContextError::Malformed(_))),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        assert_eq!(format!("{:?}", codec()), "ContextCodec { .. }");
    }
}
