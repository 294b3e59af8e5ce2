//! Single-object validation rules, one table for two enforcers: the Rust checks below (used by the
//! operator, `ocelotctl validate`, and tests) and the CRD schema/CEL the API server enforces
//! (injected by [`crate::crds`]). A test proves every CEL rule has a Rust twin refused by a fixture.
use std::fmt;
use std::sync::LazyLock;

/// Where a rule is attached in the CRD schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole object (`self` is the object; used for metadata.name rules).
    Root,
    /// The spec (`self` is the spec).
    Spec,
    /// The status (`self` is the status).
    Status,
}

/// How the API server enforces a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A CEL expression; true means valid.
    Cel(&'static str),
    /// OpenAPI minimum/maximum on an integer field.
    Range { min: i64, max: i64 },
    /// OpenAPI pattern on a string field.
    Pattern(&'static str),
    /// OpenAPI maxLength on a string field.
    MaxLength(u32),
    /// OpenAPI maxItems on a list field. Bounds like this one also keep the CEL cost estimate of the
    /// rules that walk the field under the API server's budget.
    MaxItems(u32),
    /// Needs other objects or a parser CEL lacks; enforced by the operator and `ocelotctl validate`.
    RustOnly,
}

/// One validation rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Stable identifier, e.g. `ippool-cidr-masked`.
    pub id: &'static str,
    /// The kind it applies to.
    pub kind: &'static str,
    /// Where it is attached in the schema.
    pub scope: Scope,
    /// Full path of the field it concerns, e.g. `spec.cidr`.
    pub field: &'static str,
    /// What is required, in words (also the API server's message).
    pub message: &'static str,
    /// How the API server enforces it.
    pub check: Check,
    /// The rule compares against the previous object (oldSelf); only checked on update.
    pub transition: bool,
}

impl Rule {
    /// The field path relative to the rule's scope (`cidr` for `spec.cidr` in spec scope).
    pub fn field_in_scope(&self) -> &'static str {
        let prefix = match self.scope {
            Scope::Root => "",
            Scope::Spec => "spec.",
            Scope::Status => "status.",
        };
        self.field.strip_prefix(prefix).unwrap_or(self.field)
    }

    /// CEL `fieldPath` so the API server names the field; none for metadata (not in the schema).
    pub fn cel_field_path(&self) -> Option<String> {
        if self.field.starts_with("metadata.") {
            return None;
        }
        Some(format!(".{}", self.field_in_scope()))
    }
}

pub(super) const fn rule(
    id: &'static str,
    kind: &'static str,
    scope: Scope,
    field: &'static str,
    message: &'static str,
    check: Check,
) -> Rule {
    Rule {
        id,
        kind,
        scope,
        field,
        message,
        check,
        transition: false,
    }
}

pub(super) const fn transition(
    id: &'static str,
    kind: &'static str,
    field: &'static str,
    message: &'static str,
    cel: &'static str,
) -> Rule {
    Rule {
        id,
        kind,
        scope: Scope::Spec,
        field,
        message,
        check: Check::Cel(cel),
        transition: true,
    }
}

mod checker;
mod cross;
mod kinds;
mod rules_bgp;
mod rules_felix;
mod rules_pool;

pub use checker::schema_violations;
pub use cross::{PoolOverlap, pool_overlaps};
pub use kinds::*;

/// Every single-object rule. Order is the order errors are reported in.
pub static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    [
        rules_pool::IPPOOL,
        rules_bgp::BGP,
        rules_felix::FELIX,
        rules_pool::SYSTEM,
    ]
    .concat()
});

/// Go's `time.ParseDuration` grammar (without negatives), as [`crate::values::GoDuration::parse`]
/// reads it; a test keeps the two in step.
pub(crate) const DURATION_PATTERN: &str =
    r"^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";
/// Calico's CRD pattern for log levels: case-insensitive, Trace included.
pub(crate) const LOG_SEVERITY_PATTERN: &str = r"^(?i)(Trace|Debug|Info|Warning|Error|Fatal|None)$";
pub(crate) const IFACE_PATTERN: &str = r"^[a-zA-Z0-9._-]{1,15}$";
pub(crate) const WG_KEY_PATTERN: &str = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";

/// Looks a rule up by id.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Kind of the object.
    pub kind: &'static str,
    /// Name of the object.
    pub name: String,
    /// Full field path, e.g. `spec.cidr`.
    pub field: &'static str,
    /// Rule id.
    pub rule: &'static str,
    /// What is required.
    pub message: &'static str,
    /// The offending value, when there is one.
    pub value: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}: {}: {}",
            self.kind, self.name, self.field, self.message
        )?;
        if let Some(v) = &self.value {
            write!(f, " (got {v:?})")?;
        }
        write!(f, " [rule {}]", self.rule)
    }
}

/// All violations of one object; empty means valid.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<Violation>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// Ok when there are no violations.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
    /// The ids of the broken rules.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.0.iter().map(|v| v.rule).collect()
    }
}
