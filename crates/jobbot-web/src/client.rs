//! Who is asking: the client's address and whether the request reached the proxy over TLS.
//!
//! Without `--trusted-proxy` the address is the socket's peer and `X-Forwarded-*` headers are
//! ignored (anyone can send them). With it, a request whose peer is a trusted proxy is judged by
//! the proxy's headers: the client is the rightmost `X-Forwarded-For` hop that is not itself a
//! trusted proxy, and `X-Forwarded-Proto: https` means the browser used TLS (cookies get
//! `Secure`). Limits of failed logins and token guesses are kept per client, per network and in
//! total, so neither a proxy (one peer for everyone) nor rotating IPv6 addresses (a /64 each)
//! defeats them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::AppState;

/// The proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// None: every request is judged by its socket.
    pub fn none() -> Self {
        Self::default()
    }

    /// Addresses and CIDR ranges separated by commas or spaces: `127.0.0.1, 10.0.0.0/8, ::1`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
        {
            let network = match IpNet::from_str(item) {
                Ok(network) => network,
                Err(_) => IpAddr::from_str(item).map(IpNet::from).map_err(|_| {
                    format!("{item:?} is not an IP address or a CIDR range (10.0.0.0/8)")
                })?,
            };
            networks.push(network.trunc());
        }
        Ok(Self(networks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|network| network.contains(&ip))
    }
}

/// The client of a request, as far as it can be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// `None` when the server was not given the socket's address (router tests).
    pub ip: Option<IpAddr>,
    /// The browser reached a trusted proxy over TLS.
    pub https: bool,
}

impl ClientInfo {
    /// Who the request is from, given the socket's peer.
    pub fn of(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> Self {
        let Some(peer) = peer.map(canonical) else {
            return Self {
                ip: None,
                https: false,
            };
        };
        if !trusted.contains(peer) {
            return Self {
                ip: Some(peer),
                https: false,
            };
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A hop that does not parse ends the walk: what is left of it was not written by a
            // proxy we trust, so the last trusted hop stands for the client.
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !trusted.contains(ip) {
                break;
            }
        }
        let https = headers
            .get_all("x-forwarded-proto")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .next_back()
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
        Self {
            ip: Some(client),
            https,
        }
    }

    /// The buckets an authentication failure of this client counts in: the address (a /64 for
    /// IPv6, which one host can rotate through), its network (/24, /48), and everyone.
    pub(crate) fn buckets(&self) -> [Bucket; 3] {
        match self.ip {
            Some(IpAddr::V4(ip)) => [
                Bucket::Network(IpNet::from(IpAddr::V4(ip))),
                Bucket::Network(prefix(IpAddr::V4(ip), 24)),
                Bucket::Everyone,
            ],
            Some(IpAddr::V6(ip)) => [
                Bucket::Network(prefix(IpAddr::V6(ip), 64)),
                Bucket::Network(prefix(IpAddr::V6(ip), 48)),
                Bucket::Everyone,
            ],
            None => [Bucket::Unknown, Bucket::Unknown, Bucket::Everyone],
        }
    }
}

/// A set of clients whose failures are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    Network(IpNet),
    /// Requests without a known address share one.
    Unknown,
    Everyone,
}

fn prefix(ip: IpAddr, length: u8) -> IpNet {
    IpNet::new(ip, length)
        .map(|network| network.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(hop) {
        return Some(canonical(ip));
    }
    SocketAddr::from_str(hop)
        .ok()
        .map(|address| canonical(address.ip()))
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:1.2.3.4`) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `address` only accepts connections from this machine.
pub fn is_loopback(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip == Ipv6Addr::LOCALHOST,
    }
}

/// The middleware that works out [`ClientInfo`] once per request.
pub(crate) async fn identify(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let client = ClientInfo::of(peer, request.headers(), &state.inner.trusted_proxies);
    request.extensions_mut().insert(client);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientInfo>()
            .copied()
            .unwrap_or(ClientInfo {
                ip: None,
                https: false,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn trusted_proxies_are_addresses_and_ranges() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8 ::1").unwrap();
        assert!(trusted.contains(ip("127.0.0.1")));
        assert!(trusted.contains(ip("10.20.30.40")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("::ffff:10.1.1.1")));
        assert!(!trusted.contains(ip("192.168.0.1")));
        let error = TrustedProxies::parse("10.0.0.0/8, proxy.local").unwrap_err();
        assert!(error.contains("\"proxy.local\""), "{error}");
    }

    #[test]
    fn without_a_trusted_proxy_forwarded_headers_are_ignored() {
        let forged = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let client = ClientInfo::of(Some(ip("203.0.113.7")), &forged, &TrustedProxies::none());
        assert_eq!(
            client,
            ClientInfo {
                ip: Some(ip("203.0.113.7")),
                https: false
            }
        );
        // A peer that is not the trusted proxy is not believed either.
        let trusted = TrustedProxies::parse("10.0.0.1").unwrap();
        let client = ClientInfo::of(Some(ip("203.0.113.7")), &forged, &trusted);
        assert_eq!(
            client,
            ClientInfo {
                ip: Some(ip("203.0.113.7")),
                https: false
            }
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_hop() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let proxy = Some(ip("10.0.0.1"));
        // The client put a forged hop first; the proxy appended the real address.
        let client = ClientInfo::of(
            proxy,
            &headers(&[
                ("x-forwarded-for", "6.6.6.6, 198.51.100.4"),
                ("x-forwarded-proto", "https"),
            ]),
            &trusted,
        );
        assert_eq!(
            client,
            ClientInfo {
                ip: Some(ip("198.51.100.4")),
                https: true
            }
        );
        // Two trusted proxies in a row, split over two header lines, with ports.
        let client = ClientInfo::of(
            proxy,
            &headers(&[
                ("x-forwarded-for", "[2001:db8::5]:4444"),
                ("x-forwarded-for", "10.1.1.1:80"),
                ("x-forwarded-proto", "http"),
            ]),
            &trusted,
        );
        assert_eq!(
            client,
            ClientInfo {
                ip: Some(ip("2001:db8::5")),
                https: false
            }
        );
        // Garbage stops the walk at the last trusted hop.
        let client = ClientInfo::of(
            proxy,
            &headers(&[("x-forwarded-for", "nonsense, 10.2.2.2")]),
            &trusted,
        );
        assert_eq!(client.ip, Some(ip("10.2.2.2")));
        // No header: the proxy itself.
        assert_eq!(ClientInfo::of(proxy, &HeaderMap::new(), &trusted).ip, proxy);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_per_48() {
        let one = ClientInfo {
            ip: Some(ip("2001:db8:1:2:aaaa::1")),
            https: false,
        };
        let same_host = ClientInfo {
            ip: Some(ip("2001:db8:1:2:bbbb::9")),
            https: false,
        };
        let same_site = ClientInfo {
            ip: Some(ip("2001:db8:1:3::1")),
            https: false,
        };
        assert_eq!(one.buckets(), same_host.buckets());
        assert_ne!(one.buckets()[0], same_site.buckets()[0]);
        assert_eq!(one.buckets()[1], same_site.buckets()[1]);
        let v4 = ClientInfo {
            ip: Some(ip("198.51.100.4")),
            https: false,
        };
        let neighbour = ClientInfo {
            ip: Some(ip("198.51.100.200")),
            https: false,
        };
        assert_ne!(v4.buckets()[0], neighbour.buckets()[0]);
        assert_eq!(v4.buckets()[1], neighbour.buckets()[1]);
        assert_eq!(v4.buckets()[2], Bucket::Everyone);
    }

    #[test]
    fn only_loopback_addresses_are_local() {
        assert!(is_loopback(ip("127.0.0.1")));
        assert!(is_loopback(ip("::1")));
        assert!(!is_loopback(ip("0.0.0.0")));
        assert!(!is_loopback(ip("::")));
        assert!(!is_loopback(ip("192.168.1.10")));
    }
}
