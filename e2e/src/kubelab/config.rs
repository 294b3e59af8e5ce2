//! The configuration files of one kube lab node: containerd's config, kubelet's KubeletConfiguration,
//! kubeconfigs and the reference CNI conflist. Plain text renderers, so each setting and the reason for it
//! are in one place.

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::json;

use super::image::PAUSE_IMAGE;

/// Where Debian's runc lives.
pub const RUNC: &str = "/usr/sbin/runc";
/// Where Debian's CNI reference plugins live.
pub const REFERENCE_CNI_BIN: &str = "/usr/lib/cni";

/// containerd 2.x (config version 3) for one node: every path under the node's folder, CRI's sandbox image
/// pinned to the local pause image (never pulled), the streaming server on the node's loopback. CNI from
/// the standard /etc/cni/net.d and /opt/cni/bin (the node's own, in its mount namespace), then Debian's
/// reference plugins.
pub fn containerd_toml(node_dir: &Path) -> String {
    let d = node_dir.display();
    format!(
        r#"version = 3
root = "{d}/containerd/root"
state = "{d}/containerd/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "{d}/containerd/opt"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "{PAUSE_IMAGE}"
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    # Work-around: without CAP_SYS_RESOURCE (as on CI's machines) nobody may lower oom_score_adj, and CRI
    # asks -998 for every sandbox: runc then fails with "can't get final child's PID from pipe: EOF".
    # This clamps the scores to containerd's own.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "{RUNC}"
          Root = "{d}/runc"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/opt/cni/bin", "{REFERENCE_CNI_BIN}"]
      conf_dir = "/etc/cni/net.d"
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"#,
    )
}

/// kubelet's KubeletConfiguration for one node.
pub fn kubelet_yaml(
    node_ip: Ipv4Addr,
    cgroup_root: &str,
    containerd_sock: &Path,
    ca: &Path,
) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Work-around: kubelet 1.37 refuses cgroup v1 hosts unless told otherwise (CI's machines are v1 hybrid).
failCgroupV1: false
cgroupDriver: cgroupfs
# Each node's pods live below a cgroup of their own (made by the lab), so nodes and runs do not mix.
cgroupRoot: /{cgroup_root}
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
address: {node_ip}
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
containerRuntimeEndpoint: unix://{sock}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
clusterDomain: cluster.local
# No DNS for pods: nothing in the lab may resolve names through the machine's resolver.
clusterDNS: []
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{}}
evictionPressureTransitionPeriod: 10s
serializeImagePulls: false
localStorageCapacityIsolation: false
protectKernelDefaults: false
# No iptables on the lab machines, and no kube-proxy.
makeIPTablesUtilChains: false
registerNode: true
syncFrequency: 10s
nodeStatusUpdateFrequency: 10s
"#,
        sock = containerd_sock.display(),
        ca = ca.display(),
    )
}

/// A kubeconfig for a client certificate.
pub fn kubeconfig(server: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ocelot-lab\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca:?}\nusers:\n- name: user\n  user:\n    client-certificate: {cert:?}\n    \
         client-key: {key:?}\ncontexts:\n- name: ocelot-lab\n  context:\n    cluster: ocelot-lab\n    user: user\n    \
         namespace: default\ncurrent-context: ocelot-lab\n"
    )
}

/// The reference CNI conflist: a `cni0` bridge per node (the pods' gateway) and host-local addresses from
/// the node's pod CIDR; routes between nodes' CIDRs are the lab's job (see `KubeLab`).
pub fn bridge_conflist(pod_cidr: &str, mtu: u32) -> String {
    serde_json::to_string_pretty(&json!({
        "cniVersion": "1.0.0",
        "name": "ocelot-lab",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "mtu": mtu,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }],
    }))
    .expect("static JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_arounds_are_in_the_configs() {
        let c = containerd_toml(Path::new("/x/node1"));
        assert!(c.contains("restrict_oom_score_adj = true"));
        assert!(c.contains(r#"address = "/x/node1/containerd.sock""#));
        assert!(c.contains(&format!(r#"sandbox = "{PAUSE_IMAGE}""#)));
        let k = kubelet_yaml(
            Ipv4Addr::new(198, 19, 0, 2),
            "oc1-node1",
            Path::new("/x/s"),
            Path::new("/ca"),
        );
        assert!(k.contains("failCgroupV1: false") && k.contains("cgroupRoot: /oc1-node1"));
        assert!(k.contains("address: 198.19.0.2"));
        let v: serde_json::Value =
            serde_json::from_str(&bridge_conflist("198.19.17.0/24", 1460)).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "198.19.17.0/24"
        );
    }
}
