//! What to check: the URLs of one deployment, from flags or from the Terraform outputs.

use std::path::Path;
use std::process::Command;

/// The Terraform outputs (terraform/outputs.tf) the targets default to.
const WEBSOCKET_URL_OUTPUT: &str = "websocket_url";
const LOAD_BALANCER_URL_OUTPUT: &str = "load_balancer_url";

/// The four addresses the checks use.
#[derive(Debug)]
pub struct Targets {
    /// `wss://<cloudfront>/wss` (or `ws://` for a local server).
    pub websocket: String,
    /// `https://<cloudfront>/health`.
    pub health: String,
    /// `http://<alb>/wss`, or `https://origin.<domain>/wss` with a domain.
    pub alb: String,
    /// `http://<cloudfront>/`.
    pub plain: String,
}

impl Targets {
    /// Fills what the flags leave out from `terraform output`, and derives the rest from the
    /// WebSocket URL.
    pub fn resolve(
        url: Option<String>,
        alb: Option<String>,
        plain_url: Option<String>,
        terraform_dir: &Path,
    ) -> Result<Targets, String> {
        let outputs = if url.is_none() || alb.is_none() {
            Some(terraform_outputs(terraform_dir)?)
        } else {
            None
        };
        let output = |name: &str| -> Result<String, String> {
            outputs
                .as_ref()
                .and_then(|outputs| outputs[name]["value"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    format!(
                        "`terraform output` in {} has no {name}: run `make apply` first, or pass it as a flag",
                        terraform_dir.display()
                    )
                })
        };
        let websocket = match url {
            Some(url) => url,
            None => output(WEBSOCKET_URL_OUTPUT)?,
        };
        let (secure, host) = match websocket.split_once("://") {
            Some(("wss", rest)) => (true, rest),
            Some(("ws", rest)) => (false, rest),
            _ => {
                return Err(format!(
                    "--url must start with wss:// or ws://, got {websocket:?}"
                ));
            }
        };
        let host = host.split('/').next().unwrap_or_default().to_owned();
        if host.is_empty() {
            return Err(format!("--url has no host: {websocket:?}"));
        }
        let alb = match alb {
            Some(alb) => alb,
            None => output(LOAD_BALANCER_URL_OUTPUT)?,
        };
        let alb = alb.trim_end_matches('/');
        let alb_base = if alb.contains("://") {
            alb.to_owned()
        } else {
            format!("http://{alb}")
        };
        Ok(Targets {
            health: format!("{}://{host}/health", if secure { "https" } else { "http" }),
            plain: plain_url.unwrap_or_else(|| format!("http://{host}/")),
            alb: format!("{alb_base}/wss"),
            websocket,
        })
    }
}

fn terraform_outputs(dir: &Path) -> Result<serde_json::Value, String> {
    let output = Command::new("terraform")
        .arg(format!("-chdir={}", dir.display()))
        .args(["output", "-json"])
        .output()
        .map_err(|err| {
            format!("cannot run terraform ({err}): install it, or pass --url and --alb")
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("`terraform output` failed: {}", stderr.trim()));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|err| format!("`terraform output -json` is not JSON: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str, alb: &str) -> Result<Targets, String> {
        Targets::resolve(
            Some(url.to_owned()),
            Some(alb.to_owned()),
            None,
            Path::new("."),
        )
    }

    #[test]
    fn derives_every_address_from_the_websocket_url() {
        let targets = resolve("wss://d1.cloudfront.net/wss", "my-alb.elb.amazonaws.com").unwrap();
        assert_eq!(targets.health, "https://d1.cloudfront.net/health");
        assert_eq!(targets.plain, "http://d1.cloudfront.net/");
        assert_eq!(targets.alb, "http://my-alb.elb.amazonaws.com/wss");
    }

    #[test]
    fn reads_outputs_the_root_module_declares() {
        let outputs_tf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform/outputs.tf");
        let outputs = std::fs::read_to_string(&outputs_tf).unwrap();
        for name in [WEBSOCKET_URL_OUTPUT, LOAD_BALANCER_URL_OUTPUT] {
            assert!(
                outputs.contains(&format!("output \"{name}\" {{")),
                "{} declares no output {name}",
                outputs_tf.display()
            );
        }
    }

    #[test]
    fn keeps_the_scheme_of_a_load_balancer_url() {
        let targets = resolve("wss://ws.example.com/wss", "https://origin.ws.example.com").unwrap();
        assert_eq!(targets.alb, "https://origin.ws.example.com/wss");
    }

    #[test]
    fn refuses_what_is_not_a_websocket_url() {
        assert!(
            resolve("https://d1.cloudfront.net/wss", "alb")
                .unwrap_err()
                .contains("wss://")
        );
        assert!(
            resolve("wss:///wss", "alb")
                .unwrap_err()
                .contains("no host")
        );
    }
}
