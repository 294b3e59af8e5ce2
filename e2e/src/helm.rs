//! The Helm chart in tests: rendering it with the Go-built helm, reading the rendered objects, and
//! deriving each component's API calls from its source for the RBAC checks.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regex::Regex;
use serde_json::Value;

use crate::cluster::{self, helm, kubectl, kubectl_stdin, repo_root};

/// The chart's folder.
pub fn chart_dir() -> PathBuf {
    repo_root().join("helm/ocelot")
}

/// helm without a cluster (lint, template), with its config and caches in `home`.
pub fn helm_local(home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(cluster::binary("helm").unwrap_or_else(|e| panic!("{e:#}")));
    cmd.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .args(args);
    cmd.output().expect("run helm")
}

/// The documents of a multi-document YAML stream, as JSON values (empty documents dropped).
pub fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}

/// One RBAC grant: (API group, resource with subresource, verb, namespace; "" = cluster-wide).
pub type Grant = (String, String, String, String);

/// What the rendered roles bound to `subject` (a ServiceAccount name) grant. `release_ns` is
/// written as "release" so grants compare with the code's tables.
pub fn grants(docs: &[Value], subject: &str, release_ns: &str) -> BTreeSet<Grant> {
    let mut roles: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or("");
        if kind == "ClusterRole" || kind == "Role" {
            let ns = d["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
            roles.insert((ns, format!("{kind}/{name}")), d);
        }
    }
    let mut out = BTreeSet::new();
    for b in docs {
        let kind = b["kind"].as_str().unwrap_or("");
        if kind != "ClusterRoleBinding" && kind != "RoleBinding" {
            continue;
        }
        let bound = b["subjects"].as_array().into_iter().flatten().any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == subject && s["namespace"] == release_ns
        });
        if !bound {
            continue;
        }
        let ns = b["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
        let role_ns = if role_kind == "ClusterRole" {
            String::new()
        } else {
            ns.clone()
        };
        let key = (
            role_ns,
            format!(
                "{role_kind}/{}",
                b["roleRef"]["name"].as_str().unwrap_or("")
            ),
        );
        let role = roles.get(&key).unwrap_or_else(|| {
            panic!(
                "{kind} {} refers to a missing {key:?}",
                b["metadata"]["name"]
            )
        });
        let scope = match ns.as_str() {
            "" => String::new(),
            n if n == release_ns => "release".to_string(),
            n => n.to_string(),
        };
        for rule in role["rules"].as_array().into_iter().flatten() {
            for g in rule["apiGroups"].as_array().into_iter().flatten() {
                for r in rule["resources"].as_array().into_iter().flatten() {
                    for v in rule["verbs"].as_array().into_iter().flatten() {
                        out.insert((
                            g.as_str().unwrap_or("?").to_string(),
                            r.as_str().unwrap_or("?").to_string(),
                            v.as_str().unwrap_or("?").to_string(),
                            scope.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A code table row: (Rust type, API group, resource, verbs, namespace).
pub type AccessRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

/// The grants a code table asks for.
pub fn table_grants(table: &[AccessRow]) -> BTreeSet<Grant> {
    table
        .iter()
        .flat_map(|(_, g, r, verbs, ns)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string(), ns.to_string()))
        })
        .collect()
}

/// The API calls found in Rust sources (file name, text): (Rust type, "" or "status", verb).
///
/// What it understands, which is how the operator and agent are written:
/// - a binding or field `name: Api<T>` / `name: &Api<T>` and the calls `name.get/get_opt/list/
///   create/replace/replace_status/patch/patch_status/delete(...)` on it in the same file;
/// - a generic function `fn f<K>` whose `Api<K>` binding has such calls, and its calls `f::<T>(`;
/// - watches: in a file that calls `watcher(`, each `Api::<T>` and each `spawn(client, Kind::T`;
/// - `Recorder::new`, kube-runtime's Event recorder (type "Recorder": create and patch).
pub fn derive_calls(sources: &[(String, String)]) -> BTreeSet<(String, String, String)> {
    let binding = Regex::new(r"(\w+)\s*:\s*&?Api<(\w+)>").unwrap();
    let call = Regex::new(
        r"(\w+)\s*\.\s*(get_opt|get|list|create|replace_status|replace|patch_status|patch|delete)\s*\(",
    )
    .unwrap();
    let generic_fn = Regex::new(r"fn\s+(\w+)\s*<\s*K\b").unwrap();
    let turbofish = Regex::new(r"\b(\w+)::<(\w+)>\s*\(").unwrap();
    let api_turbofish = Regex::new(r"Api::<(\w+)>").unwrap();
    let kind_spawn = Regex::new(r"spawn\(\s*client\s*,\s*Kind::(\w+)").unwrap();
    let verb = |m: &str| -> (&'static str, &'static str) {
        match m {
            "get" | "get_opt" => ("", "get"),
            "list" => ("", "list"),
            "create" => ("", "create"),
            "replace" => ("", "update"),
            "replace_status" => ("status", "update"),
            "patch" => ("", "patch"),
            "patch_status" => ("status", "patch"),
            "delete" => ("", "delete"),
            _ => unreachable!(),
        }
    };
    let mut out = BTreeSet::new();
    let mut generic: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
    for (_, text) in sources {
        // (position, name, type): a call belongs to the nearest binding of its name before it.
        let names: Vec<(usize, &str, &str)> = binding
            .captures_iter(text)
            .map(|c| {
                (
                    c.get(0).unwrap().start(),
                    c.get(1).unwrap().as_str(),
                    c.get(2).unwrap().as_str(),
                )
            })
            .collect();
        for c in call.captures_iter(text) {
            let at = c.get(0).unwrap().start();
            let name = c.get(1).unwrap().as_str();
            let Some((_, _, ty)) = names.iter().rev().find(|(p, n, _)| *p < at && *n == name)
            else {
                continue;
            };
            let (sub, v) = verb(c.get(2).unwrap().as_str());
            if *ty == "K" {
                for f in generic_fn.captures_iter(text) {
                    generic.entry(f[1].to_string()).or_default().push((sub, v));
                }
            } else {
                out.insert((ty.to_string(), sub.to_string(), v.to_string()));
            }
        }
        if text.contains("watcher(") {
            for c in api_turbofish
                .captures_iter(text)
                .chain(kind_spawn.captures_iter(text))
            {
                if &c[1] != "K" {
                    for v in ["list", "watch"] {
                        out.insert((c[1].to_string(), String::new(), v.to_string()));
                    }
                }
            }
        }
        if text.contains("Recorder::new(") {
            for v in ["create", "patch"] {
                out.insert(("Recorder".to_string(), String::new(), v.to_string()));
            }
        }
    }
    for (_, text) in sources {
        for c in turbofish.captures_iter(text) {
            if let Some(calls) = generic.get(&c[1]) {
                for (sub, v) in calls {
                    out.insert((c[2].to_string(), sub.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}

/// Every `.rs` file under `dir` (recursively), as (path, text).
pub fn rust_sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p.display().to_string(), text));
            }
        }
    }
    out.sort();
    out
}

/// Where the code's calls and its table disagree: calls the table lacks, and table rows no call
/// needs (server-side apply's create is needed wherever the code patches).
pub fn check_table(calls: &BTreeSet<(String, String, String)>, table: &[AccessRow]) -> Vec<String> {
    let row = |ty: &str, sub: &str| {
        table.iter().find(|(t, _, r, _, _)| {
            *t == ty && (r.split_once('/').map(|(_, s)| s).unwrap_or("") == sub)
        })
    };
    let mut problems = Vec::new();
    for (ty, sub, v) in calls {
        match row(ty, sub) {
            Some((_, _, _, verbs, _)) if verbs.contains(&v.as_str()) => {}
            Some((_, _, r, _, _)) => {
                problems.push(format!("code calls {v} on {ty} ({r}), API_ACCESS lacks it"))
            }
            None => problems.push(format!(
                "code calls {v} on {ty}{}, API_ACCESS has no row for it",
                if sub.is_empty() {
                    String::new()
                } else {
                    format!("/{sub}")
                }
            )),
        }
    }
    for (ty, _, r, verbs, _) in table {
        let sub = r.split_once('/').map(|(_, s)| s).unwrap_or("");
        for v in *verbs {
            let used = calls.contains(&(ty.to_string(), sub.to_string(), v.to_string()))
                || (*v == "create"
                    && calls.contains(&(ty.to_string(), sub.to_string(), "patch".to_string())));
            if !used {
                problems.push(format!(
                    "API_ACCESS grants {v} on {r} ({ty}), no code calls it"
                ));
            }
        }
    }
    problems
}

// ---- shared by e2e/tests/helm_chart.rs: values, releases and objects cleaned up on drop ----

pub const NS: &str = "ocelot-test";

pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A values file that turns every optional part on.
pub const FULL_VALUES: &str = "\
operator:
  replicas: 3
  defaultIPv4PoolCIDR: 198.19.16.0/21
  nodePrefixLength: 20
  logLevel: debug
agent:
  podMTU: 1410
kubernetesServiceEndpoint: {host: 198.19.0.1, port: 6443}
metrics:
  serviceMonitor:
    enabled: true
    labels: {release: prom}
defaults:
  ipPool: {enabled: true, cidr: 198.19.16.0/21, blockSize: 26}
  bgpConfiguration: {enabled: true, asNumber: 64512}
  felixConfiguration: {enabled: true, wireguardEnabled: true}
";

pub fn render(release: &str, values: Option<&str>) -> String {
    let dir = scratch();
    let chart = chart_dir().display().to_string();
    let mut args = vec!["template", release, chart.as_str(), "--namespace", NS];
    let file = dir.path().join("values.yaml");
    let file_s = file.display().to_string();
    if let Some(v) = values {
        std::fs::write(&file, v).unwrap();
        args.extend(["-f", file_s.as_str()]);
    }
    let out = helm_local(dir.path(), &args);
    assert!(out.status.success(), "helm template: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

pub fn ensure_namespace() {
    let _ = kubectl_stdin(
        ["apply", "--server-side", "-f", "-"],
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n"),
    );
}

pub const SERVICE_MONITOR_CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
";

/// Uninstalls the release when dropped (also when the test panics).
pub struct Release(pub &'static str);

impl Release {
    pub fn install(name: &'static str, extra: &[&str]) -> Release {
        ensure_namespace();
        let chart = chart_dir().display().to_string();
        let mut args = vec!["install", name, chart.as_str(), "--namespace", NS];
        args.extend_from_slice(extra);
        let r = Release(name);
        let out = helm(&args);
        assert!(out.status.success(), "helm install {name}: {}", text(&out));
        r
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(["uninstall", self.0, "--namespace", NS]);
    }
}

pub fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = kubectl(&a);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (kind/name, resourceVersion) of every object of the release.
pub fn release_versions(release: &str) -> Vec<(String, String)> {
    let out = helm(["get", "manifest", release, "--namespace", NS]);
    assert!(out.status.success(), "helm get manifest: {}", text(&out));
    let mut v: Vec<(String, String)> = documents(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap();
            let name = d["metadata"]["name"].as_str().unwrap();
            let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
            let mut args = vec!["get", kind, name];
            if !ns.is_empty() {
                args.extend(["-n", ns]);
            }
            let o = json(&args);
            (
                format!("{kind}/{name}"),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Deletes the listed objects when dropped.
pub struct Objects(pub Vec<(&'static str, String, Option<&'static str>)>);

impl Drop for Objects {
    fn drop(&mut self) {
        for (kind, name, ns) in &self.0 {
            let mut args = vec![
                "delete",
                kind,
                name.as_str(),
                "--ignore-not-found",
                "--wait=false",
            ];
            if let Some(ns) = ns {
                args.extend(["-n", ns]);
            }
            let _ = kubectl(&args);
        }
    }
}

pub fn block(name: &str, cidr: &str, node: &str) -> String {
    let nulls = vec!["null"; 64].join(", ");
    let free = (0..64)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPAMBlock\nmetadata:\n  name: {name}\n  labels: {{ocelot.dev/node: {node}}}\n\
         spec:\n  cidr: {cidr}\n  affinity: host:{node}\n  strictAffinity: false\n  allocations: [{nulls}]\n  \
         unallocated: [{free}]\n  attributes: []\n"
    )
}

pub fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Files of a tar archive: path (without a leading "./") → (contents, mode); symlinks as their target.
pub fn tar_files(bytes: &[u8]) -> TarFiles {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mode = e.header().mode().unwrap();
        let mut data = Vec::new();
        if let Some(target) = e.link_name().unwrap() {
            data = target.to_string_lossy().as_bytes().to_vec();
        } else {
            e.read_to_end(&mut data).unwrap();
        }
        out.insert(path, (data, mode));
    }
    out
}

/// A kubeconfig for the shared cluster that authenticates with `token` only.
pub fn token_kubeconfig(dir: &Path, token: &str) -> std::path::PathBuf {
    let admin = std::fs::read_to_string(cluster::kubeconfig_path()).unwrap();
    let field = |k: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .unwrap()
            .trim_matches('"')
            .to_string()
    };
    let kc = dir.join("token.kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            field("server: "),
            field("certificate-authority: ")
        ),
    )
    .unwrap();
    kc
}

/// A child process killed when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Files of a tar archive: path → (contents, mode).
pub type TarFiles = BTreeMap<String, (Vec<u8>, u32)>;

/// Reads an OCI image layout tarball and checks it: `oci-layout`, the index's first manifest,
/// config and layers present under `blobs/sha256/` with matching digests and sizes, uncompressed
/// layers whose diff ids are their digests. Returns the index, the config and the merged files of
/// all layers (path without a leading "/" → contents and mode).
pub fn read_oci_layout(file: &Path) -> (Value, Value, TarFiles) {
    let name = file.display().to_string();
    let layout = tar_files(&std::fs::read(file).unwrap_or_else(|e| panic!("{name}: {e}")));
    let blob = |digest: &str| -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let (data, _) = layout
            .get(&format!("blobs/sha256/{hex}"))
            .unwrap_or_else(|| panic!("{name}: blob {digest} missing"));
        assert_eq!(
            sha256_hex(data),
            hex,
            "{name}: blob {digest} does not match its digest"
        );
        data.clone()
    };
    let oci_layout: Value = serde_json::from_slice(&layout["oci-layout"].0).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value = serde_json::from_slice(&layout["index.json"].0).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let m = &index["manifests"][0];
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let manifest_bytes = blob(m["digest"].as_str().unwrap());
    assert_eq!(m["size"], manifest_bytes.len(), "{name}: manifest size");
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let config_bytes = blob(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(manifest["config"]["size"], config_bytes.len());
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        config["rootfs"]["diff_ids"].as_array().unwrap().len()
    );
    let mut files = std::collections::BTreeMap::new();
    for (l, diff) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        let data = blob(l["digest"].as_str().unwrap());
        assert_eq!(l["size"], data.len());
        // Uncompressed layers: the diff id is the layer digest.
        assert_eq!(diff, &l["digest"], "{name}: diff_id");
        files.extend(tar_files(&data));
    }
    (index, config, files)
}
