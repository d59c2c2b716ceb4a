resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

# The EC2 capacity, only with enable_ec2_capacity: Graviton instances running the ECS-optimized
# arm64 AMI, scaled by ECS itself (managed scaling) to fit the tasks placed on it.

# How many tasks one instance holds. The ECS agent registers the instance's memory minus what the
# kernel keeps (about 2.5 % on AWS's m4.large example; AWS advises keeping 5 % free) minus
# ECS_RESERVED_MEMORY, set below for the agent and the system; every awsvpc task also takes one of
# the instance's network interfaces, the first of which is the instance's own.
data "aws_ec2_instance_type" "instance" {
  count = var.enable_ec2_capacity ? 1 : 0

  instance_type = var.instance_type
}

locals {
  ecs_reserved_memory_mib = 256
  kernel_reserve_fraction = 0.05

  instance = one(data.aws_ec2_instance_type.instance[*])
  task_memory_room_mib = local.instance == null ? 0 : (
    floor(local.instance.memory_size * (1 - local.kernel_reserve_fraction)) - local.ecs_reserved_memory_mib
  )
  tasks_per_instance = local.instance == null ? 0 : min(
    floor(local.task_memory_room_mib / var.task_memory),
    floor(local.instance.default_vcpus * 1024 / var.task_cpu),
    local.instance.maximum_network_interfaces - 1,
  )
  # Enough instances for the most tasks the service may run at once (its maximum during a
  # deployment), and never fewer than one.
  max_instances = local.tasks_per_instance < 1 ? 1 : ceil(var.max_tasks / local.tasks_per_instance)
}
data "aws_ssm_parameter" "ecs_optimized_arm64_ami" {
  count = var.enable_ec2_capacity ? 1 : 0

  name = "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"
}

data "aws_iam_policy_document" "assume_by_ec2" {
  count = var.enable_ec2_capacity ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  count = var.enable_ec2_capacity ? 1 : 0

  name               = "${var.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.assume_by_ec2[0].json
}

resource "aws_iam_role_policy_attachment" "instance_ecs_agent" {
  count = var.enable_ec2_capacity ? 1 : 0

  role       = aws_iam_role.instance[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "instance" {
  count = var.enable_ec2_capacity ? 1 : 0

  name = "${var.name}-instance"
  role = aws_iam_role.instance[0].name
}

# Tasks use awsvpc networking and carry their own security group; the instance itself only talks
# out, to ECS, ECR and CloudWatch over HTTPS.
resource "aws_security_group" "instance" {
  count = var.enable_ec2_capacity ? 1 : 0

  name        = "${var.name}-instance"
  description = "Container instances of ${var.name}: HTTPS out only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-instance" }
}

resource "aws_vpc_security_group_egress_rule" "instance_https" {
  count = var.enable_ec2_capacity ? 1 : 0

  security_group_id = aws_security_group.instance[0].id
  description       = "ECS agent, image pulls and logs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_launch_template" "this" {
  #checkov:skip=CKV_AWS_88:A public IP only when instances_need_public_ip (public subnets without NAT, the no-NAT layout); the security group admits no inbound traffic.
  count = var.enable_ec2_capacity ? 1 : 0

  name_prefix   = "${var.name}-"
  image_id      = data.aws_ssm_parameter.ecs_optimized_arm64_ami[0].value
  instance_type = var.instance_type

  iam_instance_profile {
    arn = aws_iam_instance_profile.instance[0].arn
  }

  network_interfaces {
    associate_public_ip_address = var.instances_need_public_ip
    security_groups             = [aws_security_group.instance[0].id]
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.root_volume_size_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  # ECS_AWSVPC_BLOCK_IMDS: tasks get their credentials from the task role, never the instance's.
  user_data = base64encode(<<-EOT
    #!/bin/bash
    cat >> /etc/ecs/ecs.config <<'CONFIG'
    ECS_CLUSTER=${aws_ecs_cluster.this.name}
    ECS_AWSVPC_BLOCK_IMDS=true
    ECS_RESERVED_MEMORY=${local.ecs_reserved_memory_mib}
    CONFIG
  EOT
  )

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-ecs" }
  }
}

resource "aws_autoscaling_group" "this" {
  count = var.enable_ec2_capacity ? 1 : 0

  name_prefix         = "${var.name}-"
  vpc_zone_identifier = var.subnet_ids
  min_size            = 0
  max_size            = local.max_instances

  # Managed termination protection: ECS picks which instances may go (only empty ones), so the
  # group must not terminate instances on its own.
  protect_from_scale_in = true
  # Lets `terraform destroy` remove the group without waiting for protected instances to drain.
  force_delete = true

  launch_template {
    id      = aws_launch_template.this[0].id
    version = aws_launch_template.this[0].latest_version
  }

  # ECS managed scaling requires this tag and would add it itself.
  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  lifecycle {
    # Managed scaling sets the desired capacity.
    ignore_changes = [desired_capacity]

    precondition {
      condition     = local.tasks_per_instance >= 1
      error_message = "Not even one task (${var.task_cpu} CPU units, ${var.task_memory} MiB) fits on a ${var.instance_type}: it has ${local.task_memory_room_mib} MiB for tasks after the kernel's and the ECS agent's reserve, ${try(local.instance.default_vcpus, 0) * 1024} CPU units and ${try(local.instance.maximum_network_interfaces, 0)} network interfaces (one is the instance's). Choose a larger ec2_instance_type or a smaller task."
    }
  }
}

resource "aws_ecs_capacity_provider" "ec2" {
  count = var.enable_ec2_capacity ? 1 : 0

  name = "${var.name}-ec2"

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.this[0].arn
    managed_termination_protection = "ENABLED"

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = var.target_capacity_percent
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = 2
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = concat(["FARGATE"], aws_ecs_capacity_provider.ec2[*].name)

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}
