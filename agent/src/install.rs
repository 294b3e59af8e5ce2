//! Installs the CNI plugin on the node: the `ocelot-cni` binary into the runtime's plugin folder
//! and `10-ocelot.conflist` into its config folder. Both are written atomically (temp file,
//! rename), only Ocelot's own file names are touched, and an unchanged file is not rewritten.
use std::path::{Path, PathBuf};

use serde_json::json;

/// The config file name; the runtime takes the first file in lexical order.
pub const CONFLIST: &str = "10-ocelot.conflist";
/// The plugin binary's name in the plugin folder (the conflist's `type`).
pub const PLUGIN: &str = "ocelot-cni";

/// The conflist Ocelot writes.
pub fn conflist(socket: &Path, mtu: Option<u32>) -> serde_json::Value {
    let mut plugin = json!({ "type": PLUGIN, "agentSocket": socket.display().to_string() });
    if let Some(m) = mtu {
        plugin["mtu"] = json!(m);
    }
    json!({ "cniVersion": "1.1.0", "name": "k8s-pod-network", "plugins": [plugin] })
}

/// Writes `content` to `dir/name` unless it is already there; returns whether it wrote.
pub fn write_atomic(dir: &Path, name: &str, content: &[u8], mode: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let target = dir.join(name);
    if std::fs::read(&target).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(".{name}.ocelot-tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, &target)?;
    Ok(true)
}

/// Installs the plugin binary (from `plugin_src`) and the conflist.
pub fn install(
    plugin_src: &Path,
    bin_dir: Option<&Path>,
    conf_dir: Option<&Path>,
    socket: &Path,
    mtu: Option<u32>,
) -> std::io::Result<()> {
    if let Some(dir) = bin_dir {
        let bytes = std::fs::read(plugin_src)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", plugin_src.display())))?;
        if write_atomic(dir, PLUGIN, &bytes, 0o755)? {
            tracing::info!(dir = %dir.display(), "installed the CNI plugin");
        }
    }
    if let Some(dir) = conf_dir {
        let text = serde_json::to_vec_pretty(&conflist(socket, mtu)).expect("JSON value");
        if write_atomic(dir, CONFLIST, &text, 0o644)? {
            tracing::info!(dir = %dir.display(), file = CONFLIST, "wrote the CNI config");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_and_leaves_other_plugins_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("05-other.conflist"), "{}").unwrap();
        assert!(write_atomic(dir.path(), CONFLIST, b"a", 0o644).unwrap());
        assert!(!write_atomic(dir.path(), CONFLIST, b"a", 0o644).unwrap());
        assert!(write_atomic(dir.path(), CONFLIST, b"b", 0o644).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("05-other.conflist")).unwrap(),
            "{}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    }

    #[test]
    fn the_conflist_names_the_socket_and_mtu() {
        let c = conflist(Path::new("/run/ocelot/cni.sock"), Some(1410));
        assert_eq!(c["plugins"][0]["agentSocket"], "/run/ocelot/cni.sock");
        assert_eq!(c["plugins"][0]["mtu"], 1410);
        assert_eq!(c["cniVersion"], "1.1.0");
    }
}
