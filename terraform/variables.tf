# Only what an operator of this service tunes; each value is validated by the module it goes to.

variable "name" {
  description = "Name of the deployment: prefixes every resource, names the ECR repository, ECS cluster and service."
  type        = string
  default     = "websocket-service"

  validation {
    # The longest derived names ("<name>-origin-secret", "<name>-cf-logs-<suffix>") must fit AWS limits.
    # ECS refuses capacity provider names ("<name>-ec2") that begin with aws, ecs or fargate.
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name)) && !endswith(var.name, "-") && !can(regex("^(aws|ecs|fargate)", var.name))
    error_message = "name must be 1-20 lowercase letters, digits or hyphens, starting with a letter, not ending with a hyphen, and not beginning with aws, ecs or fargate (ECS reserves them)."
  }
}

variable "image_tag" {
  description = "Tag of the websocket-server image in this deployment's ECR repository (`make image` pushes the git revision)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a Docker tag: 1-128 letters, digits, _ . -, not starting with . or -."
  }
}

variable "lambda_zip_path" {
  description = "Path of the custom-header-fn package built by `make lambda`."
  type        = string
}

variable "lambda_architecture" {
  description = "Architecture the Lambda package was built for (arm64 or x86_64)."
  type        = string
  default     = "arm64"
}

variable "run_on_ec2" {
  description = "Run the service on a Graviton Auto Scaling group capacity provider instead of Fargate; only then are the group, its launch template, instance role and security group created."
  type        = bool
  default     = false
}

variable "enable_private_subnets" {
  description = "Put tasks and instances in private subnets behind a NAT gateway (about 32 USD a month plus traffic) instead of public subnets with public IPs. origin_access = \"vpc\" needs it."
  type        = bool
  default     = false
}

variable "enable_redis_backplane" {
  description = "Run a Valkey (Redis) node the tasks share as pub/sub backplane, so a message reaches the clients of every task; the server gets REDIS_URL from Secrets Manager. Off, each task broadcasts to its own clients only, so the plan refuses it unless max_capacity is 1."
  type        = bool
  default     = true
}

variable "enable_http_publish" {
  description = "Let backends publish over HTTP (POST /v1/publish, through CloudFront): a random key is drawn into Secrets Manager and given to the tasks as PUBLISH_API_KEYS; read it with the command in the publish_api_key_command output. Off, POST /v1/publish answers 403 saying HTTP publishing is not set up."
  type        = bool
  default     = false
}

variable "sign_in" {
  description = "Sign-in with JWTs from your identity provider (Cognito, Auth0, Okta, Keycloak…): its JWKS URL (https), the iss and aud every token must carry, and the clock skew allowed. Then every WebSocket upgrade needs a valid token (see the README's Sign-in section). null: open, as without it."
  type = object({
    jwks_url       = string
    issuer         = string
    audience       = string
    leeway_seconds = optional(number, 5)
  })
  default = null

  validation {
    condition     = var.sign_in == null || startswith(try(var.sign_in.jwks_url, ""), "https://")
    error_message = "sign_in.jwks_url must be an https:// URL: keys fetched in clear could be swapped on the way."
  }
  validation {
    condition     = var.sign_in == null || (trimspace(try(var.sign_in.issuer, "")) != "" && trimspace(try(var.sign_in.audience, "")) != "")
    error_message = "sign_in.issuer and sign_in.audience are both required: without them, tokens from other issuers or issued for other applications would pass."
  }
  validation {
    condition     = var.sign_in == null || (try(var.sign_in.leeway_seconds, 5) >= 0 && try(var.sign_in.leeway_seconds, 5) <= 300 && floor(try(var.sign_in.leeway_seconds, 5)) == try(var.sign_in.leeway_seconds, 5))
    error_message = "sign_in.leeway_seconds must be a whole number from 0 to 300."
  }
}

variable "redis_node_type" {
  description = "Node type of the backplane's nodes."
  type        = string
  default     = "cache.t4g.micro"
}

variable "redis_replicas" {
  description = "Replicas beside the backplane's primary: 0 is one node (the cheapest; a failed node is replaced by ElastiCache in minutes, and meanwhile each task reaches only its own clients), 1 adds automatic failover to another zone in seconds."
  type        = number
  default     = 0
}

variable "ec2_instance_type" {
  description = "Graviton instance type of the EC2 capacity provider (with run_on_ec2); the plan refuses one on which not even one task fits, and sizes the group's maximum from how many do."
  type        = string
  default     = "c7g.large"
}

variable "task_cpu" {
  description = "CPU units per task (1024 = 1 vCPU): 256, 512, 1024, 2048, 4096, 8192 or 16384 (Fargate's sizes)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Memory per task, MiB, in the range and steps Fargate allows for task_cpu (1024: 2048-8192 in steps of 1024; see the ecs-service module)."
  type        = number
  default     = 2048
}

variable "desired_count" {
  description = "Tasks at creation; auto scaling adjusts the count afterwards."
  type        = number
  default     = 2
}

variable "min_capacity" {
  description = "Fewest tasks auto scaling keeps."
  type        = number
  default     = 2
}

variable "max_capacity" {
  description = "Most tasks auto scaling may run."
  type        = number
  default     = 10
}

variable "max_connections_per_task" {
  description = "WebSocket connections one task accepts (the server's MAX_CONNECTIONS)."
  type        = number
  default     = 10000
}

variable "connections_target_per_task" {
  description = "Average connections per task auto scaling aims for."
  type        = number
  default     = 5000
}

variable "drain_timeout_seconds" {
  description = "The server's DRAIN_TIMEOUT; also the target group's deregistration delay, and stopTimeout is 15 s more."
  type        = number
  default     = 30
}

variable "drain_spread_seconds" {
  description = "The server's DRAIN_SPREAD: /v1/ws clients of a stopping task are closed with 1012 at random moments over this many seconds; at most drain_timeout_seconds - 5. null: 20, or drain_timeout_seconds - 5 if less."
  type        = number
  default     = null
}

variable "ping_interval_seconds" {
  description = "The server's PING_INTERVAL; the load balancer's idle timeout is twice as long."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Days the server's, the Lambda's and CloudFront's access logs are kept in CloudWatch Logs."
  type        = number
  default     = 30
}

variable "enable_execute_command" {
  description = "Enable ECS Exec into running tasks (see the ecs_exec_command output)."
  type        = bool
  default     = false
}

variable "price_class" {
  description = "CloudFront price class: PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"
}

variable "alarm_email" {
  description = "Email address the CloudWatch alarms notify through an SNS topic (the recipient confirms the subscription from AWS's mail); null: the alarms only change state in the console and on the dashboard."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address such as ops@example.com, or null."
  }
}

variable "domain_name" {
  description = "Your domain for the service (e.g. ws.example.com), in hosted_zone_id: viewers connect to wss://<domain_name>/wss, and CloudFront reaches the load balancer over HTTPS at origin.<domain_name>, so the secret header and every frame are encrypted all the way. null (the default): <id>.cloudfront.net, and CloudFront speaks plain HTTP to the load balancer."
  type        = string
  default     = null
}

variable "hosted_zone_id" {
  description = "Route 53 public hosted zone holding domain_name (certificate validation and alias records go there); set with domain_name."
  type        = string
  default     = null

  validation {
    condition     = (var.domain_name == null) == (var.hosted_zone_id == null)
    error_message = "domain_name and hosted_zone_id go together: set both (a domain in that Route 53 zone) or neither."
  }
}

variable "origin_access" {
  description = "How CloudFront reaches the load balancer. \"public\" (the default): an internet-facing load balancer whose security group admits only CloudFront's origin-facing servers. \"vpc\": an internal load balancer in the private subnets, reached through a CloudFront VPC origin inside AWS's network, so no part of the service has a public address; it needs enable_private_subnets. The secret header is checked either way."
  type        = string
  default     = "public"

  validation {
    condition     = contains(["public", "vpc"], var.origin_access)
    error_message = "origin_access must be \"public\" or \"vpc\"."
  }

  validation {
    condition     = var.origin_access == "public" || var.enable_private_subnets
    error_message = "origin_access = \"vpc\" needs enable_private_subnets = true: a CloudFront VPC origin reaches a load balancer in private subnets, and the tasks there reach ECR and CloudWatch through the NAT gateway (about 32 USD a month)."
  }
}
