use super::*;

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

const ADD: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "abc123"),
    ("CNI_NETNS", "/var/run/netns/p"),
    ("CNI_IFNAME", "eth0"),
    (
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
    ),
    ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
];

fn without(var: &str) -> Vec<(&'static str, &'static str)> {
    ADD.iter().copied().filter(|(k, _)| *k != var).collect()
}

fn with(var: &'static str, val: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut v = without(var);
    v.push((var, val));
    v
}

#[test]
fn add_env_parses() {
    let e = parse_env(env(ADD)).unwrap();
    assert_eq!(e.command, Command::Add);
    assert_eq!(e.pod_namespace.as_deref(), Some("default"));
    assert_eq!(e.pod_name.as_deref(), Some("web"));
    assert_eq!(e.path, vec!["/opt/cni/bin", "/usr/lib/cni"]);
}

#[test]
fn missing_and_bad_env_is_code_4() {
    for var in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let err = parse_env(env(&without(var))).unwrap_err();
        assert_eq!(err.code, Code::InvalidEnv, "{var}");
        assert!(err.msg.contains(var), "{var}: {}", err.msg);
    }
    for (var, val) in [
        ("CNI_COMMAND", "ATTACH"),
        ("CNI_CONTAINERID", "-bad"),
        ("CNI_CONTAINERID", "a/b"),
        ("CNI_IFNAME", "averyveryverylongname"),
        ("CNI_IFNAME", "a/b"),
        ("CNI_ARGS", "K8S_POD_NAME"),
        ("CNI_ARGS", "K8S_POD_NAME=web"),
    ] {
        let err = parse_env(env(&with(var, val))).unwrap_err();
        assert_eq!(err.code, Code::InvalidEnv, "{var}={val}");
    }
}

#[test]
fn del_without_netns_is_fine_and_status_needs_nothing() {
    let mut v = without("CNI_NETNS");
    v.retain(|(k, _)| *k != "CNI_COMMAND");
    v.push(("CNI_COMMAND", "DEL"));
    assert_eq!(parse_env(env(&v)).unwrap().netns, "");
    assert_eq!(
        parse_env(env(&[("CNI_COMMAND", "STATUS")]))
            .unwrap()
            .command,
        Command::Status
    );
}

#[test]
fn config_errors_have_spec_codes() {
    let err = parse_config(b"{not json", Command::Add).unwrap_err();
    assert_eq!(err.code, Code::Decode);
    let err = parse_config(br#"{"cniVersion":"1.1.0","type":"ocelot"}"#, Command::Add).unwrap_err();
    assert_eq!(err.code, Code::InvalidConfig);
    assert!(err.details.contains("name"), "{}", err.details);
    let err = parse_config(
        br#"{"cniVersion":"9.9.9","name":"k8s","type":"ocelot"}"#,
        Command::Add,
    )
    .unwrap_err();
    assert_eq!(err.code, Code::IncompatibleVersion);
    let err = parse_config(
        br#"{"cniVersion":"1.0.0","name":"k8s","type":"ocelot"}"#,
        Command::Gc,
    )
    .unwrap_err();
    assert_eq!(err.code, Code::IncompatibleVersion);
    let err = parse_config(
        br#"{"cniVersion":"1.1.0","name":"k8s","type":"ocelot","mtu":10}"#,
        Command::Add,
    )
    .unwrap_err();
    assert_eq!(err.code, Code::InvalidConfig);
    let err = parse_config(
        br#"{"cniVersion":"1.1.0","name":"k8s","type":"ocelot"}"#,
        Command::Check,
    )
    .unwrap_err();
    assert_eq!(err.code, Code::InvalidConfig);
}

#[test]
fn gc_config_reads_valid_attachments() {
    let c = parse_config(
        br#"{"cniVersion":"1.1.0","name":"k8s","type":"ocelot","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        Command::Gc,
    )
    .unwrap();
    assert_eq!(c.valid_attachments.unwrap()[0].container_id, "a");
}

#[test]
fn error_and_result_json_match_spec() {
    let e = CniError::new(
        Code::TryAgainLater,
        "agent not reachable",
        "connect /x: refused",
    );
    assert_eq!(
        e.to_json("1.1.0"),
        json!({"cniVersion":"1.1.0","code":11,"msg":"agent not reachable","details":"connect /x: refused"})
    );
    let r = add_result(
        "1.1.0",
        "cali0123456789a",
        "eth0",
        "/ns",
        "aa:bb:cc:dd:ee:ff",
        "10.0.0.5".parse().unwrap(),
    );
    assert_eq!(r["ips"][0]["address"], "10.0.0.5/32");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(r["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(version_json("1.1.0")["supportedVersions"][2], "1.1.0");
    assert_eq!(handle_id("abc"), "k8s-pod-network.abc");
}
