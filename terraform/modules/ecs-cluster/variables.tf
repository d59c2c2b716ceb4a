variable "name" {
  description = "Name of the cluster; prefixes its Auto Scaling group, launch template, role and security group."
  type        = string

  validation {
    # ECS refuses capacity provider names that begin with aws, ecs or fargate, and the EC2 one is
    # "<name>-ec2".
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,31}$", var.name)) && !can(regex("^(?i)(aws|ecs|fargate)", var.name))
    error_message = "name must be 1-32 letters, digits or hyphens, starting with a letter, and must not begin with aws, ecs or fargate (ECS reserves them for capacity provider names)."
  }
}

variable "vpc_id" {
  description = "VPC of the container instances."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the Auto Scaling group launches container instances into."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "instances_need_public_ip" {
  description = "Give container instances a public IP: needed in public subnets without a NAT gateway, so the ECS agent can reach ECS, ECR and CloudWatch."
  type        = bool
}

variable "instance_type" {
  description = "Graviton (arm64) instance type of the container instances; the AMI is the ECS-optimized Amazon Linux 2023 arm64 one."
  type        = string
  default     = "c7g.large"

  validation {
    condition     = can(regex("^[a-z]+[0-9]+g[a-z]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be a Graviton type (its family ends in g, optionally followed by d, n, e...: t4g.medium, c7g.large, m7gd.xlarge)."
  }
}

variable "enable_ec2_capacity" {
  description = "Create the Graviton Auto Scaling group, its launch template, instance role and security group, and the capacity provider over them; off, the cluster has Fargate capacity only and none of these exist."
  type        = bool
  default     = false
}

variable "task_cpu" {
  description = "CPU units of one task: with task_memory, how many tasks an instance holds."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Memory of one task, MiB."
  type        = number
  default     = 2048

  validation {
    condition     = var.task_memory >= 512
    error_message = "task_memory must be at least 512 MiB."
  }
}

variable "max_tasks" {
  description = "Most tasks the service may run at once on this capacity (its maximum count times its deployment maximum percent): sizes the Auto Scaling group's maximum."
  type        = number
  default     = 20

  validation {
    condition     = var.max_tasks >= 1 && floor(var.max_tasks) == var.max_tasks
    error_message = "max_tasks must be a whole number of at least 1."
  }
}

variable "target_capacity_percent" {
  description = "Managed scaling keeps the instances this full (100: no idle instance; lower keeps spare room so new tasks start without waiting for an instance)."
  type        = number
  default     = 100

  validation {
    condition     = var.target_capacity_percent >= 1 && var.target_capacity_percent <= 100
    error_message = "target_capacity_percent must be from 1 to 100."
  }
}

variable "root_volume_size_gib" {
  description = "Size of each instance's encrypted root volume (images and container logs)."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_size_gib >= 30 && var.root_volume_size_gib <= 16384
    error_message = "root_volume_size_gib must be at least 30 (the size of the ECS-optimized AMI's snapshot) and at most 16384."
  }
}
