//! `ipam release --ip ADDR [--force]`: release one address by hand, refusing one that a live pod
//! or an existing node's tunnel still holds. The release is an ordinary engine release, so the
//! block write is the same compare-and-swap write the agent and operator make.
use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{BlockWrite, Ipam, LivePod, POD_HANDLE_PREFIX};

/// Why an address is not released.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseRefused {
    /// No block contains the address.
    #[error(
        "{address} is in no IPAM block, so there is nothing to release; check the address against \
         `ocelotctl ipam show --show-blocks`"
    )]
    NoBlock {
        /// The address.
        address: IpAddr,
    },
    /// Its block has it free already.
    #[error("{address} is not allocated in block {block}; there is nothing to release")]
    NotAllocated {
        /// The address.
        address: IpAddr,
        /// Its block.
        block: IpNet,
    },
    /// Something alive holds it.
    #[error(
        "{address} is in use by {holder} (handle {handle}); delete that first, or pass --force to \
         release it anyway (the holder keeps using an address IPAM may hand out again)"
    )]
    InUse {
        /// The address.
        address: IpAddr,
        /// What holds it: `pod ns/name` or `node X (tunnel address)`.
        holder: String,
        /// The allocation's handle.
        handle: String,
    },
}

/// A release to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// The address.
    pub address: IpAddr,
    /// Its handle, if the record had one.
    pub handle: Option<String>,
    /// What still held it (only with force).
    pub holder: Option<String>,
    /// The block write: replace (or, for an emptied block without affinity, delete) conditional
    /// on the version read.
    pub write: BlockWrite,
}

impl Ipam {
    /// What holds an allocated address: a pod reporting it, the pod its record names, the pod
    /// whose sandbox its handle names, or the existing node whose tunnel address it is.
    pub fn address_holder(
        &self,
        address: IpAddr,
        pods: &[LivePod],
        nodes: &HashSet<String>,
    ) -> Option<String> {
        let pod_name = |p: &LivePod| format!("pod {}/{}", p.namespace, p.name);
        if let Some(p) = pods.iter().find(|p| p.ips.contains(&address)) {
            return Some(pod_name(p));
        }
        let attr = self.address_owner(address)?;
        if let (Some(ns), Some(name)) = (attr.namespace(), attr.pod())
            && let Some(p) = pods.iter().find(|p| p.namespace == ns && p.name == name)
        {
            return Some(pod_name(p));
        }
        let handle = attr.handle()?;
        if let Some(cid) = handle.strip_prefix(POD_HANDLE_PREFIX)
            && let Some(p) = pods.iter().find(|p| p.container_id.as_deref() == Some(cid))
        {
            return Some(pod_name(p));
        }
        Ipam::tunnel_node(handle)
            .filter(|n| nodes.contains(*n))
            .map(|n| format!("node {n} (tunnel address)"))
    }

    /// Releases `address` in this engine and returns the one block write that persists it;
    /// refuses an address something alive holds unless `force`.
    pub fn release_checked(
        &mut self,
        address: IpAddr,
        pods: &[LivePod],
        nodes: &HashSet<String>,
        force: bool,
    ) -> Result<Release, ReleaseRefused> {
        let block = self
            .blocks()
            .map(|b| b.cidr())
            .find(|c| c.contains(&address))
            .ok_or(ReleaseRefused::NoBlock { address })?;
        let handle = self
            .address_owner(address)
            .ok_or(ReleaseRefused::NotAllocated { address, block })?
            .handle()
            .map(str::to_string);
        let holder = self.address_holder(address, pods, nodes);
        if let (Some(holder), false) = (&holder, force) {
            return Err(ReleaseRefused::InUse {
                address,
                holder: holder.clone(),
                handle: handle.unwrap_or_else(|| "<none>".into()),
            });
        }
        self.release_address(address);
        let write = self
            .prepare_commit()
            .into_iter()
            .find(|w| w.cidr == block)
            .expect("a release dirties its block");
        Ok(Release {
            address,
            handle,
            holder,
            write,
        })
    }
}
