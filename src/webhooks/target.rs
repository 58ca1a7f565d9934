//! Where a webhook may be sent: public addresses only, unless private ones are allowed. The
//! host is checked when a subscription is made and again at every connection, so that a name
//! that later resolves to a private address cannot smuggle one in.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long the check at subscription time waits for DNS.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A host that resolves to no public address.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to loopback, private or otherwise non-public addresses")]
pub struct PrivateAddress {
    pub host: String,
}

/// Whether `ip` is not reachable on the public internet: loopback, private, link-local
/// (cloud metadata services), shared (carrier-grade NAT), unspecified, broadcast, multicast,
/// documentation and benchmarking ranges, unique-local IPv6, and IPv4 mapped into IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_private(IpAddr::V4(v4));
            }
            let [first, second, ..] = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && second == 0x0db8)
                // Teredo tunnels to an address it does not show.
                || (first == 0x2001 && second == 0)
        }
    }
}

/// The IPv4 address an IPv6 address stands for, where it embeds one: mapped (`::ffff:a.b.c.d`),
/// compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`) and 6to4 (`2002::/16`).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let last = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => {
            Some(last(hi, lo))
        }
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(last(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Some(last(s[6], s[7])),
        [0x2002, hi, lo, ..] => Some(last(hi, lo)),
        _ => None,
    }
}

/// Checks a subscription's URL: its host must not be, or resolve to, a private address.
/// Returns why not.
pub async fn check(url: &Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let refused = "must not be a loopback or private address (set \
                   CALLHOOK_WEBHOOK_ALLOW_PRIVATE=true to allow them)";
    match url.host() {
        Some(url::Host::Ipv4(ip)) if is_private(IpAddr::V4(ip)) => Err(refused.into()),
        Some(url::Host::Ipv6(ip)) if is_private(IpAddr::V6(ip)) => Err(refused.into()),
        Some(url::Host::Domain(host)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup =
                tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)));
            match lookup.await {
                Ok(Ok(addrs)) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() || addrs.iter().any(|a| is_private(a.ip())) {
                        Err(refused.into())
                    } else {
                        Ok(())
                    }
                }
                // Not resolvable from here (yet): each delivery checks it as it connects.
                Ok(Err(_)) | Err(_) => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Whether a delivery may connect to `url`'s host when it is an address (names are checked
/// by [`PublicResolver`] as they resolve).
pub fn literal_allowed(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_private(IpAddr::V6(ip)),
        _ => true,
    }
}

/// Resolves names for deliveries, keeping only public addresses.
#[derive(Debug, Default)]
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // All or nothing: a name with one private address among public ones is refused,
            // as when the subscription was made.
            if addrs.is_empty() || addrs.iter().any(|a| is_private(a.ip())) {
                return Err(Box::new(PrivateAddress { host }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused_and_public_ones_kept() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a9fe:a9fe",
            "2002:c0a8:101::1",
            "2001:0:4136:e378::1",
            "192.0.0.8",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_subscription_to_loopback_is_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]/hook",
            "http://localhost/hook",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(check(&url, false).await.is_err(), "{url}");
            assert!(check(&url, true).await.is_ok(), "{url}");
        }
        assert!(
            check(&Url::parse("http://93.184.215.14/").unwrap(), false)
                .await
                .is_ok()
        );
    }
}
