//! Seed and invalid fixtures against both enforcers of every rule: the Rust validation and the CEL
//! in the generated CRDs (evaluated client-side with kube's CEL validator). The same fixtures are
//! sent to a real API server by the e2e suite.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ocelot::manifest::{self, ManifestError};
use ocelot::validation::{Check, RULES};
use serde_json::Value;

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    manifest::parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An invalid fixture: the rule it breaks, the stored object (for updates) and the object.
struct Invalid {
    path: PathBuf,
    rule: String,
    old: Option<Value>,
    new: Value,
}

fn invalid_fixtures() -> Vec<Invalid> {
    fixtures("invalid")
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            let rule = text
                .lines()
                .find_map(|l| l.strip_prefix("# rule: "))
                .unwrap_or_else(|| panic!("{} has no '# rule:' header", path.display()))
                .trim()
                .to_string();
            let mut d = docs(&path);
            let new = d.pop().expect("at least one document");
            let old = d.pop();
            Invalid {
                path,
                rule,
                old,
                new,
            }
        })
        .collect()
}

/// CEL schema of the CRD serving this document's kind.
fn cel_schema(doc: &Value) -> Option<Value> {
    let kind = doc["kind"].as_str()?;
    let crd = ocelot::crds::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)?;
    Some(ocelot::crds::schema_json(&crd))
}

fn cel_errors(doc: &Value, old: Option<&Value>) -> Vec<String> {
    let Some(schema) = cel_schema(doc) else {
        return vec![];
    };
    match kube::core::cel::Validator::new().validate(&schema, doc, old) {
        Ok(()) => vec![],
        Err(errs) => errs.iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn every_valid_fixture_passes_rust_and_cel() {
    let files = fixtures("valid");
    assert!(
        files.len() >= 10,
        "expected the seed fixtures, found {}",
        files.len()
    );
    let mut kinds = BTreeSet::new();
    for path in files {
        for (i, doc) in docs(&path).iter().enumerate() {
            kinds.insert(doc["kind"].as_str().unwrap_or_default().to_string());
            if let Err(e) = manifest::validate(i, doc) {
                panic!(
                    "{} document {i} refused by Rust validation: {e}",
                    path.display()
                );
            }
            let cel = cel_errors(doc, None);
            assert!(
                cel.is_empty(),
                "{} document {i} refused by CEL: {cel:?}",
                path.display()
            );
        }
    }
    for k in [
        "IPPool",
        "BGPPeer",
        "BGPConfiguration",
        "FelixConfiguration",
        "Namespace",
        "Node",
        "IPAMBlock",
    ] {
        assert!(kinds.contains(k), "no valid fixture of kind {k}");
    }
}

#[test]
fn seed_manifests_decode_to_the_seed_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
    let pool: ocelot::api::IPPool =
        serde_json::from_value(docs(&dir.join("ippool-external.yaml")).remove(0)).expect("decodes");
    assert_eq!(pool.spec.cidr, "198.19.24.0/21");
    assert_eq!(pool.spec.block_size, Some(29));
    assert_eq!(
        pool.spec.ipip_mode,
        Some(ocelot::api::ippool::EncapMode::Never)
    );
    assert!(pool.spec.nat_outgoing);
    assert_eq!(pool.spec.node_selector.as_deref(), Some("!all()"));
    let sel =
        ocelot::selector::Selector::parse(pool.spec.effective_node_selector()).expect("parses");
    assert!(!sel.matches(&BTreeMap::new()), "!all() selects no node");

    let default: ocelot::api::IPPool =
        serde_json::from_value(docs(&dir.join("ippool-default.yaml")).remove(0)).expect("decodes");
    assert_eq!(
        (
            default.spec.cidr.as_str(),
            default.spec.effective_node_selector()
        ),
        ("198.19.16.0/21", "all()")
    );
    assert_eq!(default.spec.effective_block_size(false), 26);

    let peer: ocelot::api::BGPPeer =
        serde_json::from_value(docs(&dir.join("bgppeer-global-host1.yaml")).remove(0))
            .expect("decodes");
    assert_eq!(peer.spec.peer_ip.as_deref(), Some("198.19.15.254"));
    assert_eq!(peer.spec.as_number, Some(64512));
    assert!(
        peer.spec.node.is_none() && peer.spec.node_selector.is_none(),
        "a global peer"
    );

    let ns = docs(&dir.join("namespace-external-ns.yaml")).remove(0);
    let pools: Vec<String> = serde_json::from_str(
        ns["metadata"]["annotations"]["cni.projectcalico.org/ipv4pools"]
            .as_str()
            .expect("set"),
    )
    .expect("a JSON list");
    assert_eq!(pools, ["external-pool"]);
}

/// Every field of a Calico FelixConfiguration is typed: decoding and re-encoding the documented
/// manifest gives it back unchanged (nothing dropped, no defaults added).
#[test]
fn calico_felixconfiguration_round_trips_through_the_typed_spec() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
    let doc = docs(&dir.join("felixconfiguration-calico-docs.yaml")).remove(0);
    let typed: ocelot::api::FelixConfiguration =
        serde_json::from_value(doc.clone()).expect("decodes");
    let back = serde_json::to_value(&typed.spec).expect("encodes");
    assert_eq!(back, doc["spec"]);
    assert!(
        doc["spec"].as_object().expect("spec").len() >= 30,
        "a broad set of fields"
    );
}

/// RFC 7386 JSON merge patch, as `kubectl patch --type=merge` applies it.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[test]
fn seed_wireguard_patches_apply_and_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
    let base = docs(&dir.join("felixconfiguration-default.yaml")).remove(0);
    for (file, want) in [
        ("felixconfiguration-default.wireguard-on.patch.json", true),
        ("felixconfiguration-default.wireguard-off.patch.json", false),
    ] {
        let patch: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).expect("readable"))
                .expect("json");
        let mut cfg = base.clone();
        merge_patch(&mut cfg, &patch);
        manifest::validate(0, &cfg).unwrap_or_else(|e| panic!("{file}: {e}"));
        let typed: ocelot::api::FelixConfiguration =
            serde_json::from_value(cfg.clone()).expect("decodes");
        assert_eq!(typed.spec.wireguard_enabled, Some(want), "{file}");
        assert_eq!(
            typed.spec.log_severity_screen.as_deref(),
            Some("Info"),
            "{file}: other fields kept"
        );
        assert!(
            cel_errors(&cfg, Some(&base)).is_empty(),
            "{file}: CEL refuses the patched object"
        );
    }
}

#[test]
fn every_invalid_fixture_is_refused_by_its_rule_with_field_and_message() {
    let all = invalid_fixtures();
    assert!(
        all.len() >= 20,
        "at least 20 invalid fixtures, found {}",
        all.len()
    );
    for f in &all {
        let rule = ocelot::validation::rule_by_id(&f.rule)
            .unwrap_or_else(|| panic!("{}: unknown rule {}", f.path.display(), f.rule));
        let res = match &f.old {
            Some(old) => {
                manifest::validate(0, old)
                    .unwrap_or_else(|e| panic!("{}: stored object invalid: {e}", f.path.display()));
                manifest::validate_update(0, old, &f.new)
            }
            None => manifest::validate(0, &f.new),
        };
        let err = match res {
            Err(ManifestError::Invalid(errs)) => errs,
            other => panic!(
                "{}: expected rule {} to refuse it, got {other:?}",
                f.path.display(),
                f.rule
            ),
        };
        assert!(
            err.rule_ids().contains(&rule.id),
            "{}: expected {}, got {}",
            f.path.display(),
            rule.id,
            err
        );
        let text = err.to_string();
        let name = f.new["metadata"]["name"].as_str().expect("named");
        for needle in [rule.field, rule.message, rule.id, name] {
            assert!(
                text.contains(needle),
                "{}: message {text:?} lacks {needle:?}",
                f.path.display()
            );
        }
    }
}

#[test]
fn every_cel_rule_has_a_rust_twin_exercised_by_an_invalid_fixture() {
    let all = invalid_fixtures();
    let covered: BTreeSet<&str> = all.iter().map(|f| f.rule.as_str()).collect();
    let missing: Vec<&str> = RULES
        .iter()
        .map(|r| r.id)
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without an invalid fixture: {missing:?}"
    );

    // The CEL of each rule refuses its fixture with the rule's own message: the twins agree.
    for f in &all {
        let rule = ocelot::validation::rule_by_id(&f.rule).expect("known rule");
        if let Check::Cel(_) = rule.check {
            let cel = cel_errors(&f.new, f.old.as_ref());
            assert!(
                cel.iter().any(|m| m == rule.message),
                "{}: CEL did not refuse it with {:?}; CEL said {cel:?}",
                f.path.display(),
                rule.message
            );
        }
    }

    // Every CEL rule in the generated CRDs comes from the table (no hand-written drift).
    let table: BTreeSet<&str> = RULES
        .iter()
        .filter_map(|r| {
            if let Check::Cel(e) = r.check {
                Some(e)
            } else {
                None
            }
        })
        .collect();
    for crd in ocelot::crds::all() {
        let json = serde_json::to_string(&ocelot::crds::schema_json(&crd)).expect("json");
        let schema: Value = serde_json::from_str(&json).expect("json");
        let mut found = Vec::new();
        collect_cel(&schema, &mut found);
        for rule in found {
            assert!(
                table.contains(rule.as_str()),
                "{}: CEL rule {rule:?} is not in validation::RULES",
                crd.spec.names.kind
            );
        }
    }
}

fn collect_cel(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(rules)) = m.get("x-kubernetes-validations") {
                out.extend(
                    rules
                        .iter()
                        .filter_map(|r| r["rule"].as_str().map(str::to_string)),
                );
            }
            m.values().for_each(|x| collect_cel(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_cel(x, out)),
        _ => {}
    }
}

#[test]
fn every_cel_rule_compiles() {
    for crd in ocelot::crds::all() {
        let compiled = kube::core::cel::compile_schema(&ocelot::crds::schema_json(&crd));
        let errs: Vec<String> = compiled
            .compilation_errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(errs.is_empty(), "{}: {errs:#?}", crd.spec.names.kind);
    }
}

#[test]
fn namespace_with_malformed_pool_annotation_is_refused_naming_the_annotation() {
    let doc: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "external-ns", "annotations": {"cni.projectcalico.org/ipv4pools": "external-pool"}}
    });
    let err = manifest::validate(0, &doc).expect_err("not a JSON list");
    let msg = err.to_string();
    assert!(
        msg.contains("cni.projectcalico.org/ipv4pools") && msg.contains("external-ns"),
        "{msg}"
    );
}
