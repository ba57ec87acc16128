//! Networks in CIDR notation, as access rules list them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// A network in CIDR notation: `10.0.0.0/8`, `fd00::/8`, or a bare address for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, with no bits set past the prefix.
    addr: IpAddr,
    /// Leading bits that must match.
    prefix: u8,
}

/// Why a CIDR network cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    Address(String),
    #[error("prefix `/{0}` is not a number")]
    Prefix(String),
    #[error("prefix /{prefix} is longer than the {max} bits of the address")]
    PrefixTooLong { prefix: u8, max: u8 },
    #[error("`{given}` has bits set past its prefix; the network is `{network}`")]
    HostBits { given: String, network: Cidr },
}

fn mask_v4(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

fn mask_v6(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p)),
    }
}

impl Cidr {
    /// Whether `ip` is in this network. IPv4 peers seen as IPv4-mapped IPv6 addresses (on a
    /// dual-stack listener) match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| CidrError::Address(addr_text.to_owned()))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p.parse().map_err(|_| CidrError::Prefix(p.to_owned()))?,
        };
        if prefix > max {
            return Err(CidrError::PrefixTooLong { prefix, max });
        }
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix))),
        };
        let cidr = Cidr {
            addr: network,
            prefix,
        };
        // `10.1.2.3/8` is most likely a typo for a host or for `10.0.0.0/8`: say which.
        if network != addr {
            return Err(CidrError::HostBits {
                given: s.to_owned(),
                network: cidr,
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_their_addresses() {
        let cases = [
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1/32", "127.0.0.1", true),
            ("127.0.0.1/32", "127.0.0.2", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("192.168.1.0/24", "::ffff:192.168.1.7", true),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1/128", "::1", true),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", false),
        ];
        for (net, addr, want) in cases {
            assert_eq!(
                net.parse::<Cidr>().unwrap().contains(addr.parse().unwrap()),
                want,
                "{net} ∋ {addr}"
            );
        }
    }

    #[test]
    fn bad_networks_say_why() {
        assert_eq!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::Address("10.0.0".into()))
        );
        assert_eq!(
            "10.0.0.0/x".parse::<Cidr>(),
            Err(CidrError::Prefix("x".into()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong {
                prefix: 33,
                max: 32
            })
        );
        let err = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
        assert!("fd00::/129".parse::<Cidr>().is_err());
    }
}
