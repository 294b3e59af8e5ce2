//! Public keys derived by `ocelot::wireguard` agree with wireguard-tools' `wg pubkey`, for keys from
//! `wg genkey` and for keys generated from fresh OS randomness (unclamped bytes included).
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use ocelot::wireguard::{KEY_LEN, PrivateKey};

fn wg(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wireguard-tools' `wg` must be installed (apt-get install wireguard-tools)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "wg {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn os_random() -> [u8; KEY_LEN] {
    let mut b = [0u8; KEY_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    b
}

#[test]
fn public_keys_agree_with_wg_pubkey() {
    for _ in 0..8 {
        let private = wg(&["genkey"], "");
        let ours = PrivateKey::from_base64(&private).unwrap().public_key();
        assert_eq!(
            ours.to_base64(),
            wg(&["pubkey"], &private),
            "wg genkey {private}"
        );

        let raw = os_random();
        for k in [PrivateKey::from_bytes(raw), PrivateKey::generate(raw)] {
            assert_eq!(k.public_key().to_base64(), wg(&["pubkey"], &k.to_base64()));
        }
    }
}
