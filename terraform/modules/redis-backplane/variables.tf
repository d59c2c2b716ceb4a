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
  description = "Subnets of the cache nodes, in at least two availability zones for the replica to fail over to."
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

variable "node_type" {
  description = "Node type of the primary and the replica; Graviton (t4g, m7g, r7g...) by default. Pub/sub keeps no data, so the smallest type carries a lot of messages."
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
