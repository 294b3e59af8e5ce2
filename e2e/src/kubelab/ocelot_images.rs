//! Ocelot's own images for the kube lab, under the chart's default references so `helm install` needs
//! only `pullPolicy: Never`: the workspace's binaries (debug info stripped: they are imported into
//! every node) with the shared libraries they link, found by `ldd`.
//!
//! - operator: `ocelot-operator` alone (the chart runs it as a non-root user);
//! - agent: `ocelot-agent` and `ocelot-cni`, Debian's BIRD 2 (`bird`, `birdc`) and `nft`,
//!   `boringtun-cli` for WireGuard without the kernel module, and busybox for the chart's install-cni
//!   step (`/bin/sh`, `cp`, `mv`).
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::image::{ImageBuilder, shared_libraries};
use crate::lab::find_tool;
use crate::proc::run_bounded;

/// The chart's appVersion: its default image tag.
pub const TAG: &str = "0.1.0";
pub const OPERATOR_IMAGE: &str = "ghcr.io/ocelot-net/ocelot-operator:0.1.0";
pub const AGENT_IMAGE: &str = "ghcr.io/ocelot-net/ocelot-agent:0.1.0";

/// `binary` without debug info, written into `scratch` (the debug build's binaries are ~70 MB).
fn stripped(binary: &Path, scratch: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(scratch)?;
    let name = binary.file_name().context("binary without a file name")?;
    let out = scratch.join(name);
    let strip = find_tool("strip").context("strip (binutils) not found: run scripts/setup.sh")?;
    let mut cmd = std::process::Command::new(strip);
    cmd.arg("--strip-debug").arg("-o").arg(&out).arg(binary);
    let o = run_bounded(&mut cmd, None, Duration::from_secs(120))?;
    if !o.status.success() {
        bail!(
            "strip {}: {}",
            binary.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(out)
}

/// Adds `binary` at `path` and the libraries it links at their own paths.
fn add_binary(b: &mut ImageBuilder, path: &str, binary: &Path) -> Result<()> {
    b.file(path, binary, 0o755)?;
    for lib in shared_libraries(binary)? {
        b.file(&lib.to_string_lossy(), &lib, 0o755)?;
    }
    Ok(())
}

/// The operator image from `bins` (the folder of the workspace's built binaries).
pub fn operator(bins: &Path, scratch: &Path) -> Result<ImageBuilder> {
    let mut b = ImageBuilder::new(OPERATOR_IMAGE);
    let bin = stripped(&bins.join("ocelot-operator"), scratch)?;
    add_binary(&mut b, "/usr/local/bin/ocelot-operator", &bin)?;
    b.dir("/tmp")
        .entrypoint(&["/usr/local/bin/ocelot-operator"])
        .cmd(&[]);
    Ok(b)
}

/// The agent image from `bins`; `boringtun` is the `boringtun-cli` binary to include.
pub fn agent(bins: &Path, boringtun: &Path, scratch: &Path) -> Result<ImageBuilder> {
    let mut b = ImageBuilder::new(AGENT_IMAGE);
    b.busybox()?;
    for name in ["ocelot-agent", "ocelot-cni"] {
        let bin = stripped(&bins.join(name), scratch)?;
        add_binary(&mut b, &format!("/usr/local/bin/{name}"), &bin)?;
    }
    for (tool, at) in [
        ("bird", "/usr/sbin/bird"),
        ("birdc", "/usr/sbin/birdc"),
        ("nft", "/usr/sbin/nft"),
    ] {
        let path =
            find_tool(tool).with_context(|| format!("{tool} not found: run scripts/setup.sh"))?;
        add_binary(&mut b, at, &path)?;
    }
    add_binary(&mut b, "/usr/local/bin/boringtun-cli", boringtun)?;
    // Debian's layout: /var/run is /run (the chart's socket folder is /var/run/ocelot).
    b.symlink("/var/run", "/run")
        .dir("/run")
        .dir("/tmp")
        .dir("/var/lib/ocelot")
        .entrypoint(&["/usr/local/bin/ocelot-agent"])
        .cmd(&[]);
    Ok(b)
}
