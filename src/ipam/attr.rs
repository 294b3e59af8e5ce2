//! Allocation records (IPAMBlock `attributes`): handle plus secondary attributes, with the parts
//! many records repeat interned, and the timestamp kept as a number.
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::stamp::{self, StampForm};
use crate::api::ipam::AllocationAttribute;

/// Secondary attribute keys Calico writes (libcalico-go ipam `Attribute*`).
pub const ATTR_NODE: &str = "node";
/// Pod namespace.
pub const ATTR_NAMESPACE: &str = "namespace";
/// Pod name.
pub const ATTR_POD: &str = "pod";
/// UTC time of assignment.
pub const ATTR_TIMESTAMP: &str = "timestamp";
/// Allocation type; set for tunnel addresses (`wireguardTunnelAddress`, ...).
pub const ATTR_TYPE: &str = "type";

/// The part of an allocation record that many records repeat: every secondary attribute except
/// `pod` and a `timestamp` in a form we print back exactly (node, namespace, type, anything
/// else). Interned by the engine, so a node's pods in one namespace share one of these.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Shared {
    /// Sorted by key, keys unique.
    pairs: Box<[(Arc<str>, Arc<str>)]>,
    /// The record's `timestamp` is [`Attr::stamp`] printed in this form.
    stamped: Option<StampForm>,
}

/// An allocation record, compacted (48 bytes plus the handle and pod name): the handle here is the
/// only copy the engine keeps (its handle index points at records), the repeated attributes are
/// interned, and the timestamp is kept as a number and printed only when a spec is rendered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attr {
    /// Handle ID, e.g. `k8s-pod-network.<containerID>`; None on records written without one.
    pub handle: Option<Box<str>>,
    shared: Arc<Shared>,
    pod: Option<Box<str>>,
    /// Nanoseconds since the epoch when `shared.stamped`, else 0 (so equal records compare equal).
    stamp: u64,
}

impl Attr {
    /// Build from a handle and key/value pairs (any order; a repeated key keeps its first value).
    pub fn new(
        handle: Option<&str>,
        secondary: impl IntoIterator<Item = (String, String)>,
    ) -> Attr {
        let pairs: Vec<(String, String)> = secondary.into_iter().collect();
        Attr::build(
            handle.map(Box::from),
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut Interner::default(),
        )
    }

    /// Build a record, sharing strings and the repeated part through `interner`.
    pub(crate) fn build<'a>(
        handle: Option<Box<str>>,
        secondary: impl IntoIterator<Item = (&'a str, &'a str)>,
        interner: &mut Interner,
    ) -> Attr {
        let mut rest: Vec<(&str, &str)> = Vec::new();
        let (mut pod, mut stamp) = (None, None);
        for (k, v) in secondary {
            if rest.iter().any(|(rk, _)| *rk == k)
                || (k == ATTR_POD && pod.is_some())
                || (k == ATTR_TIMESTAMP && stamp.is_some())
            {
                continue;
            }
            match k {
                ATTR_POD => pod = Some(v),
                ATTR_TIMESTAMP => match stamp::parse(v) {
                    Some(st) => stamp = Some(st),
                    // Someone else's format: kept verbatim.
                    None => rest.push((k, v)),
                },
                _ => rest.push((k, v)),
            }
        }
        rest.sort_unstable();
        Attr::from_parts(handle, &rest, pod, stamp, interner)
    }

    /// Build from parts already split: `pairs` sorted by key, unique, without `pod`, and without
    /// `timestamp` when `stamp` (nanoseconds since the epoch, and the text form) is given. The
    /// assignment hot path.
    pub(crate) fn from_parts(
        handle: Option<Box<str>>,
        pairs: &[(&str, &str)],
        pod: Option<&str>,
        stamp: Option<(u64, StampForm)>,
        interner: &mut Interner,
    ) -> Attr {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        Attr {
            handle,
            shared: interner.shared(pairs, stamp.map(|s| s.1)),
            pod: pod.map(Box::from),
            stamp: stamp.map_or(0, |s| s.0),
        }
    }

    /// A secondary attribute by key.
    pub fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        match key {
            ATTR_POD => self.pod.as_deref().map(Cow::Borrowed),
            ATTR_TIMESTAMP if self.shared.stamped.is_some() => self.stamp_text().map(Cow::Owned),
            _ => self.text(key).map(Cow::Borrowed),
        }
    }

    fn stamp_text(&self) -> Option<String> {
        Some(stamp::render(self.stamp, self.shared.stamped?))
    }

    /// A secondary attribute kept as text: any key but `pod` and a timestamp in a known form.
    fn text(&self, key: &str) -> Option<&str> {
        let p = &self.shared.pairs;
        p.binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*p[i].1)
    }

    /// The `node` attribute.
    pub fn node(&self) -> Option<&str> {
        self.text(ATTR_NODE)
    }

    /// The `namespace` attribute.
    pub fn namespace(&self) -> Option<&str> {
        self.text(ATTR_NAMESPACE)
    }

    /// The `pod` attribute.
    pub fn pod(&self) -> Option<&str> {
        self.pod.as_deref()
    }

    /// The `type` attribute (set on tunnel addresses).
    pub fn kind(&self) -> Option<&str> {
        self.text(ATTR_TYPE)
    }

    /// The handle as a string slice.
    pub fn handle(&self) -> Option<&str> {
        self.handle.as_deref()
    }

    /// All secondary attributes, unordered.
    pub fn secondary(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> + '_ {
        let pod = self.pod.as_deref().map(|p| (ATTR_POD, Cow::Borrowed(p)));
        let stamp = self.stamp_text().map(|t| (ATTR_TIMESTAMP, Cow::Owned(t)));
        self.shared
            .pairs
            .iter()
            .map(|(k, v)| (&**k, Cow::Borrowed(&**v)))
            .chain(pod)
            .chain(stamp)
    }

    pub(crate) fn from_api(a: &AllocationAttribute, interner: &mut Interner) -> Attr {
        Attr::build(
            a.handle_id.as_deref().map(Box::from),
            a.secondary.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            interner,
        )
    }

    pub(crate) fn to_api(&self) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: self.handle.as_deref().map(str::to_string),
            secondary: self
                .secondary()
                .map(|(k, v)| (k.to_string(), v.into_owned()))
                .collect(),
        }
    }
}

/// Shares the strings and record parts that repeat across allocations (node names, namespaces,
/// attribute keys). Entries nobody else holds any more are dropped whenever the table has doubled.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    hasher: DefaultHashBuilder,
    strs: HashTable<Arc<str>>,
    shared: HashTable<Arc<Shared>>,
    purge_at: usize,
}

impl Interner {
    /// The shared copy of a string.
    pub(crate) fn str(&mut self, s: &str) -> Arc<str> {
        let h = self.hasher.hash_one(s);
        if let Some(a) = self.strs.find(h, |a| **a == *s) {
            return a.clone();
        }
        self.maybe_purge();
        let a: Arc<str> = Arc::from(s);
        let hasher = &self.hasher;
        self.strs
            .insert_unique(h, a.clone(), |a| hasher.hash_one(&**a));
        a
    }

    /// The shared record part for sorted, key-unique `pairs`.
    fn shared(&mut self, pairs: &[(&str, &str)], stamped: Option<StampForm>) -> Arc<Shared> {
        let h = hash_pairs(&self.hasher, pairs.iter().copied(), stamped);
        let same = |s: &Arc<Shared>| {
            s.stamped == stamped
                && s.pairs.len() == pairs.len()
                && s.pairs
                    .iter()
                    .zip(pairs)
                    .all(|((k, v), (pk, pv))| **k == **pk && **v == **pv)
        };
        if let Some(s) = self.shared.find(h, same) {
            return s.clone();
        }
        self.maybe_purge();
        let pairs = pairs
            .iter()
            .map(|(k, v)| (self.str(k), self.str(v)))
            .collect();
        let s = Arc::new(Shared { pairs, stamped });
        let hasher = &self.hasher;
        self.shared.insert_unique(h, s.clone(), |s| {
            hash_pairs(hasher, s.pairs.iter().map(|(k, v)| (&**k, &**v)), s.stamped)
        });
        s
    }

    fn maybe_purge(&mut self) {
        let len = self.strs.len() + self.shared.len();
        if len < self.purge_at {
            return;
        }
        // Parts first: they hold strings.
        self.shared.retain(|s| Arc::strong_count(s) > 1);
        self.strs.retain(|s| Arc::strong_count(s) > 1);
        self.purge_at = (2 * (self.strs.len() + self.shared.len())).max(1024);
    }
}

fn hash_pairs<'a>(
    hasher: &DefaultHashBuilder,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    stamped: Option<StampForm>,
) -> u64 {
    let mut h = hasher.build_hasher();
    for (k, v) in pairs {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.write_u8(match stamped {
        None => 0,
        Some(StampForm::Go) => 1,
        Some(StampForm::Rfc3339) => 2,
    });
    h.finish()
}
