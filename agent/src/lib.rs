//! Ocelot agent library: the node-side I/O layers the `ocelot-agent` binary runs.
pub mod netns;
pub mod routes;
