//! Step 6: WireGuard on with the seed's patch, observed on node1 and on the fabric, then off again.
use std::time::Duration;

use anyhow::{Result, ensure};

use super::steps::{CONVERGE, CUSTOMER_POD, WIREGUARD_IP};
use super::{Progress, SeedLab};

fn patch(lab: &SeedLab, on: bool) -> Result<()> {
    let p = format!(r#"{{"spec":{{"wireguardEnabled":{on}}}}}"#);
    println!("$ kubectl patch felixconfiguration default --type=merge -p '{p}'");
    print!(
        "{}",
        lab.kube.kubectl_ok([
            "patch",
            "felixconfiguration",
            "default",
            "--type=merge",
            "-p",
            &p
        ])?
    );
    Ok(())
}

fn public_key(lab: &SeedLab) -> Result<String> {
    lab.kube.kubectl_ok([
        "get",
        "nodes.projectcalico.org",
        "node1",
        "-o",
        "jsonpath={.status.wireguardPublicKey}",
    ])
}

/// The summary pod on node2 (the customer on node1 pings it across the fabric).
fn remote_pod_ip(lab: &SeedLab) -> Result<String> {
    let out = lab.kube.kubectl_ok([
        "get",
        "pods",
        "-n",
        "yaobank",
        "-l",
        "app=summary",
        "--field-selector",
        "spec.nodeName=node2",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ])?;
    ensure!(!out.is_empty(), "no summary pod on node2");
    Ok(out)
}

/// While the customer pod pings `to` three times: (ICMP packets, WireGuard UDP packets) that tcpdump
/// sees on node1's `ens4`.
fn fabric_capture(lab: &SeedLab, to: &str) -> Result<(usize, usize)> {
    let node1 = lab.kube.node("node1").netns();
    let (text, ping) = node1.capture(
        "ens4",
        "icmp or udp port 51820",
        Duration::from_secs(5),
        || {
            lab.kube.kubectl_ok([
                "exec",
                "-n",
                "yaobank",
                CUSTOMER_POD,
                "--",
                "ping",
                "-c",
                "3",
                "-W",
                "2",
                to,
            ])
        },
    )?;
    ping?;
    let icmp = text.lines().filter(|l| l.contains("ICMP")).count();
    let udp = text.lines().filter(|l| l.contains(".51820 >")).count();
    Ok((icmp, udp))
}

pub fn step6_wireguard(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step("WireGuard on with the seed's patch: public key, wireguard.cali, only WireGuard UDP on the fabric; then off");
    let remote = remote_pod_ip(lab)?;
    patch(lab, true)?;
    let key = lab.eventually("node1's wireguardPublicKey", CONVERGE, || {
        let k = public_key(lab)?;
        ensure!(k.len() == 44 && k.ends_with('='), "no key yet ({k:?})");
        Ok(k)
    })?;
    println!(
        "$ kubectl get nodes.projectcalico.org node1 -o yaml | grep wireguardPublicKey\nwireguardPublicKey: {key}"
    );
    let node1 = lab.kube.node("node1");
    let addr = lab.eventually("wireguard.cali on node1", CONVERGE, || {
        let out = node1.exec_ok(["ip", "addr", "show", "wireguard.cali"])?;
        ensure!(out.contains(" mtu 1400 "), "mtu is not 1400:\n{out}");
        ensure!(
            out.contains(&format!(
                "inet {WIREGUARD_IP}/32 brd {WIREGUARD_IP} scope global wireguard.cali"
            )),
            "no `inet {WIREGUARD_IP}/32 brd {WIREGUARD_IP} scope global wireguard.cali`:\n{out}"
        );
        Ok(out)
    })?;
    println!("$ ip addr show wireguard.cali   (node1)\n{addr}");
    let (icmp, udp) = lab.eventually("pod traffic through the tunnel", CONVERGE, || {
        let (icmp, udp) = fabric_capture(lab, &remote)?;
        ensure!(
            icmp == 0 && udp >= 3,
            "fabric saw {icmp} ICMP and {udp} WireGuard packets"
        );
        Ok((icmp, udp))
    })?;
    println!(
        "customer (node1) -> summary {remote} (node2): 3 pings answered; node1's ens4 saw {icmp} ICMP, {udp} UDP 51820 packets"
    );

    patch(lab, false)?;
    lab.eventually("WireGuard off on node1", CONVERGE, || {
        let k = public_key(lab)?;
        ensure!(k.is_empty(), "the key is still published");
        let links = node1.exec_ok(["ip", "link", "show"])?;
        ensure!(
            !links.contains("wireguard.cali"),
            "wireguard.cali is still there"
        );
        Ok(())
    })?;
    let (icmp, _) = lab.eventually("pod traffic over BGP again", CONVERGE, || {
        let (icmp, udp) = fabric_capture(lab, &remote)?;
        ensure!(
            icmp >= 3 && udp == 0,
            "fabric saw {icmp} ICMP, {udp} WireGuard"
        );
        Ok((icmp, udp))
    })?;
    println!(
        "off: no key in the Calico Node, no wireguard.cali; pings cross the fabric as plain ICMP ({icmp} seen)"
    );
    Ok(())
}
