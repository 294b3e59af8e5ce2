//! The schema-enforced half of the rules (ranges, patterns, lengths) checked on raw JSON, and the
//! collector every per-kind check reports into.
use super::Check::{Cel, MaxItems, MaxLength, Pattern, Range, RustOnly};
use super::{RULES, ValidationErrors, Violation, rule_by_id};

/// Collects violations for one object.
pub(super) struct Checker {
    kind: &'static str,
    name: String,
    pub(super) out: Vec<Violation>,
}

impl Checker {
    pub(super) fn new(kind: &'static str, name: &str) -> Self {
        Checker {
            kind,
            name: name.to_string(),
            out: Vec::new(),
        }
    }

    /// A checker for a whole object that has already run the schema-enforced rules on it.
    pub(super) fn for_object<K: kube::Resource + serde::Serialize>(
        kind: &'static str,
        obj: &K,
    ) -> Self {
        let mut c = Checker::new(kind, obj.meta().name.as_deref().unwrap_or(""));
        c.schema(&serde_json::to_value(obj).expect("API objects serialize to JSON"));
        c
    }

    /// Records a violation of `id` unless `ok`.
    pub(super) fn check(&mut self, id: &'static str, ok: bool, value: Option<String>) {
        if ok {
            return;
        }
        let r = rule_by_id(id).unwrap_or_else(|| panic!("validation rule {id} is not in RULES"));
        debug_assert_eq!(r.kind, self.kind, "rule {id} belongs to {}", r.kind);
        self.out.push(Violation {
            kind: self.kind,
            name: self.name.clone(),
            field: r.field,
            rule: r.id,
            message: r.message,
            value,
        });
    }

    /// Checks the schema-enforced rules (ranges, patterns, lengths) of this kind on the raw JSON
    /// form, so values the typed model cannot even hold (e.g. an AS number above u32) are reported.
    fn schema(&mut self, obj: &serde_json::Value) {
        let kind = self.kind;
        for r in RULES.iter().filter(|r| r.kind == kind) {
            for v in field_values(obj, r.field)
                .into_iter()
                .filter(|v| !v.is_null())
            {
                let ok = match &r.check {
                    Range { min, max } => v.as_i64().is_some_and(|n| (*min..=*max).contains(&n)),
                    Pattern(p) => v.as_str().is_some_and(|s| pattern(p).is_match(s)),
                    MaxLength(n) => v.as_str().is_none_or(|s| s.chars().count() <= *n as usize),
                    MaxItems(n) => v.as_array().is_none_or(|a| a.len() <= *n as usize),
                    Cel(_) | RustOnly => continue,
                };
                let shown = match (v.as_str(), v.as_array()) {
                    (Some(s), _) => s.to_string(),
                    (_, Some(a)) => format!("{} items", a.len()),
                    _ => v.to_string(),
                };
                self.check(r.id, ok, Some(shown));
            }
        }
    }

    pub(super) fn finish(self) -> Result<(), ValidationErrors> {
        ValidationErrors(self.out).into_result()
    }
}

/// The values at a dotted field path; a `name[]` segment steps into every item of that list.
fn field_values<'a>(obj: &'a serde_json::Value, path: &str) -> Vec<&'a serde_json::Value> {
    path.split('.')
        .fold(vec![obj], |vals, seg| match seg.strip_suffix("[]") {
            Some(list) => vals
                .into_iter()
                .filter_map(|v| v.get(list).and_then(serde_json::Value::as_array))
                .flatten()
                .collect(),
            None => vals.into_iter().filter_map(|v| v.get(seg)).collect(),
        })
}

/// Compiled schema patterns (compiled once; the table is static).
pub(super) fn pattern(p: &'static str) -> &'static regex::Regex {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, &'static regex::Regex>>,
    > = std::sync::OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache.entry(p).or_insert_with(|| {
        Box::leak(Box::new(
            regex::Regex::new(p).expect("rule patterns compile"),
        ))
    })
}

/// The schema-enforced rules (ranges, patterns, lengths) of `kind` checked on a raw JSON object.
pub fn schema_violations(kind: &str, name: &str, obj: &serde_json::Value) -> ValidationErrors {
    let Some(kind) = RULES.iter().find(|r| r.kind == kind).map(|r| r.kind) else {
        return ValidationErrors::default();
    };
    let mut c = Checker::new(kind, name);
    c.schema(obj);
    ValidationErrors(c.out)
}
