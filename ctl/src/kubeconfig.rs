//! The API client, configured as kubectl does: `--kubeconfig`, else `KUBECONFIG` (a list of files,
//! merged), else `~/.kube/config`, else the in-cluster service account; `--context` picks a context.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// Where the cluster is.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
}

impl Target {
    /// A client for the target.
    pub async fn client(&self) -> Result<Client> {
        let opts = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let from_file = |kc: Kubeconfig, what: String| async move {
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .with_context(|| format!("{what}: check the context name (--context) and the file"))
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).with_context(|| {
                    format!("reading kubeconfig {} (--kubeconfig)", path.display())
                })?;
                from_file(kc, format!("kubeconfig {}", path.display())).await?
            }
            None => match Kubeconfig::read() {
                Ok(kc) => {
                    from_file(kc, "kubeconfig from KUBECONFIG or ~/.kube/config".into()).await?
                }
                Err(file_err) => {
                    if self.context.is_some() {
                        bail!("--context needs a kubeconfig, and none was readable: {file_err}");
                    }
                    Config::incluster().map_err(|e| {
                        anyhow::anyhow!(
                            "no kubeconfig ({file_err}) and not in a cluster ({e}): pass \
                             --kubeconfig FILE or set KUBECONFIG"
                        )
                    })?
                }
            },
        };
        Client::try_from(config).context("building the API client from the kubeconfig")
    }
}
