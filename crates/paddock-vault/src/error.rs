//! The one error type of this crate.
//!
//! No variant carries secret material: not a plaintext, not a key, not the text a key was
//! parsed from (base64 decoder errors are dropped because they quote the offending
//! character), not a ciphertext. What they do carry is safe to log: key fingerprints, file
//! paths, lengths and fixed reasons.

use std::path::PathBuf;

use crate::key::KeyFingerprint;

/// Why a key string was rejected. Never includes any part of the string itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// The string was empty (or only whitespace).
    Empty,
    /// Not standard or URL-safe base64 (padding optional).
    NotBase64,
    /// Valid base64, but it did not decode to 32 bytes.
    WrongLength {
        /// How many bytes it decoded to.
        decoded: usize,
    },
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Empty => f.write_str("it is empty"),
            KeyProblem::NotBase64 => f.write_str(
                "it is not valid base64 (expected 32 random bytes in standard or URL-safe \
                 base64, padding optional, e.g. from `openssl rand -base64 32`)",
            ),
            KeyProblem::WrongLength { decoded } => write!(
                f,
                "it decodes to {decoded} bytes, but a vault key is exactly 32 bytes"
            ),
        }
    }
}

/// Every failure of the vault. Messages are safe to log and to return to an operator.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A key string (from config, env or a key file) could not be parsed.
    #[error("invalid vault key ({origin}): {problem}")]
    InvalidKey {
        /// Where the key came from, e.g. "configured key", "previous key #2", "key file /x".
        origin: String,
        /// What is wrong with it.
        problem: KeyProblem,
    },

    /// Reading, creating or inspecting the key file failed.
    #[error("vault key file {path}: {action} failed: {source}")]
    KeyFileIo {
        /// The key file (or its directory, when creating it).
        path: PathBuf,
        /// What was being done: "read", "create", "write", ...
        action: &'static str,
        /// The underlying I/O error (carries no file contents).
        #[source]
        source: std::io::Error,
    },

    /// The key file can be read by group or others; it must be 0600 (or stricter).
    #[error(
        "vault key file {path} is accessible by group or others (mode {mode:04o}); \
         refusing to use it: run `chmod 600` on it"
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file is not a regular file, or is implausibly large for a key.
    #[error("vault key file {path} is not usable: {reason}")]
    KeyFileUnusable {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed: {0}")]
    Rng(getrandom::Error),

    /// A stored sealed string is not in the expected format.
    #[error("sealed secret is malformed: {reason}")]
    Malformed {
        /// What is wrong with it (never quotes the string).
        reason: &'static str,
    },

    /// The secret was sealed with a key that is neither the current key nor a previous one.
    #[error(
        "secret was sealed with vault key {fingerprint}, which is neither the current key nor \
         a configured previous key (was the vault key changed without listing the old one as \
         a previous key?)"
    )]
    UnknownKey {
        /// The fingerprint recorded in the sealed string.
        fingerprint: KeyFingerprint,
    },

    /// Authenticated decryption failed with the right key: the ciphertext was modified, or
    /// it belongs to another row (associated data mismatch).
    #[error(
        "secret sealed with vault key {fingerprint} failed authentication: the ciphertext was \
         tampered with or belongs to a different record"
    )]
    Decrypt {
        /// The fingerprint of the key that was tried.
        fingerprint: KeyFingerprint,
    },

    /// Encryption failed (only possible for absurdly large plaintexts).
    #[error("encrypting the secret failed")]
    Encrypt,

    /// A decrypted secret was expected to be UTF-8 text and is not.
    #[error("decrypted secret is not valid UTF-8")]
    NotUtf8,
}

/// `Result` with [`VaultError`].
pub type Result<T, E = VaultError> = std::result::Result<T, E>;
