//! A vault key: 32 random bytes, parsed from base64, identified by a non-secret fingerprint.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{KeyProblem, Result, VaultError};

/// Length of a vault key in bytes (XChaCha20-Poly1305 uses 256-bit keys).
pub const KEY_LEN: usize = 32;

/// Length of a fingerprint in bytes (it prints as twice as many hex digits).
pub const FINGERPRINT_LEN: usize = 8;

/// Domain separation for fingerprints, so a fingerprint is never the hash of the bare key
/// (and can never collide with any other SHA-256 use of the key).
const FINGERPRINT_DOMAIN: &[u8] = b"paddock-vault key fingerprint v1\0";

const PADDING_INDIFFERENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, PADDING_INDIFFERENT);
const URL_SAFE_ANY_PADDING: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, PADDING_INDIFFERENT);

/// A 256-bit vault key.
///
/// The bytes live on the heap and are zeroized when the key is dropped. `Debug` prints only
/// the fingerprint; there is deliberately no `Display`, `Serialize` or `PartialEq` (compare
/// [`Key::fingerprint`]s instead). The only way to get the material back out is
/// [`Key::expose_base64`], for writing a key file or showing a freshly generated key once.
#[derive(Clone)]
pub struct Key {
    bytes: Box<Zeroizing<[u8; KEY_LEN]>>,
    fingerprint: KeyFingerprint,
}

impl Key {
    /// A new random key from the operating system's RNG.
    pub fn generate() -> Result<Key> {
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        getrandom::fill(&mut bytes[..]).map_err(VaultError::Rng)?;
        Ok(Key::from_boxed(bytes))
    }

    /// A key from raw bytes. The array passed in is a copy the caller should zeroize.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Key {
        Key::from_boxed(Box::new(Zeroizing::new(*bytes)))
    }

    /// Parses a key from base64: standard or URL-safe alphabet, with or without padding,
    /// surrounding whitespace ignored. Errors never contain the input.
    pub fn from_base64(text: &str) -> Result<Key> {
        Key::parse(text).map_err(|problem| VaultError::InvalidKey {
            origin: "key".to_owned(),
            problem,
        })
    }

    /// Like [`Key::from_base64`], reporting only the [`KeyProblem`]; callers add the origin.
    pub(crate) fn parse(text: &str) -> std::result::Result<Key, KeyProblem> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyProblem::Empty);
        }
        // Capacity up front so decoding never reallocates (which would leave an
        // unzeroized copy behind).
        let mut decoded = Zeroizing::new(Vec::with_capacity(text.len()));
        let ok = STANDARD_ANY_PADDING.decode_vec(text, &mut decoded).is_ok() || {
            decoded.clear();
            URL_SAFE_ANY_PADDING.decode_vec(text, &mut decoded).is_ok()
        };
        if !ok {
            return Err(KeyProblem::NotBase64);
        }
        if decoded.len() != KEY_LEN {
            return Err(KeyProblem::WrongLength {
                decoded: decoded.len(),
            });
        }
        let mut bytes = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        bytes.copy_from_slice(&decoded);
        Ok(Key::from_boxed(bytes))
    }

    fn from_boxed(bytes: Box<Zeroizing<[u8; KEY_LEN]>>) -> Key {
        let fingerprint = KeyFingerprint::of(&bytes[..]);
        Key { bytes, fingerprint }
    }

    /// The key as standard padded base64 (44 characters): the form a key file holds.
    /// This is key material: never log it.
    pub fn expose_base64(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(KEY_LEN * 4 / 3 + 4));
        STANDARD_ANY_PADDING.encode_string(&self.bytes[..], &mut out);
        out
    }

    /// A short, stable, non-secret identifier of this key: the first 8 bytes of
    /// SHA-256("paddock-vault key fingerprint v1\0" || key), printed as 16 hex digits.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl FromStr for Key {
    type Err = VaultError;

    fn from_str(s: &str) -> Result<Key> {
        Key::from_base64(s)
    }
}

/// The non-secret identifier of a [`Key`]; tags every sealed secret so the keyring can pick
/// the right key. Displays (and parses) as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint([u8; FINGERPRINT_LEN]);

impl KeyFingerprint {
    fn of(key: &[u8]) -> KeyFingerprint {
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_DOMAIN);
        hasher.update(key);
        let digest = hasher.finalize();
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        KeyFingerprint(out)
    }

    /// Parses 16 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<KeyFingerprint> {
        let bytes = text.as_bytes();
        if bytes.len() != FINGERPRINT_LEN * 2 {
            return None;
        }
        let mut out = [0u8; FINGERPRINT_LEN];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(KeyFingerprint(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY_B64: &str = "Y2FuYXJ5LWtleS1tYXRlcmlhbC0wMTIzNDU2Nzg5YWI=";

    #[test]
    fn parses_all_base64_flavours_to_the_same_key() {
        let key = Key::generate().unwrap();
        let std_padded = key.expose_base64();
        assert_eq!(std_padded.len(), 44);
        let std_unpadded = std_padded.trim_end_matches('=').to_owned();
        let url_padded = std_padded.replace('+', "-").replace('/', "_");
        let url_unpadded = url_padded.trim_end_matches('=').to_owned();
        for text in [
            std_padded.as_str(),
            &std_unpadded,
            &url_padded,
            &url_unpadded,
            &format!("  {}\n", std_padded.as_str()),
        ] {
            assert_eq!(
                Key::from_base64(text).unwrap().fingerprint(),
                key.fingerprint()
            );
        }
    }

    #[test]
    fn url_safe_characters_parse() {
        // 32 bytes of 0xfb encode with '+' / '-' characters in them.
        let key = Key::from_bytes(&[0xfb; KEY_LEN]);
        let std = key.expose_base64();
        assert!(std.contains('+'));
        let url = std.replace('+', "-").replace('/', "_");
        assert_eq!(
            Key::from_base64(&url).unwrap().fingerprint(),
            key.fingerprint()
        );
    }

    #[test]
    fn bad_keys_give_clear_errors_without_echoing_input() {
        let canary = "SECRETCANARY";
        let cases: Vec<(String, &str)> = vec![
            (format!("{canary}!!!not base64$$"), "not valid base64"),
            (format!("{canary}="), "not valid base64"),
            // valid base64, wrong length: "SECRETCANARY" decodes to 9 bytes
            (canary.to_owned(), "decodes to 9 bytes"),
            (
                format!("{canary}{canary}{canary}{canary}"),
                "decodes to 36 bytes",
            ),
            ("   ".to_owned(), "empty"),
            (String::new(), "empty"),
        ];
        for (text, expected) in cases {
            let err = Key::from_base64(&text).unwrap_err();
            let msg = err.to_string();
            let dbg = format!("{err:?}");
            assert!(
                msg.contains(expected),
                "{msg:?} should mention {expected:?}"
            );
            assert!(msg.contains("invalid vault key"), "{msg}");
            assert!(
                !msg.contains(canary) && !dbg.contains(canary),
                "{msg} / {dbg}"
            );
            assert!(
                !msg.contains("CANARY") && !dbg.contains("ANAR"),
                "{msg} / {dbg}"
            );
        }
    }

    #[test]
    fn mixed_alphabets_are_rejected() {
        let key = Key::from_bytes(&[0xfb; KEY_LEN]);
        let mut text = key.expose_base64().to_string();
        text.replace_range(0..1, "-"); // url-safe char in an otherwise standard string
        text.insert(1, '+');
        text.truncate(44);
        assert!(Key::from_base64(&text).is_err());
    }

    #[test]
    fn fingerprint_is_stable_short_and_domain_separated() {
        let key = Key::from_base64(CANARY_B64).unwrap();
        let fp = key.fingerprint().to_string();
        assert_eq!(fp.len(), 16);
        assert!(fp
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // Same input, same fingerprint, across parses.
        assert_eq!(
            Key::from_base64(CANARY_B64)
                .unwrap()
                .fingerprint()
                .to_string(),
            fp
        );
        // Not a prefix of the plain SHA-256 of the key.
        let plain = Sha256::digest(key.bytes());
        assert_ne!(&plain[..FINGERPRINT_LEN], key.fingerprint().as_bytes());
        assert_eq!(KeyFingerprint::from_hex(&fp), Some(key.fingerprint()));
        assert_eq!(
            KeyFingerprint::from_hex(&fp.to_uppercase()),
            Some(key.fingerprint())
        );
        assert_eq!(KeyFingerprint::from_hex("xyz"), None);
        assert_eq!(KeyFingerprint::from_hex("0123456789abcdeg"), None);
    }

    #[test]
    fn generated_keys_differ() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.bytes(), b.bytes());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = Key::from_base64(CANARY_B64).unwrap();
        let dbg = format!("{key:?} {key:#?}");
        assert!(dbg.contains(&key.fingerprint().to_string()));
        assert!(!dbg.contains(CANARY_B64));
        assert!(!dbg.contains("canary"));
        // No byte-array rendering of the key either.
        assert!(!dbg.contains("99, 97, 110")); // "can" as decimal bytes
        assert!(!dbg.contains("bytes"));
    }
}
