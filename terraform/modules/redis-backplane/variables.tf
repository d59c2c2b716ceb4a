variable "name" {
  description = "Name of the replication group, its security group, subnet group and secret."
  type        = string

  validation {
    # A replication group ID: at most 40 characters, starting with a letter, no double hyphen.
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name)) && !strcontains(var.name, "--") && !endswith(var.name, "-")
    error_message = "name must be 1-40 lowercase letters, digits or hyphens, start with a letter, and have no double or trailing hyphen."
  }
}

variable "vpc_id" {
  description = "VPC of the cache."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the cache nodes, in at least two availability zones (ElastiCache's subnet group; a replica goes to another zone than the primary)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must name subnets in at least two availability zones."
  }
}

variable "client_security_group_id" {
  description = "Security group of the clients (the tasks): the only source admitted to the cache, and given an egress rule to it."
  type        = string
}

variable "auth_token_secret" {
  description = "Secrets Manager secret (ARN and version ID) holding the auth token: 16-128 printable characters without @, \", / or spaces (ElastiCache's rule), e.g. drawn by the random-secret module."
  type = object({
    arn        = string
    version_id = string
  })
}

variable "replicas" {
  description = "Read replicas beside the primary. 0 (the default, the cheapest backplane): one node; if it fails, ElastiCache replaces it and the servers reconnect, and messages published meanwhile reach only the clients of their own task. 1 or more: automatic failover to a replica in another zone, Multi-AZ, in seconds."
  type        = number
  default     = 0

  validation {
    condition     = var.replicas >= 0 && var.replicas <= 5 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number from 0 to 5."
  }
}

variable "node_type" {
  description = "Node type of every node; Graviton (t4g, m7g, r7g...) by default. Pub/sub keeps no data, so the smallest type carries a lot of messages."
  type        = string
  default     = "cache.t4g.micro"

  validation {
    condition     = startswith(var.node_type, "cache.")
    error_message = "node_type must be an ElastiCache node type (cache.t4g.micro, cache.m7g.large...)."
  }
}

variable "engine_version" {
  description = "Valkey major.minor version."
  type        = string
  default     = "8.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must be major.minor, e.g. 8.0."
  }
}
