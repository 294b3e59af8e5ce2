//! `ocelot-cni`: the CNI plugin executable kubelet runs; forwards requests to the agent socket.
fn main() {
    eprintln!("ocelot-cni: the CNI plugin is not wired to the agent yet");
    std::process::exit(1);
}
