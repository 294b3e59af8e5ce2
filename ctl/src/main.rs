//! `ocelotctl` (also usable as `kubectl-ocelot`): node status, IPAM show/check/release, validate, plan.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Ocelot command-line tool.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check manifests against every single-object rule the API server enforces, without a cluster.
    Validate {
        /// YAML or JSON file with one or more documents ("-" for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Write the CRD YAML files (generated from the API types and the validation rules).
    Crds {
        /// Folder to write into; prints to standard output when omitted.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Crds { out } => {
            for (name, yaml) in ocelot::crds::render() {
                match &out {
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
    }
}

fn validate(file: &PathBuf) -> Result<ExitCode> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
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
