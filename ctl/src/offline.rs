//! Commands that need no cluster: `validate -f` and `crds`.
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Checks each document of `file` ("-": standard input); one line per document, exit 1 if any is bad.
pub fn validate(file: &Path) -> Result<ExitCode> {
    let text = read_input(file)?;
    let docs = ocelot::manifest::parse_documents(&text)?;
    let mut bad = 0;
    for (i, doc) in docs.iter().enumerate() {
        let what = format!(
            "{} {}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        match ocelot::manifest::validate(i, doc) {
            Ok(()) => println!("ok: {what}"),
            Err(e) => {
                bad += 1;
                println!("invalid: {e}");
            }
        }
    }
    println!("{} document(s), {} invalid", docs.len(), bad);
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The text of `file`, or of standard input for "-".
pub fn read_input(file: &Path) -> Result<String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// Writes the CRD files into `out`, or prints them.
pub fn crds(out: Option<&Path>) -> Result<ExitCode> {
    for (name, yaml) in ocelot::crds::render() {
        match out {
            Some(dir) => {
                let path = dir.join(&name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            None => print!("---\n{yaml}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
