//! `status`: the one-screen summary, exit 1 when something is not converged.
use std::process::ExitCode;

use anyhow::Result;
use ocelot::api::NodeNetworkState;
use ocelot::api::node::Node;
use ocelot::report::ClusterStatus;

use crate::read;
use crate::{Format, Target};

pub async fn status(target: &Target, format: Format) -> Result<ExitCode> {
    let client = target.client().await?;
    let lease = read::operator_lease(&client).await?;
    let states: Vec<NodeNetworkState> =
        read::list(&client, "NodeNetworkStates (ocelot.dev/v1alpha1)").await?;
    let nodes: Vec<Node> = read::list(&client, "Calico Nodes (nodes.projectcalico.org)").await?;
    let (ipam, _) = read::ipam(&client).await?;
    let s = ClusterStatus::compute(
        lease.as_ref(),
        &states,
        &nodes,
        &ipam.show(),
        jiff::Timestamp::now(),
    );
    if !format.print_data(&s)? {
        print!("{}", s.render());
    }
    Ok(if s.converged() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
