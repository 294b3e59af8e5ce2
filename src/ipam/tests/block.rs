//! The block model: names, the CRD mapping, refused specs, attribute records and timestamps.
use super::*;

#[test]
fn names_and_block_spec_round_trip() {
    assert_eq!(block_name(&net("198.19.22.128/26")), "198-19-22-128-26");
    assert_eq!(block_name(&net("fd00:1::/122")), "fd00-1---122");
    assert_eq!(
        affinity_name("node1", &net("198.19.22.128/26")),
        "node1-198-19-22-128-26"
    );
    let long = "n".repeat(260);
    let an = affinity_name(&long, &net("198.19.22.128/26"));
    assert_eq!(an.len(), 252);

    let mut b = Block::new(
        net("198.19.22.128/26"),
        Some(host_affinity("node1")),
        None,
        7,
    );
    let a1 = Attr::new(Some("h1"), [("pod".to_string(), "p1".to_string())]);
    let a2 = Attr::new(Some("h2"), [("pod".to_string(), "p2".to_string())]);
    assert_eq!(b.assign_next(a1.clone(), 8), Some(0));
    assert_eq!(b.assign_next(a2, 8), Some(1));
    assert_eq!(b.assign_next(a1, 8), Some(2)); // shares attribute 0
    assert_eq!(b.to_spec().attributes.len(), 2);
    assert!(b.release_ordinal(0).is_some());
    assert_eq!(
        b.to_spec().attributes.len(),
        2,
        "still referenced by ordinal 2"
    );
    assert!(b.release_ordinal(2).is_some());
    let spec = b.to_spec();
    // h1's record is gone and h2's index was compacted to 0.
    assert_eq!(spec.attributes.len(), 1);
    assert_eq!(spec.allocations[1], Some(0));
    // Release appends: FIFO reuse.
    assert_eq!(&spec.unallocated[spec.unallocated.len() - 2..], &[0, 2]);
    assert_eq!(spec.unallocated[0], 3);
    assert_eq!(
        spec.sequence_number_for_allocation.as_ref().unwrap()["1"],
        8
    );
    assert!(b.release_ordinal(0).is_none(), "double release is a no-op");
    let back = Block::from_spec(&spec).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.to_spec(), spec);
    // JSON round trip through the CRD type keeps everything.
    let json = serde_json::to_string(&spec).unwrap();
    let parsed: IPAMBlockSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(Block::from_spec(&parsed).unwrap(), b);
}

#[test]
fn inconsistent_block_specs_are_refused() {
    let good = Block::new(net("10.0.0.0/30"), None, None, 1).to_spec();
    let mut s = good.clone();
    s.allocations.pop();
    assert!(Block::from_spec(&s).is_err());
    let mut s = good.clone();
    s.unallocated.pop();
    assert!(
        Block::from_spec(&s)
            .unwrap_err()
            .to_string()
            .contains("neither allocated")
    );
    let mut s = good.clone();
    s.allocations[0] = Some(3);
    assert!(Block::from_spec(&s).is_err());
    let mut s = good;
    s.cidr = "10.0.0.1/30".into();
    assert!(Block::from_spec(&s).is_err());
}

#[test]
fn records_keep_foreign_attributes_and_timestamps_verbatim() {
    // Calico writes Go's time format; other tools may add keys. Both must survive a round trip.
    let mut b = Block::new(net("10.0.0.0/30"), Some(host_affinity("n")), None, 5);
    let foreign = Attr::new(
        Some("k8s-pod-network.x"),
        [
            (
                "timestamp".into(),
                "2024-05-01 10:00:00.123456789 +0000 UTC".into(),
            ),
            ("note".into(), "from calico".into()),
            ("namespace".into(), "ns".into()),
            ("pod".into(), "p".into()),
        ],
    );
    let ours = Attr::new(
        Some("k8s-pod-network.y"),
        [("timestamp".into(), "2023-11-14T22:13:20Z".into())],
    );
    // Not canonical (Feb 30, lowercase z): kept as text too.
    let odd = Attr::new(
        None,
        [
            ("timestamp".into(), "2023-02-30T00:00:00Z".into()),
            ("node".into(), "n".into()),
        ],
    );
    let odd2 = Attr::new(None, [("timestamp".into(), "2023-02-01T00:00:00z".into())]);
    for a in [foreign.clone(), ours.clone(), odd, odd2] {
        b.assign_next(a, 6).unwrap();
    }
    assert_eq!(
        foreign.get("timestamp").as_deref(),
        Some("2024-05-01 10:00:00.123456789 +0000 UTC")
    );
    assert_eq!(foreign.get("note").as_deref(), Some("from calico"));
    assert_eq!(foreign.pod(), Some("p"));
    assert_eq!(
        ours.get("timestamp").as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    let spec = b.to_spec();
    assert_eq!(
        spec.attributes[2].secondary["timestamp"],
        "2023-02-30T00:00:00Z"
    );
    assert_eq!(
        spec.attributes[3].secondary["timestamp"],
        "2023-02-01T00:00:00z"
    );
    assert_eq!(spec.attributes[0].secondary.len(), 4);
    let back = Block::from_spec(&spec).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.to_spec(), spec);
}

#[test]
fn rfc3339_and_fnv() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
    // Whole seconds, as a metav1.Time.
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)),
        "2023-11-14T22:13:20Z"
    );
    // Go: fnv.New32().Write([]byte("a")) → 0x050c5d7e.
    assert_eq!(fnv32("a"), 0x050c_5d7e);
}

#[test]
fn block_updates_keep_what_others_put_on_the_object() {
    let mut spec = Block::new(net("10.0.0.0/30"), Some("host:node1".into()), None, 1).to_spec();
    let stored = kube::core::ObjectMeta {
        name: Some("10-0-0-0-30".into()),
        resource_version: Some("41".into()),
        labels: Some(map(&[(BLOCK_NODE_LABEL, "node1"), ("team", "net")])),
        annotations: Some(map(&[("backup.example/skip", "true")])),
        finalizers: Some(vec!["example.com/audit".into()]),
        managed_fields: Some(vec![Default::default()]),
        ..Default::default()
    };
    let obj = block_update(&stored, spec.clone());
    assert_eq!(obj.metadata.resource_version.as_deref(), Some("41"));
    assert_eq!(obj.metadata.name.as_deref(), Some("10-0-0-0-30"));
    assert_eq!(obj.metadata.labels, stored.labels);
    assert_eq!(obj.metadata.annotations, stored.annotations);
    assert_eq!(obj.metadata.finalizers, stored.finalizers);
    assert_eq!(
        obj.metadata.managed_fields, None,
        "the server keeps its own"
    );
    assert_eq!(obj.spec, spec);
    // The node label follows the affinity; the user's label stays.
    spec.affinity = None;
    let released = block_update(&stored, spec.clone());
    assert_eq!(released.metadata.labels, Some(map(&[("team", "net")])));
    spec.affinity = Some("host:node2".into());
    let moved = block_update(&kube::core::ObjectMeta::default(), spec);
    assert_eq!(
        moved.metadata.labels,
        Some(map(&[(BLOCK_NODE_LABEL, "node2")]))
    );
}
