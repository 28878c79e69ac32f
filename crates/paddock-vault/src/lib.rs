//! Encryption at rest for Paddock's vault credentials.
//!
//! Secrets are write-only through the API, stored encrypted in SQLite and decrypted only in
//! the orchestrator when they are used. This crate is the cryptographic part of that:
//!
//! - [`Key`]: a 32-byte key, parsed from base64 or generated from the OS RNG, identified by
//!   a non-secret [`KeyFingerprint`].
//! - [`Keyring`]: the current key (seals) and previous keys (still open), with
//!   [`Keyring::seal`], [`Keyring::open`], [`Keyring::needs_rotation`] and
//!   [`Keyring::reseal`] for key rotation. Loaded at startup with [`Keyring::load`].
//! - [`Sealed`]: the self-describing TEXT-column form,
//!   `v1.<key fingerprint>.<base64url nonce>.<base64url ciphertext>`, XChaCha20-Poly1305
//!   with a random 24-byte nonce per seal. The caller's associated data (e.g. the
//!   credential id) binds a ciphertext to its row.
//! - [`SecretString`]: a secret passing through request parsing; zeroized on drop,
//!   `[redacted]` in `Debug`/`Display`, `Deserialize` but deliberately not `Serialize`.
//!
//! No error, `Debug` or `Display` output of this crate contains a plaintext, a key or the
//! text a key was parsed from.
//!
//! ```
//! use paddock_vault::{Key, Keyring};
//!
//! let keyring = Keyring::single(Key::generate()?);
//! let sealed = keyring.seal(b"ghp_example", b"cred_01")?;
//! let stored: String = sealed.as_str().to_owned(); // into the TEXT column
//!
//! let loaded: paddock_vault::Sealed = stored.parse()?;
//! assert_eq!(&keyring.open(&loaded, b"cred_01")?[..], b"ghp_example");
//! assert!(keyring.open(&loaded, b"cred_02").is_err()); // another row's AAD
//! # Ok::<(), paddock_vault::VaultError>(())
//! ```

mod error;
mod key;
mod keyring;
mod load;
mod sealed;
mod secret;

pub use error::{KeyProblem, Result, VaultError};
pub use key::{Key, KeyFingerprint, FINGERPRINT_LEN, KEY_LEN};
pub use keyring::Keyring;
pub use load::KeySource;
pub use sealed::{Sealed, FORMAT_VERSION, NONCE_LEN, TAG_LEN};
pub use secret::{SecretString, REDACTED};
pub use zeroize::Zeroizing;

#[cfg(test)]
mod tests;
