//! The keyring: the current key seals, any known key opens.

use std::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::error::{Result, VaultError};
use crate::key::{Key, KeyFingerprint};
use crate::sealed::{Sealed, FORMAT_VERSION, NONCE_LEN, TAG_LEN};
use crate::secret::SecretString;

/// The current key (used to seal) and the previous keys (still accepted to open, until
/// every row has been [resealed](Keyring::reseal)).
///
/// `Debug` prints fingerprints only.
#[derive(Clone)]
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// A keyring. Previous keys that repeat the current key or each other are dropped.
    pub fn new(current: Key, previous: Vec<Key>) -> Keyring {
        let mut kept: Vec<Key> = Vec::with_capacity(previous.len());
        for key in previous {
            let fp = key.fingerprint();
            if fp != current.fingerprint() && kept.iter().all(|k| k.fingerprint() != fp) {
                kept.push(key);
            }
        }
        Keyring {
            current,
            previous: kept,
        }
    }

    /// A keyring with only a current key.
    pub fn single(current: Key) -> Keyring {
        Keyring::new(current, Vec::new())
    }

    /// The key new secrets are sealed with.
    pub fn current(&self) -> &Key {
        &self.current
    }

    /// Keys that are still accepted for opening.
    pub fn previous(&self) -> &[Key] {
        &self.previous
    }

    /// Encrypts `plaintext` with the current key and a fresh random nonce. `aad` binds the
    /// result to its record (e.g. the credential id): opening it needs the same `aad`.
    ///
    /// Fails only if the OS RNG fails (or for plaintexts of hundreds of GiB).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(VaultError::Rng)?;
        let key = &self.current;
        let cipher = cipher(key);
        let full_aad = full_aad(key.fingerprint(), aad);
        // Encrypted in place in a buffer sized for the tag, so the only plaintext copy is
        // overwritten by the ciphertext and never reallocated.
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buffer.extend_from_slice(plaintext);
        cipher
            .encrypt_in_place(&XNonce::from(nonce), &full_aad, &mut *buffer)
            .map_err(|_| VaultError::Encrypt)?;
        Ok(Sealed::new(
            key.fingerprint(),
            nonce,
            std::mem::take(&mut *buffer),
        ))
    }

    /// Decrypts `sealed` with whichever key it was sealed with.
    ///
    /// Errors: [`VaultError::UnknownKey`] if that key is not in this keyring (a different
    /// key), [`VaultError::Decrypt`] if the key is known but authentication fails (tampered
    /// ciphertext, or `aad` of a different record).
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let fingerprint = sealed.key_fingerprint();
        let key = self
            .key_for(fingerprint)
            .ok_or(VaultError::UnknownKey { fingerprint })?;
        let full_aad = full_aad(fingerprint, aad);
        let mut buffer = Zeroizing::new(sealed.ciphertext().to_vec());
        cipher(key)
            .decrypt_in_place(&XNonce::from(*sealed.nonce()), &full_aad, &mut *buffer)
            .map_err(|_| VaultError::Decrypt { fingerprint })?;
        Ok(buffer)
    }

    /// [`open`](Keyring::open), for secrets that are text.
    pub fn open_string(&self, sealed: &Sealed, aad: &[u8]) -> Result<SecretString> {
        SecretString::from_utf8(self.open(sealed, aad)?)
    }

    /// Whether `sealed` was sealed with a key other than the current one (a previous key,
    /// or an unknown one — for which [`reseal`](Keyring::reseal) will then fail with
    /// [`VaultError::UnknownKey`]).
    pub fn needs_rotation(&self, sealed: &Sealed) -> bool {
        sealed.key_fingerprint() != self.current.fingerprint()
    }

    /// Opens `sealed` with whichever key it was sealed with and seals the plaintext again
    /// with the current key (and a new nonce). The plaintext is zeroized afterwards.
    pub fn reseal(&self, sealed: &Sealed, aad: &[u8]) -> Result<Sealed> {
        let plaintext = self.open(sealed, aad)?;
        self.seal(&plaintext, aad)
    }

    fn key_for(&self, fingerprint: KeyFingerprint) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.fingerprint() == fingerprint)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<KeyFingerprint> = self.previous.iter().map(Key::fingerprint).collect();
        f.debug_struct("Keyring")
            .field("current", &self.current.fingerprint())
            .field("previous", &previous)
            .finish()
    }
}

fn cipher(key: &Key) -> XChaCha20Poly1305 {
    // With the crate's `zeroize` feature the cipher wipes its copy of the key on drop.
    XChaCha20Poly1305::new(key.bytes().into())
}

/// The AEAD associated data: a fixed-length header (format version and key fingerprint)
/// followed by the caller's AAD. The header's fixed length keeps the encoding unambiguous.
fn full_aad(fingerprint: KeyFingerprint, aad: &[u8]) -> Vec<u8> {
    let header = format!("paddock-vault.{FORMAT_VERSION}.{fingerprint}.");
    let mut out = Vec::with_capacity(header.len() + aad.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(aad);
    out
}
