//! Deployments: the TOML configuration of three parties on three processes or machines, their
//! TLS identities, and the [`TcpSetup`] of one party.
//!
//! The configuration is a TOML file:
//!
//! ```toml
//! [[party]]
//! id = 0
//! address = "10.0.0.1:7100"        # where party 0 listens (host names are resolved)
//! certificate = "party0.crt"       # PEM; relative paths are relative to this file (not needed
//!                                  # without TLS)
//! key = "party0.key"               # only read by party 0 (each machine needs only its own key)
//!
//! [[party]]
//! id = 1
//! # ...
//!
//! [network]                        # optional; defaults shown
//! timeout_secs = 60                # a silent neighbour fails the run after this long
//! connect_timeout_secs = 60        # all links must be up within this
//! nodelay = true
//! # send_buffer_bytes = 4194304
//! # recv_buffer_bytes = 4194304
//! # max_message_words = 2147483648
//! # max_read_ahead_bytes = 268435456
//! ```
//!
//! The lower id of each pair listens and the higher one connects: party 0 accepts parties 1 and 2,
//! party 1 connects to 0 and accepts 2, party 2 only connects (its address is not used). Each
//! listener must be reachable from the parties with higher ids.
//!
//! [`generate_local`] writes a self-signed certificate and key for each party and a sample
//! configuration (keys with mode 0600).

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::frame::DEFAULT_MAX_WORDS;
use crate::tcp::DEFAULT_MAX_READ_AHEAD;
use crate::{NetError, Security, TcpOptions, TcpSetup, TlsIdentity};

/// The name of the sample configuration that [`generate_local`] writes.
pub const CONFIG_FILE: &str = "cryptgpu.toml";

/// Errors of loading a deployment, building a party's setup, or generating keys.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DeployError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {detail}", path.display())]
    Read {
        /// What the file is ("the configuration", "party 1's certificate", ...).
        what: String,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        detail: String,
    },
    /// A file to be written exists, and overwriting was not asked for.
    #[error("{} exists (overwrite it with `force`)", .0.display())]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("cannot write {}: {detail}", path.display())]
    Write {
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The configuration is not valid TOML of the expected form, or its values are out of range.
    #[error("invalid configuration {}: {detail}", path.display())]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A party's address does not resolve.
    #[error("party {party}'s address {address:?} {detail}")]
    Address {
        /// The party.
        party: usize,
        /// The configured address.
        address: String,
        /// Why it does not resolve.
        detail: String,
    },
    /// A party id outside 0..=2.
    #[error("the party id must be 0, 1 or 2, not {0}")]
    PartyId(usize),
    /// A duration that is not a positive number of seconds.
    #[error("{what} must be a positive number of seconds, not {value}")]
    Seconds {
        /// The setting.
        what: String,
        /// The value given.
        value: f64,
    },
    /// TLS needs a certificate for every party.
    #[error("no certificate for party {0}: add `certificate = \"...\"` to its [[party]] entry")]
    NoCertificate(usize),
    /// TLS needs this party's key.
    #[error("no key for party {0}: add `key = \"...\"` to its [[party]] entry or give the key's path")]
    NoKey(usize),
    /// The certificates and key do not make a TLS identity.
    #[error("party {party}'s TLS identity: {source}")]
    Identity {
        /// The party.
        party: usize,
        /// Why.
        source: NetError,
    },
    /// Certificate generation failed.
    #[error("generating a certificate: {0}")]
    Generate(String),
}

/// `s` seconds as a duration; `what` names the setting in the error.
pub fn seconds(s: f64, what: &str) -> Result<Duration, DeployError> {
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        return Err(DeployError::Seconds { what: what.into(), value: s });
    }
    Ok(Duration::from_secs_f64(s))
}

/// The configuration file's contents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    party: Vec<PartyEntry>,
    #[serde(default)]
    network: Network,
}

/// One `[[party]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartyEntry {
    id: usize,
    address: String,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// The `[network]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Network {
    #[serde(default = "default_secs")]
    timeout_secs: f64,
    #[serde(default = "default_secs")]
    connect_timeout_secs: f64,
    #[serde(default = "yes")]
    nodelay: bool,
    send_buffer_bytes: Option<usize>,
    recv_buffer_bytes: Option<usize>,
    max_message_words: Option<u64>,
    max_read_ahead_bytes: Option<usize>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            timeout_secs: default_secs(),
            connect_timeout_secs: default_secs(),
            nodelay: true,
            send_buffer_bytes: None,
            recv_buffer_bytes: None,
            max_message_words: None,
            max_read_ahead_bytes: None,
        }
    }
}

fn default_secs() -> f64 {
    60.0
}

fn yes() -> bool {
    true
}

/// How a party protects its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Mutual TLS with the configured certificates; the key is the configured one unless `key`
    /// gives another path.
    Tls {
        /// This party's private key (PEM) instead of the `key` of its entry.
        key: Option<PathBuf>,
    },
    /// **Insecure** plain TCP: the PRG keys and every message cross the network in the clear.
    /// For benchmarks and debugging on a trusted host only; no certificates are needed.
    InsecurePlaintext,
}

/// A loaded and checked deployment configuration: the three parties and the network settings.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Entries of parties 0, 1 and 2, in order.
    parties: [PartyEntry; 3],
    network: Network,
    /// The configuration's folder: relative paths are resolved against it.
    dir: PathBuf,
}

impl Deployment {
    /// Reads and checks a configuration file: three `[[party]]` entries with ids 0, 1 and 2, an
    /// optional `[network]` table with positive durations.
    pub fn load(path: &Path) -> Result<Deployment, DeployError> {
        let text = fs::read_to_string(path).map_err(|e| DeployError::Read {
            what: "the configuration".into(),
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let invalid = |detail: String| DeployError::Invalid { path: path.to_path_buf(), detail };
        let config: ConfigFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut ids: Vec<usize> = config.party.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        if ids != [0, 1, 2] {
            return Err(invalid(format!(
                "the configuration must list parties 0, 1 and 2 exactly once (found ids {ids:?})"
            )));
        }
        let mut entries = config.party;
        entries.sort_unstable_by_key(|p| p.id);
        let parties: [PartyEntry; 3] = entries.try_into().map_err(|_| invalid("three parties expected".into()))?;
        let deployment = Deployment {
            parties,
            network: config.network,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        deployment.options().map_err(|e| invalid(e.to_string()))?;
        Ok(deployment)
    }

    fn entry(&self, id: usize) -> Result<&PartyEntry, DeployError> {
        self.parties.get(id).ok_or(DeployError::PartyId(id))
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The resolved listening addresses of the three parties.
    pub fn addrs(&self) -> Result<[SocketAddr; 3], DeployError> {
        let resolve = |party: usize| -> Result<SocketAddr, DeployError> {
            let address = &self.parties[party].address;
            let err = |detail: String| DeployError::Address { party, address: address.clone(), detail };
            address
                .to_socket_addrs()
                .map_err(|e| err(format!("(expected host:port): {e}")))?
                .next()
                .ok_or_else(|| err("resolves to nothing".into()))
        };
        Ok([resolve(0)?, resolve(1)?, resolve(2)?])
    }

    /// The transport options of the `[network]` table (job tag 0: the runner sets it).
    pub fn options(&self) -> Result<TcpOptions, DeployError> {
        let n = &self.network;
        Ok(TcpOptions {
            timeout: seconds(n.timeout_secs, "network.timeout_secs")?,
            connect_timeout: seconds(n.connect_timeout_secs, "network.connect_timeout_secs")?,
            nodelay: n.nodelay,
            send_buffer: n.send_buffer_bytes,
            recv_buffer: n.recv_buffer_bytes,
            max_words: n.max_message_words.unwrap_or(DEFAULT_MAX_WORDS),
            max_read_ahead: n.max_read_ahead_bytes.unwrap_or(DEFAULT_MAX_READ_AHEAD),
            job_tag: 0,
        })
    }

    /// Party `id`'s TLS identity from the configured certificates and its key (`key`, or the
    /// `key` of its entry). The key's contents never appear in errors, only its path.
    pub fn tls_identity(&self, id: usize, key: Option<&Path>) -> Result<TlsIdentity, DeployError> {
        let entry = self.entry(id)?;
        let mut certs = Vec::with_capacity(3);
        for (p, e) in self.parties.iter().enumerate() {
            let cert = e.certificate.as_deref().ok_or(DeployError::NoCertificate(p))?;
            certs.push(read(&self.resolve(cert), &format!("party {p}'s certificate"))?);
        }
        let key_path = match key {
            Some(k) => k.to_path_buf(),
            None => self.resolve(entry.key.as_deref().ok_or(DeployError::NoKey(id))?),
        };
        let key = read(&key_path, &format!("party {id}'s private key"))?;
        TlsIdentity::from_pem(id, [&certs[0], &certs[1], &certs[2]], &key)
            .map_err(|source| DeployError::Identity { party: id, source })
    }

    /// Everything party `id` needs to bring its links up with [`crate::TcpTransport::connect`].
    pub fn setup(&self, id: usize, protection: &Protection) -> Result<TcpSetup, DeployError> {
        self.entry(id)?;
        let security = match protection {
            Protection::Tls { key } => Security::Tls(Box::new(self.tls_identity(id, key.as_deref())?)),
            Protection::InsecurePlaintext => Security::InsecurePlaintext,
        };
        Ok(TcpSetup { id, addrs: self.addrs()?, listener: None, security, options: self.options()? })
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, DeployError> {
    fs::read(path).map_err(|e| DeployError::Read { what: what.into(), path: path.to_path_buf(), detail: e.to_string() })
}

/// Writes `contents` to `path`; when `secret`, the file has mode 0600 (owner only) before anything
/// is written to it, whether it is created or overwritten (`force`).
fn write_file(path: &Path, contents: &str, secret: bool, force: bool) -> Result<(), DeployError> {
    let err = |detail: String| DeployError::Write { path: path.to_path_buf(), detail };
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            DeployError::Exists(path.to_path_buf())
        } else {
            err(e.to_string())
        }
    })?;
    // An overwritten file keeps its old mode: set 0600 before the key is written.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| err(format!("cannot make it private (mode 0600): {e}")))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    f.write_all(contents.as_bytes()).map_err(|e| err(e.to_string()))
}

/// The sample configuration for three parties on `hosts[i]:base_port + i`, with the certificates
/// and keys [`generate_local`] writes.
pub fn sample_config(hosts: [&str; 3], base_port: u16) -> String {
    let mut s = String::from(
        "# cryptgpu party configuration: the three parties of one deployment.\n\
         # Paths are relative to this file. Each party reads only its own `key`: on separate\n\
         # machines, give machine i only partyI.key (and all three certificates).\n",
    );
    for (i, host) in hosts.iter().enumerate() {
        s += &format!(
            "\n[[party]]\nid = {i}\naddress = \"{host}:{}\"\ncertificate = \"party{i}.crt\"\nkey = \"party{i}.key\"\n",
            u32::from(base_port) + i as u32
        );
    }
    s += "\n[network]\ntimeout_secs = 60\nconnect_timeout_secs = 60\nnodelay = true\n";
    s
}

/// Writes a self-signed certificate (ECDSA P-256) and key for each party into `dir` (created if
/// missing) as `party0..2.crt` / `party0..2.key`, keys with mode 0600, and the
/// [`sample_config`] as [`CONFIG_FILE`]; returns the configuration's path. Existing files are an
/// error unless `force`.
pub fn generate_local(dir: &Path, hosts: [&str; 3], base_port: u16, force: bool) -> Result<PathBuf, DeployError> {
    if base_port > u16::MAX - 2 {
        return Err(DeployError::Generate(format!("base port {base_port} leaves no room for three ports")));
    }
    fs::create_dir_all(dir).map_err(|e| DeployError::Write { path: dir.to_path_buf(), detail: e.to_string() })?;
    for i in 0..3 {
        let ck = rcgen::generate_simple_self_signed(vec![format!("party{i}.cryptgpu")])
            .map_err(|e| DeployError::Generate(e.to_string()))?;
        write_file(&dir.join(format!("party{i}.crt")), &ck.cert.pem(), false, force)?;
        write_file(&dir.join(format!("party{i}.key")), &ck.key_pair.serialize_pem(), true, force)?;
    }
    let config = dir.join(CONFIG_FILE);
    write_file(&config, &sample_config(hosts, base_port), false, force)?;
    Ok(config)
}
