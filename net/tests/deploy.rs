//! Deployment configurations: loading, validation, TLS identities, generated keys.

use std::path::{Path, PathBuf};

use cryptgpu_net::deploy::{generate_local, sample_config, CONFIG_FILE};
use cryptgpu_net::{DeployError, Deployment, Protection, Security};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptgpu-net-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load_text(dir: &Path, text: &str) -> Result<Deployment, DeployError> {
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    Deployment::load(&path)
}

#[test]
fn generated_deployment_gives_tls_setups_with_private_keys() {
    let dir = temp_dir("gen");
    let path = generate_local(&dir, ["127.0.0.1", "127.0.0.1", "localhost"], 7200, false).unwrap();
    assert_eq!(path, dir.join(CONFIG_FILE));
    #[cfg(unix)]
    for i in 0..3 {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(format!("party{i}.key"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Existing files are kept unless forced.
    let again = generate_local(&dir, ["127.0.0.1"; 3], 7200, false).unwrap_err();
    assert_eq!(again, DeployError::Exists(dir.join("party0.crt")));
    generate_local(&dir, ["127.0.0.1"; 3], 7200, true).unwrap();

    let d = Deployment::load(&path).unwrap();
    let addrs = d.addrs().unwrap();
    assert_eq!(addrs.map(|a| a.port()), [7200, 7201, 7202]);
    for id in 0..3 {
        let setup = d.setup(id, &Protection::Tls { key: None }).unwrap();
        assert_eq!(setup.id, id);
        assert!(matches!(&setup.security, Security::Tls(t) if t.me() == id));
        assert_eq!(setup.options.timeout.as_secs(), 60);
    }
    // Another party's key does not match this party's certificate.
    let wrong = d.setup(0, &Protection::Tls { key: Some(dir.join("party1.key")) }).unwrap_err();
    assert!(matches!(wrong, DeployError::Identity { party: 0, .. }), "{wrong}");
    assert_eq!(d.setup(3, &Protection::InsecurePlaintext).unwrap_err(), DeployError::PartyId(3));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_configurations_are_explained() {
    let dir = temp_dir("invalid");
    let two = "[[party]]\nid = 0\naddress = \"127.0.0.1:1\"\n[[party]]\nid = 2\naddress = \"127.0.0.1:2\"\n";
    let e = load_text(&dir, two).unwrap_err().to_string();
    assert!(e.contains("must list parties 0, 1 and 2 exactly once (found ids [0, 2])"), "{e}");
    let e = load_text(&dir, "[[party]]\nid = 0\nadress = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("invalid configuration") && e.contains("adress"), "{e}");
    let no_tls = sample_config(["127.0.0.1"; 3], 7300).replace("certificate = \"party0.crt\"\n", "");
    let d = load_text(&dir, &no_tls).unwrap();
    // Plain TCP needs no certificates; TLS names the missing one.
    assert!(d.setup(1, &Protection::InsecurePlaintext).is_ok());
    assert_eq!(d.setup(1, &Protection::Tls { key: None }).unwrap_err(), DeployError::NoCertificate(0));
    let slow = sample_config(["127.0.0.1"; 3], 7300).replace("timeout_secs = 60\n", "timeout_secs = -1\n");
    let e = load_text(&dir, &slow).unwrap_err().to_string();
    assert!(e.contains("network.timeout_secs must be a positive number of seconds, not -1"), "{e}");
    let bad = sample_config(["no-such-host.invalid", "127.0.0.1", "127.0.0.1"], 7300);
    let e = load_text(&dir, &bad).unwrap().addrs().unwrap_err();
    assert!(matches!(e, DeployError::Address { party: 0, .. }), "{e}");
    let missing = Deployment::load(&dir.join("missing.toml")).unwrap_err().to_string();
    assert!(missing.starts_with("cannot read the configuration"), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}
