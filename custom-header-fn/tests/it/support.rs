//! What the integration tests share: the external tools (moto, cargo-lambda), processes that end
//! with the test, clients pointed at moto, distributions and secrets to work on, and the events.
//!
//! A missing tool fails the test with what to install: these tests never skip.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_cloudfront::types::{
    CustomHeaders, CustomOriginConfig, DefaultCacheBehavior, DistributionConfig, Origin,
    OriginCustomHeader, OriginProtocolPolicy, Origins, ViewerProtocolPolicy,
};
use aws_sdk_secretsmanager::Client as SecretsClient;
use custom_header_fn::{Clients, Propagation, Retry};
use serde_json::{Value, json};

/// Production's policy, without the waiting.
pub const FAST_RETRY: Retry = Retry {
    attempts: 5,
    first_backoff: Duration::from_millis(1),
    propagation: Propagation {
        budget: Duration::from_secs(5),
        first_backoff: Duration::from_millis(1),
    },
};

/// Origins of a test distribution: id and custom headers (name, value).
pub type OriginSpec<'a> = (&'a str, &'a [(&'a str, &'a str)]);

/// An external program found on `PATH`, or in the workspace's `.venv/bin` where `make tools`
/// installs it.
pub fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    let venv = workspace_root().join(".venv/bin");
    on_path
        .chain([venv.clone()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not on PATH nor in {}: run `make tools` (requirements-dev.txt installs moto[server] and cargo-lambda)",
                venv.display()
            )
        })
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the workspace")
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A child process, killed when the test ends however it ends; its output goes to a log file
/// named in every failure.
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` with standard output and error in `<target tmp>/<name>-<id>.log`.
    pub fn start(name: &str, id: &str, mut command: Command) -> Self {
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{id}.log"));
        let file = File::create(&log).expect("a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        Self { child, log }
    }

    /// Waits until the process accepts connections on `port`.
    pub fn wait_for_port(&mut self, port: u16) {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self.wait_until(&format!("listening on {port}"), |_| {
            TcpStream::connect_timeout(&address, Duration::from_millis(200))
                .ok()
                .map(drop)
        });
    }

    /// Waits for a line starting with `prefix` and returns the rest of it.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        self.wait_until(&format!("printing {prefix:?}"), |process| {
            process
                .output()
                .lines()
                .find_map(|line| line.strip_prefix(prefix))
                .map(|rest| rest.trim().to_owned())
        })
    }

    /// Polls `ready` until it gives a value; panics, naming `what` and the log, if the process
    /// exits first or 60 s pass.
    fn wait_until<T>(&mut self, what: &str, ready: impl Fn(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(value) = ready(self) {
                return value;
            }
            if let Some(status) = self.child.try_wait().expect("process status") {
                panic!(
                    "exited ({status}) before {what}; see {}",
                    self.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not {what} after 60 s; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).expect("the log file")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A moto server of its own for one test, on a free loopback port.
pub struct Moto {
    pub endpoint: String,
    _process: Process,
}

impl Moto {
    /// Starts moto on a port the kernel picks (`-p 0`), read from the line the server prints once
    /// it listens, so no other process can take the port first.
    pub fn start() -> Self {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let mut command = Command::new(tool("moto_server"));
        command.args(["-H", "127.0.0.1", "-p", "0"]);
        let instance = STARTED.fetch_add(1, Ordering::Relaxed);
        let mut process = Process::start(
            "moto",
            &format!("{}-{instance}", std::process::id()),
            command,
        );
        let endpoint = process.wait_for_line(" * Running on ");
        Self {
            endpoint,
            _process: process,
        }
    }

    /// Clients that talk to this server only, with dummy credentials, in us-east-1.
    pub fn clients(&self) -> Clients {
        self.clients_in("us-east-1")
    }

    /// Clients in `region` (moto keeps secrets per region, as Secrets Manager does).
    pub fn clients_in(&self, region: &'static str) -> Clients {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static(region))
            .endpoint_url(&self.endpoint)
            .http_client(custom_header_fn::http_client())
            .credentials_provider(SharedCredentialsProvider::new(test_credentials()))
            .build();
        Clients::new(&config)
    }
}

pub fn test_credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "tests")
}

/// CloudFront (and moto) refuse a second distribution with the same caller reference.
static CALLER_REFERENCES: AtomicU32 = AtomicU32::new(0);

/// A distribution config with every field CloudFront requires and some it does not, so that a
/// lost field shows.
pub fn distribution_config(origins: &[OriginSpec]) -> DistributionConfig {
    let items: Vec<Origin> = origins
        .iter()
        .map(|(id, headers)| {
            let headers: Vec<OriginCustomHeader> = headers
                .iter()
                .map(|(name, value)| {
                    OriginCustomHeader::builder()
                        .header_name(*name)
                        .header_value(*value)
                        .build()
                        .expect("a header")
                })
                .collect();
            Origin::builder()
                .id(*id)
                .domain_name(format!("{id}.example.com"))
                .origin_path("/app")
                .connection_attempts(2)
                .connection_timeout(7)
                .custom_headers(
                    CustomHeaders::builder()
                        .quantity(headers.len() as i32)
                        .set_items((!headers.is_empty()).then_some(headers))
                        .build()
                        .expect("custom headers"),
                )
                .custom_origin_config(
                    CustomOriginConfig::builder()
                        .http_port(80)
                        .https_port(443)
                        .origin_protocol_policy(OriginProtocolPolicy::HttpsOnly)
                        .origin_read_timeout(45)
                        .build()
                        .expect("a custom origin config"),
                )
                .build()
                .expect("an origin")
        })
        .collect();
    DistributionConfig::builder()
        .caller_reference(format!(
            "custom-header-fn-{}",
            CALLER_REFERENCES.fetch_add(1, Ordering::Relaxed)
        ))
        .comment("custom-header-fn test")
        .enabled(true)
        .default_root_object("index.html")
        .origins(
            Origins::builder()
                .quantity(items.len() as i32)
                .set_items(Some(items))
                .build()
                .expect("origins"),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id(origins[0].0)
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .compress(true)
                .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
                .build()
                .expect("a default cache behavior"),
        )
        .build()
        .expect("a distribution config")
}

/// Creates a distribution in moto and returns its id.
pub async fn create_distribution(client: &Client, origins: &[OriginSpec<'_>]) -> String {
    let created = client
        .create_distribution()
        .distribution_config(distribution_config(origins))
        .send()
        .await
        .expect("moto creates the distribution");
    created.distribution.expect("a distribution").id
}

/// The distribution's config as CloudFront (moto) has it now.
pub async fn read_config(client: &Client, id: &str) -> DistributionConfig {
    client
        .get_distribution_config()
        .id(id)
        .send()
        .await
        .expect("the distribution config")
        .distribution_config
        .expect("a config")
}

/// The custom headers of one origin, in order, as (name, value).
pub fn headers(config: &DistributionConfig, origin_id: &str) -> Vec<(String, String)> {
    let origin = config
        .origins
        .as_ref()
        .and_then(|origins| origins.items.iter().find(|origin| origin.id == origin_id))
        .unwrap_or_else(|| panic!("no origin {origin_id}"));
    origin
        .custom_headers
        .as_ref()
        .and_then(|custom| custom.items.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|header| (header.header_name.clone(), header.header_value.clone()))
        .collect()
}

/// `pairs` as owned (name, value) pairs, to compare with [`headers`].
pub fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A secret as the origin-secret module creates it: no value yet. Returns its ARN.
pub async fn create_secret(secrets: &SecretsClient, name: &str) -> String {
    let created = secrets
        .create_secret()
        .name(name)
        .send()
        .await
        .expect("moto creates the secret");
    created.arn.expect("an ARN")
}

/// Writes `text` as the secret's AWSCURRENT version, as an operator with the console could.
pub async fn put_document(secrets: &SecretsClient, secret_id: &str, text: &str) {
    secrets
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(text)
        .send()
        .await
        .expect("moto stores the value");
}

/// The AWSCURRENT document, as Terraform's data source reads it, and its version id.
pub async fn document(secrets: &SecretsClient, secret_id: &str) -> (Value, String) {
    let read = secrets
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("the secret's current version");
    let text = read.secret_string().expect("a string value");
    (
        serde_json::from_str(text).expect("a JSON document"),
        read.version_id().expect("a version id").to_owned(),
    )
}

/// The values of a document, for checking that an answer, error or log shows none of them.
pub fn values(document: &Value) -> Vec<String> {
    ["current", "pending", "previous"]
        .into_iter()
        .filter_map(|key| document[key].as_str().map(str::to_owned))
        .collect()
}

/// Fails if `text` (an answer, an error or a log) shows any of `secrets`.
pub fn assert_shows_none(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "a value shows in {text}");
    }
}

/// What `aws_lambda_invocation` with `lifecycle_scope = "CRUD"` sends: the module's input plus
/// `tf` (whose `prev_input` the function does not need).
pub fn terraform(secret_id: &str, action: &str) -> Value {
    let input = json!({ "SecretId": secret_id });
    json!({ "SecretId": secret_id, "tf": { "action": action, "prev_input": (action != "create").then_some(input) } })
}

/// The previous version of the module's input: the header it put on the origin itself.
pub fn legacy_input(distribution_id: &str, origin_id: &str, header_name: &str) -> Value {
    json!({
        "DistributionId": distribution_id,
        "OriginId": origin_id,
        "HeaderName": header_name,
        "RotationToken": "2024-01",
    })
}

/// The update Terraform sends when a deployment of the previous version is upgraded: this
/// version's input, the previous one's as `prev_input`.
pub fn legacy_update(secret_id: &str, previous: Value) -> Value {
    json!({ "SecretId": secret_id, "tf": { "action": "update", "prev_input": previous } })
}

/// The delete Terraform sends when it destroys a deployment of the previous version: its input
/// both as the input and as `prev_input`.
pub fn legacy_delete(previous: Value) -> Value {
    let mut event = previous.clone();
    event["tf"] = json!({ "action": "delete", "prev_input": previous });
    event
}

/// What `make rotate-secret` sends for one phase.
pub fn rotation(
    phase: &str,
    secret_id: &str,
    distribution_id: &str,
    origin_id: &str,
    header_name: &str,
) -> Value {
    json!({
        "Rotate": phase,
        "SecretId": secret_id,
        "DistributionId": distribution_id,
        "OriginId": origin_id,
        "HeaderName": header_name,
    })
}

/// Headers of a custom resource: (origin id, name, value).
pub type Listed<'a> = [(&'a str, &'a str, &'a str)];

/// A CloudFormation custom resource request as the CDK provider framework passes it on.
pub fn custom_resource(
    request_type: &str,
    distribution_id: &str,
    headers: &Listed,
    old: Option<&Listed>,
) -> Value {
    let properties = |headers: &Listed| {
        let mut origins: Vec<Value> = Vec::new();
        for (origin_id, name, value) in headers {
            let header = json!({ "HeaderName": name, "HeaderValue": value });
            match origins.iter_mut().find(|o| o["OriginId"] == *origin_id) {
                Some(origin) => origin["CustomHeaders"].as_array_mut().unwrap().push(header),
                None => origins.push(json!({ "OriginId": origin_id, "CustomHeaders": [header] })),
            }
        }
        json!({ "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
                "DistributionId": distribution_id, "Origins": origins })
    };
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
        "ResponseURL": "https://cloudformation-custom-resource-response.example/",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/cdn/1",
        "RequestId": "5d1b0c2e",
        "LogicalResourceId": "OriginHeaders",
        "ResourceType": "Custom::OriginHeaders",
        "ResourceProperties": properties(headers),
    });
    if let Some(old) = old {
        event["OldResourceProperties"] = properties(old);
        event["PhysicalResourceId"] = json!(format!("{distribution_id}/origin-custom-headers"));
    }
    event
}
