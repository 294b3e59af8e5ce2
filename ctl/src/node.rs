//! `node status [NODE]`.
use std::process::ExitCode;

use anyhow::{Result, bail};
use ocelot::api::NodeNetworkState;
use ocelot::report::NodeStatus;

use crate::read;
use crate::{Format, Target};

/// Prints calicoctl's `node status` screen for `node`; without a name, for this machine's node if
/// it has a NodeNetworkState, else for every node (each under a `Node <name>:` line).
pub async fn status(target: &Target, node: Option<&str>, format: Format) -> Result<ExitCode> {
    let client = target.client().await?;
    let states: Vec<NodeNetworkState> = match node {
        Some(n) => match read::node_state(&client, n).await? {
            Some(s) => vec![s],
            None => bail!(
                "no NodeNetworkState {n}: is {n} a node of this cluster (kubectl get nodes), and is \
                 ocelot-operator running (it creates one per node)?"
            ),
        },
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let here = match host.trim() {
                "" => None,
                h => read::node_state(&client, h).await?,
            };
            match here {
                Some(s) => vec![s],
                None => read::list(&client, "NodeNetworkStates (ocelot.dev/v1alpha1)").await?,
            }
        }
    };
    if states.is_empty() {
        bail!(
            "no NodeNetworkStates in the cluster: is ocelot-operator running (it creates one per node)?"
        );
    }
    let views: Vec<NodeStatus> = states.iter().map(NodeStatus::of).collect();
    let data_printed = if views.len() == 1 {
        format.print_data(&views[0])?
    } else {
        format.print_data(&views)?
    };
    if !data_printed {
        let many = views.len() > 1;
        for v in &views {
            if many {
                println!("Node {}:", v.node);
            }
            print!("{}", v.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}
