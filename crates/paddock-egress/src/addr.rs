//! Addresses the proxy must never connect to, whatever the allowlist says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` must not be connected to, or `None` if it may be.
pub(crate) fn blocked_reason(
    ip: IpAddr,
    allow_loopback: bool,
    block_private: bool,
) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => blocked_v4(v4, allow_loopback, block_private),
        IpAddr::V6(v6) => blocked_v6(v6, allow_loopback, block_private),
    }
}

fn blocked_v4(ip: Ipv4Addr, allow_loopback: bool, block_private: bool) -> Option<&'static str> {
    // 0.0.0.0/8 ("this network"): connecting to it reaches the local host on Linux.
    if ip.octets()[0] == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        (!allow_loopback).then_some("loopback")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if block_private && ip.is_private() {
        Some("private")
    } else {
        None
    }
}

fn blocked_v6(ip: Ipv6Addr, allow_loopback: bool, block_private: bool) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        (!allow_loopback).then_some("loopback")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96): judge the embedded IPv4 address a gateway would reach.
        let [.., a, b, c, d] = ip.octets();
        blocked_v4(Ipv4Addr::new(a, b, c, d), allow_loopback, block_private)
    } else if block_private && s[0] & 0xfe00 == 0xfc00 {
        Some("private")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str, allow_loopback: bool, block_private: bool) -> Option<&'static str> {
        let ip: IpAddr = s.parse().expect("test address");
        blocked_reason(ip, allow_loopback, block_private)
    }

    #[test]
    fn always_blocked_ranges() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
        ] {
            assert_eq!(reason(ip, false, false), Some(why), "{ip}");
            assert_eq!(reason(ip, false, true), Some(why), "{ip}");
        }
    }

    #[test]
    fn public_and_private_addresses() {
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "fec0::1"] {
            assert_eq!(reason(ip, false, true), None, "{ip}");
        }
        for ip in [
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fd00::1",
        ] {
            assert_eq!(reason(ip, false, false), None, "{ip}");
            assert_eq!(reason(ip, false, true), Some("private"), "{ip}");
        }
        assert_eq!(reason("172.32.0.1", false, true), None);
    }

    #[test]
    fn allow_loopback_lifts_only_loopback() {
        assert_eq!(reason("127.0.0.1", true, true), None);
        assert_eq!(reason("::1", true, true), None);
        assert_eq!(reason("169.254.169.254", true, false), Some("link-local"));
        assert_eq!(reason("0.0.0.0", true, false), Some("unspecified"));
    }
}
