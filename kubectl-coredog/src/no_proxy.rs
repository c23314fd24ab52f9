//! Which proxy reaches the API server, as kubectl decides it.
//!
//! client-go uses a kubeconfig cluster's `proxy-url` as it is, and otherwise the environment's
//! `HTTPS_PROXY` (`HTTP_PROXY` for an `http://` server) unless `NO_PROXY` exempts the server.
//! Go's `httpproxy` never proxies `localhost` or a loopback address, and skips the proxy for a
//! host `NO_PROXY` lists: `*`; an IP address or a CIDR block it falls in; a domain name, which
//! covers its subdomains too, or only them with a leading `.` or `*.`; any of those with
//! `:port` to match that port only. The client library applies `NO_PROXY` to the proxy's own
//! address instead (and refuses empty entries), so the plugin decides this itself.

use std::net::IpAddr;

use ipnet::IpNet;

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
    if entry.contains('/') {
        return match (entry.parse::<IpNet>(), ip) {
            (Ok(block), Some(ip)) => block.contains(&ip),
            _ => false,
        };
    }
    let (name, wanted_port) = split_port(entry);
    match wanted_port {
        // Go compares ports as text: one that is no number matches no request.
        Some(wanted) if wanted.parse::<u16>().ok() != Some(port) => return false,
        _ => {}
    }
    if let Ok(entry_ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
        return ip == Some(entry_ip);
    }
    let name = name.trim_end_matches('.');
    let subdomain_of = |domain: &str| {
        host.strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
    };
    match name.strip_prefix("*.").or_else(|| name.strip_prefix('.')) {
        Some(domain) => subdomain_of(domain),
        None => host == name || subdomain_of(name),
    }
}

/// `host:port`, `[v6]:port`, or a name or address without a port.
fn split_port(entry: &str) -> (&str, Option<&str>) {
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
        Some((name, port)) => (name, Some(port)),
        None => (entry, None),
    }
}

/// `no_proxy` without its empty entries (`a,b,` is `a,b`), which Go skips.
pub fn without_empty_entries(no_proxy: &str) -> String {
    no_proxy
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// The proxy for the API server at `server`: the kubeconfig cluster's `proxy-url` as it is,
/// else the environment's proxy for the server's scheme unless `no_proxy` exempts it.
pub fn proxy_for(
    server: &http::Uri,
    kubeconfig_proxy: Option<http::Uri>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<http::Uri> {
    if kubeconfig_proxy.is_some() {
        return kubeconfig_proxy;
    }
    let plain = server.scheme_str() == Some("http");
    let variables: [&str; 2] = if plain {
        ["HTTP_PROXY", "http_proxy"]
    } else {
        ["HTTPS_PROXY", "https_proxy"]
    };
    let first = |names: [&str; 2]| {
        names
            .into_iter()
            .filter_map(&env)
            .find(|value| !value.trim().is_empty())
    };
    let proxy = first(variables)?.trim().parse::<http::Uri>().ok()?;
    let no_proxy = first(["NO_PROXY", "no_proxy"]).unwrap_or_default();
    let port = server.port_u16().unwrap_or(if plain { 80 } else { 443 });
    let direct = server
        .host()
        .is_some_and(|host| bypasses_proxy(&no_proxy, host, port));
    (!direct).then_some(proxy)
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
        assert!(!bypasses_proxy("*.corp.example", "corp.example", 1));
        assert!(!bypasses_proxy("api.prod:https", "api.prod", 443));
    }

    #[test]
    fn empty_entries_are_dropped() {
        assert_eq!(without_empty_entries("a,b,"), "a,b");
        assert_eq!(without_empty_entries(",a,, b"), "a, b");
        assert_eq!(without_empty_entries(""), "");
    }

    #[test]
    fn the_proxy_is_chosen_as_client_go_does() {
        let server: http::Uri = "https://10.20.0.1:6443".parse().unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let corporate = env(&[("HTTPS_PROXY", "http://proxy.corp:3128")]);
        assert_eq!(
            proxy_for(&server, None, corporate).map(|uri| uri.to_string()),
            Some("http://proxy.corp:3128/".to_owned())
        );
        // NO_PROXY names the server, not the proxy.
        let exempt = env(&[
            ("HTTPS_PROXY", "http://10.1.2.3:3128"),
            ("NO_PROXY", "10.20.0.0/16,"),
        ]);
        assert_eq!(proxy_for(&server, None, exempt), None);
        let proxy_listed = env(&[
            ("https_proxy", "http://10.1.2.3:3128"),
            ("no_proxy", "10.1.0.0/16"),
        ]);
        assert!(proxy_for(&server, None, proxy_listed).is_some());
        // A kubeconfig's proxy-url is used whatever NO_PROXY says.
        let kubeconfig_proxy: http::Uri = "socks5://jump:1080".parse().unwrap();
        let everything_exempt = env(&[("NO_PROXY", "*")]);
        assert_eq!(
            proxy_for(&server, Some(kubeconfig_proxy.clone()), everything_exempt),
            Some(kubeconfig_proxy)
        );
        // HTTP_PROXY is for http:// servers only.
        let http_only = env(&[("HTTP_PROXY", "http://proxy.corp:3128")]);
        assert_eq!(proxy_for(&server, None, http_only), None);
        let plain: http::Uri = "http://10.20.0.1:8080".parse().unwrap();
        let http_only = env(&[("HTTP_PROXY", "http://proxy.corp:3128")]);
        assert!(proxy_for(&plain, None, http_only).is_some());
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
