//! Ocelot agent library: the node-side layers the `ocelot-agent` binary runs.
pub mod access;
pub mod agent;
pub mod bgp;
pub mod bird;
pub mod calls;
pub mod commit;
pub mod install;
pub mod metrics;
pub mod nat;
pub mod netns;
pub mod pods;
pub mod routes;
pub mod server;
pub mod status;
pub mod watch;
pub mod wireguard_key;
