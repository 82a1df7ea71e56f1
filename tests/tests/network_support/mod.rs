//! Helpers of the pod network tests: the test runs again inside a network namespace it
//! creates, and there builds a lab with `deploy/lab/lab.sh` (a control plane and
//! workers, each a kubernel process in its own namespace, bridge networking, the
//! nftables proxy). Pods are HTTP servers (python3) answering their own name; requests
//! are sent from inside a lab node's namespace by a python3 client.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kubernel_e2e::{eventually, kubernel_bin, workspace};
use serde_json::Value;

pub use kubernel_e2e::netns::{in_new_netns, inside};

/// A lab built by `deploy/lab/lab.sh`, torn down when dropped.
pub struct Lab {
    /// `LAB_NAME`: prefix of its namespaces and node names.
    pub name: String,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Lab {
    /// Brings a lab with `workers` workers up (proxy scheduler `scheduler`).
    pub fn up(workers: usize, scheduler: &str) -> Result<Lab> {
        let name = format!("t{}", std::process::id() % 10_000_000);
        let dir = tempfile::tempdir()?;
        let env = vec![
            ("LAB_NAME".to_string(), name.clone()),
            (
                "LAB_DIR".to_string(),
                dir.path().join("lab").to_string_lossy().into_owned(),
            ),
            (
                "KUBERNEL_BIN".to_string(),
                kubernel_bin().to_string_lossy().into_owned(),
            ),
            ("PROXY_SCHEDULER".to_string(), scheduler.to_string()),
            ("LAB_TIMEOUT".to_string(), "60".to_string()),
        ];
        let lab = Lab { name, dir, env };
        lab.script(&["up", &workers.to_string()])?;
        Ok(lab)
    }

    /// The lab's directory (configs, data, logs).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("lab")
    }

    /// The Node name of lab node `node` (`w1`, ...).
    pub fn node(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// Runs `lab.sh args`; its stdout.
    pub fn script(&self, args: &[&str]) -> Result<String> {
        let script = workspace().join("deploy/lab/lab.sh");
        let out = Command::new(&script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "lab.sh {}: {}\n{}\nlogs:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The tail of every node's kubernel log.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for node in ["cp", "w1", "w2"] {
            let log = self.dir().join(node).join("kubernel.log");
            if let Ok(l) = std::fs::read_to_string(&log) {
                let lines: Vec<&str> = l.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                text.push_str(&format!("--- {node}\n{tail}\n"));
            }
        }
        text
    }

    /// `kubectl args` against the lab.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["kubectl"];
        all.extend_from_slice(args);
        self.script(&all)
    }

    /// `kubectl apply` of `manifest`.
    pub fn apply(&self, manifest: &Value) -> Result<()> {
        let file = self.dir.path().join("manifest.json");
        std::fs::write(&file, manifest.to_string())?;
        self.kubectl(&["apply", "-f", &file.to_string_lossy()])?;
        Ok(())
    }

    /// `kubectl get args -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&all)?)?)
    }

    /// `n` HTTP GETs of `url` from inside lab node `node`, each on a new connection:
    /// the bodies, in order (`!<error>` for a failed request).
    pub fn requests(&self, node: &str, url: &str, n: usize) -> Result<Vec<String>> {
        let client = "import sys, urllib.request\n\
            for _ in range(int(sys.argv[2])):\n    \
              try:\n        \
                print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\n    \
              except Exception as e:\n        \
                print('!' + str(e).replace('\\n', ' '))\n";
        let out = self.script(&["exec", node, "python3", "-c", client, url, &n.to_string()])?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// `n` requests from `node` to `url`: how many each pod answered.
    pub fn spread(&self, node: &str, url: &str, n: usize) -> Result<BTreeMap<String, usize>> {
        let mut seen = BTreeMap::new();
        for body in self.requests(node, url, n)? {
            *seen.entry(body).or_default() += 1;
        }
        Ok(seen)
    }

    /// The pods with label `app=<app>`: name -> (podIP, node, Ready).
    pub fn pods(&self, app: &str) -> Result<BTreeMap<String, (String, String, bool)>> {
        let list = self.get_json(&["pods", "-l", &format!("app={app}")])?;
        let mut pods = BTreeMap::new();
        for p in list["items"].as_array().into_iter().flatten() {
            if !p["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            pods.insert(
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                (
                    p["status"]["podIP"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    ready,
                ),
            );
        }
        Ok(pods)
    }

    /// Waits until `n` pods of `app` are Ready; returns them.
    pub fn ready_pods(
        &self,
        app: &str,
        n: usize,
    ) -> Result<BTreeMap<String, (String, String, bool)>> {
        let mut pods = BTreeMap::new();
        eventually(
            Duration::from_secs(60),
            &format!("{n} Ready pods of {app}"),
            || {
                pods = self.pods(app)?;
                Ok(pods.len() == n && pods.values().all(|p| p.2))
            },
        )?;
        Ok(pods)
    }

    /// The pod namespaces of lab node `node` under /run/netns.
    pub fn pod_netns(&self, node: &str) -> Vec<String> {
        let prefix = format!("kn_{}_", self.node(node));
        let mut names: Vec<String> = std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        names.sort();
        names
    }

    /// The pod IPs lab node `node`'s host-local IPAM holds.
    pub fn allocated_ips(&self, node: &str) -> Vec<String> {
        let dir = self.dir().join(node).join("data/kubelet/cni/kubernel");
        let mut ips: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        ips.sort();
        ips
    }

    /// The pod CIDR of lab node `node`.
    pub fn pod_cidr(&self, node: &str) -> Result<String> {
        self.kubectl(&[
            "get",
            "node",
            &self.node(node),
            "-o",
            "jsonpath={.spec.podCIDR}",
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.script(&["down"]) {
            eprintln!("lab down: {e:#}");
        }
    }
}

/// A Deployment (or bare pod spec) of HTTP servers answering their pod name on :8080,
/// Ready while `<flags>/<pod name>` does not exist.
pub fn server_pod_spec(flags: &Path) -> Value {
    let server = "import http.server, os\n\
        name = os.environ['POD_NAME']\n\
        flag = os.path.join(os.environ['FLAGS'], name)\n\
        class H(http.server.BaseHTTPRequestHandler):\n    \
          def do_GET(self):\n        \
            code = 503 if self.path == '/ready' and os.path.exists(flag) else 200\n        \
            body = name.encode()\n        \
            self.send_response(code)\n        \
            self.send_header('Content-Length', str(len(body)))\n        \
            self.send_header('Connection', 'close')\n        \
            self.end_headers()\n        \
            self.wfile.write(body)\n    \
          def log_message(self, *args):\n        \
            pass\n\
        http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n";
    serde_json::json!({
        "containers": [{
            "name": "server",
            "image": "python:3",
            "command": ["python3", "-c", server],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "FLAGS", "value": flags.to_string_lossy()},
            ],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {
                "httpGet": {"path": "/ready", "port": 8080},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        }],
        "terminationGracePeriodSeconds": 2,
    })
}

/// A NodePort Service `name` in front of the pods of `app`: its ClusterIP and NodePort.
pub fn service(lab: &Lab, name: &str, app: &str) -> Result<(String, u16)> {
    lab.apply(&serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "NodePort",
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        }
    }))?;
    let svc = lab.get_json(&["service", name])?;
    let ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
    let port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    if ip.is_empty() || port == 0 {
        bail!("service {name} got no ClusterIP or NodePort: {svc}");
    }
    Ok((ip.to_string(), u16::try_from(port)?))
}

/// Whether `ip` lies in `cidr` (IPv4, `a.b.c.d/n`).
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let parsed = cidr.split_once('/').and_then(|(base, bits)| {
        Some((
            u32::from(base.parse::<std::net::Ipv4Addr>().ok()?),
            bits.parse::<u32>().ok().filter(|b| *b <= 32)?,
        ))
    });
    let (Some((base, bits)), Ok(ip)) = (parsed, ip.parse::<std::net::Ipv4Addr>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == base & mask
}

/// A process group started by [`Lab::stream`]: its stdout lines, each with the
/// moment it was read; the whole group is killed when dropped.
pub struct Stream {
    child: std::process::Child,
    /// The lines, as they come.
    pub lines: std::sync::mpsc::Receiver<(std::time::Instant, String)>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Lab {
    /// Runs `lab.sh args` in its own process group and streams its stdout lines.
    pub fn stream(&self, args: &[&str]) -> Result<Stream> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(workspace().join("deploy/lab/lab.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send((std::time::Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Ok(Stream { child, lines })
    }

    /// Streams GETs of `url` from inside lab node `node`, one after another on new
    /// connections, until `stop` exists: one line per answer (`!<error>` for a failure).
    pub fn request_stream(&self, node: &str, url: &str, stop: &Path) -> Result<Stream> {
        let client = "import os, sys, urllib.request\n\
            while not os.path.exists(sys.argv[2]):\n    \
              try:\n        \
                print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), flush=True)\n    \
              except Exception as e:\n        \
                print('!' + str(e).replace('\\n', ' '), flush=True)\n";
        self.stream(&[
            "exec",
            node,
            "python3",
            "-c",
            client,
            url,
            &stop.to_string_lossy(),
        ])
    }
}
