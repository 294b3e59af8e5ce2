//! WireGuard's cross-platform userspace API, the text protocol a userspace implementation
//! (boringtun) serves on `/var/run/wireguard/<interface>.sock`: requests rendered from the plan,
//! `get=1` replies parsed into values the agent diffs against the plan.
//!
//! boringtun's dialect (feasibility.md §3, and its `device/api.rs`): `get` prints
//! `own_public_key` and never `private_key`; `last_handshake_time_sec` counts seconds *since* the
//! handshake; a `set` that names a peer it already has panics its worker ("Modifying existing
//! peers is not yet supported"), and `remove`/`endpoint`/`keepalive` carry over from one peer
//! section to the next. So every request here changes at most one peer, and a changed peer is
//! removed and added again.
use std::net::SocketAddrV4;

use ipnet::Ipv4Net;

use super::keys::{KeyError, PrivateKey, PublicKey};
use super::plan::Peer;

/// The request that reads the device.
pub const GET: &str = "get=1\n\n";

/// Why a reply is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UapiError {
    /// The device answered with a non-zero `errno`.
    #[error("the WireGuard device refused the request: errno={0}")]
    Errno(i32),
    /// The reply ended without `errno=`.
    #[error("the WireGuard device's reply has no errno line")]
    NoErrno,
    /// A line is not `key=value`, or its value does not parse.
    #[error("the WireGuard device's reply line {line:?} is not understood: {why}")]
    Line { line: String, why: String },
    /// A key is not 64 hex digits.
    #[error("the WireGuard device's reply has a bad key: {0}")]
    Key(#[from] KeyError),
}

/// The device-level settings: key, port, firewall mark.
pub fn set_device(private_key: &PrivateKey, listen_port: u16, fwmark: u32) -> String {
    format!(
        "set=1\nprivate_key={}\nlisten_port={listen_port}\nfwmark={fwmark}\n\n",
        private_key.to_hex()
    )
}

/// Adds `peer` (which the device must not have yet).
pub fn add_peer(peer: &Peer) -> String {
    let mut s = format!(
        "set=1\npublic_key={}\nendpoint={}\nreplace_allowed_ips=true\n",
        peer.public_key.to_hex(),
        peer.endpoint
    );
    for ip in &peer.allowed_ips {
        s += &format!("allowed_ip={ip}\n");
    }
    if let Some(k) = peer.persistent_keepalive {
        s += &format!("persistent_keepalive_interval={k}\n");
    }
    s + "\n"
}

/// Removes the peer with `key`.
pub fn remove_peer(key: &PublicKey) -> String {
    format!("set=1\npublic_key={}\nremove=true\n\n", key.to_hex())
}

/// What the device reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// The public key of the device's private key; None before one is set.
    pub own_public_key: Option<PublicKey>,
    /// None while no port is open.
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    pub peers: Vec<PeerState>,
}

/// One peer as the device reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddrV4>,
    pub allowed_ips: Vec<Ipv4Net>,
    pub persistent_keepalive: Option<u16>,
    /// Seconds since the last handshake (boringtun's meaning); None before the first.
    pub since_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl PeerState {
    /// Whether the device already runs `peer` exactly (so it is left alone, session and all).
    pub fn matches(&self, peer: &Peer) -> bool {
        let mut have = self.allowed_ips.clone();
        have.sort();
        let mut want = peer.allowed_ips.clone();
        want.sort();
        self.public_key == peer.public_key
            && self.endpoint == Some(peer.endpoint)
            && have == want
            && self.persistent_keepalive.filter(|k| *k > 0) == peer.persistent_keepalive
    }
}

/// Checks a `set` reply: `errno=0` is success.
pub fn parse_errno(reply: &str) -> Result<(), UapiError> {
    for line in reply.lines() {
        if let Some(v) = line.strip_prefix("errno=") {
            let n: i32 = v.trim().parse().map_err(|_| UapiError::Line {
                line: line.into(),
                why: "not a number".into(),
            })?;
            return if n == 0 {
                Ok(())
            } else {
                Err(UapiError::Errno(n))
            };
        }
    }
    Err(UapiError::NoErrno)
}

fn value<T: std::str::FromStr>(line: &str, v: &str) -> Result<T, UapiError>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e: T::Err| UapiError::Line {
        line: line.into(),
        why: e.to_string(),
    })
}

/// Parses a `get=1` reply. Unknown keys are skipped (implementations add their own), IPv6
/// allowed IPs are ignored (only `wireguard.cali`, IPv4, is handled).
pub fn parse_get(reply: &str) -> Result<DeviceState, UapiError> {
    let mut dev = DeviceState::default();
    let mut errno_seen = false;
    for line in reply.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((k, v)) = line.split_once('=') else {
            return Err(UapiError::Line {
                line: line.into(),
                why: "no '='".into(),
            });
        };
        let peer = dev.peers.last_mut();
        match (k, peer) {
            ("errno", _) => {
                let n: i32 = value(line, v)?;
                if n != 0 {
                    return Err(UapiError::Errno(n));
                }
                errno_seen = true;
            }
            ("own_public_key", _) => dev.own_public_key = Some(PublicKey::from_hex(v)?),
            ("listen_port", _) => dev.listen_port = Some(value(line, v)?).filter(|p| *p != 0),
            ("fwmark", _) => dev.fwmark = Some(value(line, v)?),
            ("public_key", _) => dev.peers.push(PeerState {
                public_key: PublicKey::from_hex(v)?,
                endpoint: None,
                allowed_ips: Vec::new(),
                persistent_keepalive: None,
                since_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            }),
            ("endpoint", Some(p)) => p.endpoint = v.parse().ok(),
            ("allowed_ip", Some(p)) => {
                if let Ok(net) = v.parse::<Ipv4Net>() {
                    p.allowed_ips.push(net);
                }
            }
            ("persistent_keepalive_interval", Some(p)) => {
                p.persistent_keepalive = Some(value(line, v)?)
            }
            ("last_handshake_time_sec", Some(p)) => p.since_handshake = Some(value(line, v)?),
            ("rx_bytes", Some(p)) => p.rx_bytes = value(line, v)?,
            ("tx_bytes", Some(p)) => p.tx_bytes = value(line, v)?,
            _ => {}
        }
    }
    if !errno_seen {
        return Err(UapiError::NoErrno);
    }
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PrivateKey {
        PrivateKey::generate([b; 32])
    }

    fn peer() -> Peer {
        Peer {
            node: "node2".into(),
            public_key: key(2).public_key(),
            endpoint: "198.19.0.3:51820".parse().unwrap(),
            allowed_ips: vec!["198.19.21.64/26".parse().unwrap()],
            persistent_keepalive: Some(25),
        }
    }

    #[test]
    fn requests_change_one_thing_each() {
        let k = key(1);
        assert_eq!(
            set_device(&k, 51820, 0x100000),
            format!(
                "set=1\nprivate_key={}\nlisten_port=51820\nfwmark=1048576\n\n",
                k.to_hex()
            )
        );
        let p = peer();
        let hex = p.public_key.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(
            add_peer(&p),
            format!(
                "set=1\npublic_key={hex}\nendpoint=198.19.0.3:51820\nreplace_allowed_ips=true\n\
                 allowed_ip=198.19.21.64/26\npersistent_keepalive_interval=25\n\n"
            )
        );
        assert_eq!(
            remove_peer(&p.public_key),
            format!("set=1\npublic_key={hex}\nremove=true\n\n")
        );
    }

    #[test]
    fn a_boringtun_get_reply_reads_back_as_the_peer() {
        let p = peer();
        let own = key(1).public_key();
        let reply = format!(
            "own_public_key={}\nlisten_port=51820\nfwmark=1048576\npublic_key={}\n\
             persistent_keepalive_interval=25\nendpoint=198.19.0.3:51820\n\
             allowed_ip=198.19.21.64/26\nallowed_ip=fd00::/64\nlast_handshake_time_sec=10\n\
             last_handshake_time_nsec=5\nrx_bytes=92\ntx_bytes=148\nerrno=0\n\n",
            own.to_hex(),
            p.public_key.to_hex()
        );
        let dev = parse_get(&reply).unwrap();
        assert_eq!(dev.own_public_key, Some(own));
        assert_eq!(dev.listen_port, Some(51820));
        assert_eq!(dev.fwmark, Some(0x100000));
        assert_eq!(dev.peers.len(), 1);
        let got = &dev.peers[0];
        assert!(got.matches(&p), "{got:?}");
        assert_eq!(got.since_handshake, Some(10));
        assert_eq!((got.rx_bytes, got.tx_bytes), (92, 148));

        let mut moved = p.clone();
        moved.endpoint = "198.19.0.9:51820".parse().unwrap();
        assert!(!got.matches(&moved));
        let mut more = p.clone();
        more.allowed_ips.push("198.19.21.128/26".parse().unwrap());
        assert!(!got.matches(&more));
        let mut quiet = p;
        quiet.persistent_keepalive = None;
        assert!(!got.matches(&quiet));
    }

    #[test]
    fn errors_name_what_failed() {
        assert_eq!(parse_errno("errno=0\n\n"), Ok(()));
        assert_eq!(parse_errno("errno=22\n\n"), Err(UapiError::Errno(22)));
        assert_eq!(parse_errno(""), Err(UapiError::NoErrno));
        assert_eq!(parse_get("listen_port=1\n"), Err(UapiError::NoErrno));
        assert!(matches!(
            parse_get("listen_port=x\nerrno=0\n"),
            Err(UapiError::Line { .. })
        ));
        assert!(matches!(
            parse_get("public_key=abc\nerrno=0\n"),
            Err(UapiError::Key(KeyError::NotHex(3)))
        ));
        // A fresh device: no key, no port, no peers.
        assert_eq!(parse_get("errno=0\n\n"), Ok(DeviceState::default()));
    }

    #[test]
    fn hex_keys_round_trip() {
        let k = key(7).public_key();
        assert_eq!(PublicKey::from_hex(&k.to_hex()), Ok(k));
        assert_eq!(
            PublicKey::from_hex(&"zz".repeat(32)),
            Err(KeyError::NotHex(64))
        );
    }
}
