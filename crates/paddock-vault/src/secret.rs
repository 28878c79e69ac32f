//! [`SecretString`]: a secret in transit through request parsing and into the keyring.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Result, VaultError};

/// What [`SecretString`]'s `Debug` and `Display` print.
pub const REDACTED: &str = "[redacted]";

/// A secret string (an API token, a password, ...).
///
/// - Its buffer is zeroized when it is dropped.
/// - `Debug` and `Display` print `[redacted]`, so it is safe inside logged structs, error
///   messages and `format!`.
/// - It implements serde `Deserialize` from a plain string, so request bodies can hold it.
/// - It deliberately does **not** implement `Serialize`: a struct that embeds it cannot be
///   serialized into an event, audit record or response by accident, and a client cannot
///   silently send `"[redacted]"` instead of the value. Code that really must write the
///   value out calls [`SecretString::expose_secret`] explicitly.
/// - No `PartialEq`: compare `expose_secret()` values where a test needs it.
///
/// Deserializers may keep their own copies of the input (e.g. the request body buffer);
/// this type only guarantees that its own buffer is wiped.
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `value` (taking ownership, so no copy is made).
    pub fn new(value: String) -> SecretString {
        SecretString(Zeroizing::new(value))
    }

    /// The secret itself. Never log or display it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in bytes (not secret for our purposes; useful for validation).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Converts decrypted bytes into a string without copying them.
    pub fn from_utf8(bytes: Zeroizing<Vec<u8>>) -> Result<SecretString> {
        let mut bytes = bytes;
        let vec = std::mem::take(&mut *bytes);
        match String::from_utf8(vec) {
            Ok(s) => Ok(SecretString::new(s)),
            Err(e) => {
                // Put the bytes back so they are zeroized with `bytes`.
                *bytes = e.into_bytes();
                Err(VaultError::NotUtf8)
            }
        }
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> SecretString {
        SecretString::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> SecretString {
        SecretString::new(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = SecretString;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretString, E> {
                Ok(SecretString::from(v))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretString, E> {
                Ok(SecretString::new(v))
            }

            // Serde's default errors for these quote the value ("invalid type: integer
            // `1234`"); a secret sent with the wrong type must not end up in an error.
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretString, E> {
                Err(not_a_string(&self))
            }

            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretString, E> {
                Err(not_a_string(&self))
            }

            fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<SecretString, E> {
                Err(not_a_string(&self))
            }

            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretString, E> {
                Err(not_a_string(&self))
            }

            fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<SecretString, E> {
                Err(not_a_string(&self))
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretString, E> {
                Err(not_a_string(&self))
            }

            fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<SecretString, E> {
                Err(not_a_string(&self))
            }
        }

        fn not_a_string<E: serde::de::Error>(expected: &Visitor) -> E {
            E::invalid_type(serde::de::Unexpected::Other("a non-string value"), expected)
        }

        // `deserialize_any` so that a non-string reaches our visitor (and its non-echoing
        // error) instead of the format's own "invalid type: integer `1234`" message. This
        // needs a self-describing format (JSON, TOML, query strings), which requests are.
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "sk-CANARY-d9f1e2";

    #[derive(Debug, serde::Deserialize)]
    struct CreateCredential {
        name: String,
        secret: SecretString,
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let s = SecretString::from(CANARY);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:#?}"), REDACTED);
        assert_eq!(s.expose_secret(), CANARY);
        assert_eq!(s.len(), CANARY.len());
        assert!(!s.is_empty());
    }

    #[test]
    fn deserializes_from_a_string_and_stays_redacted_in_debug() {
        let body = format!(r#"{{"name":"github","secret":"{CANARY}"}}"#);
        let req: CreateCredential = serde_json::from_str(&body).unwrap();
        assert_eq!(req.name, "github");
        assert_eq!(req.secret.expose_secret(), CANARY);
        let dbg = format!("{req:?} {req:#?}");
        assert!(!dbg.contains(CANARY), "{dbg}");
        assert!(dbg.contains(REDACTED));
        // Escaped strings take the owned path.
        let req: CreateCredential =
            serde_json::from_str(r#"{"name":"n","secret":"a\"b"}"#).unwrap();
        assert_eq!(req.secret.expose_secret(), "a\"b");
        // Non-strings are rejected, and the error does not quote the value.
        let err = serde_json::from_str::<CreateCredential>(r#"{"name":"n","secret":12345678}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a string"), "{err}");
        assert!(!err.contains("12345678"), "{err}");
        for body in [
            r#"{"name":"n","secret":-12345678}"#,
            r#"{"name":"n","secret":12345678.5}"#,
            r#"{"name":"n","secret":true}"#,
        ] {
            let err = serde_json::from_str::<CreateCredential>(body)
                .unwrap_err()
                .to_string();
            assert!(!err.contains("12345678") && !err.contains("true"), "{err}");
        }
    }

    #[test]
    fn from_utf8_checks_encoding() {
        let ok = SecretString::from_utf8(Zeroizing::new(CANARY.as_bytes().to_vec())).unwrap();
        assert_eq!(ok.expose_secret(), CANARY);
        let err = SecretString::from_utf8(Zeroizing::new(vec![0xff, 0xfe])).unwrap_err();
        assert_eq!(err.to_string(), "decrypted secret is not valid UTF-8");
    }
}
