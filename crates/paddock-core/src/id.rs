//! Sortable, prefixed ids: `<prefix>_<26 chars>` where the 26 chars are a ULID
//! (48-bit millisecond timestamp + 80 random bits) in lowercase Crockford base32.
//! Ids made by one process are strictly increasing, so they sort in creation order.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const AGENT: &str = "agent";
pub const ENVIRONMENT: &str = "env";
pub const SESSION: &str = "sesn";
pub const EVENT: &str = "evt";
pub const RUNNER: &str = "run";
pub const VAULT: &str = "vlt";
pub const CREDENTIAL: &str = "vcrd";
pub const RESOURCE: &str = "sesrsc";
pub const REQUEST: &str = "req";
pub const SNAPSHOT: &str = "snap";
pub const TOKEN: &str = "tok";
pub const AUDIT: &str = "aud";

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

fn random_80() -> u128 {
    let mut buf = [0u8; 10];
    // getrandom only fails when the OS has no entropy source at all; fall back to the clock.
    if getrandom::fill(&mut buf).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf.copy_from_slice(&nanos.to_le_bytes()[..10]);
    }
    buf.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

fn next_ulid() -> u128 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let (ms, rand) = if now_ms <= last.0 {
        // Same (or an earlier, after a clock step) millisecond: keep order by incrementing.
        let r = (last.1 + 1) & ((1u128 << 80) - 1);
        if r == 0 {
            (last.0 + 1, random_80() >> 1)
        } else {
            (last.0, r)
        }
    } else {
        (now_ms, random_80() >> 1)
    };
    *last = (ms, rand);
    (u128::from(ms) << 80) | rand
}

fn encode(v: u128) -> String {
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 125 - 5 * i as i32;
        let idx = if shift >= 0 {
            (v >> shift) & 0x1f
        } else {
            (v << (-shift)) & 0x1f
        };
        *slot = ALPHABET[idx as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A new id with the given prefix, e.g. `new("sesn")` → `sesn_01jd…`.
pub fn new(prefix: &str) -> String {
    format!("{prefix}_{}", encode(next_ulid()))
}

/// An id derived from `seed` (the same seed gives the same id) and stamped with the
/// millisecond `ms`: for records a replay must write under the id it wrote them with
/// the first time. The 80 low bits are a 128-bit FNV-1a hash of the seed.
pub fn derived(prefix: &str, ms: u64, seed: &str) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in seed.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let low = h & ((1u128 << 80) - 1);
    format!("{prefix}_{}", encode((u128::from(ms) << 80) | low))
}

/// Whether `id` looks like an id of this prefix (used to give a clear 404 early).
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_strictly_increasing() {
        let ids: Vec<String> = (0..2000).map(|_| new(SESSION)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        assert!(ids
            .iter()
            .all(|i| i.starts_with("sesn_") && i.len() == 5 + 26));
        assert!(has_prefix(&ids[0], SESSION));
        assert!(!has_prefix(&ids[0], ENVIRONMENT));
        assert!(!has_prefix("sesn_", SESSION));
    }

    #[test]
    fn derived_ids_depend_on_their_seed_alone() {
        let a = derived(EVENT, 1_700_000_000_000, "n:10:0");
        assert_eq!(a, derived(EVENT, 1_700_000_000_000, "n:10:0"));
        assert_ne!(a, derived(EVENT, 1_700_000_000_000, "n:10:1"));
        assert_ne!(a, derived(EVENT, 1_700_000_000_000, "m:10:0"));
        assert!(has_prefix(&a, EVENT) && a.len() == 4 + 26, "{a}");
        // The stamp sorts like a generated id of that millisecond.
        assert!(derived(EVENT, 1, "x") < derived(EVENT, 2, "x"));
    }

    #[test]
    fn encoding_keeps_numeric_order() {
        assert!(encode(1) < encode(2));
        assert!(encode(u128::from(u64::MAX)) < encode(1u128 << 100));
        assert_eq!(encode(0), "00000000000000000000000000");
    }
}
