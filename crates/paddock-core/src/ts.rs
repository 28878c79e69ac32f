//! Timestamps: RFC 3339 in UTC with microseconds, a fixed width so that stored strings
//! compare in time order.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

pub type Timestamp = OffsetDateTime;

pub fn now() -> Timestamp {
    let t = OffsetDateTime::now_utc();
    // Truncate to microseconds so a value survives a round trip through its text form.
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

pub fn format(t: Timestamp) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses any RFC 3339 timestamp (`Z` or an offset) whose UTC time falls in years
/// 0000–9999 (what the fixed-width text form can hold).
pub fn parse(s: &str) -> Option<Timestamp> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let utc = t.checked_to_offset(UtcOffset::UTC)?;
    (0..=9999).contains(&utc.year()).then_some(utc)
}

/// serde adapter: RFC 3339 text in our fixed format.
pub mod serde_ts {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format(*t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => parse(&s)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_fixed_width_and_round_trips() {
        let t = now();
        let s = format(t);
        assert_eq!(s.len(), 27, "{s}");
        assert_eq!(parse(&s), Some(t));
        let offset = parse("2026-01-01T01:00:00+01:00").expect("parses");
        assert_eq!(format(offset), "2026-01-01T00:00:00.000000Z");
        assert!(parse("yesterday").is_none());
        // Valid RFC 3339, but past year 9999 once in UTC: refused, never a panic.
        assert!(parse("9999-12-31T23:00:00-05:00").is_none());
    }
}
