use super::*;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn canonical(s: &str) -> String {
    sel(s).to_string()
}

#[test]
fn operators_true_false_and_absent() {
    let present = labels(&[("k", "value"), ("other", "x")]);
    let absent = labels(&[("other", "x")]);
    // (selector, on {k: value}, on k absent)
    let cases = [
        ("has(k)", true, false),
        ("has(nope)", false, false),
        ("k == \"value\"", true, false),
        ("k == \"val\"", false, false),
        ("k != \"value\"", false, true),
        ("k != \"val\"", true, true),
        ("k in {\"a\", \"value\"}", true, false),
        ("k in {\"a\", \"b\"}", false, false),
        ("k in {}", false, false),
        ("k not in {\"a\", \"value\"}", false, true),
        ("k not in {\"a\", \"b\"}", true, true),
        ("k not in {}", true, true),
        ("k contains \"alu\"", true, false),
        ("k contains \"xyz\"", false, false),
        ("k contains \"\"", true, false),
        ("k starts with \"val\"", true, false),
        ("k starts with \"alu\"", false, false),
        ("k ends with \"lue\"", true, false),
        ("k ends with \"val\"", false, false),
        ("!has(k)", false, true),
        ("!k == \"value\"", false, true),
        ("has(k) && other == \"x\"", true, false),
        ("has(k) || other == \"x\"", true, true),
        ("global()", true, true),
    ];
    for (s, on_present, on_absent) in cases {
        let sel = sel(s);
        assert_eq!(sel.matches(&present), on_present, "{s} with k present");
        assert_eq!(sel.matches(&absent), on_absent, "{s} with k absent");
    }
}

#[test]
fn all_and_not_all() {
    let empty = BTreeMap::new();
    let some = labels(&[("a", "b")]);
    for s in ["all()", "", "  \t ", "all( )"] {
        let sel = sel(s);
        assert_eq!(sel, Selector::all());
        assert_eq!(sel.to_string(), "all()");
        assert!(sel.matches(&empty) && sel.matches(&some));
    }
    let none = sel("!all()");
    assert_eq!(none.to_string(), "!all()");
    assert!(!none.matches(&empty) && !none.matches(&some));
    assert_eq!(Selector::default(), Selector::all());
}

#[test]
fn precedence() {
    // "!" > "&&" > "||".
    let s = sel("a == \"1\" || b == \"1\" && !c == \"1\"");
    assert_eq!(
        s.expr,
        Expr::Or(vec![
            Expr::Eq("a".into(), "1".into()),
            Expr::And(vec![
                Expr::Eq("b".into(), "1".into()),
                Expr::Not(Box::new(Expr::Eq("c".into(), "1".into()))),
            ]),
        ])
    );
    assert_eq!(s.to_string(), "a == \"1\" || b == \"1\" && !c == \"1\"");
    let l = labels(&[("b", "1")]);
    assert!(s.matches(&l));
    assert!(!sel("(a == \"1\" || b == \"1\") && c == \"1\"").matches(&l));
    assert_eq!(
        canonical("(has(a)||has(b))&&has(c)"),
        "(has(a) || has(b)) && has(c)"
    );
    assert_eq!(canonical("!(has(a) && has(b))"), "!(has(a) && has(b))");
    assert_eq!(
        canonical("has(a) || (has(b) && has(c))"),
        "has(a) || has(b) && has(c)"
    );
}

#[test]
fn normal_form() {
    assert_eq!(canonical("!!has(a)"), "has(a)");
    assert_eq!(canonical("!(!has(a))"), "has(a)");
    assert_eq!(canonical("!!!has(a)"), "!has(a)");
    assert_eq!(canonical("((has(a)))"), "has(a)");
    assert_eq!(
        sel("(has(a) && has(b)) && has(c)"),
        sel("has(a) && has(b) && has(c)")
    );
    assert_eq!(
        sel("has(a) || (has(b) || has(c))"),
        sel("has(a) || has(b) || has(c)")
    );
    assert_eq!(canonical("k in {'b','a','b',}"), "k in {\"a\", \"b\"}");
}

#[test]
fn lexical_forms() {
    assert_eq!(canonical("a==\"x\"&&b!='y'"), "a == \"x\" && b != \"y\"");
    assert_eq!(canonical("k notin {\"a\"}"), "k not in {\"a\"}");
    assert_eq!(canonical("k not  in{\"a\"}"), "k not in {\"a\"}");
    assert_eq!(canonical("k startswith 'a'"), "k starts with \"a\"");
    assert_eq!(canonical("k ends\twith 'a'"), "k ends with \"a\"");
    assert_eq!(canonical("k contains'a'"), "k contains \"a\"");
    assert_eq!(
        canonical("has( example.com/my-key_1 )"),
        "has(example.com/my-key_1)"
    );
    assert_eq!(canonical("global( )"), "global()");
    // Words that are only keywords in operator position work as keys.
    assert_eq!(canonical("in == \"x\""), "in == \"x\"");
    assert_eq!(
        canonical("has == \"x\" && all in {}"),
        "has == \"x\" && all in {}"
    );
}

#[test]
fn quotes_have_no_escapes() {
    assert_eq!(
        sel("k == 'say \"hi\"'").expr,
        Expr::Eq("k".into(), "say \"hi\"".into())
    );
    assert_eq!(canonical("k == 'say \"hi\"'"), "k == 'say \"hi\"'");
    assert_eq!(canonical("k == \"it's\""), "k == \"it's\"");
    // Like Calico, a backslash is an ordinary character.
    assert_eq!(sel(r#"k == "a\""#).expr, Expr::Eq("k".into(), "a\\".into()));
    assert_eq!(canonical("k in {'\"', \"'\"}"), "k in {'\"', \"'\"}");
    assert_eq!(canonical("k == \"\""), "k == \"\"");
    assert!(sel("k == \"é ü\"").matches(&labels(&[("k", "é ü")])));
}

#[test]
fn uses_global() {
    assert!(sel("global()").uses_global());
    assert!(sel("has(a) && !global()").uses_global());
    assert!(sel("has(a) || (has(b) && global())").uses_global());
    assert!(!sel("has(a) && all()").uses_global());
    assert!(!sel("global == \"x\"").uses_global());
}

#[test]
fn errors_report_column_and_expectation() {
    let ops = "\"==\", \"!=\", \"in\", \"not in\", \"contains\", \"starts with\" or \"ends with\"";
    let cases: Vec<(&str, usize, String)> = vec![
        ("foo", 4, format!("expected {ops} after label key \"foo\", found end of selector")),
        ("foo bar", 5, format!("expected {ops} after label key \"foo\", found \"bar\"")),
        ("foo = \"x\"", 5, format!("expected {ops} after label key \"foo\", found \"=\"")),
        ("foo inx {}", 5, format!("expected {ops} after label key \"foo\", found \"inx\"")),
        ("k == x", 6, "expected a quoted string after \"==\", found \"x\"".into()),
        ("k starts with", 14, "expected a quoted string after \"starts with\", found end of selector".into()),
        ("k == \"abc", 6, "unterminated string".into()),
        ("k == 'abc\"", 6, "unterminated string".into()),
        ("k in {\"a\" \"b\"}", 11, "expected \",\" or \"}\" in set, found \"\\\"\"".into()),
        ("k in {\"a\"", 10, "expected \",\" or \"}\" in set, found end of selector".into()),
        ("k in {,}", 7, "expected a quoted string or \"}\" in set, found \",\"".into()),
        ("k in (\"a\")", 6, "expected \"{\" after \"in\", found \"(\"".into()),
        ("k not in", 9, "expected \"{\" after \"not in\", found end of selector".into()),
        ("(has(a)", 8, "expected \")\" to close \"(\" at column 1, found end of selector".into()),
        ("has(a))", 7, "unexpected \")\" without a matching \"(\"".into()),
        ("has(a) has(b)", 8, "expected \"&&\", \"||\" or end of selector, found \"has\"".into()),
        ("has(a) & has(b)", 8, "expected \"&&\", \"||\" or end of selector, found \"&\"".into()),
        ("has(a) &&", 10, "expected a label key, \"has(\", \"all()\", \"global()\", \"!\" or \"(\", found end of selector".into()),
        ("!", 2, "expected a label key, \"has(\", \"all()\", \"global()\", \"!\" or \"(\", found end of selector".into()),
        ("!= \"a\"", 1, "expected a label key, \"has(\", \"all()\", \"global()\", \"!\" or \"(\", found \"!\"".into()),
        ("()", 2, "expected a label key, \"has(\", \"all()\", \"global()\", \"!\" or \"(\", found \")\"".into()),
        ("has()", 5, "expected a label key after \"has(\", found \")\"".into()),
        ("has(a", 6, "expected \")\" after label key in \"has(\", found end of selector".into()),
        ("has (a)", 5, format!("expected {ops} after label key \"has\", found \"(\"")),
        ("all(x)", 5, "expected \")\" after \"all(\", found \"x\"".into()),
        ("global(", 8, "expected \")\" after \"global(\", found end of selector".into()),
        // Like Calico, only spaces and tabs are whitespace.
        ("has(a)\n", 7, "expected \"&&\", \"||\" or end of selector, found \"\\n\"".into()),
        // Columns count characters, not bytes.
        ("k == \"é\" &&", 12, "expected a label key, \"has(\", \"all()\", \"global()\", \"!\" or \"(\", found end of selector".into()),
    ];
    for (input, column, message) in cases {
        let err = Selector::parse(input).expect_err(input);
        assert_eq!((err.column, &err.message), (column, &message), "{input:?}");
        assert_eq!(err.selector, input);
    }
}

#[test]
fn error_display() {
    let err = Selector::parse("foo ~").unwrap_err();
    assert_eq!(
        err.to_string(),
        "selector \"foo ~\": column 5: expected \"==\", \"!=\", \"in\", \"not in\", \"contains\", \
         \"starts with\" or \"ends with\" after label key \"foo\", found \"~\""
    );
}

#[test]
fn limits() {
    let key = "k".repeat(MAX_LABEL_LEN);
    assert!(Selector::parse(&format!("has({key})")).is_ok());
    let err = Selector::parse(&format!("has({key}k)")).unwrap_err();
    assert_eq!(
        (err.column, err.message.as_str()),
        (5, "label key is longer than 512 characters")
    );

    let deep = format!("{}has(a){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Selector::parse(&deep).is_ok());
    let too_deep = format!("({deep})");
    let err = Selector::parse(&too_deep).unwrap_err();
    assert_eq!(err.column, MAX_DEPTH + 1);
}

#[test]
fn from_str_and_serde() {
    let s: Selector = "has(a)&&b=='c'".parse().unwrap();
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, r#""has(a) && b == \"c\"""#);
    assert_eq!(serde_json::from_str::<Selector>(&json).unwrap(), s);
    assert_eq!(
        serde_json::from_str::<Selector>(r#""""#).unwrap(),
        Selector::all()
    );
    let err = serde_json::from_str::<Selector>(r#""has(""#).unwrap_err();
    assert!(err.to_string().contains("column 5"), "{err}");
}

// ---------------------------------------------------------------------------
// Property tests

const KEYS: [&str; 5] = ["a", "b", "x.io/c", "d-e_f", "in"];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&KEYS[..]).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9_./-]{1,12}",
    ]
}

/// Small alphabet so generated values often collide with labels; a single
/// literal cannot hold both quote kinds, so neither can a generated value.
fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[ab\" ]{0,3}", "[ab' ]{0,3}", "[ab]{0,2}"]
}

fn value_set() -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set(value(), 0..4)
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key().prop_map(Expr::Has),
        (key(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
        (key(), value_set()).prop_map(|(k, s)| Expr::In(k, s)),
        (key(), value_set()).prop_map(|(k, s)| Expr::NotIn(k, s)),
    ]
}

/// Random ASTs in normal form (the constructors normalise as the parser does).
fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Expr::negate),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(|es| join(es, true)),
            proptest::collection::vec(inner, 2..4).prop_map(|es| join(es, false)),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(key(), value(), 0..4)
}

/// Independent reference semantics, written straight from Calico's docs.
fn reference_eval(e: &Expr, l: &BTreeMap<String, String>) -> bool {
    match e {
        Expr::All | Expr::Global => true,
        Expr::Has(k) => l.contains_key(k),
        Expr::Eq(k, v) => matches!(l.get(k), Some(x) if x == v),
        Expr::Ne(k, v) => !matches!(l.get(k), Some(x) if x == v),
        Expr::Contains(k, v) => matches!(l.get(k), Some(x) if x.contains(v.as_str())),
        Expr::StartsWith(k, v) => matches!(l.get(k), Some(x) if x.starts_with(v.as_str())),
        Expr::EndsWith(k, v) => matches!(l.get(k), Some(x) if x.ends_with(v.as_str())),
        Expr::In(k, s) => matches!(l.get(k), Some(x) if s.contains(x)),
        Expr::NotIn(k, s) => !matches!(l.get(k), Some(x) if s.contains(x)),
        Expr::Not(e) => !reference_eval(e, l),
        Expr::And(es) => es.iter().fold(true, |acc, e| acc & reference_eval(e, l)),
        Expr::Or(es) => es.iter().fold(false, |acc, e| acc | reference_eval(e, l)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn print_then_parse_is_identity(e in expr()) {
        let s = Selector { expr: e };
        let printed = s.to_string();
        let reparsed = Selector::parse(&printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&reparsed, &s, "printed as {}", printed);
    }

    #[test]
    fn evaluation_matches_reference(e in expr(), l in label_map()) {
        let s = Selector { expr: e };
        prop_assert_eq!(s.matches(&l), reference_eval(&s.expr, &l), "{} on {:?}", s, l);
    }

    #[test]
    fn garbage_never_panics(
        input in prop_oneof![
            "[a-c()!&|= \"'{},\t.-]{0,30}",
            "(has\\(a\\)|all\\(\\)|b|==|!=| in | not in |\\{|\\}|,|'x'|\"y\"|&&|\\|\\||!|\\(|\\)| ){0,12}",
            any::<String>(),
        ]
    ) {
        match Selector::parse(&input) {
            // Anything accepted must survive a round trip through its canonical form.
            Ok(s) => prop_assert_eq!(Selector::parse(&s.to_string()), Ok(s)),
            Err(err) => {
                prop_assert!(err.column >= 1 && err.column <= input.chars().count() + 1);
                prop_assert!(!err.message.is_empty());
            }
        }
    }
}
