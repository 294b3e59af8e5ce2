//! The Helm chart in tests: rendering it with the Go-built helm, reading the rendered objects, and
//! deriving each component's API calls from its source for the RBAC checks.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regex::Regex;
use serde_json::Value;

use crate::cluster::{self, repo_root};

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
