//! Session tokens: 256 random bits from the OS, `kith_`-prefixed base64url; only their
//! SHA-256 is ever stored, so the sessions table cannot be replayed if it leaks.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::{rngs::OsRng, RngCore as _};
use sha2::{Digest, Sha256};

const PREFIX: &str = "kith_";

/// A new token to hand to the client.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A session's public id: the first 63 bits of its token's hash. Sessions are listed to
/// their owner by it and ended by it; it tells nothing of the token.
pub fn session_id(token_hash: &[u8]) -> i64 {
    let mut first = [0u8; 8];
    for (to, from) in first.iter_mut().zip(token_hash) {
        *to = *from;
    }
    i64::from_be_bytes(first) & i64::MAX
}

/// Cheap shape check before touching the database: anything else cannot be ours.
pub fn looks_valid(token: &str) -> bool {
    token.len() == PREFIX.len() + 43
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_well_formed_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(looks_valid(&a), "{a}");
        assert!(!looks_valid("kith_short"));
        assert!(!looks_valid(&a.replace("kith_", "kid_")));
        assert_ne!(hash(&a), hash(&b));
    }
}
