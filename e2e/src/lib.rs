//! Test support: a real etcd + kube-apiserver, and nodes/pods as network namespaces.

pub mod cluster;
pub mod lab;
