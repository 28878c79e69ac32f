//! The Prometheus text exposition format, version 0.0.4.

use std::fmt::Write as _;

use crate::MetricType;

/// The `Content-Type` a `/metrics` response carries.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `# HELP` and `# TYPE` lines of one family.
pub(crate) fn write_header(out: &mut String, name: &str, help: &str, kind: MetricType) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// A label value, escaped for a double-quoted string (`\\`, `\"`, `\n`).
pub(crate) fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `name{a="x",b="y"}` (or bare `name` without labels), then a space. `extra` is an
/// additional trailing label such as a histogram's `le`.
pub(crate) fn write_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    label_names: &[&str],
    label_values: &[String],
    extra: Option<(&str, &str)>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !label_names.is_empty() || extra.is_some() {
        out.push('{');
        let mut first = true;
        let pairs = label_names
            .iter()
            .zip(label_values.iter().map(String::as_str))
            .map(|(n, v)| (*n, v))
            .chain(extra);
        for (label, value) in pairs {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(label);
            out.push_str("=\"");
            push_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

/// A float as Prometheus (Go's `ParseFloat`) reads it: `+Inf`, `-Inf`, `NaN` or decimal.
pub(crate) fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

pub(crate) fn push_u64(out: &mut String, v: u64) {
    let _ = write!(out, "{v}");
}

pub(crate) fn f64_string(v: f64) -> String {
    let mut s = String::new();
    push_f64(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        let mut s = String::new();
        push_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn help_escapes_backslash_and_newline_only() {
        let mut s = String::new();
        write_header(&mut s, "m", "a \"q\" \\ b\nc", MetricType::Gauge);
        assert_eq!(s, "# HELP m a \"q\" \\\\ b\\nc\n# TYPE m gauge\n");
    }

    #[test]
    fn floats() {
        assert_eq!(f64_string(f64::INFINITY), "+Inf");
        assert_eq!(f64_string(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f64_string(f64::NAN), "NaN");
        assert_eq!(f64_string(0.005), "0.005");
        assert_eq!(f64_string(1.0), "1");
        assert_eq!(f64_string(1e-7).parse::<f64>().ok(), Some(1e-7));
    }

    #[test]
    fn series_without_labels() {
        let mut s = String::new();
        write_series(&mut s, "m", "_sum", &[], &[], None);
        assert_eq!(s, "m_sum ");
        s.clear();
        write_series(&mut s, "m", "_bucket", &[], &[], Some(("le", "+Inf")));
        assert_eq!(s, "m_bucket{le=\"+Inf\"} ");
        s.clear();
        write_series(
            &mut s,
            "m",
            "",
            &["a", "b"],
            &["x".into(), "y".into()],
            None,
        );
        assert_eq!(s, "m{a=\"x\",b=\"y\"} ");
    }
}
