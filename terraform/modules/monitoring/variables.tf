variable "name" {
  description = "Name of the deployment: prefixes the alarms, the dashboard, the task-stop rule and log group, and the SNS topic."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,31}$", var.name))
    error_message = "name must be 1-32 letters, digits or hyphens, starting with a letter."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the server's EMF metrics (its METRICS_NAMESPACE)."
  type        = string
  default     = "WebSocketService"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be 1-255 letters, digits or . _ / # : - and must not start with AWS/."
  }
}

variable "service_name" {
  description = "Name of the ECS service; also the ServiceName dimension of the server's EMF metrics (its SERVICE_NAME), which the ecs-service module sets to the same name."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.service_name))
    error_message = "service_name must be 1-255 letters, digits, hyphens or underscores (an ECS service name)."
  }
}

variable "cluster_name" {
  description = "Name of the ECS cluster the service runs in (the ClusterName dimension of the AWS/ECS and Container Insights metrics)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.cluster_name))
    error_message = "cluster_name must be 1-255 letters, digits, hyphens or underscores (an ECS cluster name)."
  }
}

variable "load_balancer_arn_suffix" {
  description = "ARN suffix of the Application Load Balancer (app/<name>/<id>), the LoadBalancer dimension of its CloudWatch metrics."
  type        = string

  validation {
    condition     = can(regex("^app/[^/]+/[0-9a-f]+$", var.load_balancer_arn_suffix))
    error_message = "load_balancer_arn_suffix must look like app/<name>/<id> (the arn_suffix of an aws_lb)."
  }
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the service's target group (targetgroup/<name>/<id>), the TargetGroup dimension of its CloudWatch metrics."
  type        = string

  validation {
    condition     = can(regex("^targetgroup/[^/]+/[0-9a-f]+$", var.target_group_arn_suffix))
    error_message = "target_group_arn_suffix must look like targetgroup/<name>/<id> (the arn_suffix of an aws_lb_target_group)."
  }
}

variable "min_capacity" {
  description = "Fewest tasks auto scaling keeps. With min_capacity = max_capacity the service is always at its maximum, so no alarm is made for it."
  type        = number
  default     = 1

  validation {
    condition     = var.min_capacity >= 1 && floor(var.min_capacity) == var.min_capacity
    error_message = "min_capacity must be a whole number of at least 1."
  }
}

variable "max_capacity" {
  description = "Most tasks auto scaling may run; the at-max-capacity alarm fires when the service's desired count has stayed there."
  type        = number

  validation {
    condition     = var.max_capacity >= var.min_capacity && floor(var.max_capacity) == var.max_capacity
    error_message = "max_capacity must be a whole number of at least min_capacity."
  }
}

variable "log_group_name" {
  description = "CloudWatch log group of the server (JSON lines); the dashboard lists its recent warnings and errors."
  type        = string

  validation {
    condition     = can(regex("^[\\.\\-_/#A-Za-z0-9]{1,512}$", var.log_group_name))
    error_message = "log_group_name must be a CloudWatch Logs group name: 1-512 letters, digits or . - _ / #."
  }
}

variable "enable_backplane" {
  description = "The tasks share a Redis backplane (REDIS_URL is set): adds the backplane alarm and dashboard widget."
  type        = bool
  default     = false
}

variable "alarm_email" {
  description = "Address the alarms notify (through an SNS topic encrypted with its own KMS key); the recipient must confirm the subscription from the mail AWS sends. null or empty: no topic, and the alarms only change state in the console."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address such as ops@example.com, or null."
  }
}

variable "target_5xx_threshold" {
  description = "5xx responses from the tasks in one minute (upgrades refused with 503 at the connection limit or while draining included) that count as a bad minute; the alarm fires on 3 bad minutes out of 5."
  type        = number
  default     = 10

  validation {
    condition     = var.target_5xx_threshold >= 1 && floor(var.target_5xx_threshold) == var.target_5xx_threshold
    error_message = "target_5xx_threshold must be a whole number of at least 1."
  }
}

variable "log_retention_days" {
  description = "Days the log group of unexpected task stops (the ECS events behind the tasks-stopped alarm) is kept."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs offers (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}
