//! Tests of the keyring, the sealed format and key loading.

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::*;

const CANARY: &str = "CANARY-ghp_4f8a1c2e9b7d6035";
const AAD: &[u8] = b"cred_01HZX3";

fn keyring() -> Keyring {
    Keyring::single(Key::generate().unwrap())
}

fn assert_no_canary(text: &str) {
    assert!(!text.contains(CANARY), "leaked canary: {text}");
    assert!(!text.contains("CANARY"), "leaked canary: {text}");
    assert!(!text.contains("ghp_4f8a"), "leaked canary: {text}");
}

/// Rebuilds a sealed string with one field replaced.
fn with_field(sealed: &Sealed, index: usize, value: &str) -> String {
    let mut parts: Vec<&str> = sealed.as_str().split('.').collect();
    parts[index] = value;
    parts.join(".")
}

#[test]
fn round_trip() {
    let ring = keyring();
    for plaintext in [
        CANARY.as_bytes(),
        b"",
        &[0u8, 255, 1, 2, 3][..],
        &[7u8; 10_000][..],
    ] {
        let sealed = ring.seal(plaintext, AAD).unwrap();
        // Through the stored text form, as a database would.
        let loaded: Sealed = sealed.as_str().parse().unwrap();
        assert_eq!(loaded, sealed);
        assert_eq!(&ring.open(&loaded, AAD).unwrap()[..], plaintext);
    }
    let sealed = ring.seal(CANARY.as_bytes(), AAD).unwrap();
    assert_eq!(
        ring.open_string(&sealed, AAD).unwrap().expose_secret(),
        CANARY
    );
}

#[test]
fn sealed_format() {
    let ring = keyring();
    let sealed = ring.seal(CANARY.as_bytes(), AAD).unwrap();
    let parts: Vec<&str> = sealed.as_str().split('.').collect();
    assert_eq!(parts.len(), 4, "{}", sealed.as_str());
    assert_eq!(parts[0], "v1");
    assert_eq!(parts[1], ring.current().fingerprint().to_string());
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), NONCE_LEN);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[3]).unwrap().len(),
        CANARY.len() + TAG_LEN
    );
    assert_eq!(sealed.key_fingerprint(), ring.current().fingerprint());
    assert!(sealed
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
}

/// A fixed key and a sealed string produced by this version: the format must keep opening.
#[test]
fn golden_sealed_string_still_opens() {
    let key = Key::from_base64("Y2FuYXJ5LWtleS1tYXRlcmlhbC0wMTIzNDU2Nzg5YWI=").unwrap();
    let ring = Keyring::single(key);
    let sealed: Sealed = GOLDEN.parse().unwrap();
    assert_eq!(sealed.key_fingerprint(), ring.current().fingerprint());
    assert_eq!(
        ring.open_string(&sealed, b"cred_golden")
            .unwrap()
            .expose_secret(),
        "golden secret"
    );
}

const GOLDEN: &str =
    "v1.f9185964b27b12cf.5yDthPbvAFm1QjornIVvFxqMIjgdfCOa.himJzwXs0YMMQn8hm-5NegvEN4Lp4cAduQVWHpI";

#[test]
fn different_aad_fails() {
    let ring = keyring();
    let sealed = ring.seal(CANARY.as_bytes(), b"cred_A").unwrap();
    for other in [&b"cred_B"[..], b"", b"cred_A ", b"cred_"] {
        let err = ring.open(&sealed, other).unwrap_err();
        assert!(matches!(err, VaultError::Decrypt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("tampered") && msg.contains("different record"),
            "{msg}"
        );
        assert_no_canary(&msg);
        assert_no_canary(&format!("{err:?}"));
    }
}

#[test]
fn tampered_ciphertext_fails() {
    let ring = keyring();
    let sealed = ring.seal(CANARY.as_bytes(), AAD).unwrap();
    let parts: Vec<&str> = sealed.as_str().split('.').collect();

    // Flip one bit in every byte position of the ciphertext (body and tag).
    let ct = URL_SAFE_NO_PAD.decode(parts[3]).unwrap();
    for i in 0..ct.len() {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        let text = with_field(&sealed, 3, &URL_SAFE_NO_PAD.encode(&bad));
        let err = ring.open(&text.parse().unwrap(), AAD).unwrap_err();
        assert!(
            matches!(err, VaultError::Decrypt { .. }),
            "byte {i}: {err:?}"
        );
        assert_no_canary(&err.to_string());
    }

    // A changed nonce.
    let mut nonce = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    nonce[0] ^= 0x80;
    let text = with_field(&sealed, 2, &URL_SAFE_NO_PAD.encode(&nonce));
    let err = ring.open(&text.parse().unwrap(), AAD).unwrap_err();
    assert!(matches!(err, VaultError::Decrypt { .. }), "{err:?}");

    // Truncated ciphertext (tag cut short) and extended ciphertext.
    let text = with_field(&sealed, 3, &URL_SAFE_NO_PAD.encode(&ct[..ct.len() - 1]));
    assert!(ring.open(&text.parse().unwrap(), AAD).is_err());
    let mut longer = ct.clone();
    longer.push(0);
    let text = with_field(&sealed, 3, &URL_SAFE_NO_PAD.encode(&longer));
    assert!(ring.open(&text.parse().unwrap(), AAD).is_err());

    // A relabelled key fingerprint: unknown to the keyring.
    let text = with_field(&sealed, 1, "0000000000000000");
    let err = ring.open(&text.parse().unwrap(), AAD).unwrap_err();
    assert!(matches!(err, VaultError::UnknownKey { .. }), "{err:?}");
}

#[test]
fn different_key_fails_clearly() {
    let ring_a = keyring();
    let ring_b = keyring();
    let sealed = ring_a.seal(CANARY.as_bytes(), AAD).unwrap();
    let err = ring_b.open(&sealed, AAD).unwrap_err();
    let fp = ring_a.current().fingerprint();
    assert!(
        matches!(err, VaultError::UnknownKey { fingerprint } if fingerprint == fp),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&fp.to_string()), "{msg}");
    assert!(msg.contains("neither the current key nor"), "{msg}");
    assert_no_canary(&msg);
    assert_no_canary(&format!("{err:?}"));
    // Nor does the other key's material appear.
    assert!(!msg.contains(ring_b.current().expose_base64().as_str()));
    assert!(!msg.contains(ring_a.current().expose_base64().as_str()));
}

#[test]
fn previous_key_opens_and_reseal_rotates() {
    let old = Key::generate().unwrap();
    let new = Key::generate().unwrap();
    let old_ring = Keyring::single(old.clone());
    let sealed_old = old_ring.seal(CANARY.as_bytes(), AAD).unwrap();
    assert!(!old_ring.needs_rotation(&sealed_old));

    let ring = Keyring::new(new.clone(), vec![old.clone()]);
    assert_eq!(&ring.open(&sealed_old, AAD).unwrap()[..], CANARY.as_bytes());
    assert!(ring.needs_rotation(&sealed_old));

    let resealed = ring.reseal(&sealed_old, AAD).unwrap();
    assert_eq!(resealed.key_fingerprint(), new.fingerprint());
    assert!(!ring.needs_rotation(&resealed));
    assert_eq!(&ring.open(&resealed, AAD).unwrap()[..], CANARY.as_bytes());

    // Once rotated, the old key can be dropped; the old keyring can no longer open it.
    let new_only = Keyring::single(new);
    assert_eq!(
        &new_only.open(&resealed, AAD).unwrap()[..],
        CANARY.as_bytes()
    );
    assert!(matches!(
        new_only.open(&sealed_old, AAD),
        Err(VaultError::UnknownKey { .. })
    ));
    assert!(matches!(
        old_ring.open(&resealed, AAD),
        Err(VaultError::UnknownKey { .. })
    ));

    // Reseal keeps the AAD binding.
    assert!(ring.reseal(&sealed_old, b"cred_other").is_err());
    let moved = ring.reseal(&sealed_old, AAD).unwrap();
    assert!(ring.open(&moved, b"cred_other").is_err());
}

#[test]
fn needs_rotation_for_unknown_keys_and_reseal_fails() {
    let ring = keyring();
    let foreign = keyring().seal(CANARY.as_bytes(), AAD).unwrap();
    assert!(ring.needs_rotation(&foreign));
    assert!(matches!(
        ring.reseal(&foreign, AAD),
        Err(VaultError::UnknownKey { .. })
    ));
}

#[test]
fn keyring_drops_duplicate_previous_keys() {
    let a = Key::generate().unwrap();
    let b = Key::generate().unwrap();
    let ring = Keyring::new(a.clone(), vec![a.clone(), b.clone(), b.clone()]);
    assert_eq!(ring.previous().len(), 1);
    assert_eq!(ring.previous()[0].fingerprint(), b.fingerprint());
}

#[test]
fn nonces_and_ciphertexts_differ_across_seals() {
    let ring = keyring();
    let mut nonces = std::collections::HashSet::new();
    let mut texts = std::collections::HashSet::new();
    for _ in 0..64 {
        let sealed = ring.seal(CANARY.as_bytes(), AAD).unwrap();
        let nonce = sealed.as_str().split('.').nth(2).unwrap().to_owned();
        assert!(nonces.insert(nonce), "nonce reused");
        assert!(texts.insert(sealed.into_string()), "ciphertext repeated");
    }
}

#[test]
fn sealed_string_never_contains_the_plaintext() {
    let ring = keyring();
    let sealed = ring.seal(CANARY.as_bytes(), AAD).unwrap();
    let text = sealed.as_str();
    assert_no_canary(text);
    // Nor any base64 form of it.
    for encoded in [
        URL_SAFE_NO_PAD.encode(CANARY),
        base64::engine::general_purpose::STANDARD.encode(CANARY),
    ] {
        assert!(!text.contains(&encoded[..16]), "{text}");
    }
    // And the raw ciphertext bytes are not the plaintext bytes.
    let ct = URL_SAFE_NO_PAD
        .decode(text.split('.').nth(3).unwrap())
        .unwrap();
    assert!(!ct
        .windows(8)
        .any(|w| CANARY.as_bytes().windows(8).any(|c| c == w)));
    // Debug forms of everything stay clean and short.
    assert_no_canary(&format!("{sealed:?} {ring:?}"));
    assert!(!format!("{sealed:?}").contains(text));
}

#[test]
fn debug_of_keys_and_keyrings_shows_no_key_material() {
    let key = Key::generate().unwrap();
    let prev = Key::generate().unwrap();
    let ring = Keyring::new(key.clone(), vec![prev.clone()]);
    let dbg = format!("{key:?} {key:#?} {ring:?} {ring:#?}");
    for k in [&key, &prev] {
        let b64 = k.expose_base64();
        assert!(!dbg.contains(b64.as_str()), "{dbg}");
        assert!(!dbg.contains(b64.trim_end_matches('=')), "{dbg}");
        assert!(dbg.contains(&k.fingerprint().to_string()), "{dbg}");
    }
}

#[test]
fn malformed_sealed_strings_are_rejected_without_echo() {
    let ring = keyring();
    let good = ring.seal(b"x", AAD).unwrap();
    let fp = good.key_fingerprint().to_string();
    let parts: Vec<&str> = good.as_str().split('.').collect();
    let cases = [
        (CANARY.to_owned(), "four"),
        (String::new(), "four"),
        (format!("v2.{fp}.{}.{}", parts[2], parts[3]), "version"),
        (
            format!("v1.{}.{}.{}", fp.to_uppercase(), parts[2], parts[3]),
            "fingerprint",
        ),
        (
            format!("v1.{CANARY}.{}.{}", parts[2], parts[3]),
            "fingerprint",
        ),
        (format!("v1.{fp}.{CANARY}.{}", parts[3]), "nonce"),
        (format!("v1.{fp}.{}.{}", &parts[2][..20], parts[3]), "nonce"),
        (format!("v1.{fp}.{}.{CANARY}!", parts[2]), "ciphertext"),
        (format!("v1.{fp}.{}.{}=", parts[2], parts[3]), "ciphertext"),
        (format!("v1.{fp}.{}.AAAA", parts[2]), "tag"),
        (format!("{}.{CANARY}", good.as_str()), "four"),
    ];
    for (text, expected) in cases {
        let err = Sealed::parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("sealed secret is malformed"), "{msg}");
        assert!(
            msg.contains(expected),
            "{msg:?} should mention {expected:?}"
        );
        assert_no_canary(&msg);
        assert_no_canary(&format!("{err:?}"));
    }
}

#[test]
fn sealed_serde_is_its_string_form() {
    let ring = keyring();
    let sealed = ring.seal(CANARY.as_bytes(), AAD).unwrap();
    let json = serde_json::to_string(&sealed).unwrap();
    assert_eq!(json, format!("\"{}\"", sealed.as_str()));
    let back: Sealed = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sealed);
    assert!(serde_json::from_str::<Sealed>("\"v1.nope\"").is_err());
}

// ---- key loading ----

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn configured_key_wins_and_previous_keys_are_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vault.key");
    let current = Key::generate().unwrap();
    let prev1 = Key::generate().unwrap();
    let prev2 = Key::generate().unwrap();
    let previous = vec![
        prev1.expose_base64().to_string(),
        // URL-safe, unpadded, with a trailing newline: all accepted.
        format!(
            "{}\n",
            prev2
                .expose_base64()
                .replace('+', "-")
                .replace('/', "_")
                .trim_end_matches('=')
        ),
    ];
    let (ring, source) =
        Keyring::load(Some(&current.expose_base64()), &previous, &key_file).unwrap();
    assert_eq!(source, KeySource::Config);
    assert_eq!(source.to_string(), "configured key");
    assert_eq!(ring.current().fingerprint(), current.fingerprint());
    let prev: Vec<_> = ring.previous().iter().map(Key::fingerprint).collect();
    assert_eq!(prev, vec![prev1.fingerprint(), prev2.fingerprint()]);
    assert!(!key_file.exists(), "no key file when a key is configured");
}

#[test]
fn bad_configured_or_previous_keys_fail_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vault.key");
    let err = Keyring::load(Some(CANARY), &[], &key_file).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("invalid vault key (configured key)"), "{msg}");
    assert_no_canary(&msg);
    assert_no_canary(&format!("{err:?}"));

    let err = Keyring::load(Some(""), &[], &key_file).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid vault key (configured key): it is empty"
    );

    let good = Key::generate().unwrap().expose_base64().to_string();
    let short = URL_SAFE_NO_PAD.encode(CANARY); // valid base64, 27 bytes
    let err = Keyring::load(Some(&good), &[good.clone(), short], &key_file).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "invalid vault key (previous key #2): it decodes to 27 bytes, but a vault key is \
         exactly 32 bytes"
    );
    assert!(!key_file.exists());
}

#[cfg(unix)]
#[test]
fn key_file_is_created_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("state").join("vault.key");

    let (ring1, source1) = Keyring::load(None, &[], &key_file).unwrap();
    assert_eq!(
        source1,
        KeySource::GeneratedKeyFile {
            path: key_file.clone()
        }
    );
    assert_eq!(mode_of(&key_file), 0o600);
    assert_eq!(mode_of(key_file.parent().unwrap()) & 0o077, 0);
    let contents = fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        contents.trim_end(),
        ring1.current().expose_base64().as_str()
    );
    assert!(contents.ends_with('\n'));
    let line = source1.to_string();
    assert!(line.starts_with("newly generated key file "), "{line}");
    assert!(!line.contains(contents.trim_end()));

    let (ring2, source2) = Keyring::load(None, &[], &key_file).unwrap();
    assert_eq!(
        source2,
        KeySource::KeyFile {
            path: key_file.clone()
        }
    );
    assert_eq!(ring2.current().fingerprint(), ring1.current().fingerprint());
    assert_eq!(
        fs::read_to_string(&key_file).unwrap(),
        contents,
        "not rewritten"
    );

    // Data sealed before the restart opens after it.
    let sealed = ring1.seal(CANARY.as_bytes(), AAD).unwrap();
    assert_eq!(&ring2.open(&sealed, AAD).unwrap()[..], CANARY.as_bytes());

    // A stricter mode (0400) is fine too.
    set_mode(&key_file, 0o400);
    let (ring3, _) = Keyring::load(None, &[], &key_file).unwrap();
    assert_eq!(ring3.current().fingerprint(), ring1.current().fingerprint());
}

#[cfg(unix)]
#[test]
fn group_or_world_readable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vault.key");
    Keyring::load(None, &[], &key_file).unwrap();
    for mode in [0o640, 0o604, 0o644, 0o660, 0o610] {
        set_mode(&key_file, mode);
        let err = Keyring::load(None, &[], &key_file).unwrap_err();
        assert!(
            matches!(err, VaultError::KeyFilePermissions { mode: m, .. } if m == mode),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("accessible by group or others"), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        let key_text = fs::read_to_string(&key_file).unwrap();
        assert!(!msg.contains(key_text.trim_end()));
    }
    // A configured key does not touch the key file at all.
    assert!(Keyring::load(
        Some(&Key::generate().unwrap().expose_base64()),
        &[],
        &key_file
    )
    .is_ok());
}

#[cfg(unix)]
#[test]
fn bad_key_file_contents_fail_without_echo() {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vault.key");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_file)
        .unwrap();
    writeln!(f, "{CANARY}").unwrap();
    drop(f);
    let err = Keyring::load(None, &[], &key_file).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("invalid vault key (key file "), "{msg}");
    assert!(msg.contains("not valid base64"), "{msg}");
    assert_no_canary(&msg);
    assert_no_canary(&format!("{err:?}"));

    // An empty file (e.g. left by a crash) is reported as such, not replaced.
    fs::write(&key_file, "").unwrap();
    let err = Keyring::load(None, &[], &key_file).unwrap_err();
    assert!(err.to_string().ends_with("it is empty"), "{err}");

    // A directory is not a key file.
    let as_dir = dir.path().join("dir.key");
    fs::create_dir(&as_dir).unwrap();
    set_mode(&as_dir, 0o700);
    let err = Keyring::load(None, &[], &as_dir).unwrap_err();
    assert!(
        matches!(err, VaultError::KeyFileUnusable { .. })
            || matches!(err, VaultError::KeyFileIo { .. }),
        "{err:?}"
    );
}
