//! Calico's label selector language, as used by `IPPool.nodeSelector` and
//! `BGPPeer.nodeSelector`/`peerSelector`.
//!
//! Lexical rules follow libcalico-go's tokenizer so that anything we accept,
//! Calico accepts too:
//! - whitespace is only space and tab;
//! - label keys are runs of `[A-Za-z0-9_./-]`, at most 512 bytes;
//! - strings are `"..."` or `'...'` with no escape sequences (a string ends at
//!   the first matching quote), so a single value never holds both quote kinds;
//! - `has(`, `all(` and `global(` must be written without a space before `(`;
//! - operator words are recognised only right after a label key, and
//!   `not in`, `starts with`, `ends with` may be written without the space;
//! - `in {}` is valid (matches nothing) and a trailing comma is allowed.
//!
//! The AST is kept in a normal form (no `!!`, no `&&` directly under `&&`, no
//! `||` directly under `||`, sets sorted and deduplicated) so that structural
//! equality is meaningful and printing then parsing is the identity.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Calico's limit on label key length in selectors.
const MAX_LABEL_LEN: usize = 512;
/// Bound on parenthesis nesting so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// A parsed Calico label selector. `Display` prints the canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    expr: Expr,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Expr {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Not(Box<Expr>),
    /// Two or more operands, none of which is itself an `And`.
    And(Vec<Expr>),
    /// Two or more operands, none of which is itself an `Or`.
    Or(Vec<Expr>),
}

/// A selector that failed to parse, with the 1-based character column of the
/// offending token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("selector {selector:?}: column {column}: {message}")]
pub struct SelectorError {
    /// The selector text that failed to parse.
    pub selector: String,
    /// 1-based character (not byte) column; `len + 1` means end of input.
    pub column: usize,
    pub message: String,
}

impl Selector {
    /// Parses a selector. The empty (or all-blank) string means `all()`.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser { src: s, pos: 0 };
        p.skip_ws();
        if p.at_end() {
            return Ok(Selector::all());
        }
        let expr = p.or_expr(0)?;
        p.skip_ws();
        match p.peek() {
            None => Ok(Selector { expr }),
            Some(')') => Err(p.error("unexpected \")\" without a matching \"(\"")),
            Some(_) => Err(p.error(format!(
                "expected \"&&\", \"||\" or end of selector, found {}",
                p.describe_here()
            ))),
        }
    }

    /// The selector that matches everything.
    pub fn all() -> Selector {
        Selector { expr: Expr::All }
    }

    /// Evaluates the selector against a label map.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.matches(labels)
    }

    /// Whether `global()` appears anywhere; IPPool validation rejects it.
    pub fn uses_global(&self) -> bool {
        self.expr.uses_global()
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::all()
    }
}

impl Expr {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &String| labels.get(k).map(String::as_str);
        match self {
            // Outside namespaced policy, Calico evaluates global() as true.
            Expr::All | Expr::Global => true,
            Expr::Has(k) => labels.contains_key(k),
            Expr::Eq(k, v) => get(k) == Some(v.as_str()),
            // Calico: a missing label is "not equal" and "not in".
            Expr::Ne(k, v) => get(k) != Some(v.as_str()),
            Expr::Contains(k, v) => get(k).is_some_and(|l| l.contains(v.as_str())),
            Expr::StartsWith(k, v) => get(k).is_some_and(|l| l.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => get(k).is_some_and(|l| l.ends_with(v.as_str())),
            Expr::In(k, set) => labels.get(k).is_some_and(|l| set.contains(l)),
            Expr::NotIn(k, set) => labels.get(k).is_none_or(|l| !set.contains(l)),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }

    fn uses_global(&self) -> bool {
        match self {
            Expr::Global => true,
            Expr::Not(e) => e.uses_global(),
            Expr::And(es) | Expr::Or(es) => es.iter().any(Expr::uses_global),
            _ => false,
        }
    }

    /// Binding strength when printed: `||` < `&&` < everything else.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => 1,
            Expr::And(_) => 2,
            _ => 3,
        }
    }

    fn negate(self) -> Expr {
        match self {
            Expr::Not(e) => *e,
            e => Expr::Not(Box::new(e)),
        }
    }
}

/// Builds an n-ary `And`/`Or`, splicing in same-operator operands so that
/// `(a && b) && c` and `a && b && c` have the same AST.
fn join(mut operands: Vec<Expr>, is_and: bool) -> Expr {
    if operands.len() == 1 {
        return operands.pop().expect("one operand");
    }
    let mut flat = Vec::with_capacity(operands.len());
    for e in operands {
        match (e, is_and) {
            (Expr::And(inner), true) | (Expr::Or(inner), false) => flat.extend(inner),
            (e, _) => flat.push(e),
        }
    }
    if is_and {
        Expr::And(flat)
    } else {
        Expr::Or(flat)
    }
}

// ---------------------------------------------------------------------------
// Printing

/// Calico has no escapes: use double quotes unless the value contains one.
fn write_quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    let q = if v.contains('"') { '\'' } else { '"' };
    write!(f, "{q}{v}{q}")
}

fn write_set(f: &mut fmt::Formatter<'_>, set: &BTreeSet<String>) -> fmt::Result {
    f.write_str("{")?;
    for (i, v) in set.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_quoted(f, v)?;
    }
    f.write_str("}")
}

fn write_operand(f: &mut fmt::Formatter<'_>, e: &Expr, min_prec: u8) -> fmt::Result {
    if e.precedence() < min_prec {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (k, op, v) = match self {
            Expr::All => return f.write_str("all()"),
            Expr::Global => return f.write_str("global()"),
            Expr::Has(k) => return write!(f, "has({k})"),
            Expr::In(k, set) => {
                write!(f, "{k} in ")?;
                return write_set(f, set);
            }
            Expr::NotIn(k, set) => {
                write!(f, "{k} not in ")?;
                return write_set(f, set);
            }
            Expr::Not(e) => {
                f.write_str("!")?;
                return write_operand(f, e, 3);
            }
            Expr::And(es) | Expr::Or(es) => {
                let (sep, prec) = match self {
                    Expr::And(_) => (" && ", 3),
                    _ => (" || ", 2),
                };
                for (i, e) in es.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    write_operand(f, e, prec)?;
                }
                return Ok(());
            }
            Expr::Eq(k, v) => (k, "==", v),
            Expr::Ne(k, v) => (k, "!=", v),
            Expr::Contains(k, v) => (k, "contains", v),
            Expr::StartsWith(k, v) => (k, "starts with", v),
            Expr::EndsWith(k, v) => (k, "ends with", v),
        };
        write!(f, "{k} {op} ")?;
        write_quoted(f, v)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Selector {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Selector".into()
    }
    // Inline so CRD schemas show a plain string rather than a $ref.
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

// ---------------------------------------------------------------------------
// Parsing: scannerless recursive descent over the input bytes. All syntax
// characters are ASCII, so byte positions always fall on char boundaries.

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

const OPERATORS: &str =
    "\"==\", \"!=\", \"in\", \"not in\", \"contains\", \"starts with\" or \"ends with\"";

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos == self.src.len()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            selector: self.src.to_owned(),
            column: self.src[..pos].chars().count() + 1,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> SelectorError {
        self.error_at(self.pos, message)
    }

    /// Names the token at the cursor for error messages.
    fn describe_here(&self) -> String {
        let rest = self.rest();
        let word_len = rest.len() - rest.trim_start_matches(is_label_char).len();
        match self.peek() {
            None => "end of selector".to_owned(),
            Some(_) if word_len > 0 => format!("{:?}", &rest[..word_len]),
            Some(c) => format!("{:?}", c.to_string()),
        }
    }

    /// Word operators after a label must not run into a following label char.
    fn eat_word(&mut self, words: &[&str]) -> bool {
        let start = self.pos;
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                self.skip_ws();
            }
            if !self.eat(w) {
                self.pos = start;
                return false;
            }
        }
        if self.peek().is_some_and(is_label_char) {
            self.pos = start;
            return false;
        }
        true
    }

    fn or_expr(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.and_expr(depth)?];
        loop {
            self.skip_ws();
            if !self.eat("||") {
                return Ok(join(operands, false));
            }
            operands.push(self.and_expr(depth)?);
        }
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.unary(depth)?];
        loop {
            self.skip_ws();
            if !self.eat("&&") {
                return Ok(join(operands, true));
            }
            operands.push(self.unary(depth)?);
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut negated = false;
        loop {
            self.skip_ws();
            // "!=" here is a misplaced operator, not a negation.
            if self.rest().starts_with("!=") || !self.eat("!") {
                break;
            }
            negated = !negated;
        }
        let e = self.primary(depth)?;
        Ok(if negated { e.negate() } else { e })
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let start = self.pos;
        if self.eat("(") {
            if depth >= MAX_DEPTH {
                return Err(self.error_at(start, "parentheses nested too deeply"));
            }
            let e = self.or_expr(depth + 1)?;
            self.skip_ws();
            if !self.eat(")") {
                return Err(self.error(format!(
                    "expected \")\" to close \"(\" at column {}, found {}",
                    self.src[..start].chars().count() + 1,
                    self.describe_here()
                )));
            }
            return Ok(e);
        }
        if self.eat("has(") {
            self.skip_ws();
            let key = self.label_key("has(")?;
            self.skip_ws();
            if !self.eat(")") {
                return Err(self.error(format!(
                    "expected \")\" after label key in \"has(\", found {}",
                    self.describe_here()
                )));
            }
            return Ok(Expr::Has(key));
        }
        for (name, expr) in [("all(", Expr::All), ("global(", Expr::Global)] {
            if self.eat(name) {
                self.skip_ws();
                if !self.eat(")") {
                    return Err(self.error(format!(
                        "expected \")\" after {name:?}, found {}",
                        self.describe_here()
                    )));
                }
                return Ok(expr);
            }
        }
        if !self.peek().is_some_and(is_label_char) {
            return Err(self.error(format!(
                "expected a label key, \"has(\", \"all()\", \"global()\", \"!\" or \"(\", found {}",
                self.describe_here()
            )));
        }
        let key = self.label_key("")?;
        self.comparison(key)
    }

    /// Reads a label key; `after` names the preceding token for the message.
    fn label_key(&mut self, after: &str) -> Result<String, SelectorError> {
        let rest = self.rest();
        let len = rest.len() - rest.trim_start_matches(is_label_char).len();
        if len == 0 {
            return Err(self.error(format!(
                "expected a label key after {after:?}, found {}",
                self.describe_here()
            )));
        }
        if len > MAX_LABEL_LEN {
            return Err(self.error(format!(
                "label key is longer than {MAX_LABEL_LEN} characters"
            )));
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }

    fn comparison(&mut self, key: String) -> Result<Expr, SelectorError> {
        self.skip_ws();
        type Make = fn(String, String) -> Expr;
        let ops: [(&[&str], &str, Make); 5] = [
            (&["=="], "==", Expr::Eq),
            (&["!="], "!=", Expr::Ne),
            (&["contains"], "contains", Expr::Contains),
            (&["starts", "with"], "starts with", Expr::StartsWith),
            (&["ends", "with"], "ends with", Expr::EndsWith),
        ];
        for (words, name, make) in ops {
            // Symbolic operators need no word boundary.
            let found = if name.starts_with(['=', '!']) {
                self.eat(words[0])
            } else {
                self.eat_word(words)
            };
            if found {
                self.skip_ws();
                let value = self.string(name)?;
                return Ok(make(key, value));
            }
        }
        if self.eat_word(&["not", "in"]) {
            return Ok(Expr::NotIn(key, self.set("not in")?));
        }
        if self.eat_word(&["in"]) {
            return Ok(Expr::In(key, self.set("in")?));
        }
        Err(self.error(format!(
            "expected {OPERATORS} after label key {key:?}, found {}",
            self.describe_here()
        )))
    }

    fn string(&mut self, after: &str) -> Result<String, SelectorError> {
        let start = self.pos;
        let quote = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                return Err(self.error(format!(
                    "expected a quoted string after {after:?}, found {}",
                    self.describe_here()
                )));
            }
        };
        self.pos += 1;
        match self.rest().find(quote) {
            Some(len) => {
                let value = self.rest()[..len].to_owned();
                self.pos += len + 1;
                Ok(value)
            }
            None => Err(self.error_at(start, "unterminated string")),
        }
    }

    fn set(&mut self, after: &str) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        if !self.eat("{") {
            return Err(self.error(format!(
                "expected \"{{\" after {after:?}, found {}",
                self.describe_here()
            )));
        }
        let mut values = BTreeSet::new();
        loop {
            self.skip_ws();
            if self.eat("}") {
                return Ok(values);
            }
            if !matches!(self.peek(), Some('"' | '\'')) {
                return Err(self.error(format!(
                    "expected a quoted string or \"}}\" in set, found {}",
                    self.describe_here()
                )));
            }
            values.insert(self.string("{")?);
            self.skip_ws();
            // Calico accepts a trailing comma before "}".
            if !self.eat(",") && !self.rest().starts_with('}') {
                return Err(self.error(format!(
                    "expected \",\" or \"}}\" in set, found {}",
                    self.describe_here()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests;
