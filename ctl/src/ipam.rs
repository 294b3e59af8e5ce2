//! `ipam show`, `ipam check`, `ipam release`, laid out as calicoctl's.
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use ocelot::api::IPAMBlock;
use ocelot::ipam::{BlockWrite, WriteKind};
use ocelot::report::{check_json, show_json};

use crate::read;
use crate::{Format, Target};

/// Field manager of the CLI's writes.
const FIELD_MANAGER: &str = "ocelotctl";

pub async fn show(target: &Target, show_blocks: bool, format: Format) -> Result<ExitCode> {
    let client = target.client().await?;
    let (ipam, _) = read::ipam(&client).await?;
    let report = ipam.show();
    if !format.print_data(&show_json(&report))? {
        print!("{}", report.render(show_blocks));
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 when a problem or an Ocelot finding is reported; `report` also gets the JSON.
pub async fn check(target: &Target, format: Format, report: Option<PathBuf>) -> Result<ExitCode> {
    let client = target.client().await?;
    let (ipam, _) = read::ipam(&client).await?;
    let pods = read::live_pods(&client).await?;
    let nodes = read::node_names(&client).await?;
    // Ocelot writes no IPAMHandle objects; handles live in the blocks' allocation records.
    let r = ipam.check(&pods, &nodes, &[]);
    let json = check_json(&r);
    if let Some(path) = &report {
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing the report to {} (-o)", path.display()))?;
    }
    if !format.print_data(&json)? {
        print!("{}", r.render());
        if let Some(path) = &report {
            println!("Report written to {}.", path.display());
        }
    }
    Ok(if r.problems() + r.extra_findings() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn release(target: &Target, address: IpAddr, force: bool) -> Result<ExitCode> {
    let client = target.client().await?;
    let (mut ipam, blocks) = read::ipam(&client).await?;
    let pods = read::live_pods(&client).await?;
    let nodes = read::node_names(&client).await?;
    let r = ipam.release_checked(address, &pods, &nodes, force)?;
    let w = &r.write;
    let stored = blocks
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some(w.name.as_str()))
        .ok_or_else(|| anyhow!("IPAMBlock {} vanished while releasing {address}", w.name))?;
    write_block(&client, stored, w).await?;
    if let Some(holder) = &r.holder {
        eprintln!("warning: released with --force; {holder} still uses {address}");
    }
    println!("Successfully released IP address {address}");
    Ok(ExitCode::SUCCESS)
}

/// Writes one block write of a release, conditional on the version of `stored` (the object the
/// release was computed from): a replace with its resourceVersion, or a delete with it as the
/// precondition. A newer version in the API fails the write and releases nothing.
pub async fn write_block(client: &Client, stored: &IPAMBlock, w: &BlockWrite) -> Result<()> {
    let rv = stored.metadata.resource_version.clone();
    let api: Api<IPAMBlock> = Api::all(client.clone());
    let conflict = |e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 409 => anyhow!(
            "IPAMBlock {} changed after it was read (another writer won the compare-and-swap); \
             nothing was released: run the command again",
            w.name
        ),
        _ => anyhow!("writing IPAMBlock {}: {e}; nothing was released", w.name),
    };
    match w.kind {
        WriteKind::Update => {
            let obj = ocelot::ipam::block_update(&stored.metadata, w.spec.clone());
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            api.replace(&w.name, &pp, &obj).await.map_err(conflict)?;
        }
        WriteKind::Delete => {
            // An emptied block nobody has affinity to goes, as Calico's release does.
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: rv,
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            api.delete(&w.name, &dp).await.map_err(conflict)?;
        }
        WriteKind::Create => bail!(
            "internal error: a release asked to create IPAMBlock {}; nothing was written",
            w.name
        ),
    }
    Ok(())
}
