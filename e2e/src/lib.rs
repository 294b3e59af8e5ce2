//! Test support: a real etcd + kube-apiserver, nodes/pods as network namespaces, and a lab of real
//! Kubernetes nodes (kubelet + containerd + runc) on those namespaces.

pub mod agent;
pub mod cluster;
pub mod ctl;
pub mod daemon;
pub mod helm;
pub mod kubelab;
pub mod lab;
pub mod operator;
pub mod pki;
pub mod proc;
pub mod seed_live;
