//! Whether the API server is reached without the proxy, by `NO_PROXY` as kubectl reads it.
//!
//! kubectl (Go's `httpproxy`) never proxies `localhost` or a loopback address, and skips the
//! proxy for a host `NO_PROXY` lists: `*`; an IP address or a CIDR block it falls in; a domain
//! name, which covers its subdomains too, or only them with a leading `.`; any of those with
//! `:port` to match that port only. The client library applies `NO_PROXY` to the proxy's own
//! address, so the plugin decides this itself.

use std::net::IpAddr;

/// Whether a request to `host`:`port` goes direct under `no_proxy` (the variable's value).
pub fn bypasses_proxy(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    no_proxy
        .split(',')
        .map(|entry| entry.trim().to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .any(|entry| entry == "*" || entry_matches(&entry, &host, ip, port))
}

fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if let Some((network, bits)) = entry.split_once('/') {
        return match (network.parse::<IpAddr>(), bits.parse::<u8>(), ip) {
            (Ok(network), Ok(bits), Some(ip)) => in_block(ip, network, bits),
            _ => false,
        };
    }
    let (name, wanted_port) = split_port(entry);
    if wanted_port.is_some_and(|wanted| wanted != port) {
        return false;
    }
    if let Ok(entry_ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
        return ip == Some(entry_ip);
    }
    let name = name.trim_end_matches('.');
    match name.strip_prefix('.') {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.')),
        None => {
            let name = name.strip_prefix("*.").unwrap_or(name);
            host == name
                || host
                    .strip_suffix(name)
                    .is_some_and(|rest| rest.ends_with('.'))
        }
    }
}

/// `host:port`, `[v6]:port`, or a name or address without a port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    let split = if entry.starts_with('[') {
        entry
            .rsplit_once("]:")
            .map(|(name, port)| (name.trim_start_matches('['), port))
    } else if entry.matches(':').count() == 1 {
        entry.split_once(':')
    } else {
        None
    };
    match split {
        Some((name, port)) => (name, port.parse().ok()),
        None => (entry, None),
    }
}

/// Whether `ip` is in `network`/`bits`.
fn in_block(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    let (ip, network, width) = match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => (
            u128::from(u32::from(ip)),
            u128::from(u32::from(network)),
            32,
        ),
        (IpAddr::V6(ip), IpAddr::V6(network)) => (u128::from(ip), u128::from(network), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let ignored = u32::from(width - bits);
    ip.checked_shr(ignored).unwrap_or(0) == network.checked_shr(ignored).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_never_goes_through_a_proxy() {
        assert!(bypasses_proxy("", "localhost", 6443));
        assert!(bypasses_proxy("", "127.0.0.1", 6443));
        assert!(bypasses_proxy("", "[::1]", 6443));
        assert!(!bypasses_proxy("", "10.0.0.1", 6443));
    }

    #[test]
    fn domains_cover_their_subdomains() {
        let no_proxy = "corp.example, .internal ,api.prod:6443";
        assert!(bypasses_proxy(no_proxy, "corp.example", 443));
        assert!(bypasses_proxy(no_proxy, "k8s.corp.example", 443));
        assert!(!bypasses_proxy(no_proxy, "notcorp.example", 443));
        assert!(bypasses_proxy(no_proxy, "api.cluster.internal", 443));
        assert!(!bypasses_proxy(no_proxy, "internal", 443));
        assert!(bypasses_proxy(no_proxy, "API.prod", 6443));
        assert!(!bypasses_proxy(no_proxy, "api.prod", 443));
        assert!(bypasses_proxy("*", "anything.example", 1));
        assert!(bypasses_proxy("*.corp.example", "k8s.corp.example", 1));
    }

    #[test]
    fn addresses_and_blocks() {
        let no_proxy = "10.0.0.0/8,192.168.1.7,fd00::/8,[2001:db8::1]";
        assert!(bypasses_proxy(no_proxy, "10.96.0.1", 443));
        assert!(!bypasses_proxy(no_proxy, "11.0.0.1", 443));
        assert!(bypasses_proxy(no_proxy, "192.168.1.7", 443));
        assert!(!bypasses_proxy(no_proxy, "192.168.1.8", 443));
        assert!(bypasses_proxy(no_proxy, "[fd12::1]", 443));
        assert!(bypasses_proxy(no_proxy, "2001:db8::1", 443));
        assert!(bypasses_proxy("0.0.0.0/0", "203.0.113.9", 443));
        assert!(!bypasses_proxy("10.0.0.0/40", "10.0.0.1", 443));
        assert!(bypasses_proxy("192.168.1.7:6443", "192.168.1.7", 6443));
        assert!(!bypasses_proxy("192.168.1.7:6443", "192.168.1.7", 443));
        // A name is not resolved: an address list does not cover a host name.
        assert!(!bypasses_proxy(no_proxy, "k8s.example", 443));
    }
}
