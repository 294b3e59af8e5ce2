//! The Helm chart (`helm/ocelot`) with the Go-built helm and kubectl against the real API server:
//! lint, server-side dry-run of the rendered manifests, install/upgrade/no-op upgrade/uninstall,
//! RBAC derived from the code,
//! the values schema, the chart's CRDs and version.
//!
//! The test API server has no kubelet or controller-manager: Pods never run and nothing becomes
//! ready, so no `--wait`. Each test uses its own release name and cleans up (also on panic).
use std::collections::BTreeSet;
use std::path::Path;

use ocelot_e2e::cluster::{check, helm, kubectl, kubectl_stdin, repo_root};
use ocelot_e2e::helm::*;
use serde_json::Value;

#[path = "../../operator/src/access.rs"]
mod operator_access;

#[test]
fn lint_strict_passes_with_default_and_full_values() {
    let dir = scratch();
    let chart = chart_dir().display().to_string();
    let out = helm_local(dir.path(), &["lint", "--strict", &chart]);
    assert!(out.status.success(), "helm lint --strict: {}", text(&out));
    let file = dir.path().join("full.yaml");
    std::fs::write(&file, FULL_VALUES).unwrap();
    let out = helm_local(
        dir.path(),
        &[
            "lint",
            "--strict",
            &chart,
            "-f",
            &file.display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "helm lint --strict -f full: {}",
        text(&out)
    );
}

/// Both daemons run before pod networking exists: on the host network, and (when set) with the
/// API server's own address instead of the `kubernetes` Service, which needs kube-proxy.
#[test]
fn operator_and_agent_run_on_the_host_network_and_can_bypass_the_service_address() {
    let docs = |values: Option<&str>| -> Vec<Value> {
        render("net", values)
            .split("\n---")
            .filter_map(|d| serde_yaml::from_str::<Value>(d).ok())
            .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "DaemonSet")))
            .collect()
    };
    let env_of = |d: &Value, name: &str| -> Option<String> {
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap_or_default().to_string())
    };
    let plain = docs(None);
    assert_eq!(plain.len(), 2, "{plain:?}");
    for d in &plain {
        assert_eq!(
            d["spec"]["template"]["spec"]["hostNetwork"], true,
            "{}",
            d["kind"]
        );
        assert_eq!(env_of(d, "KUBERNETES_SERVICE_HOST"), None, "{}", d["kind"]);
    }
    for d in &docs(Some(FULL_VALUES)) {
        assert_eq!(
            env_of(d, "KUBERNETES_SERVICE_HOST").as_deref(),
            Some("198.19.0.1")
        );
        assert_eq!(
            env_of(d, "KUBERNETES_SERVICE_PORT").as_deref(),
            Some("6443")
        );
    }
}

#[test]
fn chart_version_is_the_workspace_version() {
    let cargo = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let ws = cargo
        .split("[workspace.package]")
        .nth(1)
        .expect("[workspace.package]");
    let version = ws
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = "))
        .expect("workspace version")
        .trim_matches('"');
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
}

#[test]
fn chart_crds_and_repo_crds_are_what_the_code_generates() {
    let rendered = ocelot::crds::render();
    let want: BTreeSet<(String, String)> = rendered.into_iter().collect();
    for dir in [repo_root().join("crds"), chart_dir().join("crds")] {
        let have: BTreeSet<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        assert!(
            have == want,
            "{} is stale; refresh with: cargo run -p ocelot-ctl -- crds --out crds && \
             cargo run -p ocelot-ctl -- crds --out helm/ocelot/crds",
            dir.display()
        );
    }
}

#[test]
fn values_schema_refuses_a_wrong_type_naming_the_field() {
    let dir = scratch();
    let chart = chart_dir().display().to_string();
    for (values, field) in [
        ("operator:\n  replicas: two\n", "replicas"),
        ("agent:\n  podMTU: \"1410\"\n", "podMTU"),
        ("defaults:\n  ipPool:\n    enabled: yes-please\n", "enabled"),
    ] {
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, values).unwrap();
        let out = helm_local(
            dir.path(),
            &["template", "t", &chart, "-f", &file.display().to_string()],
        );
        let msg = text(&out);
        assert!(!out.status.success(), "{values:?} accepted");
        assert!(
            msg.contains("values don't meet the specifications of the schema")
                && msg.contains(field),
            "{values:?}: the error must name {field}: {msg}"
        );
    }
}

#[test]
fn rendered_manifests_apply_with_server_dry_run_without_warnings() {
    ensure_namespace();
    // The ServiceMonitor kind of the full values file, as prometheus-operator serves it (schema
    // left open): the dry run needs the kind to exist.
    check(
        kubectl_stdin(["apply", "--server-side", "-f", "-"], SERVICE_MONITOR_CRD),
        "ServiceMonitor CRD",
    );
    check(
        kubectl([
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "--timeout=60s",
        ]),
        "ServiceMonitor CRD Established",
    );
    for (name, values) in [("default", None), ("full", Some(FULL_VALUES))] {
        let manifest = render("dry", values);
        let out = kubectl_stdin(
            [
                "apply",
                "--server-side",
                "--field-manager=helm-dry-run",
                "--dry-run=server",
                "-f",
                "-",
            ],
            &manifest,
        );
        assert!(out.status.success(), "{name} values: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.to_lowercase().contains("warning"),
            "{name} values: warnings: {stderr}"
        );
    }
}

#[test]
fn no_role_has_a_wildcard() {
    for values in [None, Some(FULL_VALUES)] {
        for d in documents(&render("wild", values)) {
            let kind = d["kind"].as_str().unwrap_or("");
            if kind != "ClusterRole" && kind != "Role" {
                continue;
            }
            for rule in d["rules"].as_array().expect("rules") {
                for key in [
                    "apiGroups",
                    "resources",
                    "verbs",
                    "resourceNames",
                    "nonResourceURLs",
                ] {
                    for v in rule[key].as_array().into_iter().flatten() {
                        assert!(
                            !v.as_str().unwrap_or("").contains('*'),
                            "{kind} {}: wildcard in {key}: {rule}",
                            d["metadata"]["name"]
                        );
                    }
                }
            }
            assert!(d.get("aggregationRule").is_none(), "aggregated role");
        }
    }
}

fn rbac_check(component: &str, crate_dir: &str, table: &[AccessRow]) {
    let calls = derive_calls(&rust_sources(&repo_root().join(crate_dir)));
    assert!(!calls.is_empty(), "no API calls found in {crate_dir}");
    let problems = check_table(&calls, table);
    assert!(
        problems.is_empty(),
        "{crate_dir} and its API_ACCESS disagree:\n{}",
        problems.join("\n")
    );
    let docs = documents(&render("rbac", None));
    let have = grants(&docs, &format!("rbac-{component}"), NS);
    let want = table_grants(table);
    let missing: Vec<_> = want.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the chart's roles for {component} differ from {crate_dir}'s API_ACCESS: \
         missing {missing:?}, not used by the code {extra:?}"
    );
}

#[test]
fn operator_roles_grant_exactly_the_operators_calls() {
    rbac_check("operator", "operator/src", operator_access::API_ACCESS);
}

#[test]
fn agent_role_grants_exactly_the_agents_calls() {
    rbac_check("agent", "agent/src", ocelot_agent::access::API_ACCESS);
}

#[test]
fn a_new_call_the_table_lacks_is_found() {
    // The derivation itself: code that starts using Secrets, or deleting pools, must fail the check.
    let code = "fn f(c: Client) {\n  let s: Api<Secret> = Api::all(c);\n  s.create(&pp, &x);\n  \
                let p: Api<IPPool> = Api::all(c);\n  p\n    .delete(\"a\", &dp);\n}\n";
    let calls = derive_calls(&[("x.rs".into(), code.into())]);
    let problems = check_table(&calls, ocelot_agent::access::API_ACCESS);
    assert!(
        problems.iter().any(|p| p.contains("Secret"))
            && problems.iter().any(|p| p.contains("delete on IPPool")),
        "{problems:?}"
    );
}

#[test]
fn install_upgrade_noop_upgrade_and_uninstall() {
    let chart = chart_dir().display().to_string();
    let release = Release::install("inst", &[]);
    let deploy = json(&["get", "deployment", "inst-operator", "-n", NS]);
    assert_eq!(deploy["spec"]["replicas"], 2);
    json(&["get", "daemonset", "inst-agent", "-n", NS]);
    json(&["get", "validatingadmissionpolicy", "inst-agent-own-node"]);

    let upgrade = |set: &str| {
        let out = helm(["upgrade", "inst", &chart, "--namespace", NS, "--set", set]);
        assert!(
            out.status.success(),
            "helm upgrade --set {set}: {}",
            text(&out)
        );
    };
    upgrade("operator.replicas=3");
    let deploy = json(&["get", "deployment", "inst-operator", "-n", NS]);
    assert_eq!(
        deploy["spec"]["replicas"], 3,
        "upgrade changed the replicas"
    );
    let before = release_versions("inst");
    upgrade("operator.replicas=3");
    assert_eq!(
        before,
        release_versions("inst"),
        "a second upgrade with the same values wrote objects"
    );

    drop(release);
    let out = kubectl(["get", "deployment", "inst-operator", "-n", NS]);
    assert!(!out.status.success(), "deployment left after uninstall");
    for crd in ["ippools.projectcalico.org", "nodenetworkstates.ocelot.dev"] {
        json(&["get", "crd", crd]);
    }
}

#[test]
fn image_tarballs_are_oci_layouts_with_the_binaries_at_the_charts_paths() {
    // Stand-ins for the release binaries keep this cheap; the script is the one users run.
    let dir = scratch();
    let bins = dir.path().join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    for b in ["ocelot-operator", "ocelot-agent", "ocelot-cni"] {
        let p = bins.join(b);
        std::fs::write(&p, format!("#!/bin/sh\necho {b}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out_dir = dir.path().join("out");
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/images.sh"))
        .args([
            "--bin-dir",
            &bins.display().to_string(),
            "--out",
            &out_dir.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/images.sh: {}", text(&out));

    // The paths the chart runs.
    let docs = documents(&render("img", None));
    let find = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap().clone();
    let deploy = find("Deployment");
    let ds = find("DaemonSet");
    let op_cmd = deploy["spec"]["template"]["spec"]["containers"][0]["command"][0]
        .as_str()
        .unwrap()
        .to_string();
    let agent_cmd = ds["spec"]["template"]["spec"]["containers"][0]["command"][0]
        .as_str()
        .unwrap()
        .to_string();
    let init = &ds["spec"]["template"]["spec"]["initContainers"][0]["command"];
    let init_shell = init[0].as_str().unwrap().to_string();
    let init_script = init[2].as_str().unwrap();
    let cni = init_script.split_whitespace().nth(1).unwrap().to_string();
    let version = serde_yaml::from_str::<Value>(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap(),
    )
    .unwrap()["appVersion"]
        .as_str()
        .unwrap()
        .to_string();

    for (name, want) in [
        ("ocelot-operator", vec![(op_cmd.clone(), "ocelot-operator")]),
        (
            "ocelot-agent",
            vec![
                (agent_cmd.clone(), "ocelot-agent"),
                (cni.clone(), "ocelot-cni"),
            ],
        ),
    ] {
        let file = out_dir.join(format!("{name}-{version}.oci.tar"));
        let (index, config, files) = read_oci_layout(&file);
        assert_eq!(
            index["manifests"][0]["annotations"]["io.containerd.image.name"],
            format!("ghcr.io/ocelot-net/{name}:{version}"),
            "{name}: image name must be the chart's default"
        );
        for (path, bin) in want {
            let (data, mode) = files
                .get(path.trim_start_matches('/'))
                .unwrap_or_else(|| panic!("{name}: {path} (run by the chart) not in the image"));
            assert_eq!(
                data,
                &std::fs::read(bins.join(bin)).unwrap(),
                "{name}: {path} is not {bin}"
            );
            assert!(mode & 0o111 != 0, "{name}: {path} not executable");
        }
        assert_eq!(
            config["config"]["Entrypoint"][0],
            want_entry(name, &op_cmd, &agent_cmd)
        );
        if name == "ocelot-agent" && Path::new("/bin/busybox").exists() {
            assert!(
                files.contains_key(init_shell.trim_start_matches('/')),
                "{init_shell} for install-cni"
            );
        }
    }
}

fn want_entry(name: &str, op: &str, agent: &str) -> String {
    if name == "ocelot-operator" {
        op.to_string()
    } else {
        agent.to_string()
    }
}

#[test]
fn a_second_field_manager_applies_user_objects_without_conflict_after_the_operator_ran() {
    // Helm owns the optional defaults (pool, BGPConfiguration, FelixConfiguration), a user the peer.
    let _release = Release::install(
        "ssa",
        &[
            "--set",
            "defaults.ipPool.enabled=true",
            "--set",
            "defaults.ipPool.name=ssa-pool",
            "--set",
            "defaults.ipPool.cidr=198.19.56.0/22",
            "--set",
            "defaults.bgpConfiguration.enabled=true",
            "--set",
            "defaults.felixConfiguration.enabled=true",
        ],
    );
    let _objects = Objects(vec![
        ("bgppeers.projectcalico.org", "ssa-peer".to_string(), None),
        ("ippools.projectcalico.org", "ssa-pool".to_string(), None),
        (
            "bgpconfigurations.projectcalico.org",
            "default".to_string(),
            None,
        ),
        (
            "felixconfigurations.projectcalico.org",
            "default".to_string(),
            None,
        ),
    ]);
    let peer = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: ssa-peer\nspec:\n  peerIP: 198.19.15.254\n  asNumber: 64512\n";
    check(
        kubectl_stdin(
            ["apply", "--server-side", "--field-manager=user", "-f", "-"],
            peer,
        ),
        "BGPPeer",
    );

    // The operator, as the chart runs it: its own service account, the chart's roles, leader election
    // in the release namespace.
    let dir = scratch();
    let out = kubectl([
        "create",
        "token",
        "ssa-operator",
        "-n",
        NS,
        "--duration",
        "10m",
    ]);
    assert!(out.status.success(), "create token: {}", text(&out));
    let kc = token_kubeconfig(dir.path(), String::from_utf8_lossy(&out.stdout).trim());
    let log_path = dir.path().join("operator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let op = Child(
        std::process::Command::new(ocelot_e2e::operator::operator_binary())
            .arg("--kubeconfig")
            .arg(&kc)
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--leader-election-namespace",
                NS,
            ])
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ocelot-operator"),
    );
    let status_of = |kind: &str, name: &str| json(&["get", kind, name])["status"].clone();
    let start = std::time::Instant::now();
    let targets = [
        ("ippools.projectcalico.org", "ssa-pool"),
        ("bgppeers.projectcalico.org", "ssa-peer"),
        ("felixconfigurations.projectcalico.org", "default"),
        ("bgpconfigurations.projectcalico.org", "default"),
    ];
    while !targets.iter().all(|(k, n)| status_of(k, n).is_object()) {
        assert!(
            start.elapsed() < ocelot_e2e::operator::WAIT,
            "the operator did not write the objects' status; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let oplog = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !oplog.to_lowercase().contains("forbidden"),
        "the operator needed a permission the chart does not grant:\n{oplog}"
    );
    drop(op);

    // A GitOps tool applies the same objects (same values, plus fields the operator would default),
    // without --force-conflicts: nothing the operator wrote is in its way.
    let gitops = [
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: ssa-pool\nspec:\n  cidr: 198.19.56.0/22\n  blockSize: 26\n  \
         natOutgoing: true\n  nodeSelector: all()\n  ipipMode: Never\n  vxlanMode: Never\n  disabled: false\n",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: ssa-peer\nspec:\n  peerIP: 198.19.15.254\n  asNumber: 64512\n  keepOriginalNextHop: false\n",
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  asNumber: 64512\n  nodeToNodeMeshEnabled: true\n  logSeverityScreen: Info\n  listenPort: 179\n",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  wireguardEnabled: false\n  wireguardListeningPort: 51820\n",
    ];
    for doc in gitops {
        let out = kubectl_stdin(
            [
                "apply",
                "--server-side",
                "--field-manager=gitops",
                "-f",
                "-",
            ],
            doc,
        );
        assert!(
            out.status.success(),
            "second field manager: {}\n{doc}",
            text(&out)
        );
    }
    for (kind, name) in targets {
        let o = ocelot_e2e::operator::get_json(kind, name).unwrap();
        for f in o["metadata"]["managedFields"].as_array().unwrap() {
            if f["manager"] == "ocelot-operator" {
                assert_eq!(
                    f["subresource"], "status",
                    "{kind}/{name}: the operator owns non-status fields: {f}"
                );
            }
        }
    }
}
