variable "name" {
  description = "Name given to the VPC and used as the prefix of every resource name in it."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.name))
    error_message = "name must be 1-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "cidr_block" {
  description = "IPv4 range of the VPC. Each subnet gets a /20 slice of it (at most 4096 addresses), so a /16 leaves room for growth."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be an IPv4 CIDR block of /20 or larger (e.g. 10.0.0.0/16)."
  }
}

variable "az_count" {
  description = "Number of availability zones to spread the subnets over (one public, and optionally one private, subnet in each)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4 && floor(var.az_count) == var.az_count
    error_message = "az_count must be a whole number from 2 (an ALB needs two zones) to 4."
  }
}

variable "enable_private_subnets" {
  description = "Also create private subnets with one NAT gateway (about 32 USD a month plus traffic) and report them as the workload subnets, so tasks and instances get no public IP. Off, workloads run in the public subnets with public IPs and there is no NAT gateway."
  type        = bool
  default     = false
}
