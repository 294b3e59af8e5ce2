//! Ocelot core: everything that decides, nothing that does I/O.
//!
//! The operator, agent and CLI crates read the world, call into this crate, and write the result.
pub mod api;
pub mod bgp;
pub mod cni;
pub mod control;
pub mod crds;
pub mod desired;
pub mod index;
pub mod ipam;
pub mod manifest;
pub mod naming;
pub mod nat;
pub mod overlay;
pub mod report;
pub mod rollup;
pub mod routes;
pub mod selector;
#[cfg(test)]
mod testutil;
pub mod validation;
pub mod values;
pub mod wireguard;
