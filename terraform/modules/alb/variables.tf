variable "name" {
  description = "Name of the load balancer, its target group and its security group."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$", var.name))
    error_message = "name must be 1-32 letters, digits or hyphens, not starting or ending with a hyphen (a load balancer name)."
  }
}

variable "vpc_id" {
  description = "VPC of the load balancer and its targets."
  type        = string
}

variable "vpc_cidr_block" {
  description = "IPv4 range of the VPC: the load balancer may only send to targets inside it."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr_block, 0))
    error_message = "vpc_cidr_block must be an IPv4 CIDR block."
  }
}

variable "subnet_ids" {
  description = "Subnets of the load balancer, in at least two availability zones: public ones for an internet-facing load balancer, private ones for an internal one."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "An Application Load Balancer needs subnets in at least two availability zones."
  }
}

variable "target_port" {
  description = "Port the targets (task IPs) listen on."
  type        = number
  default     = 8080

  validation {
    condition     = var.target_port >= 1 && var.target_port <= 65535
    error_message = "target_port must be a TCP port (1-65535)."
  }
}

variable "health_check_path" {
  description = "Path the target group polls; it must answer 200 while the target should get traffic."
  type        = string
  default     = "/health"

  validation {
    condition     = startswith(var.health_check_path, "/")
    error_message = "health_check_path must start with /."
  }
}

variable "idle_timeout_seconds" {
  description = "How long a connection may carry no data before the load balancer closes it. For WebSockets keep it above the server's ping interval so an idle but live client survives."
  type        = number
  default     = 60

  validation {
    condition     = var.idle_timeout_seconds >= 1 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be from 1 to 4000."
  }
}

variable "deregistration_delay_seconds" {
  description = "How long a deregistering target keeps its open connections (and gets no new ones) before the load balancer closes them."
  type        = number
  default     = 30

  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be from 0 to 3600."
  }
}

variable "origin_secret_header_name" {
  description = "Request header that proves a request came through CloudFront."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,40}$", var.origin_secret_header_name))
    error_message = "origin_secret_header_name must be 1-40 letters, digits or hyphens (a listener rule header name)."
  }
}

variable "origin_secret_header_values" {
  description = "Values of the header the listener forwards: the current secret, plus the previous one while a rotation is under way."
  type        = list(string)
  sensitive   = true

  validation {
    condition     = length(var.origin_secret_header_values) >= 1 && length(var.origin_secret_header_values) <= 5 && alltrue([for v in var.origin_secret_header_values : can(regex("^[0-9a-f]{64}$", v))])
    error_message = "origin_secret_header_values must hold 1-5 values, each 64 lowercase hex characters (the ALB matches case-insensitively and treats * and ? as wildcards, so nothing else is safe)."
  }
}

variable "https" {
  description = "One HTTPS listener on 443 with certificate_arn; false: one HTTP listener on 80."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "With https: the ACM certificate (in this region) of the listener, covering the name CloudFront's origin uses. Null without https."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null ? !var.https : var.https && can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>) when https is true, and null when it is false."
  }
}

variable "internal" {
  description = "An internal load balancer, without public addresses, that CloudFront reaches through a VPC origin (its network interfaces admitted by vpc_origin_security_group_id). False: internet-facing, admitting CloudFront's origin-facing prefix list."
  type        = bool
  default     = false
}

variable "vpc_origin_security_group_id" {
  description = "With internal: the security group CloudFront gives its VPC origin's network interfaces (CloudFront-VPCOrigins-Service-SG), the only source the listener admits. Null otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.internal == (var.vpc_origin_security_group_id != null)
    error_message = "vpc_origin_security_group_id is needed exactly when internal is true: an internal load balancer admits only CloudFront's VPC origin, an internet-facing one only CloudFront's prefix list."
  }
}
