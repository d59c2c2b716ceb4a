variable "name" {
  description = "Name of the service; also its task family, log group, and the ServiceName dimension of the ActiveConnections metric."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,31}$", var.name))
    error_message = "name must be 1-32 letters, digits or hyphens, starting with a letter."
  }
}

variable "cluster_name" {
  description = "Name of the ECS cluster to run in."
  type        = string
}

variable "capacity_provider" {
  description = "Capacity provider the tasks run on: FARGATE, or the name of the cluster's EC2 (Auto Scaling group) capacity provider."
  type        = string
  default     = "FARGATE"
}

variable "vpc_id" {
  description = "VPC of the tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the tasks' network interfaces go in, ideally one per availability zone."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "assign_public_ip" {
  description = "Give each task a public IP (Fargate only): needed in public subnets without a NAT gateway to pull the image and ship logs. Ignored on EC2, where the instance does both."
  type        = bool
}

variable "image" {
  description = "Container image of websocket-server, as repository URL and tag."
  type        = string

  validation {
    condition     = can(regex("^[^\\s:]+(:[0-9]+)?/[^\\s:]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must be a registry/repository reference with a tag or digest, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/websocket-service:1a2b3c4d."
  }
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository holding the image: the only repository the tasks may pull from."
  type        = string
}

variable "cpu" {
  description = "CPU units of a task (1024 = 1 vCPU): one of Fargate's sizes, each with its own memory range (see memory)."
  type        = number
  default     = 1024

  # The task definition is registered for Fargate and EC2 alike (so the service can move between
  # them), and ECS then holds it to Fargate's sizes on either.
  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be a Fargate size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Memory of a task, MiB. Each Fargate cpu size allows its own range and step: 256: 512, 1024 or 2048; 512: 1024-4096 and 1024: 2048-8192 and 2048: 4096-16384 and 4096: 8192-30720, in 1024 steps; 8192: 16384-61440 in 4096 steps; 16384: 32768-122880 in 8192 steps."
  type        = number
  default     = 2048

  # The combinations Fargate accepts (AWS documentation, "Task CPU and memory"); anything else is
  # refused by RegisterTaskDefinition only at apply time, after the rest has been created.
  validation {
    condition = contains(lookup({
      "256"   = [512, 1024, 2048]
      "512"   = range(1024, 4096 + 1, 1024)
      "1024"  = range(2048, 8192 + 1, 1024)
      "2048"  = range(4096, 16384 + 1, 1024)
      "4096"  = range(8192, 30720 + 1, 1024)
      "8192"  = range(16384, 61440 + 1, 4096)
      "16384" = range(32768, 122880 + 1, 8192)
    }, tostring(var.cpu), []), var.memory)
    error_message = "memory does not fit cpu on Fargate: cpu 256 takes 512, 1024 or 2048; 512 takes 1024-4096, 1024 takes 2048-8192, 2048 takes 4096-16384 and 4096 takes 8192-30720, in steps of 1024; 8192 takes 16384-61440 in steps of 4096; 16384 takes 32768-122880 in steps of 8192."
  }
}

variable "container_port" {
  description = "Port websocket-server listens on (its PORT) and the target group sends to."
  type        = number
  default     = 8080

  validation {
    condition     = var.container_port >= 1024 && var.container_port <= 65535
    error_message = "container_port must be from 1024 to 65535 (the container does not run as root)."
  }
}

variable "target_group_arn" {
  description = "Target group the tasks register in (target type ip)."
  type        = string
}

variable "load_balancer_security_group_id" {
  description = "Security group of the load balancer: the only source admitted to container_port."
  type        = string
}

variable "desired_count" {
  description = "Tasks to start with; auto scaling adjusts it afterwards between min_capacity and max_capacity."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 0 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number of at least 0."
  }
}

variable "min_capacity" {
  description = "Fewest tasks auto scaling keeps; 2 keeps one per availability zone."
  type        = number
  default     = 2

  validation {
    condition     = var.min_capacity >= 1 && floor(var.min_capacity) == var.min_capacity
    error_message = "min_capacity must be a whole number of at least 1."
  }
}

variable "max_capacity" {
  description = "Most tasks auto scaling may run."
  type        = number
  default     = 10

  validation {
    condition     = var.max_capacity >= var.min_capacity && floor(var.max_capacity) == var.max_capacity
    error_message = "max_capacity must be a whole number of at least min_capacity."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU utilization auto scaling aims for."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent >= 10 && var.cpu_target_percent <= 90
    error_message = "cpu_target_percent must be from 10 to 90."
  }
}

variable "max_connections_per_task" {
  description = "WebSocket connections one task accepts (the server's MAX_CONNECTIONS); upgrades beyond get 503."
  type        = number
  default     = 10000

  validation {
    condition     = var.max_connections_per_task >= 1 && var.max_connections_per_task <= 1000000 && floor(var.max_connections_per_task) == var.max_connections_per_task
    error_message = "max_connections_per_task must be a whole number from 1 to 1000000."
  }
}

variable "connections_target_per_task" {
  description = "Average open connections per task auto scaling aims for (the ActiveConnections metric the server emits); keep it well below max_connections_per_task so new tasks start before old ones refuse upgrades."
  type        = number
  default     = 5000

  validation {
    condition     = var.connections_target_per_task >= 1 && var.connections_target_per_task < var.max_connections_per_task
    error_message = "connections_target_per_task must be at least 1 and below max_connections_per_task."
  }
}

variable "drain_timeout_seconds" {
  description = "How long a stopping server waits for its clients to finish the close handshake (its DRAIN_TIMEOUT). The container's stopTimeout is 15 s more, and Fargate allows at most 120 s."
  type        = number
  default     = 30

  validation {
    condition     = var.drain_timeout_seconds >= 1 && var.drain_timeout_seconds <= 105 && floor(var.drain_timeout_seconds) == var.drain_timeout_seconds
    error_message = "drain_timeout_seconds must be a whole number from 1 to 105 (stopTimeout = drain + 15 must stay within Fargate's 120 s)."
  }
}

variable "drain_spread_seconds" {
  description = "The time over which a stopping server closes its /v1/ws clients with 1012, each at a random moment, so they reconnect to the other tasks a few at a time (its DRAIN_SPREAD); 0 closes them all at once. At most drain_timeout_seconds - 5: the last clients get 5 s to answer the close. null: 20, or drain_timeout_seconds - 5 if that is less."
  type        = number
  default     = null

  validation {
    condition = var.drain_spread_seconds == null ? true : (
      var.drain_spread_seconds >= 0 && floor(var.drain_spread_seconds) == var.drain_spread_seconds &&
      (var.drain_spread_seconds == 0 || var.drain_spread_seconds + 5 <= var.drain_timeout_seconds)
    )
    error_message = "drain_spread_seconds must be a whole number from 0 to drain_timeout_seconds - 5 (the server refuses a DRAIN_SPREAD that leaves the last clients under 5 s of DRAIN_TIMEOUT to answer the close)."
  }
}

variable "ping_interval_seconds" {
  description = "Time between the server's WebSocket pings (its PING_INTERVAL); must be below the load balancer's idle timeout."
  type        = number
  default     = 30

  validation {
    condition     = var.ping_interval_seconds >= 1 && var.ping_interval_seconds <= 1800 && floor(var.ping_interval_seconds) == var.ping_interval_seconds
    error_message = "ping_interval_seconds must be a whole number from 1 to 1800."
  }
}

variable "load_balancer_idle_timeout_seconds" {
  description = "Idle timeout of the load balancer in front of the tasks; the server keeps idle keep-alive HTTP connections 15 s longer (its HTTP_IDLE_TIMEOUT), so the load balancer never reuses one the server has just closed."
  type        = number
  default     = 60

  validation {
    condition     = var.load_balancer_idle_timeout_seconds >= 1 && var.load_balancer_idle_timeout_seconds <= 4000 && floor(var.load_balancer_idle_timeout_seconds) == var.load_balancer_idle_timeout_seconds
    error_message = "load_balancer_idle_timeout_seconds must be a whole number from 1 to 4000."
  }
}

variable "trusted_proxy_hops" {
  description = "Proxies in front of the tasks that append to X-Forwarded-For (CloudFront and the ALB: 2); the server logs the client address that many entries from the right, which a client cannot forge (its TRUSTED_PROXY_HOPS)."
  type        = number
  default     = 2

  validation {
    condition     = var.trusted_proxy_hops >= 0 && var.trusted_proxy_hops <= 16 && floor(var.trusted_proxy_hops) == var.trusted_proxy_hops
    error_message = "trusted_proxy_hops must be a whole number from 0 to 16."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the ActiveConnections metric (the server's METRICS_NAMESPACE)."
  type        = string
  default     = "WebSocketService"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be 1-255 letters, digits or . _ / # : - and must not start with AWS/."
  }
}

variable "log_level" {
  description = "The server's LOG_LEVEL: a level or tracing directives (info, debug, info,server=debug)."
  type        = string
  default     = "info"

  validation {
    condition     = length(var.log_level) > 0
    error_message = "log_level must not be empty."
  }
}

variable "log_retention_days" {
  description = "Days the server's CloudWatch logs are kept."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs offers (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "health_check_grace_period_seconds" {
  description = "How long after a task starts ECS ignores failing load balancer health checks."
  type        = number
  default     = 30

  validation {
    condition     = var.health_check_grace_period_seconds >= 0 && var.health_check_grace_period_seconds <= 2147483647
    error_message = "health_check_grace_period_seconds must be at least 0."
  }
}

variable "secret_environment" {
  description = "Environment variables of the server read from Secrets Manager at task start: name => secret ARN (e.g. REDIS_URL). The execution role may read these secrets and no other."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name, arn in var.secret_environment : can(regex("^[A-Z_][A-Z0-9_]*$", name)) && startswith(arn, "arn:")])
    error_message = "secret_environment must map UPPER_CASE variable names to secret ARNs."
  }
}

variable "extra_environment" {
  description = "More plain environment variables of the server (e.g. the AUTH_* sign-in settings): name => value. Not for secrets (use secret_environment), and not the variables this module sets itself."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.extra_environment) : can(regex("^[A-Z_][A-Z0-9_]*$", name))])
    error_message = "extra_environment names must be UPPER_CASE environment variable names."
  }
}

variable "enable_execute_command" {
  description = "Enable ECS Exec (a shell in a running task through SSM): adds a task role allowed to open SSM channels and the two writable volumes the SSM agent needs beside the read-only root file system."
  type        = bool
  default     = false
}
