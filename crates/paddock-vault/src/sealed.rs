//! The stored form of an encrypted secret.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::{Result, VaultError};
use crate::key::{KeyFingerprint, FINGERPRINT_LEN};

/// Length of the random XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// The format version tag, the first field of every sealed string.
pub const FORMAT_VERSION: &str = "v1";

/// An encrypted secret in its self-describing text form, for a TEXT column:
///
/// ```text
/// v1.<key fingerprint: 16 hex>.<nonce: base64url, no padding>.<ciphertext+tag: base64url, no padding>
/// ```
///
/// e.g. `v1.f9185964b27b12cf.5yDthPbvAFm1QjornIVvFxqMIjgdfCOa.himJzwXs0YMMQn8hm-5NegvEN4Lp4cAduQVWHpI`
/// (the nonce is always 32 characters; the ciphertext is the plaintext length plus a
/// 16-byte tag). The fields never contain `.`
/// (base64url uses `-` and `_`). The ciphertext is XChaCha20-Poly1305 with a random 24-byte
/// nonce; its associated data is the fixed-length header `paddock-vault.v1.<fingerprint>.`
/// followed by the caller's AAD, so the version and key tag are authenticated too.
///
/// A `Sealed` holds no secret, but it is still deliberately not `Display`: `Debug` shows
/// only the key fingerprint and the ciphertext length so that logs stay short. Use
/// [`Sealed::as_str`] to store it and [`str::parse`] / [`Sealed::parse`] to load it.
/// Serde (de)serializes it as its string form, validating on the way in.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    text: String,
    fingerprint: KeyFingerprint,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl Sealed {
    pub(crate) fn new(
        fingerprint: KeyFingerprint,
        nonce: [u8; NONCE_LEN],
        ciphertext: Vec<u8>,
    ) -> Sealed {
        let text = format!(
            "{FORMAT_VERSION}.{fingerprint}.{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(&ciphertext)
        );
        Sealed {
            text,
            fingerprint,
            nonce,
            ciphertext,
        }
    }

    /// Parses and validates the stored form. Errors never quote the input.
    pub fn parse(text: &str) -> Result<Sealed> {
        let malformed = |reason| VaultError::Malformed { reason };
        let mut parts = text.split('.');
        let (Some(version), Some(fp), Some(nonce), Some(ct), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed(
                "expected four '.'-separated fields: version, key fingerprint, nonce, ciphertext",
            ));
        };
        if version != FORMAT_VERSION {
            return Err(malformed("unsupported format version (expected v1)"));
        }
        if fp.len() != FINGERPRINT_LEN * 2 || fp.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(malformed("key fingerprint is not 16 lowercase hex digits"));
        }
        let fingerprint = KeyFingerprint::from_hex(fp)
            .ok_or_else(|| malformed("key fingerprint is not 16 lowercase hex digits"))?;
        let nonce_bytes = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| malformed("nonce is not unpadded base64url"))?;
        let nonce: [u8; NONCE_LEN] = nonce_bytes
            .try_into()
            .map_err(|_| malformed("nonce is not 24 bytes"))?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(ct)
            .map_err(|_| malformed("ciphertext is not unpadded base64url"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(malformed(
                "ciphertext is shorter than the 16-byte authentication tag",
            ));
        }
        Ok(Sealed {
            text: text.to_owned(),
            fingerprint,
            nonce,
            ciphertext,
        })
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The stored form, by value.
    pub fn into_string(self) -> String {
        self.text
    }

    /// The fingerprint of the key this was sealed with.
    pub fn key_fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    pub(crate) fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    pub(crate) fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("version", &FORMAT_VERSION)
            .field("key", &self.fingerprint)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl FromStr for Sealed {
    type Err = VaultError;

    fn from_str(s: &str) -> Result<Sealed> {
        Sealed::parse(s)
    }
}

impl TryFrom<String> for Sealed {
    type Error = VaultError;

    fn try_from(s: String) -> Result<Sealed> {
        Sealed::parse(&s)
    }
}

impl From<Sealed> for String {
    fn from(s: Sealed) -> String {
        s.text
    }
}

impl AsRef<str> for Sealed {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl serde::Serialize for Sealed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Sealed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Sealed, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sealed::parse(&text).map_err(serde::de::Error::custom)
    }
}
