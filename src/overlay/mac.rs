//! The MAC address of a node's VXLAN tunnel device.
//!
//! Calico generates a random MAC once and stores it in the Node (`spec.vxlanTunnelMACAddr`);
//! every other node reads it from there for its ARP and FDB entries. Ocelot keeps the published
//! value when there is one (a node that ran Calico keeps its MAC), and otherwise **derives** the
//! MAC from the node name instead of taking randomness as input (as [`crate::wireguard::keys`]
//! does for keys, which must be secret):
//! - a MAC is not a secret, so nothing is lost by it being predictable;
//! - the operator (which publishes it) and the agent (which sets it on `vxlan.calico`) compute the
//!   same value independently, so the device can be created before the Calico Node round-trip and
//!   no state file is needed: a restart, a reinstall or a re-created Node gives the same MAC, and
//!   other nodes' ARP/FDB entries for it stay right;
//! - collisions need two node names whose SHA-256 agree in 46 bits: negligible at cluster scale.
//!
//! The derivation is fixed forever (a change would re-MAC every node): the first 6 bytes of
//! SHA-256(`"ocelot vxlan.calico " + node name`), with the multicast bit cleared and the
//! locally-administered bit set, as any generated MAC must have.
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a usable tunnel MAC.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not six hex octets separated by `:` or `-`.
    #[error("{0:?} is not a MAC address (six hex octets separated by ':')")]
    Syntax(String),
    /// A multicast (group) address cannot be a device's own address.
    #[error("{0} is a multicast MAC address")]
    Multicast(MacAddr),
    /// All zeros.
    #[error("00:00:00:00:00:00 is not a device address")]
    Zero,
}

impl MacAddr {
    /// Whether the group bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether the locally-administered bit is set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = MacError;

    /// Six hex octets separated by `:` or `-` (Go's `net.ParseMAC` for 48-bit addresses), any
    /// case. Multicast and all-zero addresses are refused: neither can be a VTEP's address.
    fn from_str(s: &str) -> Result<Self, MacError> {
        let syntax = || MacError::Syntax(s.to_string());
        let sep = if s.contains('-') { '-' } else { ':' };
        let parts: Vec<&str> = s.trim().split(sep).collect();
        if parts.len() != 6 {
            return Err(syntax());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(syntax());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| syntax())?;
        }
        let mac = MacAddr(out);
        if out == [0; 6] {
            Err(MacError::Zero)
        } else if mac.is_multicast() {
            Err(MacError::Multicast(mac))
        } else {
            Ok(mac)
        }
    }
}

/// The MAC derived from the node name (see the module comment).
pub fn derived_vxlan_mac(node: &str) -> MacAddr {
    let digest = Sha256::digest(format!("ocelot vxlan.calico {node}").as_bytes());
    let mut b = [0u8; 6];
    b.copy_from_slice(&digest[..6]);
    b[0] = (b[0] & !0x01) | 0x02;
    MacAddr(b)
}

/// The node's VXLAN tunnel MAC: the published `spec.vxlanTunnelMACAddr` when it is a usable
/// address, else [`derived_vxlan_mac`].
pub fn vxlan_mac(node: &str, published: Option<&str>) -> MacAddr {
    published
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| derived_vxlan_mac(node))
}
