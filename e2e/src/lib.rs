//! Test support: a real etcd + kube-apiserver, and nodes/pods as network namespaces.

pub mod lab;
