//! Shapes and checks shared by every resource: JSON parsing that names the field,
//! update patches (omit = keep, null = clear), metadata limits, money.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

use crate::CoreError;

pub type Metadata = BTreeMap<String, String>;

/// Parses a JSON body into `T`; a failure names the JSON path of the bad value.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, CoreError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match parsed {
        Ok(v) => {
            // Trailing garbage after the value is also bad input.
            de.end()
                .map_err(|e| CoreError::invalid("body", strip_position(&e.to_string())))?;
            Ok(v)
        }
        Err(err) => {
            let path = err.path().to_string();
            let field = if path == "." || path.is_empty() {
                "body".to_string()
            } else {
                path
            };
            let inner = err.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!("malformed JSON: {}", strip_position(&inner.to_string()))
            } else {
                strip_position(&inner.to_string())
            };
            Err(CoreError::invalid(field, message))
        }
    }
}

/// Parses a JSON value (already decoded) into `T`, naming the field under `prefix`.
pub fn from_value<T: DeserializeOwned>(prefix: &str, v: serde_json::Value) -> Result<T, CoreError> {
    let parsed: Result<T, _> = serde_path_to_error::deserialize(v);
    parsed.map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." || path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        CoreError::invalid(field, strip_position(&err.into_inner().to_string()))
    })
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A field of an update body: left out (keep), `null` (clear), or a new value.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Patch::Null,
            Some(v) => Patch::Value(v),
        })
    }
}

impl<T> Patch<T> {
    pub fn is_missing(&self) -> bool {
        matches!(self, Patch::Missing)
    }
}

/// Metadata limits from the reference: ≤16 pairs, key ≤64 chars, value ≤512 chars.
pub fn validate_metadata(field: &str, m: &Metadata) -> Result<(), CoreError> {
    if m.len() > 16 {
        return Err(CoreError::invalid_code(
            field,
            format!("at most 16 pairs are allowed, got {}", m.len()),
            "invalid_metadata",
        ));
    }
    for (k, v) in m {
        if k.is_empty() || k.chars().count() > 64 {
            return Err(CoreError::invalid_code(
                format!("{field}.{k}"),
                "keys must be 1 to 64 characters",
                "invalid_metadata",
            ));
        }
        if v.chars().count() > 512 {
            return Err(CoreError::invalid_code(
                format!("{field}.{k}"),
                "values must be at most 512 characters",
                "invalid_metadata",
            ));
        }
    }
    Ok(())
}

/// Applies a metadata patch: a string upserts, `null` deletes (and, when
/// `empty_deletes`, so does `""`). Returns the merged map, validated.
pub fn patch_metadata(
    field: &str,
    current: &Metadata,
    patch: &BTreeMap<String, Option<String>>,
    empty_deletes: bool,
) -> Result<Metadata, CoreError> {
    let mut out = current.clone();
    for (k, v) in patch {
        match v {
            Some(v) if !(empty_deletes && v.is_empty()) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {
                out.remove(k);
            }
        }
    }
    validate_metadata(field, &out)?;
    Ok(out)
}

/// A required, non-empty string of bounded length.
pub fn require_text(field: &str, s: &str, max_chars: usize) -> Result<(), CoreError> {
    if s.trim().is_empty() {
        return Err(CoreError::invalid(field, "must not be empty"));
    }
    let n = s.chars().count();
    if n > max_chars {
        return Err(CoreError::invalid(
            field,
            format!("must be at most {max_chars} characters, got {n}"),
        ));
    }
    Ok(())
}

/// An amount of money: a decimal string in minor units (cents for USD), as on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount: String,
    pub currency: String,
}

impl Money {
    pub fn validate(&self, field: &str) -> Result<(), CoreError> {
        let a = self.amount.trim();
        let valid = !a.is_empty()
            && a.chars().all(|c| c.is_ascii_digit() || c == '.')
            && a.chars().filter(|c| *c == '.').count() <= 1
            && a.chars().any(|c| c.is_ascii_digit());
        if !valid {
            return Err(CoreError::invalid(
                format!("{field}.amount"),
                format!(
                    "must be a non-negative decimal string in minor units, got {:?}",
                    self.amount
                ),
            ));
        }
        if self.currency != "USD" {
            return Err(CoreError::invalid(
                format!("{field}.currency"),
                format!("only \"USD\" is supported, got {:?}", self.currency),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
        #[serde(default)]
        note: Patch<String>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse_json::<Outer>(br#"{"name":"a","inner":{"count":"x"}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("inner.count: invalid type"),
            "{e}"
        );
        let e = parse_json::<Outer>(br#"{"name":"a","inner":{"count":1},"extra":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let e = parse_json::<Outer>(br#"{"inner":{"count":1}}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `name`"), "{e}");
        let e = parse_json::<Outer>(br#"{"name":"#).unwrap_err();
        assert!(e.to_string().contains("malformed JSON"), "{e}");
        let e = parse_json::<Outer>(br#"{"name":"a","inner":{"count":1}} x"#).unwrap_err();
        assert!(e.to_string().starts_with("body:"), "{e}");
    }

    #[test]
    fn patch_distinguishes_missing_null_and_value() {
        let o: Outer = parse_json(br#"{"name":"a","inner":{"count":1}}"#).expect("ok");
        assert_eq!(o.note, Patch::Missing);
        let o: Outer = parse_json(br#"{"name":"a","inner":{"count":1},"note":null}"#).expect("ok");
        assert_eq!(o.note, Patch::Null);
        let o: Outer = parse_json(br#"{"name":"a","inner":{"count":1},"note":"n"}"#).expect("ok");
        assert_eq!(o.note, Patch::Value("n".into()));
    }

    #[test]
    fn metadata_limits_and_patches() {
        let mut m = Metadata::new();
        for i in 0..16 {
            m.insert(format!("k{i}"), "v".into());
        }
        assert!(validate_metadata("metadata", &m).is_ok());
        m.insert("k16".into(), "v".into());
        let e = validate_metadata("metadata", &m).unwrap_err();
        assert!(matches!(
            e,
            CoreError::Invalid {
                code: Some("invalid_metadata"),
                ..
            }
        ));
        let long_key: Metadata = [("k".repeat(65), "v".to_string())].into();
        assert!(validate_metadata("metadata", &long_key).is_err());
        let long_val: Metadata = [("k".to_string(), "v".repeat(513))].into();
        assert!(validate_metadata("metadata", &long_val).is_err());

        let cur: Metadata = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let patch = [
            ("a".to_string(), None),
            ("b".to_string(), Some(String::new())),
            ("c".to_string(), Some("3".to_string())),
        ]
        .into();
        let out = patch_metadata("metadata", &cur, &patch, true).expect("valid");
        assert_eq!(out, [("c".to_string(), "3".to_string())].into());
        let out = patch_metadata("metadata", &cur, &patch, false).expect("valid");
        assert_eq!(out.get("b").map(String::as_str), Some(""));
    }

    #[test]
    fn money_must_be_a_decimal_string_in_usd() {
        let ok = Money {
            amount: "1250".into(),
            currency: "USD".into(),
        };
        assert!(ok.validate("budget").is_ok());
        let frac = Money {
            amount: "12.5".into(),
            currency: "USD".into(),
        };
        assert!(frac.validate("budget").is_ok());
        for bad in ["", "-1", "1.2.3", "ten", "."] {
            let m = Money {
                amount: bad.into(),
                currency: "USD".into(),
            };
            assert!(m.validate("budget").is_err(), "{bad:?}");
        }
        let eur = Money {
            amount: "1".into(),
            currency: "EUR".into(),
        };
        assert!(eur
            .validate("budget")
            .unwrap_err()
            .to_string()
            .contains("currency"));
    }
}
