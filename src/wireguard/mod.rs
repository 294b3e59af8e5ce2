//! WireGuard: keys, the peer and routing plan of one node, and the operator's check of reported keys.
//!
//! - [`keys`]: [`PrivateKey`] / [`PublicKey`] in `wg`'s base64 form; public keys derive exactly as
//!   `wg pubkey` does. Generation takes its randomness as an argument, so this crate stays pure.
//! - [`plan`]: [`plan_wireguard`] turns a node's dataplane settings and the Calico Nodes it watches
//!   into peers, `dev`/`throw` routes for the WireGuard table and the rule selecting that table.
//! - [`uapi`]: the userspace API's requests and replies (boringtun's dialect).
//! - [`check`]: [`check_reported_key`], run by the operator before publishing a node's key.
//!
//! Only IPv4 (`wireguard.cali`) is handled.

pub mod check;
pub mod keys;
pub mod plan;
pub mod uapi;

pub use check::{KeyProblem, check_reported_key};
pub use keys::{KEY_LEN, KeyError, PrivateKey, PublicKey};
pub use plan::{
    Peer, RouteAction, RoutingRule, SkipReason, SkippedNode, TableRoute, WireguardNode,
    WireguardPlan, plan_wireguard, published_blocks, published_borrowed,
};

#[cfg(test)]
mod tests;
