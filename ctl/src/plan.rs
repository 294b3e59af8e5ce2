//! `plan -f FILE`: which nodes' desired state the manifests would change, applying nothing.
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use ocelot::report::plan::{ClusterObjects, plan as diff, render_plan};

use crate::read::list;
use crate::{Format, Target, offline};

pub async fn plan(target: &Target, file: &Path, format: Format) -> Result<ExitCode> {
    let docs = ocelot::manifest::parse_documents(&offline::read_input(file)?)?;
    let bad: Vec<String> = docs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            ocelot::manifest::validate(i, d)
                .err()
                .map(|e| e.to_string())
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "the API server would refuse {} document(s) of {}; fix them first (ocelotctl validate -f):\n{}",
            bad.len(),
            file.display(),
            bad.join("\n")
        );
    }
    let client = target.client().await?;
    let mut objs = ClusterObjects {
        pools: list(&client, "IPPools (projectcalico.org/v3)").await?,
        nodes: list(&client, "Calico Nodes (nodes.projectcalico.org)").await?,
        peers: list(&client, "BGPPeers (projectcalico.org/v3)").await?,
        bgp_configs: list(&client, "BGPConfigurations (projectcalico.org/v3)").await?,
        felix: list(&client, "FelixConfigurations (projectcalico.org/v3)").await?,
        affinities: list(&client, "BlockAffinities (projectcalico.org/v3)").await?,
    };
    let before = objs.states();
    for d in &docs {
        objs.apply(d).map_err(anyhow::Error::msg)?;
    }
    let changes = diff(&before, &objs.states());
    if !format.print_data(&changes)? {
        print!("{}", render_plan(&changes));
    }
    Ok(ExitCode::SUCCESS)
}
