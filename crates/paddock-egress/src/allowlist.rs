//! Host-name allowlists: `example.com` (exact) and `*.example.com` (any subdomain).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::EgressError;

/// A request target host, normalised: lower-case name without trailing dot, or an IP address
/// (IPv4-mapped IPv6 addresses are turned into IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Host {
    /// Parses a host as found in a request target or an allowlist: a DNS name (any case,
    /// optional trailing dot), an IPv4 address, or an IPv6 address with or without brackets.
    pub(crate) fn parse(raw: &str) -> Result<Host, &'static str> {
        if let Some(inner) = raw.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or("unterminated IPv6 literal")?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip).to_canonical()))
                .map_err(|_| "invalid IPv6 literal");
        }
        let lower = raw.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Host::Ip(ip.to_canonical()));
        }
        validate_name(name)?;
        Ok(Host::Name(name.to_owned()))
    }
}

/// Checks a lower-case DNS name without trailing dot.
fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty host name");
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label in host name");
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("invalid character in host name");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("label starts or ends with '-'");
        }
    }
    // A numeric last label is no DNS name; it is an odd IP spelling ("127.1", "0x7f.1").
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        return Err("numeric host that is not a valid IP address");
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Rule {
    /// `example.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com`
    Subdomains(String),
    /// `10.0.0.5`, `[fd00::1]`
    Ip(IpAddr),
}

#[derive(Debug, Clone)]
struct Entry {
    /// The normalised pattern, reported as the reason a request was allowed.
    pattern: String,
    rule: Rule,
}

/// Which hosts a runner may reach.
///
/// Patterns are case-insensitive and may end with a dot:
/// - `example.com` allows exactly `example.com`;
/// - `*.example.com` allows any subdomain (`a.example.com`, `a.b.example.com`) but not
///   `example.com` itself — list both to allow both;
/// - an IP address (`10.0.0.5`, `fd00::1`, `[fd00::1]`) allows exactly that literal; IP
///   literals are never allowed by name patterns.
///
/// The default allowlist is empty and allows nothing.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// Builds an allowlist, rejecting the first malformed pattern (named in the error).
    pub fn new(patterns: &[String]) -> Result<Allowlist, EgressError> {
        let entries = patterns
            .iter()
            .map(|p| {
                parse_pattern(p).map_err(|reason| EgressError::InvalidPattern {
                    pattern: p.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { entries })
    }

    /// The (normalised) pattern that allows `host`, or `None` if no pattern does.
    ///
    /// `host` is a name or an IP literal (IPv6 with or without brackets), in any case,
    /// without port; malformed hosts are never allowed.
    pub fn allows(&self, host: &str) -> Option<&str> {
        let host = Host::parse(host).ok()?;
        self.entries
            .iter()
            .find(|e| match (&e.rule, &host) {
                (Rule::Ip(allowed), Host::Ip(ip)) => allowed == ip,
                (Rule::Exact(allowed), Host::Name(name)) => allowed == name,
                (Rule::Subdomains(suffix), Host::Name(name)) => {
                    name.len() > suffix.len() && name.ends_with(suffix.as_str())
                }
                _ => false,
            })
            .map(|e| e.pattern.as_str())
    }

    /// The normalised patterns, in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.pattern.as_str())
    }

    /// Whether the allowlist has no patterns (and so allows nothing).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_pattern(raw: &str) -> Result<Entry, &'static str> {
    let p = raw.trim();
    if p.is_empty() {
        return Err("empty pattern");
    }
    if p.contains("://") || p.contains('/') {
        return Err("a pattern is a host name, not a URL");
    }
    if let Some(domain) = p.strip_prefix("*.") {
        if domain.contains('*') {
            return Err("'*' is only allowed as a leading \"*.\"");
        }
        return match Host::parse(domain)? {
            Host::Name(name) => Ok(Entry {
                pattern: format!("*.{name}"),
                rule: Rule::Subdomains(format!(".{name}")),
            }),
            Host::Ip(_) => Err("a wildcard cannot apply to an IP address"),
        };
    }
    if p.contains('*') {
        return Err("'*' is only allowed as a leading \"*.\"");
    }
    match Host::parse(p)? {
        Host::Ip(ip) => Ok(Entry {
            pattern: ip.to_string(),
            rule: Rule::Ip(ip),
        }),
        Host::Name(name) => Ok(Entry {
            pattern: name.clone(),
            rule: Rule::Exact(name),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> Allowlist {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Allowlist::new(&patterns).expect("valid patterns")
    }

    #[test]
    fn exact_pattern_matches_only_that_host() {
        let a = list(&["example.com"]);
        assert_eq!(a.allows("example.com"), Some("example.com"));
        assert_eq!(a.allows("EXAMPLE.Com."), Some("example.com"));
        assert_eq!(a.allows("www.example.com"), None);
        assert_eq!(a.allows("notexample.com"), None);
        assert_eq!(a.allows("example.com.evil.net"), None);
    }

    #[test]
    fn wildcard_matches_subdomains_not_apex() {
        let a = list(&["*.PyPI.org."]);
        assert_eq!(a.patterns().collect::<Vec<_>>(), ["*.pypi.org"]);
        assert_eq!(a.allows("files.pypi.org"), Some("*.pypi.org"));
        assert_eq!(a.allows("a.b.PYPI.org"), Some("*.pypi.org"));
        assert_eq!(a.allows("pypi.org"), None);
        assert_eq!(a.allows("evilpypi.org"), None);
        assert_eq!(a.allows(".pypi.org"), None);

        let both = list(&["pypi.org", "*.pypi.org"]);
        assert_eq!(both.allows("pypi.org"), Some("pypi.org"));
        assert_eq!(both.allows("x.pypi.org"), Some("*.pypi.org"));
    }

    #[test]
    fn ip_literals_only_by_exact_literal() {
        let a = list(&["10.0.0.5", "[FD00::1]", "*.example.com"]);
        assert_eq!(a.allows("10.0.0.5"), Some("10.0.0.5"));
        assert_eq!(a.allows("::ffff:10.0.0.5"), Some("10.0.0.5"));
        assert_eq!(a.allows("[fd00::1]"), Some("fd00::1"));
        assert_eq!(a.allows("fd00:0::1"), Some("fd00::1"));
        assert_eq!(a.allows("10.0.0.6"), None);
        assert_eq!(list(&["example.com"]).allows("93.184.216.34"), None);
    }

    #[test]
    fn empty_allowlist_allows_nothing() {
        let a = Allowlist::default();
        assert!(a.is_empty());
        assert_eq!(a.allows("example.com"), None);
        assert_eq!(a.allows("127.0.0.1"), None);
    }

    #[test]
    fn malformed_hosts_are_never_allowed() {
        let a = list(&["*.example.com"]);
        for host in [
            "",
            "a..example.com",
            "a b.example.com",
            "x.example.com:443",
            "[::1",
        ] {
            assert_eq!(a.allows(host), None, "{host:?}");
        }
    }

    #[test]
    fn invalid_patterns_are_named_in_the_error() {
        for bad in [
            "",
            "*",
            "*.",
            "foo.*.com",
            "*foo.com",
            "*.*.com",
            "https://example.com",
            "example.com/path",
            "example.com:443",
            "exa mple.com",
            "a..b",
            "-bad.com",
            "*.10.0.0.1",
            "127.1",
            "[::1",
        ] {
            let err = Allowlist::new(&["ok.example".to_string(), bad.to_string()]).expect_err(bad);
            match &err {
                EgressError::InvalidPattern { pattern, .. } => assert_eq!(pattern, bad),
                other => panic!("unexpected error {other:?}"),
            }
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
