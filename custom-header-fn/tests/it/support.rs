//! What the integration tests share: the external tools (moto, cargo-lambda), processes that end
//! with the test, a CloudFront client pointed at moto, and distributions to work on.
//!
//! A missing tool fails the test with what to install: these tests never skip.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudfront::types::{
    CustomHeaders, CustomOriginConfig, DefaultCacheBehavior, DistributionConfig, Origin,
    OriginCustomHeader, OriginProtocolPolicy, Origins, ViewerProtocolPolicy,
};
use custom_header_fn::Retry;
use serde_json::{Value, json};

/// Production's policy, without the waiting.
pub const FAST_RETRY: Retry = Retry {
    attempts: 5,
    first_backoff: Duration::from_millis(1),
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
    /// Starts `command` with standard output and error in `<target tmp>/<name>-<port>.log`.
    pub fn start(name: &str, port: u16, mut command: Command) -> Self {
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{port}.log"));
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
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.try_wait().expect("process status") {
                panic!(
                    "exited ({status}) before listening on {port}; see {}",
                    self.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on {port} after 60 s; see {}",
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
    pub fn start() -> Self {
        let port = free_port();
        let mut command = Command::new(tool("moto_server"));
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut process = Process::start("moto", port, command);
        process.wait_for_port(port);
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _process: process,
        }
    }

    /// A CloudFront client that talks to this server only, with dummy credentials.
    pub fn client(&self) -> Client {
        let config = aws_sdk_cloudfront::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .build();
        Client::from_conf(config)
    }
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

/// The module's input to the function, as Terraform's `jsonencode` passes it.
pub fn input(distribution_id: &str, origin_id: &str, header_name: &str, token: &str) -> Value {
    json!({
        "DistributionId": distribution_id,
        "OriginId": origin_id,
        "HeaderName": header_name,
        "RotationToken": token,
    })
}

/// What `aws_lambda_invocation` with `lifecycle_scope = "CRUD"` sends: the input plus `tf`.
pub fn invocation(input: &Value, action: &str, previous: Option<&Value>) -> Value {
    let mut event = input.clone();
    event["tf"] = json!({ "action": action, "prev_input": previous });
    event
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
