# Only what an operator of this service tunes; each value is validated by the module it goes to.

variable "name" {
  description = "Name of the deployment: prefixes every resource, names the ECR repository, ECS cluster and service."
  type        = string
  default     = "websocket-service"

  validation {
    # The longest derived names ("<name>-origin-secret", "<name>-cf-logs-<suffix>") must fit AWS limits.
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name)) && !endswith(var.name, "-")
    error_message = "name must be 1-20 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
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

variable "origin_secret_rotation" {
  description = "Change to any new value and apply to rotate the secret header between CloudFront and the load balancer."
  type        = string
  default     = "initial"
}

variable "run_on_ec2" {
  description = "Run the service on the cluster's Graviton Auto Scaling group capacity provider instead of Fargate."
  type        = bool
  default     = false
}

variable "enable_private_subnets" {
  description = "Put tasks and instances in private subnets behind a NAT gateway instead of public subnets with public IPs."
  type        = bool
  default     = false
}

variable "enable_redis_backplane" {
  description = "Run a Valkey (Redis) replication group the tasks share as pub/sub backplane, so a message reaches the clients of every task; the server gets REDIS_URL from Secrets Manager. Off, each task broadcasts to its own clients only."
  type        = bool
  default     = false
}

variable "redis_node_type" {
  description = "Node type of the backplane's primary and replica."
  type        = string
  default     = "cache.t4g.micro"
}

variable "ec2_instance_type" {
  description = "Graviton instance type of the EC2 capacity provider."
  type        = string
  default     = "c7g.large"
}

variable "ec2_max_size" {
  description = "Most instances the EC2 capacity provider may run (it scales from 0)."
  type        = number
  default     = 4
}

variable "task_cpu" {
  description = "CPU units per task (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Memory per task, MiB."
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

variable "ping_interval_seconds" {
  description = "The server's PING_INTERVAL; the load balancer's idle timeout is twice as long."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Days the server's and the Lambda's CloudWatch logs are kept."
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
