//! The seed lab's API steps against a real kube-apiserver, and every fixture of the validation
//! table sent to it: the CRDs' CEL/OpenAPI refuse exactly what the Rust rules refuse.
use std::path::{Path, PathBuf};

use ocelot::validation::{Check, RULES, Scope, rule_by_id};
use ocelot_e2e::cluster::{self, check, kubectl, kubectl_stdin};
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    cluster::repo_root().join("tests/fixtures").join(rel)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn apply_file(path: &Path) -> String {
    let p = path.to_str().expect("utf-8 path");
    check(
        kubectl(["apply", "-f", p]),
        &format!("kubectl apply -f {p}"),
    )
}

#[test]
fn seed_manifests_apply_and_show_like_calicoctl() {
    for f in [
        "ippool-default.yaml",
        "ippool-external.yaml",
        "bgppeer-global-host1.yaml",
        "namespace-external-ns.yaml",
    ] {
        apply_file(&fixture(&format!("valid/{f}")));
    }
    let table = check(kubectl(["get", "ippools"]), "kubectl get ippools");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0][..3],
        ["NAME", "CIDR", "SELECTOR"],
        "header of\n{table}"
    );
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l[0] == name)
            .unwrap_or_else(|| panic!("{name} missing in\n{table}"))
    };
    assert_eq!(
        row("default-ipv4-ippool")[..3],
        ["default-ipv4-ippool", "198.19.16.0/21", "all()"]
    );
    assert_eq!(
        row("external-pool")[..3],
        ["external-pool", "198.19.24.0/21", "!all()"]
    );

    let peers = check(
        kubectl(["get", "bgppeers", "bgppeer-global-host1"]),
        "kubectl get bgppeers",
    );
    let cols: Vec<Vec<&str>> = peers
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(cols[0][..4], ["NAME", "PEERIP", "NODE", "ASN"]);
    assert_eq!(cols[1][..2], ["bgppeer-global-host1", "198.19.15.254"]);
    assert!(cols[1].contains(&"64512"), "{peers}");

    let ns = check(
        kubectl([
            "get",
            "namespace",
            "external-ns",
            "-o",
            "jsonpath={.metadata.annotations.cni\\.projectcalico\\.org/ipv4pools}",
        ]),
        "kubectl get namespace external-ns",
    );
    assert_eq!(ns.trim(), r#"["external-pool"]"#);
}

#[test]
fn seed_wireguard_patch_succeeds_on_felixconfiguration_default() {
    apply_file(&fixture("valid/felixconfiguration-default.yaml"));
    let patch = |p: &str| {
        check(
            kubectl([
                "patch",
                "felixconfiguration",
                "default",
                "--type=merge",
                "-p",
                p,
            ]),
            "kubectl patch felixconfiguration default",
        )
    };
    let out = patch(r#"{"spec":{"wireguardEnabled":true}}"#);
    assert!(
        out.contains("felixconfiguration.projectcalico.org/default patched"),
        "{out}"
    );
    let get = || {
        check(
            kubectl([
                "get",
                "felixconfiguration",
                "default",
                "-o",
                "jsonpath={.spec.wireguardEnabled}",
            ]),
            "get",
        )
    };
    assert_eq!(get().trim(), "true");
    // A bad patch is refused whole and changes nothing.
    let bad = kubectl([
        "patch",
        "felixconfiguration",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"wireguardListeningPort":70000,"wireguardEnabled":false}}"#,
    ]);
    assert!(!bad.status.success(), "port 70000 must be refused");
    assert!(
        text(&bad).contains("spec.wireguardListeningPort"),
        "{}",
        text(&bad)
    );
    assert_eq!(
        get().trim(),
        "true",
        "a refused patch must not change the object"
    );
    patch(r#"{"spec":{"wireguardEnabled":false}}"#);
    assert_eq!(get().trim(), "false");
}

#[test]
fn kubectl_explain_prints_field_descriptions() {
    let out = check(
        kubectl(["explain", "ippool.spec.blockSize"]),
        "kubectl explain ippool.spec.blockSize",
    );
    assert!(
        out.contains("Prefix length of the per-node blocks"),
        "{out}"
    );
    let out = check(
        kubectl(["explain", "nodenetworkstates.status.conditions"]),
        "kubectl explain nns",
    );
    assert!(out.contains("Conditions per subsystem"), "{out}");
}

fn docs(path: &Path) -> Vec<Value> {
    ocelot::manifest::parse_documents(&std::fs::read_to_string(path).expect("readable"))
        .expect("parses")
}

/// How the API server words each kind of schema refusal.
fn server_words(check: &Check) -> Vec<String> {
    match check {
        Check::Cel(_) => vec![],
        Check::Range { min, max } => {
            vec![
                format!("greater than or equal to {min}"),
                format!("less than or equal to {max}"),
            ]
        }
        Check::Pattern(_) => vec!["should match".into()],
        Check::MaxLength(n) => vec![format!("may not be more than {n} bytes")],
        Check::MaxItems(n) => vec![format!("must have at most {n} items")],
        Check::RustOnly => vec![],
    }
}

#[test]
fn every_fixture_is_judged_by_the_api_server_as_by_the_rust_rules() {
    let valid_dir = fixture("valid");
    let mut valid = 0;
    for entry in std::fs::read_dir(&valid_dir).expect("valid fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let p = path.to_str().expect("utf-8");
        let out = kubectl(["apply", "--dry-run=server", "-f", p]);
        assert!(
            out.status.success(),
            "{p} refused by the API server:\n{}",
            text(&out)
        );
        valid += 1;
    }
    assert!(valid >= 10);

    let mut refused = 0;
    for entry in std::fs::read_dir(fixture("invalid")).expect("invalid fixtures") {
        let path = entry.expect("entry").path();
        let content = std::fs::read_to_string(&path).expect("readable");
        let id = content
            .lines()
            .find_map(|l| l.strip_prefix("# rule: "))
            .expect("rule header")
            .trim();
        let rule = rule_by_id(id).expect("known rule");
        if rule.check == Check::RustOnly {
            continue; // enforced by the operator and `ocelotctl validate`, not by the API server
        }
        let mut d = docs(&path);
        let new = d.pop().expect("a document");
        let out = if let Some(old) = d.pop() {
            // Transition rules: store the old object for real (unique fixture names), then update.
            check(
                kubectl_stdin(["apply", "-f", "-"], &old.to_string()),
                "store the old object",
            );
            kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &new.to_string())
        } else if rule.scope == Scope::Status {
            // Status rules are enforced on the status subresource: create the object, then patch status.
            let mut obj = new.clone();
            obj.as_object_mut().expect("object").remove("status");
            check(
                kubectl_stdin(["apply", "-f", "-"], &obj.to_string()),
                "create the object",
            );
            let kind = format!(
                "{}.projectcalico.org",
                new["kind"].as_str().expect("kind").to_lowercase()
            );
            let name = new["metadata"]["name"].as_str().expect("name");
            let patch = serde_json::json!({ "status": new["status"] }).to_string();
            kubectl([
                "patch",
                &kind,
                name,
                "--subresource=status",
                "--type=merge",
                "--dry-run=server",
                "-p",
                &patch,
            ])
        } else {
            kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &new.to_string())
        };
        let msg = text(&out);
        assert!(
            !out.status.success(),
            "{}: the API server accepted it (rule {id})",
            path.display()
        );
        let field = rule.field.replace("[]", "");
        let field_leaf = field.rsplit('.').next().expect("leaf");
        // metadata is not in a CRD schema, so name rules cannot carry a fieldPath; their message says "named".
        let names_field =
            msg.contains(field_leaf) || (field.starts_with("metadata.") && msg.contains("named"));
        assert!(
            names_field,
            "{}: message lacks field {field}: {msg}",
            path.display()
        );
        match &rule.check {
            Check::Cel(_) => assert!(
                msg.contains(rule.message),
                "{}: lacks {:?}: {msg}",
                path.display(),
                rule.message
            ),
            other => {
                let words = server_words(other);
                assert!(
                    words.iter().any(|w| msg.contains(w)),
                    "{}: expected one of {words:?}: {msg}",
                    path.display()
                );
            }
        }
        refused += 1;
    }
    let api_rules = RULES.iter().filter(|r| r.check != Check::RustOnly).count();
    assert!(
        refused >= api_rules,
        "{refused} fixtures refused, {api_rules} API-enforced rules"
    );
}
